// The emarsys-destination web console: a vanilla ES2020 module, no build step, no framework,
// no network access beyond this app's own JSON API (relative URLs, so a path prefix works).
//
// Routes (hash): #/ACCOUNT/datamaps | rules | rule/NAME | rule (new) | person?userId=... |
// deliveries | dead-letters. Every API call carries the admin token from localStorage; a 401
// asks for it again and retries.

const TOKEN_KEY = "emd.adminToken";
const ACCOUNT_KEY = "emd.account";
const PERIOD_KEY = "emd.period";
const BACKTEST_PERIOD_KEY = "emd.backtestPeriod";
const VALIDATE_DELAY_MS = 300;

const DATA_TYPES = ["string", "numeric", "boolean", "date", "datetime", "choice"];
const COND_TYPES = ["start", "step", "exclude", "exit"];
const COND_ON = ["any", "track", "page", "screen", "identify", "group", "alias"];
const SERIES = [
  { key: "started", label: "Started" },
  { key: "excluded", label: "Excluded" },
  { key: "expired", label: "Expired" },
  { key: "triggered", label: "Triggered" },
];
const PERIODS = [
  { kind: "24h", label: "Last 24 h", ms: 24 * 3600e3 },
  { kind: "7d", label: "7 days", ms: 7 * 24 * 3600e3 },
  { kind: "30d", label: "30 days", ms: 30 * 24 * 3600e3 },
  { kind: "custom", label: "Custom" },
];

const state = {
  accounts: null, // names, once loaded
  account: null,
  seq: 0, // render generation: async work of an older page checks ctx.alive()
  leaveGuard: null, // () => true when the current page has unsaved edits
  onSave: null, // Ctrl+S on the current page
  timers: [],
  currentHash: "",
};

// ---------------------------------------------------------------------------- DOM helpers

const $ = (sel, root = document) => root.querySelector(sel);

/** "Revert": drop unsaved edits by re-rendering the current route from the server. */
function revertButton() {
  return h(
    "button",
    {
      type: "button",
      testid: "revert",
      onclick: () => {
        state.leaveGuard = null;
        route();
      },
    },
    "Revert",
  );
}

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  let value;
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "testid") el.dataset.testid = v;
    else if (k === "text") el.textContent = v;
    else if (k === "value") value = v;
    else if (k === "checked") el.checked = true;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  if (value !== undefined) el.value = value;
  return el;
}

/** Replaces ``el``'s content; children may be nested arrays, null or false (skipped). */
function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false || c === "") continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const SVGNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    el.setAttribute(k === "testid" ? "data-testid" : k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false || c === "") continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const clone = (v) => JSON.parse(JSON.stringify(v));
const enc = encodeURIComponent;

function toast(message, kind = "") {
  const el = h("div", { class: `toast ${kind}`, role: "status", testid: "toast" }, message);
  $("#toasts").append(el);
  setTimeout(() => el.remove(), kind === "bad" ? 9000 : 5000);
}

function notice(kind, ...children) {
  return h("div", { class: `notice ${kind}`, role: kind === "bad" ? "alert" : null }, ...children);
}

function spinner() {
  return h("span", { class: "spinner", "aria-hidden": "true" });
}

function every(ms, fn) {
  state.timers.push(setInterval(fn, ms));
}

// ---------------------------------------------------------------------------- formatting

const numberFormat = new Intl.NumberFormat();
const fmtN = (n) => (n == null || n === "" ? "—" : numberFormat.format(Number(n) || 0));

function toDate(v) {
  if (v == null || v === "") return null;
  if (v instanceof Date) return v;
  if (typeof v === "number") return new Date(v < 1e12 ? v * 1000 : v);
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}

function isoZ(d) {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function fmtTime(v) {
  const d = toDate(v);
  if (!d) return "—";
  const sameYear = d.getFullYear() === new Date().getFullYear();
  return d.toLocaleString(undefined, {
    year: sameYear ? undefined : "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

function relTime(v) {
  const d = toDate(v);
  if (!d) return "";
  const sec = Math.round((d.getTime() - Date.now()) / 1000);
  const abs = Math.abs(sec);
  if (abs < 45) return sec >= 0 ? "in a few seconds" : "just now";
  let text;
  if (abs < 3600) text = `${Math.round(abs / 60)} min`;
  else if (abs < 48 * 3600) {
    const hours = abs / 3600;
    text = `${hours < 10 ? Math.round(hours * 10) / 10 : Math.round(hours)} h`;
  } else text = `${Math.round(abs / 86400)} d`;
  return sec >= 0 ? `in ${text}` : `${text} ago`;
}

function timeCell(v, { rel = true } = {}) {
  const d = toDate(v);
  if (!d) return h("span", { class: "muted" }, "—");
  return h(
    "time",
    { datetime: isoZ(d), title: `${isoZ(d)} (UTC)`, class: "nowrap" },
    fmtTime(d),
    rel ? [" ", h("span", { class: "muted small", "data-rel": isoZ(d) }, `(${relTime(d)})`)] : null,
  );
}

function refreshRelativeTimes() {
  for (const el of document.querySelectorAll("[data-rel]")) {
    el.textContent = `(${relTime(el.dataset.rel)})`;
  }
}

function localInputValue(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fmtValue(v) {
  if (v === undefined) return h("span", { class: "muted" }, "—");
  if (v === null) return h("code", {}, "null");
  if (typeof v === "object") return h("code", {}, JSON.stringify(v));
  return h("code", {}, String(v));
}

function intOrRaw(v) {
  const text = String(v ?? "").trim();
  if (text === "") return undefined;
  return /^-?\d+$/.test(text) ? Number(text) : text;
}

// ---------------------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.problems = (body && Array.isArray(body.problems) && body.problems) || [];
  }
}

let tokenPromise = null;

function askToken(message) {
  const dialog = $("#token-dialog");
  const error = $("#token-error");
  error.hidden = !message;
  error.textContent = message || "";
  if (!tokenPromise) {
    tokenPromise = new Promise((resolve) => {
      const form = $("#token-form");
      const done = (token) => {
        form.removeEventListener("submit", onSubmit);
        dialog.removeEventListener("cancel", onCancel);
        if (dialog.open) dialog.close();
        tokenPromise = null;
        resolve(token);
      };
      const onSubmit = (ev) => {
        ev.preventDefault();
        const token = $("#token-input").value.trim();
        if (!token) return;
        localStorage.setItem(TOKEN_KEY, token);
        done(token);
      };
      const onCancel = (ev) => {
        const current = localStorage.getItem(TOKEN_KEY);
        if (current) done(current);
        else ev.preventDefault();
      };
      form.addEventListener("submit", onSubmit);
      dialog.addEventListener("cancel", onCancel);
    });
  }
  if (!dialog.open) dialog.showModal();
  $("#token-input").value = "";
  $("#token-input").focus();
  return tokenPromise;
}

async function api(method, path, body, { signal, raw = false } = {}) {
  for (;;) {
    const token = localStorage.getItem(TOKEN_KEY);
    if (!token) {
      await askToken();
      continue;
    }
    const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError(0, { message: `Cannot reach the worker (${err.message}).` });
    }
    if (resp.status === 401) {
      if (localStorage.getItem(TOKEN_KEY) === token) localStorage.removeItem(TOKEN_KEY);
      await askToken("The worker refused that token. Paste the admin token again.");
      continue;
    }
    const text = await resp.text();
    if (raw && resp.ok) return text;
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { message: `${resp.status} ${resp.statusText}: ${text.slice(0, 300)}` };
    }
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }
}

const apiPath = (account, suffix) => `api/accounts/${enc(account)}${suffix}`;

async function loadConfig(account) {
  const res = await api("GET", apiPath(account, "/config"));
  const config = res.config || {};
  config.data_maps = config.data_maps || [];
  config.rules = config.rules || [];
  return { version: res.version, config };
}

function saveFile(name, text, type) {
  const blob = new Blob([text], { type });
  const a = h("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => {
    URL.revokeObjectURL(a.href);
    a.remove();
  }, 1000);
}

/** "Export YAML": the live data maps and rules in the config file's format. */
function exportYamlButton(account) {
  return h(
    "button",
    {
      type: "button",
      testid: "export-yaml",
      title: "The saved data maps and rules in the config file's format, to copy back into the YAML file",
      onclick: async () => {
        try {
          const text = await api("GET", apiPath(account, "/config?format=yaml"), undefined, { raw: true });
          saveFile(`${account}-data-maps-and-rules.yaml`, text, "application/yaml");
        } catch (err) {
          toast(`Export failed: ${err.message}`, "bad");
        }
      },
    },
    "Export YAML",
  );
}

function errorNotice(err) {
  const problems = (err && err.problems) || [];
  return notice(
    "bad",
    h("strong", {}, err && err.status ? `Error ${err.status}: ` : "Error: "),
    (err && err.message) || String(err),
    problems.length
      ? h(
          "ul",
          {},
          problems.map((p) => h("li", {}, p.location ? h("code", {}, p.location) : null, " ", p.message)),
        )
      : null,
  );
}

// ---------------------------------------------------------------------------- problems

function parentLocation(loc) {
  if (!loc) return null;
  const m = /^(.*?)(\.[^.[\]]+|\[[^\]]*\])$/.exec(loc);
  return m ? m[1] : "";
}

function caretView(text, column) {
  const i = Math.min(Math.max(0, column - 1), text.length);
  let j = i + 1;
  if (/[\w.]/.test(text[i] || "")) while (j < text.length && /[\w.[\]]/.test(text[j])) j++;
  return h(
    "span",
    { class: "fql-src", testid: "match-caret", "aria-hidden": "true" },
    text.slice(0, i),
    h("mark", {}, text.slice(i, j) || " "),
    text.slice(j),
  );
}

/** Field messages keyed by location (``rules[0].conditions[1].match``); a problem goes to
 * the closest registered location, else to the general list. */
class ProblemRegistry {
  constructor(generalEl, { title = "Problems", link = null } = {}) {
    this.fields = new Map();
    this.generalEl = generalEl;
    this.title = title;
    this.link = link;
    this.afterShow = null;
  }

  clear() {
    this.fields.clear();
  }

  add(location, input, msgEl) {
    this.fields.set(location, { input, msgEl });
  }

  /** ``relative(loc)`` maps an API location to a registry one, or null for "elsewhere". */
  show(problems, relative = (loc) => loc) {
    for (const { input, msgEl } of this.fields.values()) {
      fill(msgEl);
      if (input) input.removeAttribute("aria-invalid");
    }
    const general = [];
    for (const p of problems || []) {
      const loc = relative(p.location || "");
      if (loc == null) {
        general.push(p);
        continue;
      }
      let at = loc;
      while (at != null && !this.fields.has(at)) at = parentLocation(at);
      if (at == null) {
        general.push(p);
        continue;
      }
      const target = this.fields.get(at);
      const rest = at === loc ? "" : loc.slice(at.length).replace(/^\./, "");
      const line = h("div", {}, rest ? [h("code", {}, rest), ": "] : null, p.message);
      const col = /\bcolumn (\d+)\b/.exec(p.message || "");
      if (col && target.input && typeof target.input.value === "string" && target.input.value) {
        line.append(caretView(target.input.value, Number(col[1])));
      }
      target.msgEl.append(line);
      if (target.input) target.input.setAttribute("aria-invalid", "true");
    }
    if (this.generalEl) {
      fill(this.generalEl,
        general.length
          ? notice(
              "bad",
              h("strong", {}, this.title),
              h(
                "ul",
                { testid: "general-problems" },
                general.map((p) => {
                  const href = this.link ? this.link(p.location || "") : null;
                  const where = p.location ? h("code", {}, p.location) : null;
                  return h("li", {}, href ? h("a", { href }, where) : where, " ", p.message);
                }),
              ),
            )
          : "",
      );
    }
    if (this.afterShow) this.afterShow();
    return general;
  }
}

function fieldError(location) {
  return h("div", { class: "field-error", testid: "field-error", "data-location": location, "aria-live": "polite" });
}

/** Debounced POST /config/validate; ``onResult(problems)`` gets [] when valid. */
function makeValidator(account, buildBody, statusEl, onResult) {
  let timer = null;
  let seq = 0;
  const setStatus = (kind, text) => {
    statusEl.className = `vstatus ${kind}`;
    fill(statusEl, kind === "busy" ? spinner() : "", kind === "busy" ? " " : "", text);
  };
  const run = async () => {
    const mine = ++seq;
    let problems;
    try {
      const res = await api("POST", apiPath(account, "/config/validate"), buildBody());
      problems = res && res.valid === false ? res.problems || [] : [];
    } catch (err) {
      if (mine !== seq) return;
      if (err.problems && err.problems.length) problems = err.problems;
      else {
        setStatus("bad", `Could not validate: ${err.message}`);
        return;
      }
    }
    if (mine !== seq) return;
    setStatus(problems.length ? "bad" : "ok", problems.length ? `${problems.length} problem(s)` : "✓ Valid");
    onResult(problems);
  };
  return {
    schedule() {
      clearTimeout(timer);
      setStatus("busy", "Checking…");
      timer = setTimeout(run, VALIDATE_DELAY_MS);
    },
    now: run,
    cancel() {
      clearTimeout(timer);
      seq++;
    },
    setStatus,
  };
}

// ---------------------------------------------------------------------------- charts

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function truncate(text, n) {
  text = String(text ?? "");
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

/** Horizontal bars: items [{label, sub, value, cls}]. */
function hbarChart(items, { testid, ariaLabel } = {}) {
  const W = 560;
  const rowH = 36;
  const labelW = 210;
  const valueW = 56;
  const barW = W - labelW - valueW;
  const max = Math.max(1, ...items.map((i) => Number(i.value) || 0));
  const H = items.length * rowH + 4;
  const svg = s("svg", {
    class: "chart",
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    testid,
    "aria-label": ariaLabel || items.map((i) => `${i.label}: ${i.value}`).join(", "),
  });
  items.forEach((it, k) => {
    const y = k * rowH + 2;
    const value = Number(it.value) || 0;
    const w = value > 0 ? Math.max(3, (barW * value) / max) : 0;
    svg.append(
      s(
        "g",
        { class: "bar-row" },
        s("title", {}, `${it.label}${it.sub ? ` (${it.sub})` : ""}: ${value}`),
        s("text", { x: 0, y: y + 14, class: "label" }, truncate(it.label, 30)),
        it.sub ? s("text", { x: 0, y: y + 28 }, truncate(it.sub, 36)) : null,
        s("rect", { x: labelW, y: y + 6, width: barW, height: rowH - 14, rx: 3, class: "track" }),
        s("rect", {
          x: labelW,
          y: y + 6,
          width: w.toFixed(1),
          height: rowH - 14,
          rx: 3,
          class: `bar ${it.cls || "s-active"}`,
          testid: "bar",
          "data-value": value,
        }),
        s("text", { x: labelW + barW + 8, y: y + 22, class: "value" }, fmtN(value)),
      ),
    );
  });
  return svg;
}

/** Buckets of ``size`` ms over [from, to) summing ``keys`` of points {at, key: n}. */
function bucketize(points, from, to, keys, { size } = {}) {
  const H = 3600e3;
  const span = Math.max(H, to - from);
  if (!size) size = span > 14 * 24 * H ? 24 * H : H;
  const start = Math.floor(from / size) * size;
  const n = Math.min(2000, Math.max(1, Math.ceil((to - start) / size)));
  const buckets = Array.from({ length: n }, (_, i) => ({
    at: new Date(start + i * size),
    values: Object.fromEntries(keys.map((k) => [k, 0])),
  }));
  for (const p of points) {
    const t = toDate(p.at);
    if (!t) continue;
    const i = Math.floor((t.getTime() - start) / size);
    if (i < 0 || i >= n) continue;
    for (const k of keys) buckets[i].values[k] += Number(p[k]) || 0;
  }
  return { buckets, size };
}

/** Stacked vertical bars per bucket; series [{key, label, cls}]. */
function stackedChart(buckets, series, { size, testid, height = 170, width = 720, empty = "Nothing in this period" } = {}) {
  const W = width;
  const H = height;
  const L = 40;
  const R = 8;
  const T = 10;
  const B = 26;
  const plotW = W - L - R;
  const plotH = H - T - B;
  const n = buckets.length;
  const totals = buckets.map((b) => series.reduce((a, sr) => a + (b.values[sr.key] || 0), 0));
  const peak = Math.max(0, ...totals);
  const max = niceMax(peak);
  const step = plotW / n;
  const bw = Math.max(1, step * 0.78);
  const daily = size >= 24 * 3600e3;
  const svg = s("svg", {
    class: "chart",
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    testid,
    "aria-label": series
      .map((sr) => `${sr.label} ${buckets.reduce((a, b) => a + (b.values[sr.key] || 0), 0)}`)
      .join(", "),
  });
  const ticks = max <= 1 ? [0, max] : [0, max / 2, max];
  for (const t of ticks) {
    const y = T + plotH - (plotH * t) / max;
    svg.append(
      s("line", { x1: L, x2: W - R, y1: y, y2: y, class: t === 0 ? "axis" : "grid" }),
      Number.isInteger(t) ? s("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, fmtN(t)) : null,
    );
  }
  const every_ = Math.max(1, Math.ceil(n / 8));
  buckets.forEach((b, i) => {
    const x = L + i * step + (step - bw) / 2;
    const when = daily
      ? b.at.toLocaleDateString(undefined, { month: "short", day: "numeric" })
      : b.at.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
    const g = s(
      "g",
      { class: "bucket" },
      s(
        "title",
        {},
        `${when}${daily ? "" : " (hour)"}: ${series.map((sr) => `${sr.label.toLowerCase()} ${b.values[sr.key] || 0}`).join(", ")}`,
      ),
    );
    let y = T + plotH;
    for (const sr of series) {
      const v = b.values[sr.key] || 0;
      if (!v) continue;
      const hgt = (plotH * v) / max;
      y -= hgt;
      g.append(
        s("rect", {
          x: x.toFixed(1),
          y: y.toFixed(1),
          width: bw.toFixed(1),
          height: Math.max(0.5, hgt).toFixed(1),
          class: `bar ${sr.cls || `s-${sr.key}`}`,
          "data-series": sr.key,
          "data-value": v,
        }),
      );
    }
    // An invisible full-height target makes the tooltip easy to hit.
    g.append(s("rect", { x: L + i * step, y: T, width: step, height: plotH, fill: "transparent" }));
    svg.append(g);
    if (i % every_ === 0) {
      const label = daily
        ? b.at.toLocaleDateString(undefined, { month: "short", day: "numeric" })
        : b.at.getHours() === 0 || i === 0
          ? b.at.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit" })
          : b.at.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
      svg.append(s("text", { x: L + i * step + step / 2, y: H - 8, "text-anchor": "middle" }, label));
    }
  });
  if (peak === 0) {
    svg.append(s("text", { x: L + plotW / 2, y: T + plotH / 2, "text-anchor": "middle", class: "label" }, empty));
  }
  return svg;
}

function legend(series, totals, testid) {
  return h(
    "ul",
    { class: "legend", testid },
    series.map((sr) =>
      h(
        "li",
        { "data-series": sr.key },
        h("span", { class: `sw ${sr.cls || `s-${sr.key}`}`, "aria-hidden": "true" }),
        sr.label,
        totals ? h("b", { "data-testid": `total-${sr.key}` }, fmtN(totals[sr.key] ?? 0)) : null,
      ),
    ),
  );
}

// ---------------------------------------------------------------------------- periods

function loadPeriod(key, fallback = "24h") {
  try {
    const p = JSON.parse(sessionStorage.getItem(key) || "null");
    if (p && PERIODS.some((x) => x.kind === p.kind)) return p;
  } catch {
    /* ignore */
  }
  return { kind: fallback };
}

function savePeriod(key, p) {
  sessionStorage.setItem(key, JSON.stringify(p));
}

function periodRange(p) {
  const now = new Date();
  if (p.kind === "custom") {
    const from = toDate(p.from) || new Date(now.getTime() - 24 * 3600e3);
    const to = toDate(p.to) || now;
    return from <= to ? { from, to } : { from: to, to: from };
  }
  const def = PERIODS.find((x) => x.kind === p.kind) || PERIODS[0];
  return { from: new Date(now.getTime() - def.ms), to: now };
}

function periodLabel(p) {
  if (p.kind !== "custom") return (PERIODS.find((x) => x.kind === p.kind) || PERIODS[0]).label.toLowerCase();
  const r = periodRange(p);
  return `${fmtTime(r.from)} – ${fmtTime(r.to)}`;
}

/** Segmented buttons plus from/to inputs for "custom"; ``onChange(period)`` on a preset or
 * on Apply. With ``apply: false`` there is no Apply button: read ``el.current()`` instead. */
function periodPicker(period, onChange, testid, { apply = true } = {}) {
  const range = periodRange(period);
  let selected = period.kind;
  const from = h("input", { type: "datetime-local", value: localInputValue(range.from), testid: `${testid}-from`, "aria-label": "From" });
  const to = h("input", { type: "datetime-local", value: localInputValue(range.to), testid: `${testid}-to`, "aria-label": "To" });
  const customPeriod = () =>
    from.value && to.value ? { kind: "custom", from: isoZ(new Date(from.value)), to: isoZ(new Date(to.value)) } : { kind: "custom" };
  const applyBtn = apply
    ? h("button", { type: "button", testid: `${testid}-apply`, onclick: () => from.value && to.value && onChange(customPeriod()) }, "Apply")
    : null;
  const custom = h("span", { class: "toolbar", style: "margin:0", hidden: period.kind !== "custom" }, from, "–", to, applyBtn);
  const buttons = PERIODS.map((p) =>
    h(
      "button",
      {
        type: "button",
        "aria-pressed": String(p.kind === period.kind),
        testid: `${testid}-${p.kind}`,
        onclick: (ev) => {
          selected = p.kind;
          for (const b of buttons) b.setAttribute("aria-pressed", String(b === ev.currentTarget));
          custom.hidden = p.kind !== "custom";
          if (p.kind === "custom") from.focus();
          else onChange({ kind: p.kind });
        },
      },
      p.label,
    ),
  );
  const el = h("span", { class: "toolbar", style: "margin:0" }, h("span", { class: "segmented", role: "group", "aria-label": "Period", testid }, buttons), custom);
  el.current = () => (selected === "custom" ? customPeriod() : { kind: selected });
  return el;
}

// ---------------------------------------------------------------------------- router

const PAGES = {
  datamaps: pageDataMaps,
  rules: pageRules,
  rule: pageRuleEditor,
  person: pagePerson,
  deliveries: pageDeliveries,
  "dead-letters": pageDeadLetters,
};

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const q = raw.indexOf("?");
  const path = q >= 0 ? raw.slice(0, q) : raw;
  const query = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : "");
  const parts = path.split("/").filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return { account: parts[0] || null, page: parts[1] || null, args: parts.slice(2), query };
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function setHashQuietly(hash) {
  history.replaceState(null, "", hash);
  state.currentHash = location.hash;
}

async function loadAccounts() {
  const res = await api("GET", "api/accounts");
  state.accounts = (res && res.accounts) || [];
  const select = $("#account");
  fill(select, ...state.accounts.map((a) => h("option", { value: a }, a)));
}

async function route() {
  const seq = ++state.seq;
  state.leaveGuard = null;
  state.onSave = null;
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  state.currentHash = location.hash;
  const main = $("#main");
  const r = parseHash();
  try {
    if (!state.accounts) await loadAccounts();
  } catch (err) {
    if (seq === state.seq) fill(main, errorNotice(err));
    return;
  }
  if (seq !== state.seq) return;
  if (!r.account || !state.accounts.includes(r.account) || !PAGES[r.page]) {
    const stored = localStorage.getItem(ACCOUNT_KEY);
    const account =
      r.account && state.accounts.includes(r.account)
        ? r.account
        : state.accounts.includes(stored)
          ? stored
          : state.accounts[0];
    if (!account) {
      fill(main, notice("warn", "No accounts are configured on this worker."));
      return;
    }
    location.replace(`#/${enc(account)}/${PAGES[r.page] ? r.page : "rules"}`);
    return;
  }
  state.account = r.account;
  localStorage.setItem(ACCOUNT_KEY, r.account);
  $("#account").value = r.account;
  for (const a of document.querySelectorAll("#tabs a")) {
    a.href = `#/${enc(r.account)}/${a.dataset.page}`;
    const current = a.dataset.page === r.page || (a.dataset.page === "rules" && r.page === "rule");
    if (current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  fill(main, h("p", { class: "muted" }, spinner(), " Loading…"));
  const ctx = { account: r.account, args: r.args, query: r.query, main, alive: () => seq === state.seq };
  try {
    await PAGES[r.page](ctx);
  } catch (err) {
    if (ctx.alive()) fill(main, errorNotice(err));
  }
}

function onHashChange() {
  if (location.hash === state.currentHash) return;
  if (state.leaveGuard && state.leaveGuard()) {
    if (!window.confirm("This page has unsaved changes. Leave it and discard them?")) {
      history.replaceState(null, "", state.currentHash);
      if (state.account) $("#account").value = state.account;
      return;
    }
  }
  route();
}

async function checkHealth() {
  const el = $("#health");
  try {
    const resp = await fetch("health", { cache: "no-store" });
    const body = await resp.json().catch(() => ({}));
    el.className = `health ${resp.ok ? "ok" : "degraded"}`;
    el.textContent = resp.ok ? "healthy" : body.status || "degraded";
    const parts = Object.entries(body.assigned_partitions || {}).map(([t, p]) => `${t}: ${p.length}`);
    el.title = `Broker ${body.broker ? body.broker.url : "?"}${body.broker && !body.broker.reachable ? " unreachable" : ""}${parts.length ? `\nAssigned partitions: ${parts.join(", ")}` : ""}`;
  } catch {
    el.className = "health down";
    el.textContent = "unreachable";
    el.title = "The worker does not answer /health";
  }
}

// ---------------------------------------------------------------------------- data maps page

function dmFromApi(dm) {
  return {
    name: dm.name ?? "",
    path: dm.path ?? "",
    type: dm.type ?? "string",
    field: dm.field == null ? "" : String(dm.field),
    max_length: dm.max_length == null ? "" : String(dm.max_length),
    choices: Object.entries(dm.choices || {}).map(([k, v]) => [k, String(v)]),
  };
}

function dmToApi(r) {
  const out = { name: r.name.trim(), path: r.path.trim(), type: r.type };
  const field = intOrRaw(r.field);
  if (field !== undefined) out.field = field;
  const maxLength = intOrRaw(r.max_length);
  if (maxLength !== undefined) out.max_length = maxLength;
  if (r.type === "choice") {
    out.choices = {};
    for (const [k, v] of r.choices) {
      if (String(k).trim() === "" && String(v).trim() === "") continue;
      out.choices[String(k).trim()] = intOrRaw(v) ?? "";
    }
  }
  return out;
}

function ruleLink(account, rules) {
  return (loc) => {
    const m = /^rules\[(\d+)\]/.exec(loc);
    const rule = m && rules[Number(m[1])];
    return rule ? `#/${enc(account)}/rule/${enc(rule.name)}` : null;
  };
}

async function pageDataMaps(ctx) {
  const account = ctx.account;
  let { version, config } = await loadConfig(account);
  if (!ctx.alive()) return;

  let rows = config.data_maps.map(dmFromApi);
  let savedJson = JSON.stringify(rows.map(dmToApi));
  let lastProblems = [];
  const isDirty = () => JSON.stringify(rows.map(dmToApi)) !== savedJson;

  const general = h("div");
  const reg = new ProblemRegistry(general, {
    title: "Problems elsewhere in the config (they block saving too):",
    link: ruleLink(account, config.rules),
  });
  const status = h("span", { class: "vstatus", testid: "validation-status" }, `Version ${version ?? "?"}`);
  const dirtyMark = h("span", { class: "dirty-mark", hidden: true, testid: "dirty" }, "● Unsaved changes");
  const result = h("div", { testid: "save-result" });
  const tbody = h("tbody");

  const buildBody = () => ({ data_maps: rows.map(dmToApi), rules: config.rules });
  const validator = makeValidator(account, buildBody, status, (problems) => {
    lastProblems = problems;
    reg.show(problems, (loc) => (loc.startsWith("data_maps") ? loc : null));
  });

  const changed = () => {
    dirtyMark.hidden = !isDirty();
    fill(result);
    validator.schedule();
  };

  const cellWith = (loc, input, extra) => {
    const msg = fieldError(loc);
    reg.add(loc, input, msg);
    return h("td", {}, input, extra, msg);
  };

  function choicesEditor(r, loc) {
    const list = h("div", { class: "choices", testid: "dm-choices" });
    const draw = () => {
      fill(list,
        h("div", { class: "hint" }, "Event value → Emarsys choice id"),
        r.choices.map((pair, k) =>
          h(
            "div",
            { class: "pair" },
            h("input", {
              value: pair[0],
              placeholder: "value, e.g. true",
              class: "mono",
              testid: "dm-choice-key",
              "aria-label": "Choice value",
              oninput: (e) => {
                pair[0] = e.target.value;
                changed();
              },
            }),
            h("input", {
              value: pair[1],
              placeholder: "id",
              inputmode: "numeric",
              testid: "dm-choice-id",
              "aria-label": "Emarsys choice id",
              oninput: (e) => {
                pair[1] = e.target.value;
                changed();
              },
            }),
            h(
              "button",
              {
                type: "button",
                class: "icon small",
                title: "Remove this choice",
                "aria-label": "Remove this choice",
                testid: "dm-choice-remove",
                onclick: () => {
                  r.choices.splice(k, 1);
                  draw();
                  changed();
                },
              },
              "✕",
            ),
          ),
        ),
        h(
          "button",
          {
            type: "button",
            class: "small",
            testid: "dm-choice-add",
            onclick: () => {
              r.choices.push(["", ""]);
              draw();
              changed();
              const keys = list.querySelectorAll("[data-testid=dm-choice-key]");
              keys[keys.length - 1].focus();
            },
          },
          "+ Choice",
        ),
      );
    };
    draw();
    const msg = fieldError(`${loc}.choices`);
    reg.add(`${loc}.choices`, null, msg);
    return h("td", {}, list, msg);
  }

  function rowEl(r, i) {
    const loc = `data_maps[${i}]`;
    const text = (key, attrs) =>
      h("input", {
        value: r[key],
        testid: `dm-${key.replace("_", "-")}`,
        oninput: (e) => {
          r[key] = e.target.value;
          changed();
        },
        ...attrs,
      });
    const type = h(
      "select",
      {
        testid: "dm-type",
        "aria-label": `Data type of data map ${i + 1}`,
        onchange: (e) => {
          r.type = e.target.value;
          if (r.type === "choice" && !r.choices.length) r.choices.push(["", ""]);
          drawRows();
          reg.show(lastProblems, (l) => (l.startsWith("data_maps") ? l : null));
          changed();
        },
      },
      DATA_TYPES.map((t) => h("option", { value: t }, t)),
    );
    type.value = r.type;
    const rowMsg = fieldError(loc);
    reg.add(loc, null, rowMsg);
    return h(
      "tr",
      { testid: "dm-row", "data-name": r.name },
      cellWith(`${loc}.name`, text("name", { "aria-label": `Name of data map ${i + 1}`, class: "mono", placeholder: "e.g. coupon" }), rowMsg),
      cellWith(`${loc}.path`, text("path", { "aria-label": `JSON path of data map ${i + 1}`, class: "mono", placeholder: "properties.coupon" })),
      cellWith(`${loc}.type`, type),
      cellWith(`${loc}.field`, text("field", { "aria-label": `Emarsys field of data map ${i + 1}`, inputmode: "numeric", placeholder: "—", size: 6 })),
      cellWith(`${loc}.max_length`, text("max_length", { "aria-label": `Max length of data map ${i + 1}`, inputmode: "numeric", placeholder: "—", size: 6 })),
      r.type === "choice" ? choicesEditor(r, loc) : h("td", { class: "muted" }, "—"),
      h(
        "td",
        { class: "tight" },
        h(
          "button",
          {
            type: "button",
            class: "icon small danger",
            title: "Remove this data map",
            "aria-label": `Remove data map ${r.name || i + 1}`,
            testid: "dm-remove",
            onclick: () => {
              rows.splice(i, 1);
              lastProblems = [];
              drawRows();
              changed();
            },
          },
          "✕",
        ),
      ),
    );
  }

  function drawRows() {
    reg.clear();
    fill(tbody,
      ...(rows.length ? rows.map(rowEl) : [h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No data maps yet."))]),
    );
  }

  async function save() {
    validator.cancel();
    saveBtn.disabled = true;
    validator.setStatus("busy", "Saving…");
    try {
      const res = await api("PUT", apiPath(account, "/config"), buildBody());
      version = res.version;
      config = res.config || config;
      rows = (config.data_maps || []).map(dmFromApi);
      savedJson = JSON.stringify(rows.map(dmToApi));
      lastProblems = [];
      drawRows();
      reg.show([]);
      dirtyMark.hidden = true;
      validator.setStatus("ok", `✓ Saved: version ${version ?? "?"}`);
      fill(result, notice("ok", `Saved as version ${version ?? "?"}. Every worker applies it within seconds.`));
      toast("Data maps saved", "ok");
    } catch (err) {
      if (err.problems.length) {
        lastProblems = err.problems;
        reg.show(err.problems, (loc) => (loc.startsWith("data_maps") ? loc : null));
        validator.setStatus("bad", `${err.problems.length} problem(s)`);
        fill(result, notice("bad", `Not saved: ${err.message}. The fields with problems are marked in red.`));
      } else {
        validator.setStatus("bad", "Not saved");
        fill(result, errorNotice(err));
      }
    } finally {
      saveBtn.disabled = false;
    }
  }

  const saveBtn = h("button", { type: "button", class: "primary", testid: "save-datamaps", onclick: save }, "Save data maps");
  const addBtn = h(
    "button",
    {
      type: "button",
      testid: "dm-add",
      onclick: () => {
        rows.push({ name: "", path: "", type: "string", field: "", max_length: "", choices: [] });
        drawRows();
        changed();
        const names = tbody.querySelectorAll("[data-testid=dm-name]");
        names[names.length - 1].focus();
      },
    },
    "+ Add data map",
  );
  const revertBtn = revertButton();

  drawRows();
  state.leaveGuard = isDirty;
  state.onSave = save;

  fill(ctx.main,
    h(
      "div",
      { class: "page-head" },
      h(
        "div",
        {},
        h("h1", {}, "Data maps"),
        h(
          "div",
          { class: "sub" },
          "Named values read from every event (a dotted JSON path), converted to their type; with a field, written to that Emarsys contact field. Primary key: ",
          h("code", {}, config.primary_key || "?"),
        ),
      ),
      exportYamlButton(account),
    ),
    general,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "edit", testid: "datamaps-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", {}, "Name"),
            h("th", {}, "JSON path"),
            h("th", {}, "Data type"),
            h("th", {}, "Field to update"),
            h("th", {}, "Max length"),
            h("th", {}, "Choices"),
            h("th", { class: "tight" }, h("span", { class: "muted" }, "")),
          ),
        ),
        tbody,
      ),
    ),
    h("div", { class: "toolbar", style: "margin-top:10px" }, addBtn),
    result,
    h("div", { class: "sticky-actions" }, saveBtn, revertBtn, status, dirtyMark, h("span", { class: "muted small" }, "Ctrl+S saves")),
  );
}

// ---------------------------------------------------------------------------- rules page

function maxSequence(rule) {
  return Math.max(0, ...(rule.conditions || []).map((c) => Number(c.sequence) || 0));
}

function positionNote(rule, p) {
  const next = (rule.conditions || []).filter((c) => Number(c.sequence) === p + 1);
  const exit = next.find((c) => c.type === "exit");
  if (exit) {
    if (exit.match) return `waiting for the exit event${exit.within ? ` (within ${exit.within})` : ""}`;
    return exit.wait ? `exits after ${exit.wait}` : "exits at once";
  }
  const step = next.find((c) => c.type === "step");
  if (step) return `waiting for step ${p + 1}${step.within ? ` (within ${step.within})` : ""}`;
  return "";
}

function funnelItems(rule, active) {
  const last = maxSequence(rule);
  const positions = new Set();
  for (let p = 0; p < Math.max(1, last); p++) positions.add(p);
  for (const k of Object.keys(active || {})) positions.add(Number(k));
  return [...positions]
    .sort((a, b) => a - b)
    .map((p) => ({
      label: p === 0 ? "Position 0 (started)" : `Position ${p}`,
      sub: positionNote(rule, p),
      value: Number((active || {})[String(p)]) || 0,
    }));
}

async function pageRules(ctx) {
  const account = ctx.account;
  const period = loadPeriod(PERIOD_KEY);
  const range = periodRange(period);
  const qs = `?from=${enc(isoZ(range.from))}&to=${enc(isoZ(range.to))}`;
  const [cfg, stats] = await Promise.all([
    loadConfig(account),
    api("GET", apiPath(account, `/rules${qs}`)).catch((err) => ({ error: err })),
  ]);
  if (!ctx.alive()) return;
  const config = cfg.config;
  const byName = new Map(((stats && stats.rules) || []).map((r) => [r.name, r]));
  const from = toDate(stats && stats.from) || range.from;
  const to = toDate(stats && stats.to) || range.to;

  async function toggle(rule, button) {
    button.disabled = true;
    try {
      const fresh = await loadConfig(account);
      const rules = clone(fresh.config.rules);
      const target = rules.find((r) => r.name === rule.name);
      if (!target) throw new Error(`rule ${rule.name} no longer exists`);
      target.enabled = !(target.enabled ?? true);
      await api("PUT", apiPath(account, "/config"), { data_maps: fresh.config.data_maps, rules });
      toast(`"${rule.name}" ${target.enabled ? "enabled" : "disabled"}`, "ok");
      if (ctx.alive()) route();
    } catch (err) {
      button.disabled = false;
      toast(`Could not change "${rule.name}": ${err.message}${err.problems && err.problems.length ? ` (${err.problems.map((p) => `${p.location}: ${p.message}`).join("; ")})` : ""}`, "bad");
    }
  }

  const rows = config.rules.map((rule) => {
    const st = byName.get(rule.name) || {};
    const enabled = rule.enabled ?? true;
    const activeNow = Object.values(st.active || {}).reduce((a, n) => a + (Number(n) || 0), 0);
    const sw = h("button", {
      type: "button",
      class: "switch",
      role: "switch",
      "aria-checked": String(enabled),
      "aria-label": `${enabled ? "Disable" : "Enable"} rule ${rule.name}`,
      title: enabled ? "Enabled: click to disable" : "Disabled: click to enable",
      testid: "rule-toggle",
    });
    sw.addEventListener("click", () => toggle(rule, sw));
    return h(
      "tr",
      { testid: "rule-row", "data-rule": rule.name },
      h("td", {}, h("a", { href: `#/${enc(account)}/rule/${enc(rule.name)}`, testid: "rule-link" }, rule.name)),
      h("td", {}, rule.lifetime ?? "24h"),
      h("td", {}, rule.transaction ? h("code", {}, rule.transaction) : h("span", { class: "muted" }, "—")),
      h("td", { class: "num" }, (rule.conditions || []).length),
      h("td", { class: "num" }, st.active ? fmtN(activeNow) : "—"),
      h("td", { class: "num" }, st.period ? fmtN(st.period.triggered) : "—"),
      h("td", {}, h("span", { class: "status-cell" }, sw, h("span", { class: enabled ? "" : "muted" }, enabled ? "Enabled" : "Disabled"))),
    );
  });

  const funnels = config.rules.map((rule) => {
    const st = byName.get(rule.name);
    const enabled = rule.enabled ?? true;
    let body;
    if (!st) {
      body = h("p", { class: "muted" }, stats && stats.error ? "No funnel data (the rules endpoint failed)." : "No funnel data yet for this rule.");
    } else {
      const { buckets, size } = bucketize(st.series || [], from.getTime(), to.getTime(), SERIES.map((x) => x.key));
      const totals = st.period || {};
      body = h(
        "div",
        { class: "grid-2" },
        h(
          "div",
          {},
          h("h3", {}, "In progress now"),
          h("p", { class: "muted small" }, "Persons' instances at each position (the highest sequence completed)."),
          hbarChart(funnelItems(rule, st.active), { testid: "funnel-chart" }),
        ),
        h(
          "div",
          {},
          h("h3", {}, `Over the ${periodLabel(period)}`),
          legend([...SERIES.slice(0, 1), { key: "advanced", label: "Advanced" }, ...SERIES.slice(1)], totals, "period-totals"),
          stackedChart(buckets, SERIES, { size, testid: "period-chart" }),
        ),
      );
    }
    return h(
      "section",
      { class: "card funnel-card", testid: "funnel", "data-rule": rule.name },
      h(
        "header",
        {},
        h("h3", {}, rule.name),
        h("span", { class: `pill ${enabled ? "ok" : ""}` }, enabled ? "enabled" : "disabled"),
        h("a", { href: `#/${enc(account)}/rule/${enc(rule.name)}`, class: "small" }, "Edit"),
      ),
      body,
    );
  });

  const picker = periodPicker(
    period,
    (p) => {
      savePeriod(PERIOD_KEY, p);
      route();
    },
    "period",
  );

  fill(ctx.main,
    h(
      "div",
      { class: "page-head" },
      h(
        "div",
        {},
        h("h1", {}, "Rules"),
        h("div", { class: "sub" }, `${config.rules.length} rule(s). Funnels: instances in progress now, and what happened over the ${periodLabel(period)}.`),
      ),
      h("span", { class: "toolbar", style: "margin:0" }, exportYamlButton(account), h("a", { class: "button", href: `#/${enc(account)}/rule`, testid: "new-rule" }, "+ New rule")),
    ),
    stats && stats.error ? notice("warn", "Funnel counts are unavailable: ", stats.error.message) : null,
    h(
      "div",
      { class: "table-wrap", style: "margin-bottom:16px" },
      h(
        "table",
        { testid: "rules-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", {}, "Name"),
            h("th", {}, "Default lifetime"),
            h("th", {}, "Transaction data map"),
            h("th", { class: "num" }, "# of conditions"),
            h("th", { class: "num" }, "In progress"),
            h("th", { class: "num" }, "Triggered"),
            h("th", {}, "Status"),
          ),
        ),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No rules yet: create one with “New rule”."))),
      ),
    ),
    h(
      "div",
      { class: "toolbar" },
      h("h2", { style: "margin:0" }, "Funnels"),
      h("span", { class: "spacer" }),
      picker,
      h("button", { type: "button", testid: "rules-refresh", onclick: () => route() }, "Refresh"),
    ),
    funnels,
  );
}

// ---------------------------------------------------------------------------- rule editor

function condFromApi(c) {
  return {
    sequence: c.sequence == null ? "" : String(c.sequence),
    type: c.type || "step",
    on: c.on || "any",
    wait: c.wait == null ? "" : String(c.wait),
    within: c.within == null ? "" : String(c.within),
    match: c.match ?? "",
    trigger: c.trigger == null ? "" : String(c.trigger),
    variables: [...(c.variables || [])],
  };
}

function condToApi(c) {
  const seq = intOrRaw(c.sequence);
  const out = { sequence: seq === undefined ? "" : seq, type: c.type, on: c.on };
  if (c.wait.trim()) out.wait = c.wait.trim();
  if (c.within.trim()) out.within = c.within.trim();
  if (c.match.trim()) out.match = c.match;
  if (c.type === "exit" && c.trigger.trim()) out.trigger = intOrRaw(c.trigger);
  if (c.variables.length) out.variables = [...c.variables];
  return out;
}

function ruleFromApi(r) {
  return {
    name: r.name ?? "",
    lifetime: r.lifetime == null ? "" : String(r.lifetime),
    multiple_active: !!r.multiple_active,
    transaction: r.transaction ?? "",
    enabled: r.enabled ?? true,
    conditions: (r.conditions || []).map(condFromApi),
  };
}

function ruleToApi(m) {
  const out = { name: m.name.trim() };
  if (m.lifetime.trim()) out.lifetime = m.lifetime.trim();
  out.multiple_active = m.multiple_active;
  if (m.transaction) out.transaction = m.transaction;
  out.enabled = m.enabled;
  out.conditions = m.conditions.map(condToApi);
  return out;
}

function newRuleModel() {
  return {
    name: "",
    lifetime: "48h",
    multiple_active: false,
    transaction: "",
    enabled: true,
    conditions: [
      { sequence: "0", type: "start", on: "track", wait: "", within: "", match: "", trigger: "", variables: [] },
      { sequence: "1", type: "exit", on: "any", wait: "1h", within: "", match: "", trigger: "", variables: [] },
    ],
  };
}

let openMulti = null;
document.addEventListener("click", (ev) => {
  if (openMulti && !openMulti.contains(ev.target)) openMulti.open = false;
});

function multiSelect(options, selected, onChange, { testid, label }) {
  const summary = h("summary", { testid: `${testid}-summary`, "aria-label": label });
  const update = () => {
    summary.textContent = selected.length ? selected.join(", ") : "—";
    summary.title = selected.join(", ");
  };
  const all = [...options, ...selected.filter((v) => !options.includes(v))];
  const details = h(
    "details",
    { class: "multi", testid },
    summary,
    h(
      "div",
      { class: "options", role: "group", "aria-label": label },
      all.length
        ? all.map((o) =>
            h(
              "label",
              {},
              h("input", {
                type: "checkbox",
                value: o,
                checked: selected.includes(o),
                onchange: (e) => {
                  const i = selected.indexOf(o);
                  if (e.target.checked && i < 0) selected.push(o);
                  if (!e.target.checked && i >= 0) selected.splice(i, 1);
                  update();
                  onChange();
                },
              }),
              h("span", { class: options.includes(o) ? "mono" : "mono error" }, o),
            ),
          )
        : h("span", { class: "muted small" }, "No data maps"),
    ),
  );
  details.addEventListener("toggle", () => {
    if (details.open) {
      if (openMulti && openMulti !== details) openMulti.open = false;
      openMulti = details;
    }
  });
  details.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && details.open) {
      e.stopPropagation();
      details.open = false;
      summary.focus();
    }
  });
  update();
  return details;
}

async function pageRuleEditor(ctx) {
  const account = ctx.account;
  let { version, config } = await loadConfig(account);
  if (!ctx.alive()) return;
  const requested = ctx.args[0];
  let index = requested == null ? -1 : config.rules.findIndex((r) => r.name === requested);
  if (requested != null && index < 0) {
    fill(ctx.main,
      notice("warn", `There is no rule named “${requested}” in ${account}. `, h("a", { href: `#/${enc(account)}/rules` }, "Back to the rules")),
    );
    return;
  }
  const model = index >= 0 ? ruleFromApi(config.rules[index]) : newRuleModel();
  let savedJson = JSON.stringify(ruleToApi(model));
  const isDirty = () => JSON.stringify(ruleToApi(model)) !== savedJson;
  const dmNames = () => config.data_maps.map((d) => d.name);

  // Where the edited rule sits in the body sent to validate / PUT.
  const bodyIndex = () => (index >= 0 ? index : config.rules.length);
  const bodyRules = () => {
    const rules = clone(config.rules);
    if (index >= 0) rules[index] = ruleToApi(model);
    else rules.push(ruleToApi(model));
    return rules;
  };
  const buildBody = () => ({ data_maps: config.data_maps, rules: bodyRules() });

  const otherProblems = h("div");
  const reg = new ProblemRegistry(otherProblems, {
    title: "Problems elsewhere in this account's config (they block saving too):",
    link: (loc) => {
      const m = /^rules\[(\d+)\]/.exec(loc);
      const r = m && config.rules[Number(m[1])];
      return r && Number(m[1]) !== index ? `#/${enc(account)}/rule/${enc(r.name)}` : null;
    },
  });
  const relativeTo = (i) => (loc) => {
    const prefix = `rules[${i}]`;
    if (loc === prefix) return "";
    if (loc.startsWith(`${prefix}.`)) return loc.slice(prefix.length + 1);
    return null;
  };
  let lastProblems = [];
  const showProblems = (problems, i = bodyIndex()) => {
    lastProblems = problems.map((p) => ({ ...p, location: p.location }));
    reg.show(problems, relativeTo(i));
  };

  const status = h("span", { class: "vstatus", testid: "validation-status" }, index >= 0 ? `Version ${version ?? "?"}` : "New rule");
  const dirtyMark = h("span", { class: "dirty-mark", hidden: true, testid: "dirty" }, "● Unsaved changes");
  const saveResult = h("div", { testid: "save-result" });
  const validator = makeValidator(account, buildBody, status, (problems) => showProblems(problems));
  const title = h("h1", { testid: "rule-title" }, model.name || "New rule");

  const changed = () => {
    dirtyMark.hidden = !isDirty();
    title.textContent = model.name.trim() || "New rule";
    fill(saveResult);
    validator.schedule();
  };

  // -- the rule's own fields
  const ruleMsg = fieldError("");
  reg.add("", null, ruleMsg);
  const labelled = (text, loc, input, hint) => {
    const msg = fieldError(loc);
    reg.add(loc, input, msg);
    return h("label", { class: "field" }, text, input, hint ? h("span", { class: "hint" }, hint) : null, msg);
  };
  const nameInput = h("input", {
    value: model.name,
    testid: "rule-name",
    placeholder: "e.g. Coupon entered but did not complete order",
    oninput: (e) => {
      model.name = e.target.value;
      changed();
    },
  });
  const lifetimeInput = h("input", {
    value: model.lifetime,
    testid: "rule-lifetime",
    placeholder: "24h",
    class: "mono",
    oninput: (e) => {
      model.lifetime = e.target.value;
      changed();
    },
  });
  const txnSelect = h(
    "select",
    {
      testid: "rule-transaction",
      onchange: (e) => {
        model.transaction = e.target.value;
        changed();
      },
    },
    h("option", { value: "" }, "— none —"),
    [...new Set([...dmNames(), model.transaction].filter(Boolean))].map((n) => h("option", { value: n }, n)),
  );
  txnSelect.value = model.transaction;
  const multipleBox = h("input", {
    type: "checkbox",
    checked: model.multiple_active,
    testid: "rule-multiple",
    onchange: (e) => {
      model.multiple_active = e.target.checked;
      changed();
    },
  });
  const enabledBox = h("input", {
    type: "checkbox",
    checked: model.enabled,
    testid: "rule-enabled",
    onchange: (e) => {
      model.enabled = e.target.checked;
      changed();
    },
  });
  const multipleMsg = fieldError("multiple_active");
  reg.add("multiple_active", multipleBox, multipleMsg);
  const enabledMsg = fieldError("enabled");
  reg.add("enabled", enabledBox, enabledMsg);

  const ruleCard = h(
    "section",
    { class: "card" },
    ruleMsg,
    h(
      "div",
      { class: "form-grid" },
      labelled("Name", "name", nameInput),
      labelled("Default lifetime", "lifetime", lifetimeInput, "An instance older than this ends as expired (30m, 48h, 7d)."),
      labelled("Transaction data map", "transaction", txnSelect, "One instance per person and value of this data map."),
      h("label", { class: "check" }, multipleBox, h("span", {}, "One user can be active in this rule multiple times at the same time", multipleMsg)),
      h("label", { class: "check" }, enabledBox, h("span", {}, "Enabled (status)", enabledMsg)),
    ),
  );

  // -- the conditions table
  const condsMsg = fieldError("conditions");
  const condBody = h("tbody");
  let subRows = [];
  reg.afterShow = () => {
    for (const tr of subRows) tr.hidden = !tr.querySelector(".field-error").childNodes.length;
  };

  function condRow(c, i) {
    const loc = `conditions[${i}]`;
    const cell = (key, input) => {
      const msg = fieldError(`${loc}.${key}`);
      reg.add(`${loc}.${key}`, input, msg);
      return h("td", {}, input, msg);
    };
    const text = (key, attrs) =>
      h("input", {
        value: c[key],
        testid: `cond-${key}`,
        oninput: (e) => {
          c[key] = e.target.value;
          changed();
        },
        ...attrs,
      });
    const select = (key, options, attrs, after) => {
      const el = h(
        "select",
        {
          testid: `cond-${key}`,
          onchange: (e) => {
            c[key] = e.target.value;
            if (after) after();
            changed();
          },
          ...attrs,
        },
        options.map((o) => h("option", { value: o }, o)),
      );
      el.value = c[key];
      return el;
    };
    const trigger = text("trigger", {
      "aria-label": `Trigger of condition ${i + 1}`,
      placeholder: c.type === "exit" ? "external event id or name" : "exit only",
      disabled: c.type !== "exit",
      size: 12,
    });
    const type = select("type", COND_TYPES, { "aria-label": `Type of condition ${i + 1}` }, () => {
      trigger.disabled = c.type !== "exit";
      trigger.placeholder = c.type === "exit" ? "external event id or name" : "exit only";
    });
    const moveBtn = (dir, label, glyph) =>
      h(
        "button",
        {
          type: "button",
          class: "icon small",
          title: label,
          "aria-label": `${label}: condition ${i + 1}`,
          testid: dir < 0 ? "cond-up" : "cond-down",
          disabled: (dir < 0 && i === 0) || (dir > 0 && i === model.conditions.length - 1),
          onclick: () => {
            const j = i + dir;
            [model.conditions[i], model.conditions[j]] = [model.conditions[j], model.conditions[i]];
            drawConditions();
            changed();
            condBody.querySelectorAll(`[data-testid=${dir < 0 ? "cond-up" : "cond-down"}]`)[j]?.focus();
          },
        },
        glyph,
      );
    const rowMsg = fieldError(loc);
    reg.add(loc, null, rowMsg);
    const sub = h("tr", { class: "sub", hidden: true }, h("td", { colspan: 9 }, rowMsg));
    subRows.push(sub);
    const row = h(
      "tr",
      { testid: "cond-row", "data-index": i },
      cell("sequence", text("sequence", { "aria-label": `Sequence of condition ${i + 1}`, inputmode: "numeric", size: 3, style: "width:52px" })),
      cell("type", type),
      cell("on", select("on", COND_ON, { "aria-label": `data.type of condition ${i + 1}` })),
      cell("wait", text("wait", { "aria-label": `Wait time of condition ${i + 1}`, placeholder: "—", class: "mono", size: 5, style: "width:70px" })),
      cell("within", text("within", { "aria-label": `Within time of condition ${i + 1}`, placeholder: "—", class: "mono", size: 5, style: "width:70px" })),
      cell(
        "match",
        text("match", {
          "aria-label": `Matching criteria of condition ${i + 1}`,
          class: "mono",
          placeholder: c.type === "exit" ? "(none: fires after the wait)" : 'ecom_event = "Order Completed"',
          style: "min-width:260px",
          spellcheck: "false",
        }),
      ),
      cell(
        "variables",
        multiSelect(dmNames(), c.variables, changed, { testid: "cond-variables", label: `Variables of condition ${i + 1}` }),
      ),
      cell("trigger", trigger),
      h(
        "td",
        { class: "tight" },
        moveBtn(-1, "Move up", "↑"),
        " ",
        moveBtn(1, "Move down", "↓"),
        " ",
        h(
          "button",
          {
            type: "button",
            class: "icon small danger",
            title: "Remove condition",
            "aria-label": `Remove condition ${i + 1}`,
            testid: "cond-remove",
            onclick: () => {
              model.conditions.splice(i, 1);
              lastProblems = [];
              drawConditions();
              changed();
            },
          },
          "✕",
        ),
      ),
    );
    return [row, sub];
  }

  function drawConditions() {
    // Field registrations of the conditions are rebuilt; the rule's own fields stay.
    for (const key of [...reg.fields.keys()]) if (key.startsWith("conditions")) reg.fields.delete(key);
    reg.add("conditions", null, condsMsg);
    subRows = [];
    fill(condBody,
      ...(model.conditions.length
        ? model.conditions.flatMap(condRow)
        : [h("tr", {}, h("td", { colspan: 9, class: "empty" }, "No conditions: add a start and an exit."))]),
    );
    reg.show(lastProblems, relativeTo(bodyIndex()));
  }

  const addCond = h(
    "button",
    {
      type: "button",
      testid: "add-condition",
      onclick: () => {
        const last = model.conditions[model.conditions.length - 1];
        const seq = last ? (Number(last.sequence) || 0) + (last.type === "start" || last.type === "exclude" ? 1 : 0) : 0;
        model.conditions.push({
          sequence: String(seq),
          type: model.conditions.length ? "step" : "start",
          on: "track",
          wait: "",
          within: "",
          match: "",
          trigger: "",
          variables: [],
        });
        drawConditions();
        changed();
        const seqs = condBody.querySelectorAll("[data-testid=cond-match]");
        seqs[seqs.length - 1]?.focus();
      },
    },
    "+ Add condition",
  );

  const condCard = h(
    "section",
    { class: "card" },
    h("h2", {}, "Conditions"),
    condsMsg,
    h(
      "div",
      { class: "table-wrap", style: "overflow:visible;max-height:none" },
      h(
        "table",
        { class: "edit", testid: "conditions-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Sequence", "Type", "data.type", "Wait time", "Within time", "Matching criteria", "Variables", "Trigger", ""].map((t) =>
              h("th", { style: "position:static" }, t),
            ),
          ),
        ),
        condBody,
      ),
    ),
    h("div", { class: "toolbar", style: "margin:10px 0 0" }, addCond),
    h(
      "details",
      { class: "small muted", style: "margin-top:8px" },
      h("summary", {}, "How conditions work"),
      h(
        "ul",
        {},
        h("li", {}, h("b", {}, "start"), " (sequence 0) opens an instance when a matching event arrives."),
        h("li", {}, h("b", {}, "step"), " (sequence n) moves it from n−1 to n; ", h("i", {}, "wait"), ": only events at least this long after reaching n−1 count; ", h("i", {}, "within"), ": otherwise it expires."),
        h("li", {}, h("b", {}, "exclude"), " (sequence n) ends an instance at position n when a matching event arrives."),
        h("li", {}, h("b", {}, "exit"), " (the last sequence) triggers the Emarsys external event: without matching criteria after its wait, with them on a matching event."),
        h(
          "li",
          {},
          "Matching criteria use Segment's filter language: ",
          h("code", {}, 'ecom_event = "Order Completed" and ecom_revenue > 100'),
          ", ",
          h("code", {}, 'contains(properties.sku, "SHOE")'),
          ", ",
          h("code", {}, 'match(event, "Product *")'),
          ", ",
          h("code", {}, "coupon != null"),
          ". Bare names are data maps (or Segment fields such as event, type).",
        ),
      ),
    ),
  );

  // -- save, revert, delete
  async function save() {
    validator.cancel();
    saveBtn.disabled = true;
    validator.setStatus("busy", "Saving…");
    const i = bodyIndex();
    try {
      const res = await api("PUT", apiPath(account, "/config"), buildBody());
      version = res.version;
      config = res.config || config;
      config.rules = config.rules || [];
      config.data_maps = config.data_maps || [];
      const name = model.name.trim();
      index = config.rules.findIndex((r) => r.name === name);
      if (index < 0) index = i;
      savedJson = JSON.stringify(ruleToApi(model));
      dirtyMark.hidden = true;
      lastProblems = [];
      reg.show([]);
      validator.setStatus("ok", `✓ Saved: version ${version ?? "?"}`);
      fill(saveResult,
        notice(
          "ok",
          `Saved as version ${version ?? "?"}. Every worker applies it within seconds. Running instances of this rule continue; changed conditions apply to instances started from now on.`,
        ),
      );
      deleteBtn.hidden = false;
      setHashQuietly(`#/${enc(account)}/rule/${enc(name)}`);
      toast(`Rule “${name}” saved`, "ok");
    } catch (err) {
      if (err.problems.length) {
        showProblems(err.problems, i);
        validator.setStatus("bad", `${err.problems.length} problem(s)`);
        fill(saveResult, notice("bad", `Not saved: ${err.message}. The fields with problems are marked in red.`));
      } else {
        validator.setStatus("bad", "Not saved");
        fill(saveResult, errorNotice(err));
      }
    } finally {
      saveBtn.disabled = false;
    }
  }

  async function remove() {
    if (index < 0) return;
    if (!window.confirm(`Delete the rule “${config.rules[index].name}”? Its running instances end without triggering.`)) return;
    const rules = clone(config.rules);
    rules.splice(index, 1);
    try {
      await api("PUT", apiPath(account, "/config"), { data_maps: config.data_maps, rules });
      state.leaveGuard = null;
      toast("Rule deleted", "ok");
      go(`#/${enc(account)}/rules`);
    } catch (err) {
      fill(saveResult, errorNotice(err));
    }
  }

  const saveBtn = h("button", { type: "button", class: "primary", testid: "save-rule", onclick: save }, "Save rule");
  const revertBtn = revertButton();
  const deleteBtn = h("button", { type: "button", class: "danger", testid: "delete-rule", hidden: index < 0, onclick: remove }, "Delete rule");

  drawConditions();
  state.leaveGuard = isDirty;
  state.onSave = save;

  const backtest = backtestCard(account, {
    rule: () => ruleToApi(model),
    dataMaps: () => config.data_maps,
    onProblems: (problems) => {
      showProblems(problems, 0);
      validator.setStatus("bad", `${problems.length} problem(s)`);
    },
  });

  fill(ctx.main,
    h(
      "div",
      { class: "page-head" },
      h(
        "div",
        {},
        h("div", { class: "small" }, h("a", { href: `#/${enc(account)}/rules` }, "Rules"), " ›"),
        title,
      ),
    ),
    otherProblems,
    ruleCard,
    condCard,
    saveResult,
    h(
      "div",
      { class: "sticky-actions" },
      saveBtn,
      revertBtn,
      deleteBtn,
      status,
      dirtyMark,
      h("span", { class: "muted small" }, "Ctrl+S saves"),
    ),
    backtest,
  );
  if (index < 0) nameInput.focus();
}

// ---------------------------------------------------------------------------- backtest

function backtestCard(account, { rule, dataMaps, onProblems }) {
  let period = loadPeriod(BACKTEST_PERIOD_KEY, "7d");
  let controller = null;
  const status = h("div", { class: "vstatus", testid: "backtest-status", "aria-live": "polite" });
  const results = h("div", { testid: "backtest-results" });
  const runBtn = h("button", { type: "button", class: "primary", testid: "backtest-run" }, "▶ Test against history");
  const cancelBtn = h("button", { type: "button", hidden: true, testid: "backtest-cancel", onclick: () => controller && controller.abort() }, "Cancel");
  const picker = periodPicker(period, (p) => savePeriod(BACKTEST_PERIOD_KEY, p), "backtest-period", { apply: false });

  async function run() {
    if (controller) return;
    period = picker.current();
    savePeriod(BACKTEST_PERIOD_KEY, period);
    const edited = { ...rule(), enabled: true };
    const range = periodRange(period);
    const body = { data_maps: dataMaps(), rules: [edited], from: isoZ(range.from), to: isoZ(range.to) };
    controller = new AbortController();
    runBtn.disabled = true;
    cancelBtn.hidden = false;
    const t0 = performance.now();
    status.className = "vstatus";
    fill(status, spinner(), ` Replaying the input topic from ${fmtTime(range.from)} to ${fmtTime(range.to)} on isolated state… nothing is sent.`);
    try {
      const res = await api("POST", apiPath(account, "/replay"), body, { signal: controller.signal });
      const ms = performance.now() - t0;
      fill(status, `Done in ${ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`}.`);
      fill(results, renderBacktest(res, edited, range, ms));
    } catch (err) {
      if (err && err.name === "AbortError") {
        fill(status, "Cancelled.");
      } else if (err.problems && err.problems.length) {
        onProblems(err.problems);
        status.className = "vstatus bad";
        fill(status, "The edited rule has problems (marked above): fix them, then test again.");
      } else {
        status.className = "vstatus bad";
        fill(status, `Replay failed: ${err.message}`);
      }
    } finally {
      controller = null;
      runBtn.disabled = false;
      cancelBtn.hidden = true;
    }
  }
  runBtn.addEventListener("click", run);

  return h(
    "section",
    { class: "card backtest", testid: "backtest", style: "margin-top:16px" },
    h("h2", {}, "Test against history"),
    h(
      "p",
      { class: "explain" },
      "Runs this rule ",
      h("b", {}, "as edited, before saving"),
      " (with the current data maps) over the events of the input topic in the chosen period, on fresh isolated state: who would have been triggered, when, and how many were excluded or expired. ",
      h("b", {}, "Nothing is sent to Emarsys"),
      " and the live state is untouched. A disabled rule is tested as if enabled.",
    ),
    h("div", { class: "toolbar" }, picker, runBtn, cancelBtn),
    status,
    results,
  );
}

function renderBacktest(res, rule, range, ms) {
  const lines = (res && res.lines) || [];
  const sum = (res && res.summary) || lines.find((l) => l.kind === "summary") || {};
  const tr = sum.transitions || {};
  const triggers = lines.filter((l) => l.kind === "trigger" && (l.rule == null || l.rule === rule.name));
  const undeliverable = triggers.filter((l) => l.undeliverable || l.contact == null);
  const updates = lines.filter((l) => l.kind === "contact_update").length;
  const rejected = lines.filter((l) => l.kind === "rejected");
  const n = (v, fallback = 0) => Number(v ?? fallback) || 0;
  const started = n(tr.started);
  const advanced = n(tr.advanced);
  const excluded = n(tr.excluded);
  const expired = n(tr.expired);
  const triggered = n(tr.triggered, triggers.length);
  const undeliv = n(sum.undeliverable, undeliverable.length);
  const waiting = Math.max(0, started - excluded - expired - triggered);

  const count = (label, value, cls, key) =>
    h(
      "div",
      { class: `count ${cls || ""}`, testid: `count-${key}` },
      h("div", { class: "n" }, fmtN(value)),
      h("div", { class: "l" }, SERIES.some((s_) => s_.key === key) ? h("span", { class: `sw s-${key}`, style: "width:9px;height:9px;display:inline-block;border-radius:2px" }) : null, label),
    );

  const { buckets, size } = bucketize(
    triggers.map((l) => ({ at: l.at || l.event_time, triggered: l.undeliverable || l.contact == null ? 0 : 1, undeliverable: l.undeliverable || l.contact == null ? 1 : 0 })),
    range.from.getTime(),
    range.to.getTime(),
    ["triggered", "undeliverable"],
  );

  // Who would have been triggered.
  const PAGE = 200;
  let shown = PAGE;
  let filter = "";
  const tbody = h("tbody");
  const more = h("div", { class: "toolbar", style: "margin-top:8px" });
  const drawTable = () => {
    const f = filter.toLowerCase();
    const rows = triggers.filter(
      (l) => !f || `${l.contact ?? ""} ${l.user_id ?? ""} ${JSON.stringify(l.data ?? {})}`.toLowerCase().includes(f),
    );
    fill(tbody,
      ...(rows.length
        ? rows.slice(0, shown).map((l) => {
            const bad = l.undeliverable || l.contact == null;
            const vars = (l.data && (l.data.global || l.data)) || {};
            return h(
              "tr",
              { testid: "backtest-row", class: bad ? "failed" : "" },
              h("td", {}, timeCell(l.at || l.event_time, { rel: false })),
              h("td", { testid: "backtest-contact" }, l.contact == null ? h("span", { class: "muted" }, "unknown") : h("code", {}, String(l.contact))),
              h(
                "td",
                {},
                l.user_id ? h("a", { href: `#/${enc(state.account)}/person?userId=${enc(l.user_id)}` }, l.user_id) : h("span", { class: "muted" }, "—"),
              ),
              h("td", {}, h("code", {}, String(l.external_event ?? "—"))),
              h(
                "td",
                {},
                Object.keys(vars).length
                  ? h(
                      "div",
                      { class: "chips" },
                      Object.entries(vars).map(([k, v]) => h("span", { class: "chip" }, `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)),
                    )
                  : h("span", { class: "muted" }, "—"),
              ),
              h("td", {}, bad ? h("span", { class: "pill bad", title: l.undeliverable || "" }, `undeliverable: ${l.undeliverable || "no contact key"}`) : h("span", { class: "pill ok" }, "would trigger")),
            );
          })
        : [h("tr", {}, h("td", { colspan: 6, class: "empty" }, triggers.length ? "No match for this filter." : "Nobody would have been triggered in this period."))]),
    );
    fill(more,
      rows.length > shown
        ? h(
            "button",
            {
              type: "button",
              testid: "backtest-more",
              onclick: () => {
                shown = rows.length;
                drawTable();
              },
            },
            `Show all ${fmtN(rows.length)} (showing ${fmtN(shown)})`,
          )
        : "",
    );
  };
  drawTable();

  const download = h(
    "button",
    {
      type: "button",
      class: "small",
      testid: "backtest-download",
      onclick: () => {
        const text = lines.map((l) => JSON.stringify(l)).join("\n") + "\n";
        saveFile(`replay-${rule.name.replace(/[^\w.-]+/g, "_") || "rule"}.jsonl`, text, "application/x-ndjson");
      },
    },
    "Download JSON lines",
  );

  const clock = sum.clock ? fmtTime(sum.clock) : null;
  return h(
    "div",
    {},
    h(
      "p",
      { testid: "backtest-summary", style: "margin-top:10px" },
      `Replayed ${fmtN(sum.events ?? 0)} events from ${fmtN(sum.persons ?? 0)} people (${fmtTime(range.from)} – ${fmtTime(range.to)}). `,
      h(
        "b",
        {},
        triggered
          ? `“${rule.name || "This rule"}” would have triggered ${fmtN(triggered)} time${triggered === 1 ? "" : "s"}`
          : `“${rule.name || "This rule"}” would not have triggered anyone`,
      ),
      triggered && undeliv ? `, ${fmtN(undeliv)} of them undeliverable (no contact key yet)` : "",
      `; ${fmtN(started)} started, ${fmtN(excluded)} excluded, ${fmtN(expired)} expired.`,
    ),
    h(
      "div",
      { class: "counts" },
      count("Started", started, "", "started"),
      count("Advanced", advanced, "", "advanced"),
      count("Excluded", excluded, "", "excluded"),
      count("Expired", expired, "", "expired"),
      count("Triggered", triggered, "ok", "triggered"),
      count("Undeliverable", undeliv, undeliv ? "bad" : "", "undeliverable"),
      count("Still waiting at the end", waiting, "", "waiting"),
    ),
    h(
      "p",
      { class: "muted small" },
      "Dry run: nothing was sent to Emarsys. ",
      `Waits, windows and lifetimes were run up to ${clock ? clock : "the end of the period"} (the end of the period, or now if sooner); instances still waiting then are counted as waiting. `,
      updates ? `${fmtN(updates)} contact update(s) from the data maps would also have been sent. ` : "",
    ),
    res && res.truncated
      ? notice("warn", `Only the first ${fmtN(lines.length)} result lines came back: the counts above are complete, the table below is not. Narrow the period to see everyone.`)
      : null,
    h("h3", {}, size >= 24 * 3600e3 ? "Triggers per day" : "Triggers per hour"),
    legend(
      [
        { key: "triggered", label: "Would trigger" },
        { key: "undeliverable", label: "Undeliverable", cls: "s-undeliverable" },
      ],
      { triggered: triggered - undeliv, undeliverable: undeliv },
      "backtest-legend",
    ),
    stackedChart(
      buckets,
      [
        { key: "triggered", label: "Would trigger" },
        { key: "undeliverable", label: "Undeliverable", cls: "s-undeliverable" },
      ],
      { size, testid: "backtest-chart", height: 150, width: 1000, empty: "No triggers in this period" },
    ),
    h(
      "div",
      { class: "toolbar", style: "margin-top:12px" },
      h("h3", { style: "margin:0" }, "Who would have been triggered"),
      h("span", { class: "spacer" }),
      h("input", {
        type: "search",
        placeholder: "Filter by contact, user or data",
        testid: "backtest-filter",
        "aria-label": "Filter the triggered people",
        oninput: (e) => {
          filter = e.target.value;
          shown = PAGE;
          drawTable();
        },
      }),
      download,
    ),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { testid: "backtest-table" },
        h("thead", {}, h("tr", {}, ["When", "Contact", "User", "External event", "Data (variables)", ""].map((t) => h("th", {}, t)))),
        tbody,
      ),
    ),
    more,
    rejected.length
      ? h(
          "details",
          { style: "margin-top:10px" },
          h("summary", {}, `${fmtN(rejected.length)} event(s) rejected during the replay`),
          h(
            "ul",
            { class: "small" },
            rejected.slice(0, 100).map((l) => h("li", {}, l.message_id ? [h("code", {}, l.message_id), ": "] : null, l.reason)),
          ),
        )
      : null,
    h(
      "p",
      { class: "muted small", style: "margin-top:8px" },
      `Answered in ${ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`}`,
      res && res.seconds != null ? ` (replay ${res.seconds} s on the worker)` : "",
      ".",
    ),
  );
}

// ---------------------------------------------------------------------------- deliveries

function personHref(account, person, contact) {
  if (typeof person === "string" && person.startsWith("u:")) return `#/${enc(account)}/person?userId=${enc(person.slice(2))}`;
  if (typeof person === "string" && person.startsWith("a:")) return `#/${enc(account)}/person?anonymousId=${enc(person.slice(2))}`;
  if (contact != null) return `#/${enc(account)}/person?primaryKey=${enc(contact)}`;
  return null;
}

function deliveryFailed(d) {
  return d.ok === false || d.op === "undeliverable";
}

function deliveriesTable(account, list, { withPerson = false, testid = "deliveries-table" } = {}) {
  const head = ["When", ...(withPerson ? ["Person"] : []), "Operation", "Outcome", "Contact", "Rule", "External event", "replyCode", "Text", "Details"];
  const rows = list.map((d) => {
    const failed = deliveryFailed(d);
    const href = withPerson ? personHref(account, d.person, d.contact) : null;
    const details = [];
    if (d.fields && Object.keys(d.fields).length) details.push(h("span", { class: "chips" }, Object.entries(d.fields).map(([k, v]) => h("span", { class: "chip", title: `Emarsys field ${k}` }, `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`))));
    if (d.trigger_id) details.push(h("div", { class: "small muted" }, "trigger_id ", h("code", {}, d.trigger_id)));
    if (d.event_time) details.push(h("div", { class: "small muted" }, "event_time ", h("code", {}, d.event_time)));
    return h(
      "tr",
      { class: failed ? "failed" : "", testid: "delivery-row", "data-ok": String(!failed) },
      h("td", {}, timeCell(d.at)),
      withPerson ? h("td", {}, href ? h("a", { href }, d.person || d.contact) : h("span", { class: "muted" }, d.person || "—")) : null,
      h("td", {}, h("code", {}, d.op || "—")),
      h("td", {}, failed ? h("span", { class: "pill bad" }, d.op === "undeliverable" ? "undeliverable" : "failed") : h("span", { class: "pill ok" }, "ok")),
      h("td", {}, d.contact == null ? h("span", { class: "muted" }, "—") : h("code", {}, String(d.contact))),
      h("td", {}, d.rule || h("span", { class: "muted" }, "—")),
      h("td", {}, d.event != null ? h("code", {}, String(d.event)) : h("span", { class: "muted" }, "—")),
      h("td", { class: failed && d.code != null ? "error" : "" }, d.code != null ? h("code", {}, String(d.code)) : h("span", { class: "muted" }, "—")),
      h("td", { class: failed ? "error" : "" }, d.text || d.reason || ""),
      h("td", {}, details),
    );
  });
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { testid },
      h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: head.length, class: "empty" }, "No deliveries."))),
    ),
  );
}

const byTimeDesc = (a, b) => (toDate(b.at)?.getTime() || 0) - (toDate(a.at)?.getTime() || 0);

async function pageDeliveries(ctx) {
  const account = ctx.account;
  const res = await api("GET", apiPath(account, "/deliveries"));
  if (!ctx.alive()) return;
  const all = [...((res && res.deliveries) || [])].sort(byTimeDesc);
  const failuresOnly = h("input", { type: "checkbox", testid: "deliveries-failures", checked: ctx.query.get("failed") === "1" });
  const filter = h("input", { type: "search", placeholder: "Filter: contact, person, rule, code, text", testid: "deliveries-filter", "aria-label": "Filter deliveries", style: "width:300px" });
  const holder = h("div");
  const count = h("span", { class: "muted", testid: "deliveries-count" });
  const draw = () => {
    const f = filter.value.toLowerCase();
    const list = all.filter((d) => (!failuresOnly.checked || deliveryFailed(d)) && (!f || JSON.stringify(d).toLowerCase().includes(f)));
    count.textContent = `${fmtN(list.length)} of ${fmtN(all.length)} (failures: ${fmtN(all.filter(deliveryFailed).length)})`;
    fill(holder, deliveriesTable(account, list, { withPerson: true }));
  };
  failuresOnly.addEventListener("change", draw);
  filter.addEventListener("input", draw);
  draw();
  fill(ctx.main,
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Deliveries"), h("div", { class: "sub" }, "Recent Emarsys calls of this account and their outcomes; failures carry Emarsys's replyCode and text."))),
    h(
      "div",
      { class: "toolbar" },
      h("label", { class: "inline" }, failuresOnly, "Failures only"),
      filter,
      count,
      h("span", { class: "spacer" }),
      h("button", { type: "button", testid: "deliveries-refresh", onclick: () => route() }, "Refresh"),
    ),
    holder,
  );
}

// ---------------------------------------------------------------------------- dead letters

async function pageDeadLetters(ctx) {
  const account = ctx.account;
  const res = await api("GET", apiPath(account, "/dead-letters?limit=200"));
  if (!ctx.alive()) return;
  const letters = [...((res && res.dead_letters) || [])].sort(byTimeDesc);
  const selected = new Set();
  const result = h("div", { testid: "dl-result", "aria-live": "polite" });
  const retryBtn = h("button", { type: "button", class: "primary", testid: "dl-retry", disabled: true }, "Retry selected");
  const selectAll = h("input", { type: "checkbox", testid: "dl-select-all", "aria-label": "Select all dead letters" });
  const checks = [];

  const sync = () => {
    retryBtn.disabled = selected.size === 0;
    retryBtn.textContent = selected.size ? `Retry selected (${selected.size})` : "Retry selected";
    selectAll.checked = letters.length > 0 && selected.size === letters.length;
    selectAll.indeterminate = selected.size > 0 && selected.size < letters.length;
  };
  selectAll.addEventListener("change", () => {
    for (const [i, box] of checks.entries()) {
      box.checked = selectAll.checked;
      box.closest("tr").classList.toggle("selected", box.checked);
      if (selectAll.checked) selected.add(letters[i].id);
      else selected.delete(letters[i].id);
    }
    sync();
  });

  const rows = letters.map((d) => {
    const box = h("input", { type: "checkbox", testid: "dl-check", value: d.id, "aria-label": `Select dead letter ${d.id}` });
    box.addEventListener("change", () => {
      if (box.checked) selected.add(d.id);
      else selected.delete(d.id);
      sync();
    });
    checks.push(box);
    const row = h(
      "tr",
      { testid: "dl-row", "data-id": d.id, class: "selectable" },
      h("td", { class: "tight" }, box),
      h("td", {}, timeCell(d.at)),
      h("td", {}, h("span", { class: "pill" }, d.source || "?")),
      h("td", { class: "error" }, d.reason || ""),
      h("td", {}, d.message_id ? h("code", {}, d.message_id) : h("span", { class: "muted" }, "—")),
      h(
        "td",
        {},
        d.payload == null && d.raw == null
          ? h("span", { class: "muted" }, "—")
          : h(
              "details",
              {},
              h("summary", { class: "small" }, d.payload != null ? "payload" : `raw${d.truncated ? " (truncated)" : ""}`),
              h("pre", { class: "payload" }, d.payload != null ? JSON.stringify(d.payload, null, 2) : String(d.raw)),
            ),
      ),
      h("td", { class: "muted small" }, h("code", {}, d.id)),
    );
    row.addEventListener("click", (ev) => {
      if (ev.target.closest("input, a, button, details, summary, pre")) return;
      box.checked = !box.checked;
      box.dispatchEvent(new Event("change"));
    });
    box.addEventListener("change", () => row.classList.toggle("selected", box.checked));
    return row;
  });

  retryBtn.addEventListener("click", async () => {
    const ids = [...selected];
    retryBtn.disabled = true;
    fill(result, h("p", {}, spinner(), ` Retrying ${ids.length}…`));
    try {
      const r = await api("POST", apiPath(account, "/dead-letters/retry"), { ids });
      const skipped = r.skipped || [];
      fill(result,
        notice(
          skipped.length ? "warn" : "ok",
          h("strong", {}, `Retried ${fmtN(r.retried ?? 0)} of ${fmtN(ids.length)}.`),
          skipped.length ? [" Skipped:", h("ul", {}, skipped.map((x) => h("li", {}, h("code", {}, x.id), ": ", x.reason)))] : "",
        ),
      );
      toast(`Retried ${r.retried ?? 0} dead letter(s)`, "ok");
    } catch (err) {
      fill(result, errorNotice(err));
    } finally {
      sync();
    }
  });

  fill(ctx.main,
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("h1", {}, "Dead letters"), h("div", { class: "sub" }, "Events and Emarsys calls that were given up on, with the reason. Retry sends the selected ones through again.")),
    ),
    h(
      "div",
      { class: "toolbar" },
      retryBtn,
      h("span", { class: "muted", testid: "dl-count" }, `${fmtN(letters.length)} shown (most recent first, up to 200)`),
      h("span", { class: "spacer" }),
      h("button", { type: "button", testid: "dl-refresh", onclick: () => route() }, "Refresh"),
    ),
    result,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { testid: "dl-table" },
        h("thead", {}, h("tr", {}, h("th", { class: "tight" }, selectAll), ["When", "Source", "Reason", "messageId", "Payload", "Id"].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No dead letters. Nothing was given up on."))),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------- person page

const LOOKUPS = [
  { key: "userId", label: "userId" },
  { key: "anonymousId", label: "anonymousId" },
  { key: "primaryKey", label: "Primary key" },
];

async function pagePerson(ctx) {
  const account = ctx.account;
  const found = LOOKUPS.find((l) => ctx.query.get(l.key));
  const kind = found ? found.key : "userId";
  const value = found ? ctx.query.get(found.key) : "";

  const kindSel = h("select", { testid: "person-kind", "aria-label": "Look up by" }, LOOKUPS.map((l) => h("option", { value: l.key }, l.label)));
  kindSel.value = kind;
  const input = h("input", { type: "search", value, testid: "person-id", "aria-label": "Identifier", placeholder: "e.g. user-123 or ann@example.com", required: true });
  const form = h(
    "form",
    {
      class: "lookup",
      onsubmit: (e) => {
        e.preventDefault();
        const v = input.value.trim();
        if (v) go(`#/${enc(account)}/person?${kindSel.value}=${enc(v)}`);
      },
    },
    kindSel,
    input,
    h("button", { type: "submit", class: "primary", testid: "person-lookup" }, "Look up"),
  );
  const result = h("div", { testid: "person-result" });
  fill(ctx.main,
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("h1", {}, "Person"), h("div", { class: "sub" }, "Why did (or didn't) this person get an automation? Identity, data, rule instances, events and Emarsys calls in one view.")),
    ),
    h("section", { class: "card" }, form),
    result,
  );
  if (!value) {
    input.focus();
    return;
  }
  fill(result, h("p", { class: "muted" }, spinner(), " Looking up…"));
  const qs = `?${kind}=${enc(value)}`;
  let person;
  let config = { data_maps: [], rules: [] };
  try {
    const [p, c] = await Promise.all([api("GET", apiPath(account, `/users${qs}`)), loadConfig(account).catch(() => null)]);
    person = p;
    if (c) config = c.config;
  } catch (err) {
    if (!ctx.alive()) return;
    if (err.status === 404) {
      fill(result,
        notice(
          "warn",
          h("strong", { testid: "person-not-found" }, `No person with ${kind} “${value}” in ${account}.`),
          " The events may not have arrived yet, the identifier may be misspelled, or the person was deleted.",
        ),
      );
      return;
    }
    throw err;
  }
  if (!ctx.alive()) return;
  fill(result, ...renderPerson(account, person, config));
  every(15000, refreshRelativeTimes);
}

function renderPerson(account, p, config) {
  const rulesByName = new Map((config.rules || []).map((r) => [r.name, r]));
  const sent = (p.emarsys && p.emarsys.sent) || {};
  const acked = (p.emarsys && p.emarsys.acknowledged) || {};
  const values = p.values || {};
  const instances = p.instances || [];
  const deliveries = [...(p.deliveries || [])].sort(byTimeDesc);
  const events = [...(p.recentEvents || [])].sort(byTimeDesc);

  // -- the verdict: what explains the outcome
  const findings = [];
  const add = (cls, ...children) => findings.push(h("li", { class: cls }, ...children));
  if (!p.primaryKey) {
    add(
      "bad",
      h("b", {}, "No Emarsys contact yet: "),
      "no primary key value was seen for this person",
      config.primary_key ? [" (read from ", h("code", {}, config.primary_key), ")"] : "",
      ". Contact updates wait for it and any trigger now would be undeliverable.",
    );
  } else {
    add("ok", h("b", {}, "Emarsys contact: "), h("code", {}, p.primaryKey));
  }
  const pending = Object.keys(sent).filter((f) => JSON.stringify(sent[f]) !== JSON.stringify(acked[f]));
  if (pending.length) add("warn", `${pending.length} field(s) sent to Emarsys but not acknowledged yet: `, pending.join(", "));
  for (const d of deliveries.filter(deliveryFailed).slice(0, 3)) {
    add(
      "bad",
      h("b", {}, `${d.op === "undeliverable" ? "Undeliverable" : "Failed"} ${d.op === "undeliverable" ? "trigger" : d.op || "call"}`),
      d.rule ? ` (rule “${d.rule}”)` : "",
      " at ",
      timeCell(d.at),
      d.code != null ? [": replyCode ", h("code", {}, String(d.code))] : "",
      d.text ? ` ${d.text}` : d.reason ? ` ${d.reason}` : "",
    );
  }
  for (const d of deliveries.filter((x) => x.op === "trigger" && !deliveryFailed(x)).slice(0, 3)) {
    add("ok", h("b", {}, "Triggered"), d.rule ? ` “${d.rule}”` : "", d.event != null ? [" (external event ", h("code", {}, String(d.event)), ")"] : "", " at ", timeCell(d.at));
  }
  for (const inst of instances) {
    const rule = rulesByName.get(inst.rule);
    const next = inst.next;
    add(
      rule && rule.enabled === false ? "warn" : "",
      h("b", {}, `In progress: “${inst.rule}”`),
      ` at position ${inst.position}`,
      rule ? ` of ${maxSequence(rule)}` : "",
      next ? [`; next: ${next.what} `, timeCell(next.at)] : rule && rule.enabled === false ? "; the rule is disabled, so nothing fires." : "",
    );
  }
  const inProgress = new Set(instances.map((i) => i.rule));
  const triggeredRules = new Set(deliveries.filter((d) => d.op === "trigger" || d.op === "undeliverable").map((d) => d.rule));
  for (const r of config.rules || []) {
    if (inProgress.has(r.name) || triggeredRules.has(r.name)) continue;
    if (r.enabled === false) add("warn", h("b", {}, `“${r.name}”`), " is disabled.");
    else add("", h("b", {}, `“${r.name}”`), ": not in progress. Either no start event matched, or the instance ended (excluded, expired, or triggered earlier than the deliveries kept here).");
  }
  if (!events.length) add("warn", "No recent events recorded for this person.");

  // -- data maps and Emarsys fields
  const dmByField = new Map();
  for (const dm of config.data_maps || []) if (dm.field != null) dmByField.set(String(dm.field), dm);
  const valueRows = (config.data_maps || []).map((dm) => {
    const f = dm.field != null ? String(dm.field) : null;
    const hasSent = f != null && f in sent;
    const hasAck = f != null && f in acked;
    const insync = hasSent && JSON.stringify(sent[f]) === JSON.stringify(acked[f]);
    return h(
      "tr",
      { "data-dm": dm.name },
      h("td", {}, h("code", {}, dm.name)),
      h("td", {}, fmtValue(values[dm.name])),
      h("td", {}, f ?? h("span", { class: "muted" }, "—")),
      h("td", {}, hasSent ? fmtValue(sent[f]) : h("span", { class: "muted" }, "—")),
      h("td", {}, hasAck ? fmtValue(acked[f]) : h("span", { class: "muted" }, "—")),
      h("td", {}, f == null ? "" : insync ? h("span", { class: "pill ok" }, "in sync") : hasSent ? h("span", { class: "pill warn" }, "pending") : h("span", { class: "pill" }, "not sent")),
    );
  });
  const extraFields = [...new Set([...Object.keys(sent), ...Object.keys(acked)])].filter((f) => !dmByField.has(f));
  for (const f of extraFields) {
    valueRows.push(
      h(
        "tr",
        {},
        h("td", { class: "muted" }, "(no data map)"),
        h("td", {}, ""),
        h("td", {}, f),
        h("td", {}, f in sent ? fmtValue(sent[f]) : "—"),
        h("td", {}, f in acked ? fmtValue(acked[f]) : "—"),
        h("td", {}, ""),
      ),
    );
  }
  for (const [k, v] of Object.entries(values)) {
    if ((config.data_maps || []).some((d) => d.name === k)) continue;
    valueRows.push(h("tr", {}, h("td", {}, h("code", {}, k)), h("td", {}, fmtValue(v)), h("td", { colspan: 4, class: "muted" }, "not in the current data maps")));
  }

  const section = (title, testid, ...content) => h("section", { class: "card", testid }, h("h2", {}, title), ...content);
  const table = (testid, head, rows, empty) =>
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { testid },
        h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: head.length, class: "empty" }, empty))),
      ),
    );

  return [
    section("Why (not)?", "person-verdict", h("ul", { class: "verdict" }, findings)),
    h(
      "div",
      { class: "grid-2" },
      section(
        "Identity",
        "person-identity",
        h(
          "dl",
          { class: "ident" },
          h("dt", {}, "Person"),
          h("dd", {}, h("code", {}, p.person ?? "—")),
          h("dt", {}, "userId"),
          h("dd", { testid: "person-userid" }, p.userId ? h("code", {}, p.userId) : h("span", { class: "muted" }, "anonymous")),
          h("dt", {}, "anonymousIds"),
          h("dd", {}, (p.anonymousIds || []).length ? h("div", { class: "chips" }, p.anonymousIds.map((a) => h("span", { class: "chip" }, a))) : h("span", { class: "muted" }, "—")),
          h("dt", {}, "Primary key"),
          h("dd", { testid: "person-pk" }, p.primaryKey ? h("code", {}, p.primaryKey) : h("span", { class: "pill bad" }, "unknown")),
          h("dt", {}, "First seen"),
          h("dd", {}, timeCell(p.firstSeen)),
          h("dt", {}, "Last seen"),
          h("dd", {}, timeCell(p.lastSeen)),
          h("dt", {}, "Next deadline"),
          h("dd", { testid: "person-next-deadline" }, timeCell(p.nextDeadline)),
        ),
      ),
      section(
        "Recent events",
        "person-events",
        table(
          "events-table",
          ["When", "Type", "Event", "messageId"],
          events.map((e) => h("tr", {}, h("td", {}, timeCell(e.at)), h("td", {}, h("code", {}, e.type || "")), h("td", {}, e.event || h("span", { class: "muted" }, "—")), h("td", {}, h("code", { class: "small" }, e.messageId || "")))),
          "No recent events.",
        ),
      ),
    ),
    section(
      "Rule instances in progress",
      "person-instances",
      table(
        "instances-table",
        ["Rule", "Position", "Started", "Reached", "Transaction", "Variables", "Next"],
        instances.map((i) => {
          const rule = rulesByName.get(i.rule);
          const note = rule ? positionNote(rule, Number(i.position) || 0) : "";
          const vars = i.variables || {};
          return h(
            "tr",
            { testid: "instance-row" },
            h("td", {}, h("a", { href: `#/${enc(account)}/rule/${enc(i.rule)}` }, i.rule), h("div", { class: "small muted" }, h("code", {}, i.instance ?? ""))),
            h("td", {}, `${i.position}${rule ? ` of ${maxSequence(rule)}` : ""}`, note ? h("div", { class: "small muted" }, note) : null),
            h("td", {}, timeCell(i.started)),
            h("td", {}, timeCell(i.reached)),
            h("td", {}, i.transaction != null ? h("code", {}, String(i.transaction)) : h("span", { class: "muted" }, "—")),
            h("td", {}, Object.keys(vars).length ? h("div", { class: "chips" }, Object.entries(vars).map(([k, v]) => h("span", { class: "chip" }, `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`))) : h("span", { class: "muted" }, "—")),
            h("td", { testid: "instance-next" }, i.next ? [h("div", {}, i.next.what), timeCell(i.next.at)] : h("span", { class: "muted" }, "—")),
          );
        }),
        "No rule instance in progress.",
      ),
    ),
    section(
      "Data map values and Emarsys fields",
      "person-values",
      table("values-table", ["Data map", "Latest value", "Emarsys field", "Sent", "Acknowledged", ""], valueRows, "No values."),
    ),
    section("Deliveries", "person-deliveries", deliveriesTable(account, deliveries, { testid: "person-deliveries-table" })),
  ];
}

// ---------------------------------------------------------------------------- start

function start() {
  $("#account").addEventListener("change", (e) => {
    const r = parseHash();
    const page = r.page === "rule" ? "rules" : r.page || "rules";
    location.hash = `#/${enc(e.target.value)}/${page}`;
  });
  $("#change-token").addEventListener("click", async () => {
    await askToken();
    state.accounts = null;
    route();
  });
  window.addEventListener("hashchange", onHashChange);
  window.addEventListener("beforeunload", (e) => {
    if (state.leaveGuard && state.leaveGuard()) {
      e.preventDefault();
      e.returnValue = "";
    }
  });
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "s" && state.onSave) {
      e.preventDefault();
      state.onSave();
    }
  });
  checkHealth();
  setInterval(checkHealth, 30000);
  setInterval(refreshRelativeTimes, 30000);
  route();
}

start();

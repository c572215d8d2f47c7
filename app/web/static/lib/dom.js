// Building DOM nodes, and formatting numbers, times and values for them.

export const $ = (sel, root = document) => root.querySelector(sel);

export function h(tag, props, ...children) {
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
export function fill(el, ...children) {
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
export function s(tag, attrs, ...children) {
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

export const clone = (v) => JSON.parse(JSON.stringify(v));
export const enc = encodeURIComponent;

export function toast(message, kind = "") {
  const el = h("div", { class: `toast ${kind}`, role: "status", testid: "toast" }, message);
  $("#toasts").append(el);
  setTimeout(() => el.remove(), kind === "bad" ? 9000 : 5000);
}

export function notice(kind, ...children) {
  return h("div", { class: `notice ${kind}`, role: kind === "bad" ? "alert" : null }, ...children);
}

export function spinner() {
  return h("span", { class: "spinner", "aria-hidden": "true" });
}

// ---------------------------------------------------------------------------- formatting

const numberFormat = new Intl.NumberFormat();
export const fmtN = (n) => (n == null || n === "" ? "—" : numberFormat.format(Number(n) || 0));

export function toDate(v) {
  if (v == null || v === "") return null;
  if (v instanceof Date) return v;
  if (typeof v === "number") return new Date(v < 1e12 ? v * 1000 : v);
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function isoZ(d) {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function fmtTime(v) {
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

export function timeCell(v, { rel = true } = {}) {
  const d = toDate(v);
  if (!d) return h("span", { class: "muted" }, "—");
  return h(
    "time",
    { datetime: isoZ(d), title: `${isoZ(d)} (UTC)`, class: "nowrap" },
    fmtTime(d),
    rel ? [" ", h("span", { class: "muted small", "data-rel": isoZ(d) }, `(${relTime(d)})`)] : null,
  );
}

export function refreshRelativeTimes() {
  for (const el of document.querySelectorAll("[data-rel]")) {
    el.textContent = `(${relTime(el.dataset.rel)})`;
  }
}

export function localInputValue(d) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fmtValue(v) {
  if (v === undefined) return h("span", { class: "muted" }, "—");
  if (v === null) return h("code", {}, "null");
  if (typeof v === "object") return h("code", {}, JSON.stringify(v));
  return h("code", {}, String(v));
}

export function intOrRaw(v) {
  const text = String(v ?? "").trim();
  if (text === "") return undefined;
  return /^-?\d+$/.test(text) ? Number(text) : text;
}

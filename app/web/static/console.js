// The emarsys-destination web console: the entry module and its hash router. Vanilla ES2020
// modules loaded natively by the browser: no build step, no framework, no network access
// beyond this app's own JSON API (relative URLs, so a path prefix works).
//
// Routes (hash): #/ACCOUNT/datamaps | rules | rule/NAME | rule (new) | person?userId=... |
// deliveries | dead-letters. Every API call carries the admin token from localStorage; a 401
// asks for it again and retries.
//
// Layout: pages/*.js is one module per page, each exporting ``page*(ctx)`` (ctx: account,
// args, query, main, alive()); lib/*.js is what pages share: dom (building nodes,
// formatting), api (the JSON API and the token), nav (page state, route(), go()), and
// widgets (problems, charts, periods, catalog pickers, ...). A page imports only lib/.

import { api, askToken, errorNotice } from "./lib/api.js";
import { $, enc, fill, h, notice, refreshRelativeTimes, spinner } from "./lib/dom.js";
import { route, setRouter, state } from "./lib/nav.js";
import { pageDataMaps } from "./pages/datamaps.js";
import { pageDeadLetters } from "./pages/dead-letters.js";
import { pageDeliveries } from "./pages/deliveries.js";
import { pagePerson } from "./pages/person.js";
import { pageRuleEditor } from "./pages/rule-editor.js";
import { pageRules } from "./pages/rules.js";

const ACCOUNT_KEY = "emd.account";

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

async function loadAccounts() {
  const res = await api("GET", "api/accounts");
  state.accounts = (res && res.accounts) || [];
  const select = $("#account");
  fill(select, ...state.accounts.map((a) => h("option", { value: a }, a)));
}

async function render() {
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

// ---------------------------------------------------------------------------- start

function start() {
  setRouter(render);
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

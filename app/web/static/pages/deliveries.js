// The deliveries page: the account's delivery state, the Emarsys calls being retried
// right now, and its recent calls and their outcomes, failures first.

import { api, apiPath } from "../lib/api.js";
import { byTimeDesc, deliveriesTable, deliveryFailed } from "../lib/deliveries-table.js";
import { fill, fmtN, h, timeCell } from "../lib/dom.js";
import { route } from "../lib/nav.js";

const STATE_TEXT = {
  idle: ["ok", "idle", "Nothing waits to be delivered."],
  delivering: ["ok", "delivering", "Effects go to Emarsys as they come."],
  parked: ["bad", "parked", "Emarsys is failing or slow for this account: its effects wait in the parking topic and are delivered when it answers again. Other accounts are not held up."],
};

function seconds(n) {
  if (n == null) return "—";
  const s = Math.round(Number(n));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 360) / 10} h`;
}

function statusPanel(backlog) {
  const b = backlog || { state: "idle" };
  const [kind, label, text] = STATE_TEXT[b.state] || STATE_TEXT.idle;
  const stat = (name, value, testid) => h("div", { class: "count" }, h("div", { class: "n", testid }, value), h("div", { class: "l" }, name));
  return h(
    "div",
    { class: "card", testid: "delivery-status", "data-state": b.state },
    h("div", { class: "status-cell" }, h("span", { class: `pill ${kind}`, testid: "delivery-state" }, label), h("span", { class: "muted" }, text)),
    h(
      "div",
      { class: "counts" },
      stat("Waiting to be delivered", fmtN(b.effects || 0), "backlog-effects"),
      stat("of them parked", fmtN(b.parked || 0), "backlog-parked"),
      stat("Oldest waiting", seconds(b.oldestAgeSeconds), "backlog-oldest"),
    ),
  );
}

function retryingTable(list) {
  const head = ["Call", "Attempt", "Last status", "replyCode", "Reason", "Next attempt", "Given up", "Retrying since", "Worker"];
  const rows = list.map((r) =>
    h(
      "tr",
      { testid: "retry-row" },
      h("td", {}, h("code", {}, r.call)),
      h("td", { testid: "retry-attempt" }, String(r.attempt)),
      h("td", { class: "error" }, r.lastStatus == null ? h("span", { class: "muted" }, "no answer") : h("code", {}, String(r.lastStatus))),
      h("td", {}, r.lastReplyCode == null ? h("span", { class: "muted" }, "—") : h("code", {}, String(r.lastReplyCode))),
      h("td", { class: "error" }, r.reason || ""),
      h("td", {}, r.secondsToNextAttempt == null ? "—" : `in ${seconds(r.secondsToNextAttempt)}`),
      h("td", { testid: "retry-gives-up" }, `in ${seconds(r.secondsUntilGivenUp)}`, " ", h("span", { class: "muted small" }, "(then dead-lettered)")),
      h("td", {}, timeCell(r.since)),
      h("td", { class: "muted small" }, r.worker || ""),
    ),
  );
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { testid: "retrying-table" },
      h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: head.length, class: "empty" }, "No call is being retried."))),
    ),
  );
}

export async function pageDeliveries(ctx) {
  const account = ctx.account;
  const res = await api("GET", apiPath(account, "/deliveries"));
  if (!ctx.alive()) return;
  const all = [...((res && res.deliveries) || [])].sort(byTimeDesc);
  const retrying = (res && res.retrying) || [];
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
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Deliveries"), h("div", { class: "sub" }, "What waits to be delivered, the calls Emarsys is being retried on, and recent calls with their outcomes; failures carry Emarsys's replyCode and text."))),
    statusPanel(res && res.backlog),
    h("h2", {}, "Retrying now ", h("span", { class: "muted small", testid: "retrying-count" }, `(${fmtN(retrying.length)})`)),
    retryingTable(retrying),
    h("h2", {}, "Recent calls"),
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

// The table of Emarsys calls and outcomes, shared by the deliveries and person pages.

import { enc, h, timeCell, toDate } from "./dom.js";

function personHref(account, person, contact) {
  if (typeof person === "string" && person.startsWith("u:")) return `#/${enc(account)}/person?userId=${enc(person.slice(2))}`;
  if (typeof person === "string" && person.startsWith("a:")) return `#/${enc(account)}/person?anonymousId=${enc(person.slice(2))}`;
  if (contact != null) return `#/${enc(account)}/person?primaryKey=${enc(contact)}`;
  return null;
}

// What the call acted on: the external event of a trigger, the list of a list action.
function target(d) {
  if (d.event != null) return h("code", {}, String(d.event));
  if (d.list != null) return [d.op === "list_remove" ? "remove from list " : "add to list ", h("code", {}, String(d.list))];
  return h("span", { class: "muted" }, "—");
}

export function deliveryFailed(d) {
  return d.ok === false || d.op === "undeliverable";
}

export function deliveriesTable(account, list, { withPerson = false, testid = "deliveries-table" } = {}) {
  const head = ["When", ...(withPerson ? ["Person"] : []), "Operation", "Outcome", "Contact", "Rule", "External event / list", "replyCode", "Text", "Details"];
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
      h("td", { testid: "delivery-target" }, target(d)),
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

export const byTimeDesc = (a, b) => (toDate(b.at)?.getTime() || 0) - (toDate(a.at)?.getTime() || 0);

// The deliveries page: recent Emarsys calls of the account, failures first.

import { api, apiPath } from "../lib/api.js";
import { byTimeDesc, deliveriesTable, deliveryFailed } from "../lib/deliveries-table.js";
import { fill, fmtN, h } from "../lib/dom.js";
import { route } from "../lib/nav.js";

export async function pageDeliveries(ctx) {
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

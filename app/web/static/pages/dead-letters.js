// The dead letters page: what was given up on, with the reason; select and retry.

import { api, apiPath, errorNotice } from "../lib/api.js";
import { byTimeDesc } from "../lib/deliveries-table.js";
import { fill, fmtN, h, notice, spinner, timeCell, toast } from "../lib/dom.js";
import { route } from "../lib/nav.js";

export async function pageDeadLetters(ctx) {
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

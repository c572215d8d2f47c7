// "Test against history": an edited rule replayed over the input topic, nothing sent.

import { api, apiPath, saveFile } from "./api.js";
import { SERIES, bucketize, legend, stackedChart } from "./charts.js";
import { enc, fill, fmtN, fmtTime, h, isoZ, notice, spinner, timeCell } from "./dom.js";
import { state } from "./nav.js";
import { loadPeriod, periodPicker, periodRange, savePeriod } from "./periods.js";

const BACKTEST_PERIOD_KEY = "emd.backtestPeriod";

// ---------------------------------------------------------------------------- backtest

export function backtestCard(account, { rule, dataMaps, onProblems }) {
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
  // Every action an exit would take (trigger, list add/remove), and the exits themselves
  // (one per trigger_id: an exit with a trigger and a list action fired once).
  const ACTION_KINDS = ["trigger", "list_add", "list_remove"];
  const actions = lines.filter((l) => ACTION_KINDS.includes(l.kind) && (l.rule == null || l.rule === rule.name));
  const seenExits = new Set();
  const triggers = actions.filter((l) => {
    const id = l.trigger_id ?? `${l.kind} ${l.at} ${l.contact}`;
    if (seenExits.has(id)) return false;
    seenExits.add(id);
    return true;
  });
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
    const rows = actions.filter(
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
              h(
                "td",
                { testid: "backtest-action" },
                l.kind === "trigger"
                  ? h("code", {}, String(l.external_event ?? "—"))
                  : [l.kind === "list_add" ? "add to list " : "remove from list ", h("code", {}, String(l.list))],
              ),
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
              h("td", {}, bad ? h("span", { class: "pill bad", title: l.undeliverable || "" }, `undeliverable: ${l.undeliverable || "no contact key"}`) : h("span", { class: "pill ok" }, l.kind === "trigger" ? "would trigger" : "would send")),
            );
          })
        : [h("tr", {}, h("td", { colspan: 6, class: "empty" }, actions.length ? "No match for this filter." : "Nobody would have been triggered in this period."))]),
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
        h("thead", {}, h("tr", {}, ["When", "Contact", "User", "External event / list", "Data (variables)", ""].map((t) => h("th", {}, t)))),
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

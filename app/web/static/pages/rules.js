// The rules page: each rule with its status switch and funnel.

import { api, apiPath, exportYamlButton, loadConfig } from "../lib/api.js";
import { SERIES, bucketize, hbarChart, legend, stackedChart } from "../lib/charts.js";
import { clone, enc, fill, fmtN, h, isoZ, notice, toDate, toast } from "../lib/dom.js";
import { route } from "../lib/nav.js";
import { loadPeriod, periodLabel, periodPicker, periodRange, savePeriod } from "../lib/periods.js";
import { maxSequence, positionNote } from "../lib/positions.js";

const PERIOD_KEY = "emd.period";

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

export async function pageRules(ctx) {
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

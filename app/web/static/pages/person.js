// The person page: "why (not)?" for one person: identity, data, instances, deliveries.

import { api, apiPath, loadConfig } from "../lib/api.js";
import { byTimeDesc, deliveriesTable, deliveryFailed } from "../lib/deliveries-table.js";
import { enc, fill, fmtValue, h, notice, refreshRelativeTimes, spinner, timeCell } from "../lib/dom.js";
import { every, go } from "../lib/nav.js";
import { maxSequence, positionNote } from "../lib/positions.js";

const LOOKUPS = [
  { key: "userId", label: "userId" },
  { key: "anonymousId", label: "anonymousId" },
  { key: "primaryKey", label: "Primary key" },
];

export async function pagePerson(ctx) {
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
  for (const d of deliveries.filter((x) => (x.op === "list_add" || x.op === "list_remove") && !deliveryFailed(x)).slice(0, 3)) {
    add("ok", h("b", {}, d.op === "list_add" ? "Added to list " : "Removed from list "), h("code", {}, String(d.list)), d.rule ? ` by “${d.rule}”` : "", " at ", timeCell(d.at));
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
      next && next.heldUntil ? ["; waiting out the lateness window: it ", h("b", { testid: "verdict-held" }, "fires at "), timeCell(next.heldUntil), " unless a late event moves it"] : "",
    );
  }
  const inProgress = new Set(instances.map((i) => i.rule));
  const exitOps = ["trigger", "undeliverable", "list_add", "list_remove"];
  const triggeredRules = new Set(deliveries.filter((d) => exitOps.includes(d.op)).map((d) => d.rule));
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
          h("dt", {}, "Lateness window"),
          h("dd", { testid: "person-lateness" }, p.lateness ? ["open until ", timeCell(p.lateness.until), ` (${p.lateness.inputs} recent event(s) kept in event-time order)`] : h("span", { class: "muted" }, "closed")),
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
            h("td", { testid: "instance-next" }, i.next ? [h("div", {}, i.next.what), timeCell(i.next.at), i.next.note ? h("div", { class: "small muted", testid: "instance-held" }, i.next.note) : null] : h("span", { class: "muted" }, "—")),
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

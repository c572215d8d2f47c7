// The rule editor: the rule's fields, the conditions table, save, delete, backtest.

import { api, apiPath, errorNotice, loadConfig } from "../lib/api.js";
import { backtestCard } from "../lib/backtest.js";
import { catalogPicker } from "../lib/catalog.js";
import { clone, enc, fill, h, intOrRaw, notice, toast } from "../lib/dom.js";
import { multiSelect } from "../lib/multiselect.js";
import { go, revertButton, setHashQuietly, state } from "../lib/nav.js";
import { ProblemRegistry, fieldError, makeValidator } from "../lib/problems.js";

const COND_TYPES = ["start", "step", "exclude", "exit"];
const COND_ON = ["any", "track", "page", "screen", "identify", "group", "alias"];
// An exit's actions besides the trigger: a contact list (id or name) each.
const LIST_ACTIONS = [
  { key: "add_to_list", label: "Add to list", testid: "cond-add-list-picker" },
  { key: "remove_from_list", label: "Remove from list", testid: "cond-remove-list-picker" },
];
const asText = (v) => (v == null ? "" : String(v));

function condFromApi(c) {
  return {
    sequence: c.sequence == null ? "" : String(c.sequence),
    type: c.type || "step",
    on: c.on || "any",
    wait: c.wait == null ? "" : String(c.wait),
    within: c.within == null ? "" : String(c.within),
    match: c.match ?? "",
    trigger: asText(c.trigger),
    add_to_list: asText(c.add_to_list),
    remove_from_list: asText(c.remove_from_list),
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
  for (const { key } of LIST_ACTIONS) if (c.type === "exit" && c[key].trim()) out[key] = intOrRaw(c[key]);
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
      { sequence: "0", type: "start", on: "track", wait: "", within: "", match: "", trigger: "", add_to_list: "", remove_from_list: "", variables: [] },
      { sequence: "1", type: "exit", on: "any", wait: "1h", within: "", match: "", trigger: "", add_to_list: "", remove_from_list: "", variables: [] },
    ],
  };
}

export async function pageRuleEditor(ctx) {
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
    const cell = (key, input, shown = input) => {
      const msg = fieldError(`${loc}.${key}`);
      reg.add(`${loc}.${key}`, input, msg);
      return h("td", {}, shown, msg);
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
    const triggerPicker = catalogPicker(trigger, { account, kind: "events", testid: "cond-trigger-picker" });
    // The contact-list actions: one picker each, with its own message (its own location).
    const lists = LIST_ACTIONS.map(({ key, label, testid }) => {
      const input = text(key, {
        "aria-label": `${label} of condition ${i + 1}`,
        placeholder: c.type === "exit" ? "contact list id or name" : "exit only",
        disabled: c.type !== "exit",
        size: 12,
      });
      const picker = catalogPicker(input, { account, kind: "lists", testid });
      const msg = fieldError(`${loc}.${key}`);
      reg.add(`${loc}.${key}`, input, msg);
      return { input, picker, box: h("div", { class: "list-action" }, h("span", { class: "small muted" }, label), picker, msg) };
    });
    const type = select("type", COND_TYPES, { "aria-label": `Type of condition ${i + 1}` }, () => {
      for (const { input, picker } of [{ input: trigger, picker: triggerPicker }, ...lists]) {
        input.disabled = c.type !== "exit";
        input.placeholder = c.type !== "exit" ? "exit only" : input === trigger ? "external event id or name" : "contact list id or name";
        picker.refresh();
      }
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
    const sub = h("tr", { class: "sub", hidden: true }, h("td", { colspan: 10 }, rowMsg));
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
      cell("trigger", trigger, triggerPicker),
      h("td", { testid: "cond-lists" }, lists.map((l) => l.box)),
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
        : [h("tr", {}, h("td", { colspan: 10, class: "empty" }, "No conditions: add a start and an exit."))]),
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
          add_to_list: "",
          remove_from_list: "",
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
            ["Sequence", "Type", "data.type", "Wait time", "Within time", "Matching criteria", "Variables", "Trigger", "Contact lists", ""].map((t) =>
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
        h(
          "li",
          {},
          h("b", {}, "exit"),
          " (the last sequence) acts in Emarsys: triggers the external event, adds the contact to a contact list, removes it from one (any of them; at least one). Without matching criteria after its wait, with them on a matching event. List changes go before the trigger, so the automation it starts sees them.",
        ),
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

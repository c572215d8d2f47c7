// The data maps page: edit, validate as you type, save, export YAML.

import { api, apiPath, errorNotice, exportYamlButton, loadConfig } from "../lib/api.js";
import { catalogPicker } from "../lib/catalog.js";
import { enc, fill, h, intOrRaw, notice, toast } from "../lib/dom.js";
import { revertButton, state } from "../lib/nav.js";
import { ProblemRegistry, fieldError, makeValidator } from "../lib/problems.js";

const DATA_TYPES = ["string", "numeric", "boolean", "date", "datetime", "choice"];

function dmFromApi(dm) {
  return {
    name: dm.name ?? "",
    path: dm.path ?? "",
    type: dm.type ?? "string",
    field: dm.field == null ? "" : String(dm.field),
    max_length: dm.max_length == null ? "" : String(dm.max_length),
    choices: Object.entries(dm.choices || {}).map(([k, v]) => [k, String(v)]),
  };
}

function dmToApi(r) {
  const out = { name: r.name.trim(), path: r.path.trim(), type: r.type };
  const field = intOrRaw(r.field);
  if (field !== undefined) out.field = field;
  const maxLength = intOrRaw(r.max_length);
  if (maxLength !== undefined) out.max_length = maxLength;
  if (r.type === "choice") {
    out.choices = {};
    for (const [k, v] of r.choices) {
      if (String(k).trim() === "" && String(v).trim() === "") continue;
      out.choices[String(k).trim()] = intOrRaw(v) ?? "";
    }
  }
  return out;
}

function ruleLink(account, rules) {
  return (loc) => {
    const m = /^rules\[(\d+)\]/.exec(loc);
    const rule = m && rules[Number(m[1])];
    return rule ? `#/${enc(account)}/rule/${enc(rule.name)}` : null;
  };
}

export async function pageDataMaps(ctx) {
  const account = ctx.account;
  let { version, config } = await loadConfig(account);
  if (!ctx.alive()) return;

  let rows = config.data_maps.map(dmFromApi);
  let savedJson = JSON.stringify(rows.map(dmToApi));
  let lastProblems = [];
  const isDirty = () => JSON.stringify(rows.map(dmToApi)) !== savedJson;

  const general = h("div");
  const reg = new ProblemRegistry(general, {
    title: "Problems elsewhere in the config (they block saving too):",
    link: ruleLink(account, config.rules),
  });
  const status = h("span", { class: "vstatus", testid: "validation-status" }, `Version ${version ?? "?"}`);
  const dirtyMark = h("span", { class: "dirty-mark", hidden: true, testid: "dirty" }, "● Unsaved changes");
  const result = h("div", { testid: "save-result" });
  const tbody = h("tbody");

  const buildBody = () => ({ data_maps: rows.map(dmToApi), rules: config.rules });
  const validator = makeValidator(account, buildBody, status, (problems) => {
    lastProblems = problems;
    reg.show(problems, (loc) => (loc.startsWith("data_maps") ? loc : null));
  });

  const changed = () => {
    dirtyMark.hidden = !isDirty();
    fill(result);
    validator.schedule();
  };

  const cellWith = (loc, input, extra, shown = input) => {
    const msg = fieldError(loc);
    reg.add(loc, input, msg);
    return h("td", {}, shown, extra, msg);
  };

  function choicesEditor(r, loc) {
    const list = h("div", { class: "choices", testid: "dm-choices" });
    const draw = () => {
      fill(list,
        h("div", { class: "hint" }, "Event value → Emarsys choice id"),
        r.choices.map((pair, k) =>
          h(
            "div",
            { class: "pair" },
            h("input", {
              value: pair[0],
              placeholder: "value, e.g. true",
              class: "mono",
              testid: "dm-choice-key",
              "aria-label": "Choice value",
              oninput: (e) => {
                pair[0] = e.target.value;
                changed();
              },
            }),
            h("input", {
              value: pair[1],
              placeholder: "id",
              inputmode: "numeric",
              testid: "dm-choice-id",
              "aria-label": "Emarsys choice id",
              oninput: (e) => {
                pair[1] = e.target.value;
                changed();
              },
            }),
            h(
              "button",
              {
                type: "button",
                class: "icon small",
                title: "Remove this choice",
                "aria-label": "Remove this choice",
                testid: "dm-choice-remove",
                onclick: () => {
                  r.choices.splice(k, 1);
                  draw();
                  changed();
                },
              },
              "✕",
            ),
          ),
        ),
        h(
          "button",
          {
            type: "button",
            class: "small",
            testid: "dm-choice-add",
            onclick: () => {
              r.choices.push(["", ""]);
              draw();
              changed();
              const keys = list.querySelectorAll("[data-testid=dm-choice-key]");
              keys[keys.length - 1].focus();
            },
          },
          "+ Choice",
        ),
      );
    };
    draw();
    const msg = fieldError(`${loc}.choices`);
    reg.add(`${loc}.choices`, null, msg);
    return h("td", {}, list, msg);
  }

  function rowEl(r, i) {
    const loc = `data_maps[${i}]`;
    const text = (key, attrs) =>
      h("input", {
        value: r[key],
        testid: `dm-${key.replace("_", "-")}`,
        oninput: (e) => {
          r[key] = e.target.value;
          changed();
        },
        ...attrs,
      });
    const type = h(
      "select",
      {
        testid: "dm-type",
        "aria-label": `Data type of data map ${i + 1}`,
        onchange: (e) => {
          r.type = e.target.value;
          if (r.type === "choice" && !r.choices.length) r.choices.push(["", ""]);
          drawRows();
          reg.show(lastProblems, (l) => (l.startsWith("data_maps") ? l : null));
          changed();
        },
      },
      DATA_TYPES.map((t) => h("option", { value: t }, t)),
    );
    type.value = r.type;
    const field = text("field", { "aria-label": `Emarsys field of data map ${i + 1}`, placeholder: "search or id", size: 10 });
    const rowMsg = fieldError(loc);
    reg.add(loc, null, rowMsg);
    return h(
      "tr",
      { testid: "dm-row", "data-name": r.name },
      cellWith(`${loc}.name`, text("name", { "aria-label": `Name of data map ${i + 1}`, class: "mono", placeholder: "e.g. coupon" }), rowMsg),
      cellWith(`${loc}.path`, text("path", { "aria-label": `JSON path of data map ${i + 1}`, class: "mono", placeholder: "properties.coupon" })),
      cellWith(`${loc}.type`, type),
      cellWith(`${loc}.field`, field, null, catalogPicker(field, { account, kind: "fields", testid: "dm-field-picker" })),
      cellWith(`${loc}.max_length`, text("max_length", { "aria-label": `Max length of data map ${i + 1}`, inputmode: "numeric", placeholder: "—", size: 6 })),
      r.type === "choice" ? choicesEditor(r, loc) : h("td", { class: "muted" }, "—"),
      h(
        "td",
        { class: "tight" },
        h(
          "button",
          {
            type: "button",
            class: "icon small danger",
            title: "Remove this data map",
            "aria-label": `Remove data map ${r.name || i + 1}`,
            testid: "dm-remove",
            onclick: () => {
              rows.splice(i, 1);
              lastProblems = [];
              drawRows();
              changed();
            },
          },
          "✕",
        ),
      ),
    );
  }

  function drawRows() {
    reg.clear();
    fill(tbody,
      ...(rows.length ? rows.map(rowEl) : [h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No data maps yet."))]),
    );
  }

  async function save() {
    validator.cancel();
    saveBtn.disabled = true;
    validator.setStatus("busy", "Saving…");
    try {
      const res = await api("PUT", apiPath(account, "/config"), buildBody());
      version = res.version;
      config = res.config || config;
      rows = (config.data_maps || []).map(dmFromApi);
      savedJson = JSON.stringify(rows.map(dmToApi));
      lastProblems = [];
      drawRows();
      reg.show([]);
      dirtyMark.hidden = true;
      validator.setStatus("ok", `✓ Saved: version ${version ?? "?"}`);
      fill(result, notice("ok", `Saved as version ${version ?? "?"}. Every worker applies it within seconds.`));
      toast("Data maps saved", "ok");
    } catch (err) {
      if (err.problems.length) {
        lastProblems = err.problems;
        reg.show(err.problems, (loc) => (loc.startsWith("data_maps") ? loc : null));
        validator.setStatus("bad", `${err.problems.length} problem(s)`);
        fill(result, notice("bad", `Not saved: ${err.message}. The fields with problems are marked in red.`));
      } else {
        validator.setStatus("bad", "Not saved");
        fill(result, errorNotice(err));
      }
    } finally {
      saveBtn.disabled = false;
    }
  }

  const saveBtn = h("button", { type: "button", class: "primary", testid: "save-datamaps", onclick: save }, "Save data maps");
  const addBtn = h(
    "button",
    {
      type: "button",
      testid: "dm-add",
      onclick: () => {
        rows.push({ name: "", path: "", type: "string", field: "", max_length: "", choices: [] });
        drawRows();
        changed();
        const names = tbody.querySelectorAll("[data-testid=dm-name]");
        names[names.length - 1].focus();
      },
    },
    "+ Add data map",
  );
  const revertBtn = revertButton();

  drawRows();
  state.leaveGuard = isDirty;
  state.onSave = save;

  fill(ctx.main,
    h(
      "div",
      { class: "page-head" },
      h(
        "div",
        {},
        h("h1", {}, "Data maps"),
        h(
          "div",
          { class: "sub" },
          "Named values read from every event (a dotted JSON path), converted to their type; with a field, written to that Emarsys contact field. Primary key: ",
          h("code", {}, config.primary_key || "?"),
        ),
      ),
      exportYamlButton(account),
    ),
    general,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "edit", testid: "datamaps-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", {}, "Name"),
            h("th", {}, "JSON path"),
            h("th", {}, "Data type"),
            h("th", {}, "Field to update"),
            h("th", {}, "Max length"),
            h("th", {}, "Choices"),
            h("th", { class: "tight" }, h("span", { class: "muted" }, "")),
          ),
        ),
        tbody,
      ),
    ),
    h("div", { class: "toolbar", style: "margin-top:10px" }, addBtn),
    result,
    h("div", { class: "sticky-actions" }, saveBtn, revertBtn, status, dirtyMark, h("span", { class: "muted small" }, "Ctrl+S saves")),
  );
}

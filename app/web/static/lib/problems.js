// Validation messages next to the fields they name, and debounced validation as you type.

import { api, apiPath } from "./api.js";
import { fill, h, notice, spinner } from "./dom.js";

const VALIDATE_DELAY_MS = 300;

// ---------------------------------------------------------------------------- problems

function parentLocation(loc) {
  if (!loc) return null;
  const m = /^(.*?)(\.[^.[\]]+|\[[^\]]*\])$/.exec(loc);
  return m ? m[1] : "";
}

function caretView(text, column) {
  const i = Math.min(Math.max(0, column - 1), text.length);
  let j = i + 1;
  // A name as FQL reads it: dashes, [N] indexes and backslash escapes (first\ name) included.
  if (/[\w.$\\-]/.test(text[i] || "")) {
    j = i;
    while (j < text.length && /[\w.$[\]\\-]/.test(text[j])) j += text[j] === "\\" ? 2 : 1;
    j = Math.min(Math.max(j, i + 1), text.length);
  }
  return h(
    "span",
    { class: "fql-src", testid: "match-caret", "aria-hidden": "true" },
    text.slice(0, i),
    h("mark", {}, text.slice(i, j) || " "),
    text.slice(j),
  );
}

/** Field messages keyed by location (``rules[0].conditions[1].match``); a problem goes to
 * the closest registered location, else to the general list. */
export class ProblemRegistry {
  constructor(generalEl, { title = "Problems", link = null } = {}) {
    this.fields = new Map();
    this.generalEl = generalEl;
    this.title = title;
    this.link = link;
    this.afterShow = null;
  }

  clear() {
    this.fields.clear();
  }

  add(location, input, msgEl) {
    this.fields.set(location, { input, msgEl });
  }

  /** ``relative(loc)`` maps an API location to a registry one, or null for "elsewhere". */
  show(problems, relative = (loc) => loc) {
    for (const { input, msgEl } of this.fields.values()) {
      fill(msgEl);
      if (input) input.removeAttribute("aria-invalid");
    }
    const general = [];
    for (const p of problems || []) {
      const loc = relative(p.location || "");
      if (loc == null) {
        general.push(p);
        continue;
      }
      let at = loc;
      while (at != null && !this.fields.has(at)) at = parentLocation(at);
      if (at == null) {
        general.push(p);
        continue;
      }
      const target = this.fields.get(at);
      const rest = at === loc ? "" : loc.slice(at.length).replace(/^\./, "");
      const line = h("div", {}, rest ? [h("code", {}, rest), ": "] : null, p.message);
      const col = /\bcolumn (\d+)\b/.exec(p.message || "");
      if (col && target.input && typeof target.input.value === "string" && target.input.value) {
        line.append(caretView(target.input.value, Number(col[1])));
      }
      target.msgEl.append(line);
      if (target.input) target.input.setAttribute("aria-invalid", "true");
    }
    if (this.generalEl) {
      fill(this.generalEl,
        general.length
          ? notice(
              "bad",
              h("strong", {}, this.title),
              h(
                "ul",
                { testid: "general-problems" },
                general.map((p) => {
                  const href = this.link ? this.link(p.location || "") : null;
                  const where = p.location ? h("code", {}, p.location) : null;
                  return h("li", {}, href ? h("a", { href }, where) : where, " ", p.message);
                }),
              ),
            )
          : "",
      );
    }
    if (this.afterShow) this.afterShow();
    return general;
  }
}

export function fieldError(location) {
  return h("div", { class: "field-error", testid: "field-error", "data-location": location, "aria-live": "polite" });
}

/** Debounced POST /config/validate; ``onResult(problems)`` gets [] when valid. */
export function makeValidator(account, buildBody, statusEl, onResult) {
  let timer = null;
  let seq = 0;
  const setStatus = (kind, text) => {
    statusEl.className = `vstatus ${kind}`;
    fill(statusEl, kind === "busy" ? spinner() : "", kind === "busy" ? " " : "", text);
  };
  const run = async () => {
    const mine = ++seq;
    let problems;
    try {
      const res = await api("POST", apiPath(account, "/config/validate"), buildBody());
      problems = res && res.valid === false ? res.problems || [] : [];
    } catch (err) {
      if (mine !== seq) return;
      if (err.problems && err.problems.length) problems = err.problems;
      else {
        setStatus("bad", `Could not validate: ${err.message}`);
        return;
      }
    }
    if (mine !== seq) return;
    setStatus(problems.length ? "bad" : "ok", problems.length ? `${problems.length} problem(s)` : "✓ Valid");
    onResult(problems);
  };
  return {
    schedule() {
      clearTimeout(timer);
      setStatus("busy", "Checking…");
      timer = setTimeout(run, VALIDATE_DELAY_MS);
    },
    now: run,
    cancel() {
      clearTimeout(timer);
      seq++;
    },
    setStatus,
  };
}

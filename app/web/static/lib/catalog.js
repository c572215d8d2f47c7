// The account's Emarsys catalog (contact fields, external events, contact lists) as
// pickers: choose "E-Mail" instead of typing 3. The worker keeps each list a few minutes;
// here each page render asks once per kind. An id the account does not have is a warning
// next to the field, never an error: the catalog may be unreachable, and the server's
// validation stays the judge of what can be saved.
//
// Use: wrap an <input> you own (its value, your "input" handler) with
//   catalogPicker(input, { account, kind: "fields" | "events" | "lists", testid })
// and put the returned element where the input was. Picking an entry writes its id into
// the input and fires "input" on it, so your handler sees the change as if typed.

import { api, apiPath } from "./api.js";
import { fill, h } from "./dom.js";
import { state } from "./nav.js";

const KINDS = {
  fields: { noun: "field", byName: false },
  events: { noun: "external event", byName: true },
  lists: { noun: "contact list", byName: true },
};
const MAX_OPTIONS = 60;

const loaded = new Map(); // "seq account kind" -> Promise<{items, error}>

/** The account's ``kind`` list as ``{items: [{id, name, type?}], error: null}``, or
 * ``{items: null, error: "why"}`` when it cannot be read. Never rejects. */
export function loadCatalog(account, kind) {
  const key = `${state.seq} ${account} ${kind}`;
  if (!loaded.has(key)) {
    for (const k of loaded.keys()) if (!k.startsWith(`${state.seq} `)) loaded.delete(k);
    loaded.set(
      key,
      api("GET", apiPath(account, `/emarsys/${kind}`)).then(
        (res) => ({ items: (res && res[kind]) || [], error: null }),
        (err) => ({ items: null, error: (err && err.message) || String(err) }),
      ),
    );
  }
  return loaded.get(key);
}

/** The entry ``value`` names (an id, or for events and lists a name as the sink resolves
 * it: exact, else the one case-insensitive match); "missing" when there is none; null
 * when there is nothing to check. */
export function findEntry(items, value, kind) {
  const text = String(value ?? "").trim();
  if (!text || !items) return null;
  if (/^\d+$/.test(text)) return items.find((e) => e.id === Number(text)) || "missing";
  if (!KINDS[kind].byName) return null; // not an id: the validation says so
  const exact = items.find((e) => e.name === text);
  if (exact) return exact;
  const folded = items.filter((e) => e.name.toLowerCase() === text.toLowerCase());
  return folded.length === 1 ? folded[0] : "missing";
}

let pickers = 0;
let current = null; // the open picker: { input, list, close }

// A page scroll would leave the open (fixed-position) list behind: close it instead. Only
// a scroll that moves the input counts (the document, or a box around it): an input
// scrolls its own text sideways as it fills, and that must not close its list.
window.addEventListener(
  "scroll",
  (ev) => {
    if (!current) return;
    const t = ev.target;
    const movesInput = t === document || (t instanceof Node && t !== current.input && t.contains(current.input));
    if (movesInput && !current.list.contains(t)) current.close();
  },
  true,
);

/** Decorates ``input`` with a dropdown of the account's ``kind`` by name and a note that
 * names the chosen entry or warns that the account has none; see the top of this file. */

export function catalogPicker(input, { account, kind, testid }) {
  const spec = KINDS[kind];
  const listId = `catalog-picker-${++pickers}`;
  const list = h("ul", { class: "picker-list", role: "listbox", id: listId, hidden: true, testid: "catalog-options" });
  const note = h("div", { class: "picker-note", testid: "catalog-note", "aria-live": "polite" });
  const wrap = h("div", { class: "picker", testid }, input, list, note);
  let items = null;
  let error = null;
  let shown = [];
  let active = -1;
  let typed = false; // filter only by what was typed since the list opened
  let picking = false; // the "input" event of a pick does not reopen the list
  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-controls", listId);
  input.setAttribute("aria-expanded", "false");
  input.setAttribute("autocomplete", "off");

  function describe() {
    const value = input.value.trim();
    note.className = "picker-note";
    if (input.disabled || !value) return fill(note);
    if (error) {
      note.classList.add("muted");
      return fill(note, `Not checked: the account's Emarsys ${spec.noun}s are unavailable (${error})`);
    }
    const found = findEntry(items, value, kind);
    if (found === "missing") {
      note.classList.add("warn");
      return fill(note, `⚠ This Emarsys account has no ${spec.noun} ${/^\d+$/.test(value) ? value : `“${value}”`}`);
    }
    if (!found) return fill(note);
    note.classList.add("ok");
    return fill(note, found.name, found.type ? ` · ${found.type}` : "", String(found.id) !== value ? ` · id ${found.id}` : "");
  }

  // Fixed, so no scrolling table clips it; it follows the input while open, since the
  // table re-lays out under it (validation messages appear as you type).
  function place() {
    if (list.hidden || !input.isConnected) return;
    requestAnimationFrame(place);
    const r = input.getBoundingClientRect();
    list.style.left = `${Math.round(r.left)}px`;
    list.style.top = `${Math.round(r.bottom + 2)}px`;
    list.style.minWidth = `${Math.max(240, Math.round(r.width))}px`;
  }

  function render() {
    const q = typed ? input.value.trim().toLowerCase() : "";
    const all = items || [];
    const matching = q ? all.filter((e) => e.name.toLowerCase().includes(q) || String(e.id).includes(q)) : all;
    shown = matching.slice(0, MAX_OPTIONS);
    active = Math.min(active, shown.length - 1);
    fill(
      list,
      items == null
        ? h("li", { class: "muted" }, error ? `Emarsys ${spec.noun}s unavailable: ${error}` : "Loading…")
        : shown.length
          ? shown.map((e, i) =>
              h(
                "li",
                {
                  role: "option",
                  id: `${listId}-${i}`,
                  testid: "catalog-option",
                  "data-id": e.id,
                  "aria-selected": String(i === active),
                  onmousedown: (ev) => ev.preventDefault(), // keep the focus in the input
                  onclick: () => pick(e),
                },
                h("span", { class: "name" }, e.name),
                h("span", { class: "muted small" }, ` ${e.id}${e.type ? ` · ${e.type}` : ""}`),
              ),
            )
          : h("li", { class: "muted" }, `No ${spec.noun} matches “${input.value.trim()}”`),
      matching.length > shown.length ? h("li", { class: "muted small" }, `… ${matching.length - shown.length} more: type to narrow`) : null,
    );
    if (active >= 0) input.setAttribute("aria-activedescendant", `${listId}-${active}`);
    else input.removeAttribute("aria-activedescendant");
  }

  function open() {
    if (input.disabled) return;
    if (!list.hidden) return render();
    typed = false;
    render();
    list.hidden = false;
    place();
    input.setAttribute("aria-expanded", "true");
    current = { input, list, close };
  }

  function close() {
    list.hidden = true;
    if (current && current.list === list) current = null;
    active = -1;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
  }

  function pick(entry) {
    input.value = String(entry.id);
    close();
    picking = true;
    try {
      input.dispatchEvent(new Event("input", { bubbles: true }));
    } finally {
      picking = false;
    }
  }

  input.addEventListener("focus", open);
  input.addEventListener("click", open);
  input.addEventListener("blur", close);
  input.addEventListener("input", () => {
    describe();
    if (!picking && document.activeElement === input) {
      active = -1;
      open();
      typed = true;
      render();
    }
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      if (list.hidden) open();
      const n = shown.length;
      if (n && ev.key === "ArrowDown") active = active < n - 1 ? active + 1 : 0;
      else if (n) active = active > 0 ? active - 1 : n - 1;
      render();
    } else if (ev.key === "Enter" && !list.hidden && active >= 0 && shown[active]) {
      ev.preventDefault();
      pick(shown[active]);
    } else if (ev.key === "Escape" && !list.hidden) {
      ev.stopPropagation();
      close();
    }
  });
  loadCatalog(account, kind).then((res) => {
    items = res.items;
    error = res.error;
    describe();
    if (!list.hidden) render();
  });
  wrap.refresh = describe;
  describe();
  return wrap;
}

// A dropdown of checkboxes (the variables of a condition).

import { h } from "./dom.js";

let openMulti = null;
document.addEventListener("click", (ev) => {
  if (openMulti && !openMulti.contains(ev.target)) openMulti.open = false;
});

export function multiSelect(options, selected, onChange, { testid, label }) {
  const summary = h("summary", { testid: `${testid}-summary`, "aria-label": label });
  const update = () => {
    summary.textContent = selected.length ? selected.join(", ") : "—";
    summary.title = selected.join(", ");
  };
  const all = [...options, ...selected.filter((v) => !options.includes(v))];
  const details = h(
    "details",
    { class: "multi", testid },
    summary,
    h(
      "div",
      { class: "options", role: "group", "aria-label": label },
      all.length
        ? all.map((o) =>
            h(
              "label",
              {},
              h("input", {
                type: "checkbox",
                value: o,
                checked: selected.includes(o),
                onchange: (e) => {
                  const i = selected.indexOf(o);
                  if (e.target.checked && i < 0) selected.push(o);
                  if (!e.target.checked && i >= 0) selected.splice(i, 1);
                  update();
                  onChange();
                },
              }),
              h("span", { class: options.includes(o) ? "mono" : "mono error" }, o),
            ),
          )
        : h("span", { class: "muted small" }, "No data maps"),
    ),
  );
  details.addEventListener("toggle", () => {
    if (details.open) {
      if (openMulti && openMulti !== details) openMulti.open = false;
      openMulti = details;
    }
  });
  details.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && details.open) {
      e.stopPropagation();
      details.open = false;
      summary.focus();
    }
  });
  update();
  return details;
}

// Period pickers (last 24 h, 7 days, 30 days, custom) kept per tab in sessionStorage.

import { fmtTime, h, isoZ, localInputValue, toDate } from "./dom.js";

const PERIODS = [
  { kind: "24h", label: "Last 24 h", ms: 24 * 3600e3 },
  { kind: "7d", label: "7 days", ms: 7 * 24 * 3600e3 },
  { kind: "30d", label: "30 days", ms: 30 * 24 * 3600e3 },
  { kind: "custom", label: "Custom" },
];

// ---------------------------------------------------------------------------- periods

export function loadPeriod(key, fallback = "24h") {
  try {
    const p = JSON.parse(sessionStorage.getItem(key) || "null");
    if (p && PERIODS.some((x) => x.kind === p.kind)) return p;
  } catch {
    /* ignore */
  }
  return { kind: fallback };
}

export function savePeriod(key, p) {
  sessionStorage.setItem(key, JSON.stringify(p));
}

export function periodRange(p) {
  const now = new Date();
  if (p.kind === "custom") {
    const from = toDate(p.from) || new Date(now.getTime() - 24 * 3600e3);
    const to = toDate(p.to) || now;
    return from <= to ? { from, to } : { from: to, to: from };
  }
  const def = PERIODS.find((x) => x.kind === p.kind) || PERIODS[0];
  return { from: new Date(now.getTime() - def.ms), to: now };
}

export function periodLabel(p) {
  if (p.kind !== "custom") return (PERIODS.find((x) => x.kind === p.kind) || PERIODS[0]).label.toLowerCase();
  const r = periodRange(p);
  return `${fmtTime(r.from)} – ${fmtTime(r.to)}`;
}

/** Segmented buttons plus from/to inputs for "custom"; ``onChange(period)`` on a preset or
 * on Apply. With ``apply: false`` there is no Apply button: read ``el.current()`` instead. */
export function periodPicker(period, onChange, testid, { apply = true } = {}) {
  const range = periodRange(period);
  let selected = period.kind;
  const from = h("input", { type: "datetime-local", value: localInputValue(range.from), testid: `${testid}-from`, "aria-label": "From" });
  const to = h("input", { type: "datetime-local", value: localInputValue(range.to), testid: `${testid}-to`, "aria-label": "To" });
  const customPeriod = () =>
    from.value && to.value ? { kind: "custom", from: isoZ(new Date(from.value)), to: isoZ(new Date(to.value)) } : { kind: "custom" };
  const applyBtn = apply
    ? h("button", { type: "button", testid: `${testid}-apply`, onclick: () => from.value && to.value && onChange(customPeriod()) }, "Apply")
    : null;
  const custom = h("span", { class: "toolbar", style: "margin:0", hidden: period.kind !== "custom" }, from, "–", to, applyBtn);
  const buttons = PERIODS.map((p) =>
    h(
      "button",
      {
        type: "button",
        "aria-pressed": String(p.kind === period.kind),
        testid: `${testid}-${p.kind}`,
        onclick: (ev) => {
          selected = p.kind;
          for (const b of buttons) b.setAttribute("aria-pressed", String(b === ev.currentTarget));
          custom.hidden = p.kind !== "custom";
          if (p.kind === "custom") from.focus();
          else onChange({ kind: p.kind });
        },
      },
      p.label,
    ),
  );
  const el = h("span", { class: "toolbar", style: "margin:0" }, h("span", { class: "segmented", role: "group", "aria-label": "Period", testid }, buttons), custom);
  el.current = () => (selected === "custom" ? customPeriod() : { kind: selected });
  return el;
}

// SVG charts drawn from numbers (no library): horizontal funnel bars, stacked bars over time.

import { fill, fmtN, h, s, toDate } from "./dom.js";

export const SERIES = [
  { key: "started", label: "Started" },
  { key: "excluded", label: "Excluded" },
  { key: "expired", label: "Expired" },
  { key: "triggered", label: "Triggered" },
];

// ---------------------------------------------------------------------------- charts

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function truncate(text, n) {
  text = String(text ?? "");
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

/** Horizontal bars: items [{label, sub, value, cls}]. */
export function hbarChart(items, { testid, ariaLabel } = {}) {
  const W = 560;
  const rowH = 36;
  const labelW = 210;
  const valueW = 56;
  const barW = W - labelW - valueW;
  const max = Math.max(1, ...items.map((i) => Number(i.value) || 0));
  const H = items.length * rowH + 4;
  const svg = s("svg", {
    class: "chart",
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    testid,
    "aria-label": ariaLabel || items.map((i) => `${i.label}: ${i.value}`).join(", "),
  });
  items.forEach((it, k) => {
    const y = k * rowH + 2;
    const value = Number(it.value) || 0;
    const w = value > 0 ? Math.max(3, (barW * value) / max) : 0;
    svg.append(
      s(
        "g",
        { class: "bar-row" },
        s("title", {}, `${it.label}${it.sub ? ` (${it.sub})` : ""}: ${value}`),
        s("text", { x: 0, y: y + 14, class: "label" }, truncate(it.label, 30)),
        it.sub ? s("text", { x: 0, y: y + 28 }, truncate(it.sub, 36)) : null,
        s("rect", { x: labelW, y: y + 6, width: barW, height: rowH - 14, rx: 3, class: "track" }),
        s("rect", {
          x: labelW,
          y: y + 6,
          width: w.toFixed(1),
          height: rowH - 14,
          rx: 3,
          class: `bar ${it.cls || "s-active"}`,
          testid: "bar",
          "data-value": value,
        }),
        s("text", { x: labelW + barW + 8, y: y + 22, class: "value" }, fmtN(value)),
      ),
    );
  });
  return svg;
}

/** Buckets of ``size`` ms over [from, to) summing ``keys`` of points {at, key: n}. */
export function bucketize(points, from, to, keys, { size } = {}) {
  const H = 3600e3;
  const span = Math.max(H, to - from);
  if (!size) size = span > 14 * 24 * H ? 24 * H : H;
  const start = Math.floor(from / size) * size;
  const n = Math.min(2000, Math.max(1, Math.ceil((to - start) / size)));
  const buckets = Array.from({ length: n }, (_, i) => ({
    at: new Date(start + i * size),
    values: Object.fromEntries(keys.map((k) => [k, 0])),
  }));
  for (const p of points) {
    const t = toDate(p.at);
    if (!t) continue;
    const i = Math.floor((t.getTime() - start) / size);
    if (i < 0 || i >= n) continue;
    for (const k of keys) buckets[i].values[k] += Number(p[k]) || 0;
  }
  return { buckets, size };
}

/** Stacked vertical bars per bucket; series [{key, label, cls}]. */
export function stackedChart(buckets, series, { size, testid, height = 170, width = 720, empty = "Nothing in this period" } = {}) {
  const W = width;
  const H = height;
  const L = 40;
  const R = 8;
  const T = 10;
  const B = 26;
  const plotW = W - L - R;
  const plotH = H - T - B;
  const n = buckets.length;
  const totals = buckets.map((b) => series.reduce((a, sr) => a + (b.values[sr.key] || 0), 0));
  const peak = Math.max(0, ...totals);
  const max = niceMax(peak);
  const step = plotW / n;
  const bw = Math.max(1, step * 0.78);
  const daily = size >= 24 * 3600e3;
  const svg = s("svg", {
    class: "chart",
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    testid,
    "aria-label": series
      .map((sr) => `${sr.label} ${buckets.reduce((a, b) => a + (b.values[sr.key] || 0), 0)}`)
      .join(", "),
  });
  const ticks = max <= 1 ? [0, max] : [0, max / 2, max];
  for (const t of ticks) {
    const y = T + plotH - (plotH * t) / max;
    svg.append(
      s("line", { x1: L, x2: W - R, y1: y, y2: y, class: t === 0 ? "axis" : "grid" }),
      Number.isInteger(t) ? s("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, fmtN(t)) : null,
    );
  }
  const every_ = Math.max(1, Math.ceil(n / 8));
  buckets.forEach((b, i) => {
    const x = L + i * step + (step - bw) / 2;
    const when = daily
      ? b.at.toLocaleDateString(undefined, { month: "short", day: "numeric" })
      : b.at.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
    const g = s(
      "g",
      { class: "bucket" },
      s(
        "title",
        {},
        `${when}${daily ? "" : " (hour)"}: ${series.map((sr) => `${sr.label.toLowerCase()} ${b.values[sr.key] || 0}`).join(", ")}`,
      ),
    );
    let y = T + plotH;
    for (const sr of series) {
      const v = b.values[sr.key] || 0;
      if (!v) continue;
      const hgt = (plotH * v) / max;
      y -= hgt;
      g.append(
        s("rect", {
          x: x.toFixed(1),
          y: y.toFixed(1),
          width: bw.toFixed(1),
          height: Math.max(0.5, hgt).toFixed(1),
          class: `bar ${sr.cls || `s-${sr.key}`}`,
          "data-series": sr.key,
          "data-value": v,
        }),
      );
    }
    // An invisible full-height target makes the tooltip easy to hit.
    g.append(s("rect", { x: L + i * step, y: T, width: step, height: plotH, fill: "transparent" }));
    svg.append(g);
    if (i % every_ === 0) {
      const label = daily
        ? b.at.toLocaleDateString(undefined, { month: "short", day: "numeric" })
        : b.at.getHours() === 0 || i === 0
          ? b.at.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit" })
          : b.at.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
      svg.append(s("text", { x: L + i * step + step / 2, y: H - 8, "text-anchor": "middle" }, label));
    }
  });
  if (peak === 0) {
    svg.append(s("text", { x: L + plotW / 2, y: T + plotH / 2, "text-anchor": "middle", class: "label" }, empty));
  }
  return svg;
}

export function legend(series, totals, testid) {
  return h(
    "ul",
    { class: "legend", testid },
    series.map((sr) =>
      h(
        "li",
        { "data-series": sr.key },
        h("span", { class: `sw ${sr.cls || `s-${sr.key}`}`, "aria-hidden": "true" }),
        sr.label,
        totals ? h("b", { "data-testid": `total-${sr.key}` }, fmtN(totals[sr.key] ?? 0)) : null,
      ),
    ),
  );
}

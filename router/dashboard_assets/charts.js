/* Small SVG charts for the CascadeFlow Router dashboard: lines with a confidence band, stacked bars, and
   horizontal bars with whiskers. No dependencies; every text goes in through textContent. */
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const H = 240, M = { l: 60, r: 14, t: 14, b: 30 };
  let W = 640;  // the chart being drawn: as wide as its box, so text keeps its size at any width

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (parent) parent.appendChild(node);
    return node;
  }

  function label(parent, x, y, content, attrs) {
    const node = el("text", Object.assign({ x: x, y: y }, attrs || {}), parent);
    node.textContent = content;
    return node;
  }

  function tip(node, content) {
    el("title", {}, node).textContent = content;
  }

  function niceTicks(min, max, count) {
    if (!(max > min)) max = min + 1;
    const span = max - min, raw = span / count;
    const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((f) => f * magnitude).find((s) => span / s <= count) || 10 * magnitude;
    const ticks = [];
    for (let v = Math.floor(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(+v.toFixed(12));
    if (ticks[ticks.length - 1] < max) ticks.push(ticks[ticks.length - 1] + step);
    return ticks;
  }

  function frame(host, height, title) {
    host.textContent = "";
    W = Math.max(320, Math.round(host.clientWidth || 640));
    const svg = el("svg", { viewBox: `0 0 ${W} ${height}`, role: "img", class: "chart-svg" }, host);
    if (title) el("title", {}, svg).textContent = title;
    return svg;
  }

  function empty(svg, height, message) {
    label(svg, W / 2, height / 2, message || "no data in this range", { class: "empty", "text-anchor": "middle" });
  }

  /** A vertical scale and its grid lines with labels; returns the value-to-y function. */
  function yAxis(svg, lo, hi, height, format) {
    const ticks = niceTicks(lo, hi, 4);
    const top = ticks[ticks.length - 1], bottom = Math.min(lo, ticks[0]);
    const y = (v) => M.t + ((top - v) / (top - bottom || 1)) * (height - M.t - M.b);
    const axis = el("g", { class: "axis" }, svg);
    for (const v of ticks) {
      el("line", { x1: M.l, x2: W - M.r, y1: y(v), y2: y(v), class: v === 0 ? "grid zero" : "grid" }, axis);
      label(axis, M.l - 6, y(v) + 4, format(v), { "text-anchor": "end" });
    }
    return y;
  }

  /** Slots along the time axis with every few labels; returns the index-to-x function and the slot width. */
  function xAxis(svg, xs, height, format) {
    const slot = (W - M.l - M.r) / Math.max(xs.length, 1);
    const x = (i) => M.l + (i + 0.5) * slot;
    const axis = el("g", { class: "axis" }, svg);
    const every = Math.max(1, Math.ceil(xs.length / 8));
    xs.forEach((t, i) => {
      if (i % every === 0) label(axis, x(i), height - 10, format(t), { "text-anchor": "middle" });
    });
    return { x: x, slot: slot };
  }

  function runs(values) {
    const out = [];
    let current = [];
    values.forEach((v, i) => {
      if (v == null) {
        if (current.length) out.push(current);
        current = [];
      } else current.push(i);
    });
    if (current.length) out.push(current);
    return out;
  }

  /** Lines over time: o = {x, series: [{name, cls, values}], band: {cls, low, high, name}, yMin, yMax,
      xFormat, yFormat, tipFormat}. Null values are gaps. */
  function line(host, o) {
    const height = o.height || H;
    const svg = frame(host, height, o.title);
    const values = [];
    o.series.forEach((s) => s.values.forEach((v) => v != null && values.push(v)));
    if (o.band) o.band.low.concat(o.band.high).forEach((v) => v != null && values.push(v));
    if (!values.length) return empty(svg, height, o.empty);
    const lo = o.yMin != null ? o.yMin : Math.min(0, ...values);
    const hi = o.yMax != null ? o.yMax : Math.max(...values);
    const y = yAxis(svg, lo, hi > lo ? hi : lo + 1e-6, height, o.yFormat);
    const { x } = xAxis(svg, o.x, height, o.xFormat);
    if (o.band) {
      const both = o.band.low.map((v, i) => (v == null || o.band.high[i] == null ? null : v));
      for (const run of runs(both)) {
        const upper = run.map((i) => `${x(i)},${y(o.band.high[i])}`);
        const lower = run.slice().reverse().map((i) => `${x(i)},${y(o.band.low[i])}`);
        if (run.length === 1) {
          const i = run[0];
          el("line", { x1: x(i), x2: x(i), y1: y(o.band.low[i]), y2: y(o.band.high[i]), class: `whisker ${o.band.cls}` }, svg);
        } else el("polygon", { points: upper.concat(lower).join(" "), class: `band ${o.band.cls}` }, svg);
      }
    }
    if (o.fillBetween && o.series.length > 1) {
      const [upper, lower] = o.series;
      const both = upper.values.map((v, i) => (v == null || lower.values[i] == null ? null : v));
      for (const run of runs(both).filter((r) => r.length > 1)) {
        const points = run.map((i) => `${x(i)},${y(upper.values[i])}`)
          .concat(run.slice().reverse().map((i) => `${x(i)},${y(lower.values[i])}`));
        tip(el("polygon", { points: points.join(" "), class: `band ${o.fillBetween}` }, svg), o.fillName || "");
      }
    }
    for (const s of o.series) {
      const group = el("g", { class: `series ${s.cls}` }, svg);
      for (const run of runs(s.values)) {
        const d = run.map((i, k) => `${k ? "L" : "M"}${x(i).toFixed(1)},${y(s.values[i]).toFixed(1)}`).join("");
        el("path", { d: d, class: "line" }, group);
      }
      s.values.forEach((v, i) => {
        if (v == null) return;
        const dot = el("circle", { cx: x(i), cy: y(v), r: o.x.length > 40 ? 1.8 : 2.8, class: "dot" }, group);
        tip(dot, `${o.xFormat(o.x[i])} · ${s.name}: ${(o.tipFormat || o.yFormat)(v, i)}`);
      });
    }
    return svg;
  }

  /** Stacked bars over time: o = {x, stacks: [{name, cls, values}], xFormat, yFormat}. */
  function bars(host, o) {
    const height = o.height || H;
    const svg = frame(host, height, o.title);
    const totals = o.x.map((_, i) => o.stacks.reduce((sum, s) => sum + (s.values[i] || 0), 0));
    const hi = Math.max(0, ...totals);
    if (!(hi > 0)) return empty(svg, height, o.empty);
    const y = yAxis(svg, 0, hi, height, o.yFormat);
    const { x, slot } = xAxis(svg, o.x, height, o.xFormat);
    const width = Math.max(1, slot * 0.72);
    o.x.forEach((t, i) => {
      let base = 0;
      for (const s of o.stacks) {
        const v = s.values[i] || 0;
        if (v <= 0) continue;
        const rect = el("rect", { x: x(i) - width / 2, y: y(base + v), width: width,
          height: Math.max(0.5, y(base) - y(base + v)), class: `bar ${s.cls}` }, svg);
        tip(rect, `${o.xFormat(t)} · ${s.name}: ${o.yFormat(v)}`);
        base += v;
      }
    });
    return svg;
  }

  /** Horizontal bars: o = {rows: [{label, parts: [{value, cls, name}], whisker: [lo, hi], text}], xMax,
      xFormat}. */
  function hbars(host, o) {
    const rowHeight = 26, labelWidth = 190, textWidth = 150;
    const height = M.t + M.b + Math.max(o.rows.length, 1) * rowHeight;
    const svg = frame(host, height, o.title);
    if (!o.rows.length) return empty(svg, height, o.empty);
    const sums = o.rows.map((r) => r.parts.reduce((sum, p) => sum + Math.max(0, p.value || 0), 0));
    const highs = o.rows.map((r) => (r.whisker && r.whisker[1] != null ? r.whisker[1] : 0));
    const xMax = o.xMax != null ? o.xMax : Math.max(...sums, ...highs) || 1;
    const right = W - M.r - textWidth;
    const x = (v) => labelWidth + (Math.max(0, v) / xMax) * (right - labelWidth);
    const axis = el("g", { class: "axis" }, svg);
    for (const v of niceTicks(0, xMax, 4).filter((t) => t <= xMax * 1.0001)) {
      el("line", { x1: x(v), x2: x(v), y1: M.t, y2: height - M.b, class: v === 0 ? "grid zero" : "grid" }, axis);
      label(axis, x(v), height - 10, o.xFormat(v), { "text-anchor": "middle" });
    }
    o.rows.forEach((row, k) => {
      const top = M.t + k * rowHeight + 4, middle = top + (rowHeight - 8) / 2;
      const name = row.label.length > 28 ? row.label.slice(0, 27) + "…" : row.label;
      tip(label(svg, labelWidth - 8, middle + 4, name, { "text-anchor": "end", class: "row-label", "data-label": row.label }), row.label);
      let base = 0;
      for (const part of row.parts) {
        const v = Math.max(0, part.value || 0);
        if (v <= 0) continue;
        const rect = el("rect", { x: x(base), y: top, width: Math.max(0.5, x(base + v) - x(base)),
          height: rowHeight - 8, class: `bar ${part.cls}` }, svg);
        tip(rect, `${row.label} · ${part.name}: ${o.xFormat(v)}`);
        base += v;
      }
      if (row.whisker && row.whisker[0] != null) {
        const [lo, hi] = row.whisker;
        const g = el("g", { class: "whisker" }, svg);
        el("line", { x1: x(lo), x2: x(hi), y1: middle, y2: middle }, g);
        el("line", { x1: x(lo), x2: x(lo), y1: middle - 5, y2: middle + 5 }, g);
        el("line", { x1: x(hi), x2: x(hi), y1: middle - 5, y2: middle + 5 }, g);
      }
      label(svg, right + 8, middle + 4, row.text || "", { class: "row-value" });
    });
    return svg;
  }

  /** A legend of named swatches. */
  function legend(host, items) {
    host.textContent = "";
    for (const item of items) {
      const entry = document.createElement("span");
      entry.className = "legend-item";
      const swatch = document.createElement("span");
      swatch.className = `swatch ${item.cls}`;
      entry.appendChild(swatch);
      entry.appendChild(document.createTextNode(item.name));
      host.appendChild(entry);
    }
  }

  window.Charts = { line: line, bars: bars, hbars: hbars, legend: legend, niceTicks: niceTicks };
})();

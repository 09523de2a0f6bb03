// Charts drawn as SVG: line, scatter, histogram and bar charts with plain axes, enough for
// learning curves and the report's figures without a plotting library.

import { h, num } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";
// matplotlib's tab10, so the dashboard's colours match the HTML report's.
export const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];
export const HEAD_COLOURS = { target: PALETTE[0], replay: PALETTE[1] };
export const REFERENCE_COLOUR = "#333333";
export const HOLE_COLOUR = "#d62728";
// Beyond this many markers a browser slows down and the picture does not change: thin evenly.
const MAX_MARKERS = 3000;
const MARGIN = { top: 10, right: 14, bottom: 40, left: 58 };

function s(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) element.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) element.append(child);
  }
  return element;
}

function linearTicks(min, max, count = 5, minStep = 0) {
  const span = max - min;
  const rough = Math.max(span / count, minStep);
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const ratio = rough / magnitude;
  const step = magnitude * (ratio >= 7.5 ? 10 : ratio >= 3.5 ? 5 : ratio >= 1.5 ? 2 : 1);
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  const ticks = [];
  for (let value = Math.ceil(min / step) * step; value <= max + step * 1e-9; value += step) {
    ticks.push(Number(value.toFixed(decimals)));
  }
  return ticks;
}

function logTicks(min, max) {
  const low = Math.floor(Math.log10(min));
  const high = Math.ceil(Math.log10(max));
  // Within about two decades, 2× and 5× ticks keep the axis readable.
  const multipliers = Math.log10(max / min) <= 2.5 ? [1, 2, 5] : [1];
  const ticks = [];
  for (let power = low; power <= high; power += 1) {
    for (const m of multipliers) {
      const value = m * 10 ** power;
      if (value >= min && value <= max) ticks.push(value);
    }
  }
  return ticks.length >= 2 ? ticks : linearTicks(min, max, 4);
}

function tickLabel(value) {
  const magnitude = Math.abs(value);
  if (value !== 0 && (magnitude >= 1e5 || magnitude < 1e-3)) return value.toExponential(0);
  return String(Number(value.toPrecision(6)));
}

class Scale {
  constructor(min, max, from, to, log = false, integer = false) {
    this.log = log;
    this.integer = integer;
    this.min = min;
    this.max = max;
    this.from = from;
    this.to = to;
  }

  map(value) {
    const t = this.log
      ? (Math.log10(value) - Math.log10(this.min)) / (Math.log10(this.max) - Math.log10(this.min))
      : (value - this.min) / (this.max - this.min);
    return this.from + t * (this.to - this.from);
  }

  ticks() {
    if (this.log) return logTicks(this.min, this.max);
    return linearTicks(this.min, this.max, 5, this.integer ? 1 : 0);
  }
}

function extent(values, log, { pad = 0.05, includeZero = false } = {}) {
  let finite = values.filter((v) => Number.isFinite(v) && (!log || v > 0));
  if (includeZero) finite = [...finite, 0];
  if (!finite.length) return log ? [1, 10] : [0, 1];
  let min = Math.min(...finite);
  let max = Math.max(...finite);
  if (log) {
    const factor = min === max ? 2 : (max / min) ** pad;
    return [min / factor, max * factor];
  }
  if (min === max) {
    const half = Math.abs(min) * 0.1 || 1;
    return [min - half, max + half];
  }
  const margin = (max - min) * pad;
  return [includeZero && min === 0 ? 0 : min - margin, max + margin];
}

function thin(points) {
  if (points.length <= MAX_MARKERS) return points;
  const stride = points.length / MAX_MARKERS;
  return Array.from({ length: MAX_MARKERS }, (_, i) => points[Math.floor(i * stride)]);
}

/**
 * A figure with axes. series: [{label, color, points: [[x, y], ...], mode: "line" | "markers" |
 * "both" | "bars" (points are [x0, x1, height]), dash, radius}].
 * Options: title, xLabel, yLabel, logY, xRange and yRange [min, max], integerX (whole-number
 * ticks, as for epochs), diagonal (y = x), vline (x value),
 * marks [{x, y, color, label}] drawn as crosses, width, height, note (text under the title).
 */
export function plot(options) {
  const {
    title, xLabel = "", yLabel = "", series = [], logY = false, xRange, yRange, integerX = false,
    diagonal = false,
    vline, marks = [], width = 420, height = 280, note, className = "",
  } = options;
  const drawn = series.filter((item) => item.points && item.points.length);
  const figure = h("figure", { class: `chart ${className}`.trim() });
  if (title) figure.append(h("figcaption", {}, title));
  if (note) figure.append(h("div", { class: "chart-note" }, note));
  const svg = s("svg", {
    viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title || "chart",
    preserveAspectRatio: "xMidYMid meet",
  });
  figure.append(svg);
  if (!drawn.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, class: "empty", "text-anchor": "middle" },
      "no data yet"));
    return figure;
  }

  const xs = [];
  const ys = [];
  for (const item of drawn) {
    for (const point of item.points) {
      if (item.mode === "bars") {
        xs.push(point[0], point[1]);
        ys.push(point[2]);
      } else {
        xs.push(point[0]);
        ys.push(point[1]);
      }
    }
  }
  for (const mark of marks) {
    xs.push(mark.x);
    ys.push(mark.y);
  }
  const hasBars = drawn.some((item) => item.mode === "bars");
  // Large markers at the extremes need more room than a line's end does.
  const pad = drawn.some((item) => item.radius > 3) ? 0.1 : 0.05;
  let [xMin, xMax] = xRange || extent(xs, false, { pad: hasBars ? 0 : pad * 0.8 });
  let [yMin, yMax] = yRange || extent(ys, logY, { includeZero: hasBars, pad });
  if (diagonal) {
    xMin = yMin = Math.min(xMin, yMin);
    xMax = yMax = Math.max(xMax, yMax);
  }
  const x = new Scale(xMin, xMax, MARGIN.left, width - MARGIN.right, false, integerX);
  const y = new Scale(yMin, yMax, height - MARGIN.bottom, MARGIN.top, logY);
  const clipId = `clip-${Math.random().toString(36).slice(2)}`;
  svg.append(s("defs", {}, s("clipPath", { id: clipId }, s("rect", {
    x: MARGIN.left, y: MARGIN.top, width: width - MARGIN.left - MARGIN.right,
    height: height - MARGIN.top - MARGIN.bottom,
  }))));

  const grid = s("g", { class: "grid" });
  const axes = s("g", { class: "axes" });
  for (const tick of x.ticks()) {
    const px = x.map(tick);
    grid.append(s("line", { x1: px, x2: px, y1: MARGIN.top, y2: height - MARGIN.bottom }));
    axes.append(s("text", { x: px, y: height - MARGIN.bottom + 14, "text-anchor": "middle" },
      tickLabel(tick)));
  }
  for (const tick of y.ticks()) {
    const py = y.map(tick);
    grid.append(s("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: py, y2: py }));
    axes.append(s("text", { x: MARGIN.left - 5, y: py + 3.5, "text-anchor": "end" },
      tickLabel(tick)));
  }
  axes.append(s("path", {
    class: "frame",
    d: `M${MARGIN.left},${MARGIN.top}V${height - MARGIN.bottom}H${width - MARGIN.right}`,
  }));
  axes.append(s("text", {
    x: (MARGIN.left + width - MARGIN.right) / 2, y: height - 6, "text-anchor": "middle",
    class: "label",
  }, xLabel));
  axes.append(s("text", {
    x: 0, y: 0, "text-anchor": "middle", class: "label",
    transform: `translate(13 ${(MARGIN.top + height - MARGIN.bottom) / 2}) rotate(-90)`,
  }, yLabel));
  svg.append(grid, axes);

  const plotted = s("g", { "clip-path": `url(#${clipId})` });
  const annotations = s("g", {});
  if (diagonal) {
    plotted.append(s("line", {
      x1: x.map(xMin), y1: y.map(xMin), x2: x.map(xMax), y2: y.map(xMax),
      stroke: REFERENCE_COLOUR, "stroke-dasharray": "4 3", "stroke-width": 1,
    }));
  }
  if (vline !== undefined && vline >= xMin && vline <= xMax) {
    plotted.append(s("line", {
      x1: x.map(vline), x2: x.map(vline), y1: MARGIN.top, y2: height - MARGIN.bottom,
      stroke: REFERENCE_COLOUR, "stroke-dasharray": "4 3", "stroke-width": 1,
    }));
  }
  drawn.forEach((item, index) => {
    const colour = item.color || PALETTE[index % PALETTE.length];
    const valid = item.points.filter((p) => p.every(Number.isFinite) && (!logY || p[1] > 0));
    const mode = item.mode || "line";
    if (mode === "bars") {
      for (const [x0, x1, value] of valid) {
        const top = y.map(Math.max(value, logY ? y.min : 0));
        plotted.append(s("rect", {
          x: x.map(x0), width: Math.max(0.5, x.map(x1) - x.map(x0) - 0.5), y: top,
          height: Math.max(0, y.map(logY ? y.min : 0) - top), fill: colour, opacity: 0.85,
        }, s("title", {}, `${num(x0)} to ${num(x1)}: ${value}`)));
      }
      return;
    }
    if (mode === "line" || mode === "both") {
      const d = valid.map(([px, py], i) => `${i ? "L" : "M"}${x.map(px).toFixed(1)},${y.map(py).toFixed(1)}`);
      plotted.append(s("path", {
        d: d.join(""), fill: "none", stroke: colour, "stroke-width": item.width || 1.8,
        "stroke-dasharray": item.dash, "stroke-linejoin": "round",
      }));
    }
    if (mode === "markers" || mode === "both") {
      const radius = item.radius || (mode === "both" ? 2.6 : valid.length > 500 ? 1.6 : 2.8);
      const group = s("g", { fill: colour, "fill-opacity": mode === "markers" ? 0.6 : 1 });
      for (const [px, py] of thin(valid)) {
        group.append(s("circle", { cx: x.map(px).toFixed(1), cy: y.map(py).toFixed(1), r: radius },
          s("title", {}, `${item.label ? `${item.label}: ` : ""}(${num(px)}, ${num(py)})`)));
      }
      plotted.append(group);
    }
    if (item.annotate && item.label) {
      for (const [px, py] of valid) {
        // Near the right edge the label goes to the left of its point, to stay inside.
        const right = x.map(px) > width * 0.7;
        annotations.append(s("text", {
          x: x.map(px) + (right ? -7 : 7), y: y.map(py) - 6, class: "annotation",
          "text-anchor": right ? "end" : "start",
        }, item.label));
      }
    }
  });
  for (const mark of marks) {
    const px = x.map(mark.x);
    const py = y.map(mark.y);
    plotted.append(s("path", {
      d: `M${px - 5},${py - 5}L${px + 5},${py + 5}M${px - 5},${py + 5}L${px + 5},${py - 5}`,
      stroke: mark.color || HOLE_COLOUR, "stroke-width": 2.2,
    }, s("title", {}, mark.label || "")));
  }
  svg.append(plotted, annotations);

  const labelled = drawn.filter((item) => item.label);
  if (labelled.length) {
    figure.append(h("div", { class: "legend" }, labelled.map((item) => {
      const colour = item.color || PALETTE[drawn.indexOf(item) % PALETTE.length];
      return h("span", {}, h("i", { style: `background:${colour}` }), item.label);
    })));
  }
  return figure;
}

export function histogram(values, { bins = 20, color = "#7f7f7f", ...options } = {}) {
  const finite = values.filter(Number.isFinite);
  if (!finite.length) return plot({ ...options, series: [] });
  let min = Math.min(...finite);
  let max = Math.max(...finite);
  if (min === max) {
    min -= 0.5;
    max += 0.5;
  }
  const width = (max - min) / bins;
  const counts = new Array(bins).fill(0);
  for (const value of finite) counts[Math.min(bins - 1, Math.floor((value - min) / width))] += 1;
  const points = counts.map((count, i) => [min + i * width, min + (i + 1) * width, count]);
  return plot({ ...options, series: [{ mode: "bars", color, points }] });
}

/** Categories (element symbols, strategies) against one value each. */
export function barChart(labels, values, { title, yLabel = "", color = PALETTE[0], width = 420, height = 220 } = {}) {
  const figure = h("figure", { class: "chart" });
  if (title) figure.append(h("figcaption", {}, title));
  const band = (width - MARGIN.left - MARGIN.right) / Math.max(labels.length, 1);
  const longest = Math.max(...labels.map((label) => label.length), 1);
  // Labels wider than their bar are turned, and the chart grows to hold them.
  const turned = longest * 6 > band;
  const bottom = turned ? Math.min(130, 16 + longest * 4.6) : MARGIN.bottom;
  height += bottom - MARGIN.bottom;
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title || "bar chart" });
  figure.append(svg);
  const top = Math.max(...values, 0) || 1;
  const y = new Scale(0, top * 1.08, height - bottom, MARGIN.top);
  const grid = s("g", { class: "grid" });
  const axes = s("g", { class: "axes" });
  for (const tick of y.ticks()) {
    const py = y.map(tick);
    grid.append(s("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: py, y2: py }));
    axes.append(s("text", { x: MARGIN.left - 5, y: py + 3.5, "text-anchor": "end" }, tickLabel(tick)));
  }
  axes.append(s("path", {
    class: "frame", d: `M${MARGIN.left},${MARGIN.top}V${height - bottom}H${width - MARGIN.right}`,
  }));
  axes.append(s("text", {
    x: 0, y: 0, "text-anchor": "middle", class: "label",
    transform: `translate(13 ${(MARGIN.top + height - bottom) / 2}) rotate(-90)`,
  }, yLabel));
  svg.append(grid, axes);
  labels.forEach((label, i) => {
    const x0 = MARGIN.left + i * band + band * 0.15;
    const py = y.map(values[i]);
    svg.append(s("rect", {
      x: x0, width: band * 0.7, y: py, height: y.map(0) - py,
      fill: Array.isArray(color) ? color[i % color.length] : color,
    }, s("title", {}, `${label}: ${values[i]}`)));
    const lx = x0 + band * 0.35;
    const ly = height - bottom + 14;
    svg.append(s("text", turned
      ? { x: lx, y: ly, "text-anchor": "end", class: "tick", transform: `rotate(-35 ${lx} ${ly})` }
      : { x: lx, y: ly, "text-anchor": "middle", class: "tick" }, label));
  });
  return figure;
}

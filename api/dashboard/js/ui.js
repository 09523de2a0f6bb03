// Small DOM helpers: every string from the API goes in as text, never as HTML.

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key in element && typeof value !== "string") element[key] = value;
    else element.setAttribute(key, value === true ? "" : value);
  }
  append(element, ...children);
  return element;
}

/** Appends children, skipping null, undefined and false (DOM append would write "null"). */
export function append(element, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

export function replace(element, ...children) {
  element.replaceChildren();
  append(element, ...children);
  return element;
}

export function num(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (typeof value !== "number") return String(value);
  if (value === 0) return "0";
  const magnitude = Math.abs(value);
  if (magnitude >= 1e5 || magnitude < 1e-3) return value.toExponential(2);
  return Number(value.toPrecision(digits)).toString();
}

export function withUnit(value, unit, digits = 3) {
  const text = num(value, digits);
  return text === "—" || !unit ? text : `${text} ${unit}`;
}

export function when(iso) {
  if (!iso) return "—";
  const moment = new Date(iso);
  return moment.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
}

export function duration(startIso, endIso) {
  if (!startIso) return "—";
  const seconds = Math.max(0, ((endIso ? new Date(endIso) : new Date()) - new Date(startIso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

export const TERMINAL = new Set(["succeeded", "failed", "cancelled", "stopped_early"]);

export function stateBadge(state) {
  return h("span", { class: `state state-${state}`, dataset: { state } }, state);
}

export function progressBar(done, total) {
  const fraction = total ? Math.min(1, done / total) : 0;
  return h(
    "div",
    { class: "progress", title: `${done} of ${total} epochs` },
    h("div", { class: "bar", style: `width:${(fraction * 100).toFixed(1)}%` }),
    h("span", {}, `${done}/${total}`),
  );
}

/** Numbers are right-aligned: the columns from numericFrom on, or those listed in numeric. */
export function table(headers, rows, { numericFrom = 1, numeric, className = "" } = {}) {
  const isNumeric = (index) => (numeric ? numeric.includes(index) : index >= numericFrom);
  return h(
    "table",
    { class: className },
    h("thead", {}, h("tr", {}, headers.map((title) => h("th", {}, title)))),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h("tr", {}, row.map((cell, index) => h("td", { class: isNumeric(index) ? "num" : "" }, cell))),
      ),
    ),
  );
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

export function errorBox(message) {
  return h("div", { class: "alert bad", role: "alert" }, message);
}

export function shortId(id) {
  return id ? id.slice(0, 8) : "—";
}

export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs
      .filter(([, value]) => value !== undefined && value !== null && value !== "")
      .map(([name, value]) => h("div", {}, h("dt", {}, name), h("dd", {}, value))),
  );
}

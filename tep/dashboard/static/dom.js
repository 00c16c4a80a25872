// Building the page: elements from data, text always as text (never parsed as HTML).

const SVG_NS = "http://www.w3.org/2000/svg";

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function assign(element, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") element.className = value;
    else if (key === "text") element.textContent = String(value);
    else if (key === "for") element.htmlFor = value;
    else if (key === "data") Object.assign(element.dataset, value);
    else if (key === "attrs") for (const [name, v] of Object.entries(value)) element.setAttribute(name, v);
    else if (key === "on") for (const [name, fn] of Object.entries(value)) element.addEventListener(name, fn);
    else element[key] = value;
  }
}

/** An HTML element: `h("a", {href, class, text, data, attrs, on}, ...children)`. */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  assign(element, props);
  append(element, children);
  return element;
}

/** An SVG element; every prop but `class`, `text`, `data` and `on` is an attribute. */
export function s(tag, props = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "class") element.setAttribute("class", value);
    else if (key === "text") element.textContent = String(value);
    else if (key === "data") Object.assign(element.dataset, value);
    else if (key === "on") for (const [name, fn] of Object.entries(value)) element.addEventListener(name, fn);
    else element.setAttribute(key, String(value));
  }
  append(element, children);
  return element;
}

/** Replace every child of `element` with `children`. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** "12:03:04" today, "2026-01-02 12:03:04" otherwise (local time); "-" without a time. */
export function fmtTime(iso) {
  if (!iso) return "-";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, "0");
  const clock = `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}`;
  const today = new Date();
  if (when.toDateString() === today.toDateString()) return clock;
  return `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())} ${clock}`;
}

/** A time element showing `fmtTime`, the full ISO time on hover. */
export function timeCell(iso) {
  return h("time", { text: fmtTime(iso), title: iso || "", attrs: iso ? { datetime: iso } : {} });
}

/** "850 ms", "4.2 s", "3 m 05 s", "2 h 01 m"; "-" for nothing. */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "-";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} m ${String(Math.floor(seconds % 60)).padStart(2, "0")} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} m`;
}

/** Milliseconds from `start` to `end` (to now while `end` is not there yet). */
export function msBetween(start, end) {
  if (!start) return null;
  const from = Date.parse(start);
  const to = end ? Date.parse(end) : Date.now();
  return Number.isNaN(from) || Number.isNaN(to) ? null : Math.max(0, to - from);
}

/** A value as indented JSON in a <pre>. */
export function jsonBlock(value, className = "json") {
  return h("pre", { class: className, text: JSON.stringify(value, null, 2) });
}

/** A status badge (`data-status` for styling and tests). */
export function badge(status) {
  return h("span", { class: "badge", data: { status }, text: status });
}

/** A <dl> of label -> value pairs, skipping empty values. */
export function facts(pairs) {
  const list = h("dl", { class: "facts" });
  for (const [label, value] of pairs) {
    if (value === null || value === undefined || value === "") continue;
    list.append(h("dt", { text: label }), h("dd", {}, value));
  }
  return list;
}

/** `fn` at most once per `ms`, with the latest arguments (trailing call kept). */
export function throttle(fn, ms) {
  let timer = null;
  let pending = null;
  return (...args) => {
    pending = args;
    if (timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      const call = pending;
      pending = null;
      fn(...call);
    }, ms);
  };
}

/** `fn` once `ms` passed without another call. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

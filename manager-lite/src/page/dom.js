// DOM and text helpers of the admin page: elements are made with
// createElement and filled with text nodes only, never markup, so a node
// name or a progress message cannot inject anything.

export const $ = (id) => document.getElementById(id);

// An element with properties ("class", "data-*" as attributes, the rest as
// properties) and children (strings become text nodes).
export function el(tag, props, children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role") e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children || []) {
    if (c === null || c === undefined) continue;
    e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}

export function cell(text, cls) {
  return el("td", cls ? { class: cls } : {}, [String(text)]);
}

// Replaces a table's rows; an "empty" row spanning every column when none.
export function fill(table, rows, emptyText) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
  if (rows.length === 0) {
    const columns = table.tHead ? table.tHead.rows[0].cells.length : 1;
    body.appendChild(el("tr", { class: "empty" }, [el("td", { colSpan: columns }, [emptyText])]));
  }
}

export function count(n) {
  return Number(n || 0).toLocaleString("en-US");
}

// "4.8 MB", "12.0 KB", "310 B".
export function bytes(n) {
  if (n >= 1e6) return (n / 1e6).toFixed(1) + " MB";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + " KB";
  return n + " B";
}

// A duration in seconds as "45 s", "12 min", "3 h 5 min", "2 d 4 h".
export function duration(s) {
  s = Math.max(0, Math.floor(s));
  if (s < 60) return s + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min";
  const h = Math.floor(m / 60);
  if (h < 48) return h + " h" + (m % 60 ? " " + (m % 60) + " min" : "");
  const d = Math.floor(h / 24);
  return d + " d" + (h % 24 ? " " + (h % 24) + " h" : "");
}

// Seconds of a humantime wait ("1h", "30m", "1h 30m", "90s", "2days").
export function seconds(text) {
  const units = { s: 1, sec: 1, secs: 1, second: 1, seconds: 1, m: 60, min: 60, mins: 60,
    minute: 60, minutes: 60, h: 3600, hr: 3600, hrs: 3600, hour: 3600, hours: 3600,
    d: 86400, day: 86400, days: 86400, w: 604800, week: 604800, weeks: 604800 };
  let total = 0;
  const re = /(\d+)\s*([a-z]+)/g;
  let m;
  let any = false;
  while ((m = re.exec(String(text || "").toLowerCase())) !== null) {
    if (!(m[2] in units)) return null;
    total += Number(m[1]) * units[m[2]];
    any = true;
  }
  return any ? total : null;
}

// "3 min ago" from an RFC 3339 time.
export function ago(rfc3339) {
  const t = Date.parse(rfc3339);
  if (Number.isNaN(t)) return rfc3339 || "";
  return duration((Date.now() - t) / 1000) + " ago";
}

// Calls f once the browser has painted what was just rendered: the page
// notes its own timings (data-first-paint-ms, data-page-ms) with it, for
// the tests and the page benchmark.
export function afterPaint(f) {
  requestAnimationFrame(() => setTimeout(f, 0));
}

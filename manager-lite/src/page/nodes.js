// The node list, one page at a time from the API's search
// (GET /api/v1/nodes?offset=&limit=&sort=&q=&state=&arch=&label=&bin=&version=):
// the browser never holds more than a page of a 100,000-node fleet. And
// one node's view (#node/ID): per bin its target and why, and its history.

import { $, el, cell, fill, count, ago, afterPaint } from "./dom.js";
import { get, enc } from "./api.js";

export const PAGE = 50;
const HISTORY = 10;
const TYPING = 250; // ms of quiet before a typed search runs

const query = { q: "", state: "", arch: "", label: "", sort: "id", bin: "", version: "", running: "", offset: 0 };
let total = 0;
let names = new Map(); // sha256 → version
let onError = () => {};
let seq = 0;

export function setNames(map) {
  names = map;
}

function shown(sha) {
  if (!sha) return "(none)";
  return names.get(sha) || sha.slice(0, 12) + "…";
}

function path() {
  const p = ["limit=" + PAGE, "offset=" + query.offset, "sort=" + enc(query.sort)];
  for (const k of ["q", "state", "arch", "label", "bin", "version"]) {
    if (query[k]) p.push(k + "=" + enc(query[k]));
  }
  return "/api/v1/nodes?" + p.join("&");
}

// Loads the current page; renders it when it changed (or `force`).
// `asked`: when the operator asked for it (performance.now()), to note how
// long it took to show (data-page-ms).
export async function loadNodes(force, asked) {
  const mine = ++seq;
  const { body, headers, changed } = await get(path());
  if (mine !== seq) return;
  total = Number(headers.get("X-Total-Count") || body.length);
  if (changed || force) renderNodes(body);
  if (asked !== undefined) {
    afterPaint(() => {
      document.body.dataset.pageMs = String(Math.round(performance.now() - asked));
    });
  }
}

function renderNodes(page) {
  fill($("nodes"), page.map(nodeRow), "No node matches.");
  const first = page.length ? query.offset + 1 : 0;
  $("nodes-range").textContent = count(first) + "–" + count(query.offset + page.length) + " of " + count(total);
  $("nodes-prev").disabled = query.offset === 0;
  $("nodes-next").disabled = query.offset + page.length >= total;
  document.body.dataset.nodePages = String(Number(document.body.dataset.nodePages || 0) + 1);
}

function nodeRow(n) {
  const versions = Object.entries(n.bins || {}).map(([bin, sha]) =>
    el("li", { "data-bin": bin, title: sha || "" }, [bin + ": " + shown(sha)])
  );
  return el("tr", { "data-node-id": n.node_id, class: n.online ? "online" : "offline" }, [
    el("td", { class: "id" }, [el("a", { href: "#node/" + enc(n.node_id) }, [n.node_id])]),
    cell(n.node_name || "", "name"),
    cell(n.cpu_arch || "", "arch"),
    cell(n.online ? "online" : "offline", "state"),
    el("td", { class: "last-seen", title: n.last_seen }, [ago(n.last_seen)]),
    el("td", { class: "versions" }, [el("ul", {}, versions)]),
  ]);
}

// Runs the query from the first page, showing errors through onError.
function requery() {
  query.offset = 0;
  loadNodes(true, performance.now()).catch(onError);
}

// Lists the nodes of `bin` on `version` (a name, "*missing" or "*unknown").
export function showRunning(bin, version, label) {
  query.bin = bin;
  query.version = version;
  $("node-running-text").textContent = "running " + label;
  $("node-running").hidden = false;
  requery();
  $("node-list").scrollIntoView({ block: "start" });
  $("node-running-clear").focus();
}

export function startNodes(errors) {
  onError = errors;
  let timer = null;
  const typed = (key, input) => input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      query[key] = input.value.trim();
      requery();
    }, TYPING);
  });
  typed("q", $("node-q"));
  typed("label", $("node-label"));
  for (const [key, id] of [["state", "node-state"], ["arch", "node-arch"], ["sort", "node-sort"]]) {
    $(id).addEventListener("change", () => {
      query[key] = $(id).value;
      requery();
    });
  }
  $("node-running-clear").addEventListener("click", () => {
    query.bin = "";
    query.version = "";
    $("node-running").hidden = true;
    requery();
  });
  $("nodes-prev").addEventListener("click", () => turn(-PAGE));
  $("nodes-next").addEventListener("click", () => turn(PAGE));
  window.addEventListener("hashchange", () => showNode().catch(onError));
}

function turn(by) {
  query.offset = Math.max(0, query.offset + by);
  loadNodes(true, performance.now()).catch(onError);
}

export function clearNodes() {
  fill($("nodes"), [], "");
  $("nodes-range").textContent = "";
  total = 0;
}

// ---- one node's view

function viewedId() {
  const m = /^#node\/(.+)$/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}

// Shows (or refreshes, or hides) the node the address names.
export async function showNode() {
  const id = viewedId();
  const section = $("node-view");
  if (id === null) {
    section.hidden = true;
    return;
  }
  const opening = section.hidden || section.dataset.nodeId !== id;
  let view, changed, lists;
  try {
    ({ body: view, changed } = await get("/api/v1/nodes/" + enc(id)));
    lists = await Promise.all(Object.keys(view.bins || {}).map((b) =>
      get("/api/v1/bins/" + enc(b) + "/progress?limit=" + HISTORY + "&node_id=" + enc(id))
    ));
  } catch (e) {
    // A node deleted (or mistyped in the address) fails its own view,
    // not the page's refresh.
    if (viewedId() === id) showMissing(id, e);
    return;
  }
  if (viewedId() !== id) return;
  if (!opening && !changed && !lists.some((l) => l.changed)) return;
  const n = view.node;
  $("node-title").textContent = "Node " + n.node_id + (n.node_name ? " (" + n.node_name + ")" : "") +
    " · " + (n.online ? "online" : "offline") + " · last seen " + ago(n.last_seen);
  fill($("why-not"), Object.entries(view.bins || {}).map(([bin, b]) =>
    el("tr", { "data-bin": bin }, [
      cell(bin, "bin"),
      cell(b.target ? b.target.version : "(none)", "target"),
      cell(b.reason || "", "reason"),
    ])
  ), "This node reports no bins.");
  const history = [].concat(...lists.map((l) => l.body));
  history.sort((a, b) => (a.received_at < b.received_at ? 1 : a.received_at > b.received_at ? -1 : b.id - a.id));
  fill($("node-history"), history.map((p) =>
    el("tr", { class: "progress " + p.status }, [
      cell(p.received_at, "received"),
      cell(p.bin_name, "bin"),
      cell(shown(p.target_hash), "version"),
      cell(p.status, "status"),
      cell(p.message || "", "message"),
    ])
  ), "No progress reports from this node.");
  section.dataset.nodeId = id;
  section.hidden = false;
  if (opening) {
    section.scrollIntoView({ block: "start" });
    $("node-title").tabIndex = -1;
    $("node-title").focus();
  }
}

function showMissing(id, e) {
  $("node-title").textContent = "Node " + id + ": " + e.message;
  fill($("why-not"), [], "No view of this node.");
  fill($("node-history"), [], "");
  const section = $("node-view");
  section.dataset.nodeId = "";
  section.hidden = false;
}

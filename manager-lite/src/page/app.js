// The admin page's script (an ES module; served from the binary as
// /ui/app.js with its modules dom.js, api.js, releases.js, fleet.js and
// nodes.js). It reads the manager's JSON API with the token the user typed
// (kept in sessionStorage only) and refreshes itself every few seconds with
// conditional requests, so an unchanged fleet costs 304s and no
// re-rendering. "Updated N s ago" says how fresh it is; the Live button
// pauses the refreshing. No framework, no build step, text-only rendering.

import { $, el, fill, duration, afterPaint } from "./dom.js";
import { get, setToken, stats, enc } from "./api.js";
import { renderReleases, confirming, shownReleases, tick, LIVE, FINISHED, MAX_DONE, MAX_FAILURES } from "./releases.js";
import { renderSummary, renderVersions } from "./fleet.js";
import { loadNodes, showRunning, startNodes, setNames, clearNodes, showNode } from "./nodes.js";

const TOKEN_KEY = "manager-lite.token";
const EVERY = 5000; // ms between refreshes
const MAX_PROGRESS = 20;

let token = sessionStorage.getItem(TOKEN_KEY) || "";
let live = true;
let timer = null;
let running = null; // the refresh in flight
let updatedAt = 0;
let loads = 0;
let releasesStale = false;
// Whether the status line shows a failed refresh (cleared by the next good
// one) rather than an action's outcome (kept until the next action).
let statusFromLoad = true;

function setStatus(text, isError, fromLoad) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "ok";
  statusFromLoad = fromLoad;
}

function setState(state) {
  document.body.dataset.state = state;
}

// ---- refreshing

// Refreshes everything; one refresh at a time (a second call waits for it).
function refresh(message) {
  if (running) return running.then(() => refresh(message));
  running = load(message).finally(() => {
    running = null;
  });
  return running;
}

async function load(message) {
  if (!token) {
    setStatus("Enter a token to load the fleet.", false, true);
    setState("no-token");
    return;
  }
  setState("loading");
  try {
    const [fleet, bins, live, finished] = await Promise.all([
      get("/api/v1/fleet"), get("/api/v1/bins"),
      get("/api/v1/releases?status=" + LIVE.join(",")),
      get("/api/v1/releases?status=" + FINISHED.join(",") + "&limit=" + MAX_DONE),
    ]);
    const releases = { body: live.body.concat(finished.body), changed: live.changed || finished.changed };
    if (bins.changed) setNames(versionNames(bins.body));
    const failures = await releaseFailures(releases.body);
    const progress = await recentProgress(bins.body);
    await loadNodes(bins.changed);
    await showNode();
    if (fleet.changed || bins.changed || releases.changed) renderSummary(fleet.body, bins.body, releases.body);
    if (fleet.changed) renderVersions(fleet.body, showRunning);
    const failuresChanged = [...failures.values()].some((f) => f.changed);
    // An open confirm step is not redrawn under the operator's hand.
    releasesStale ||= releases.changed || failuresChanged || Boolean(message);
    if (releasesStale && !confirming()) {
      renderReleases(releases.body, failures, done);
      releasesStale = false;
    }
    if (progress.changed || bins.changed) renderProgress(progress.list);
    loads += 1;
    if (loads === 1) {
      // From the start of navigation to the fleet on screen.
      afterPaint(() => {
        document.body.dataset.firstPaintMs = String(Math.round(performance.now()));
      });
    }
    updatedAt = Date.now();
    const d = document.body.dataset;
    d.loads = String(loads);
    d.unchanged = String(stats.unchanged);
    d.requests = String(stats.requests);
    if (message) setStatus(message, false, false);
    else if (statusFromLoad) setStatus("Fleet loaded.", false, true);
    setState("ready");
    ticker();
  } catch (e) {
    setStatus(e.message, true, true);
    setState("error");
  }
}

// After an action: its outcome (a message, an Error, or null for "no").
function done(outcome) {
  if (outcome instanceof Error) {
    setStatus(outcome.message, true, false);
    refresh();
  } else if (outcome) {
    refresh(outcome);
  } else {
    refresh();
  }
}

// Failures of each shown live release that has any: id → { list, total, changed }.
async function releaseFailures(releases) {
  const out = new Map();
  const wanted = shownReleases(releases).filter((r) =>
    LIVE.includes(r.status) && (r.counts.failed || 0) + (r.counts.rolled_back || 0) > 0);
  const answers = await Promise.all(wanted.map((r) =>
    get("/api/v1/releases/" + r.id + "/failures?limit=" + MAX_FAILURES)));
  wanted.forEach((r, i) => {
    const a = answers[i];
    out.set(r.id, { list: a.body, total: Number(a.headers.get("X-Total-Count") || a.body.length), changed: a.changed });
  });
  return out;
}

async function recentProgress(bins) {
  const lists = await Promise.all(bins.map((b) =>
    get("/api/v1/bins/" + enc(b.bin_name) + "/progress?limit=" + MAX_PROGRESS)));
  const all = [].concat(...lists.map((l) => l.body));
  all.sort((a, b) => (a.received_at < b.received_at ? 1 : a.received_at > b.received_at ? -1 : b.id - a.id));
  return { list: all.slice(0, MAX_PROGRESS), changed: lists.some((l) => l.changed) };
}

let progressNames = new Map();

// sha256 → version name, from the bins listing.
function versionNames(bins) {
  const names = new Map();
  for (const b of bins) for (const v of b.versions) names.set(v.sha256sum, v.version);
  progressNames = names;
  return names;
}

function renderProgress(list) {
  fill($("progress"), list.map((p) =>
    el("tr", { class: "progress " + p.status }, [
      el("td", { class: "received" }, [p.received_at]),
      el("td", { class: "node" }, [el("a", { href: "#node/" + enc(p.node_id) }, [p.node_id])]),
      el("td", { class: "bin" }, [p.bin_name]),
      el("td", { class: "version" }, [progressNames.get(p.target_hash) || (p.target_hash || "").slice(0, 12)]),
      el("td", { class: "status" }, [p.status]),
      el("td", { class: "message" }, [p.message || ""]),
    ])
  ), "No progress reports.");
}

// ---- live: the timer, "updated N s ago" and the pause toggle

function schedule() {
  clearTimeout(timer);
  if (live && token) {
    timer = setTimeout(() => {
      if (document.hidden) schedule();
      else refresh().finally(schedule);
    }, EVERY);
  }
}

function ticker() {
  const u = $("updated");
  if (!updatedAt) u.textContent = "not loaded yet";
  else u.textContent = "updated " + duration((Date.now() - updatedAt) / 1000) + " ago" + (live ? "" : " · paused");
  tick();
}

function setLive(on) {
  live = on;
  const b = $("live-toggle");
  b.setAttribute("aria-pressed", on ? "true" : "false");
  b.textContent = on ? "Live: on" : "Live: paused";
  document.body.dataset.live = on ? "on" : "paused";
  ticker();
  if (on) refresh().finally(schedule);
  else clearTimeout(timer);
}

// ---- the token

function useToken() {
  token = $("token").value.trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  setToken(token);
  statusFromLoad = true;
  refresh().finally(schedule);
}

function forgetToken() {
  token = "";
  setToken("");
  clearTimeout(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  $("token").value = "";
  $("releases").replaceChildren();
  $("versions").replaceChildren();
  for (const t of ["progress", "why-not", "node-history"]) $(t).tBodies[0].replaceChildren();
  clearNodes();
  $("node-view").hidden = true;
  for (const s of ["nodes-online", "nodes-offline", "bins-count", "releases-active"]) $(s).textContent = "–";
  updatedAt = 0;
  ticker();
  setStatus("Token forgotten.", false, true);
  setState("no-token");
}

// A fault of the page itself: shown, and counted for the tests.
function pageError(text) {
  const d = document.body.dataset;
  d.jsErrors = String(Number(d.jsErrors || 0) + 1);
  setStatus("page error (please report): " + text, true, false);
}

function start() {
  window.addEventListener("error", (e) => pageError(e.message));
  window.addEventListener("unhandledrejection", (e) => pageError(String(e.reason)));
  $("token").value = token;
  setToken(token);
  $("use-token").addEventListener("click", useToken);
  $("forget-token").addEventListener("click", forgetToken);
  $("token").addEventListener("keydown", (e) => {
    if (e.key === "Enter") useToken();
  });
  $("refresh").addEventListener("click", () => refresh());
  $("live-toggle").addEventListener("click", () => setLive(!live));
  $("node-close").addEventListener("click", (e) => {
    e.preventDefault();
    history.replaceState(null, "", location.pathname);
    $("node-view").hidden = true;
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && live && token) refresh().finally(schedule);
  });
  startNodes((e) => setStatus(e.message, true, false));
  setInterval(ticker, 1000);
  document.body.dataset.live = "on";
  refresh().finally(schedule);
}

start();

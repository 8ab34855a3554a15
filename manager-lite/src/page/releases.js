// The releases as an operator watches them: one card per release, live
// ones first. Each shows its waves as segmented bars (succeeded, in
// progress, failed, rolled back and reached-but-silent within the wave's
// target), its state and paused reason, the time spent in the current wave
// against the wave's wait, the nodes that failed with what they said, and
// only the actions its state accepts and the token's role may do (the
// API's `actions`), each behind a confirm step that names its effect.

import { $, el, count, bytes, duration, seconds, ago } from "./dom.js";
import { post } from "./api.js";

export const LIVE = ["pending_approval", "rolling_out", "paused"];
export const FINISHED = ["completed", "cancelled", "superseded", "rolled_back"];
// Every live release is shown, and at most this many finished ones.
export const MAX_DONE = 5;
export const MAX_FAILURES = 10;

// What each action does, in the words of its confirm step.
const EFFECT = {
  approve: (r) => `Approve release ${r.id}: it starts offering ${r.bin_name} ${r.version} to its first wave.`,
  pause: (r) => `Pause release ${r.id}: nodes not yet on ${r.version} stop being offered it; nodes that have it keep it.`,
  resume: (r) => `Resume release ${r.id}: it goes on offering ${r.version} from wave ${r.wave + 1}; the failures so far are accepted.`,
  promote: (r) => `Promote release ${r.id}: every selected node is offered ${r.version} now, skipping the waves left.`,
  cancel: (r) => `Cancel release ${r.id}: no more nodes are offered ${r.version}; nodes that have it keep it.`,
  rollback: (r) => `Roll back release ${r.id}: a new release offers ${r.baseline_version || "the previous version"} to the nodes ${r.version} reached.`,
};

// The kinds of a bar's segments, in order, with what the legend calls them.
const KINDS = [
  ["success", "succeeded"],
  ["in_progress", "in progress"],
  ["failed", "failed"],
  ["rolled_back", "rolled back"],
  ["silent", "reached, no report"],
];

// The release whose action awaits confirmation: { id, op } or null.
let pending = null;

export function confirming() {
  return pending !== null;
}

// Live releases first, then the most recent finished ones.
export function shownReleases(releases) {
  const live = releases.filter((r) => LIVE.includes(r.status));
  const done = releases.filter((r) => !LIVE.includes(r.status));
  return live.concat(done.slice(0, MAX_DONE));
}

// failures: release id → { list, total }.
export function renderReleases(releases, failures, onDone) {
  const shown = shownReleases(releases);
  const cards = shown.map((r) => card(r, failures.get(r.id), onDone));
  if (cards.length === 0) cards.push(el("p", { class: "empty" }, ["No releases."]));
  if (shown.filter((r) => !LIVE.includes(r.status)).length >= MAX_DONE) {
    cards.push(el("p", { class: "more" }, ["Older releases: manager-lite releases, or GET /api/v1/releases."]));
  }
  $("releases").replaceChildren(...cards);
  tick();
}

function card(r, failed, onDone) {
  const c = r.counts || {};
  const title = "release-" + r.id + "-title";
  return el("article", { class: "release " + r.status, "data-release-id": String(r.id), "aria-labelledby": title }, [
    el("div", { class: "head" }, [
      el("h3", { id: title }, [
        el("span", { class: "id" }, ["#" + r.id]), " ",
        el("span", { class: "bin" }, [r.bin_name]), " ",
        el("span", { class: "version" }, [r.version]),
      ]),
      el("span", { class: "status badge" }, [r.status]),
      r.note ? el("span", { class: "note" }, [r.note]) : null,
    ]),
    where(r),
    r.paused_reason ? el("p", { class: "paused-reason" }, [r.paused_reason]) : null,
    waves(r),
    el("p", { class: "counts" }, [
      figure("targeted", "reached", c.targeted),
      figure("success", "succeeded", c.success),
      figure("in-progress", "in progress", c.in_progress),
      figure("failed", "failed", c.failed),
      figure("rolled-back", "rolled back", c.rolled_back),
      saved(c),
    ]),
    actions(r, onDone),
    failures(r, failed),
  ]);
}

function figure(cls, label, n) {
  return el("span", { class: "figure" }, [label + " ", el("b", { class: cls }, [String(n || 0)])]);
}

// "saved 4.8 MB (92%)": what deltas and the zst form saved the nodes that
// succeeded, against full downloads; nothing before any such report.
function saved(c) {
  const full = c.bytes_full || 0;
  if (full === 0) return null;
  const kept = full - (c.bytes_downloaded || 0);
  const text = bytes(kept) + " (" + Math.round((100 * kept) / full) + "%)";
  return el("span", { class: "figure" }, ["saved ", el("b", { class: "saved" }, [text])]);
}

// "wave 1 of 2 · 50% · in this wave 3 min of its 1 h wait".
function where(r) {
  const waves = Math.max(1, (r.waves || []).length);
  const parts = [
    el("span", { class: "wave" }, ["wave " + (r.wave + 1) + " of " + waves]), " · ",
    el("span", { class: "percent" }, [r.percent + "%"]),
  ];
  if (r.status === "rolling_out" || r.status === "paused") {
    const wait = ((r.waves || [])[r.wave] || {}).wait || "";
    const started = r.wave_started_at || r.created_at;
    parts.push(" · ", el("span", { class: "wave-time", "data-started": started, "data-wait": wait }, []));
  } else if (r.status === "pending_approval") {
    parts.push(" · ", el("span", { class: "waiting" }, ["awaiting approval (created " + ago(r.created_at) + ")"]));
  }
  return el("p", { class: "where" }, parts);
}

// Updates the time-in-wave texts (called every second).
export function tick() {
  for (const span of document.querySelectorAll("#releases .wave-time")) {
    const spent = (Date.now() - Date.parse(span.dataset.started)) / 1000;
    const wait = seconds(span.dataset.wait);
    let text = "in this wave " + (Number.isNaN(spent) ? "?" : duration(spent));
    if (wait !== null) {
      text += " of its " + duration(wait) + " wait";
      if (spent >= wait) text += " (wait over)";
    } else if (span.dataset.wait) {
      text += " (wait " + span.dataset.wait + ")";
    } else {
      text += " (no wait)";
    }
    span.textContent = text;
  }
}

// One bar per wave (one for a single-wave release), each as wide as the
// wave's target.
function waves(r) {
  const c = r.counts || {};
  const done = !LIVE.includes(r.status);
  // A finished release is one bar: how it ended, not how it went.
  let rows = done ? [] : c.waves || [];
  if (rows.length === 0) {
    rows = [{ percent: r.percent, target: c.targeted || 0, reached: c.targeted || 0,
      success: c.success || 0, in_progress: c.in_progress || 0, failed: c.failed || 0,
      rolled_back: c.rolled_back || 0 }];
  }
  return el("div", { class: "waves" }, rows.map((w, i) => {
    const phase = done || i < r.wave ? "past" : i === r.wave ? "current" : "next";
    const label = done ? (r.percent >= 100 ? "All nodes" : "Up to " + r.percent + "%") : "Wave " + (i + 1) + " · " + w.percent + "%";
    return waveRow(w, i, phase, label);
  }));
}

function waveRow(w, i, phase, label) {
  const target = w.target || 0;
  const reported = (w.success || 0) + (w.in_progress || 0) + (w.failed || 0) + (w.rolled_back || 0);
  const n = { success: w.success, in_progress: w.in_progress, failed: w.failed, rolled_back: w.rolled_back,
    silent: Math.max(0, (w.reached || 0) - reported) };
  const segments = KINDS.filter(([k]) => n[k] > 0).map(([k, word]) => {
    const seg = el("span", { class: "seg " + k, "data-kind": k, title: count(n[k]) + " " + word }, []);
    seg.style.width = (target > 0 ? (100 * n[k]) / target : 0) + "%";
    return seg;
  });
  const words = KINDS.filter(([k]) => n[k] > 0).map(([k, word]) => count(n[k]) + " " + word);
  const summary = count(w.reached) + " of " + count(target) + " reached" + (words.length ? " · " + words.join(" · ") : "");
  return el("div", { class: "wave-row " + phase, "data-wave": String(i) }, [
    el("span", { class: "wave-label" }, [label]),
    el("div", { class: "bar", role: "img", "aria-label": "wave " + (i + 1) + ": " + summary }, segments),
    el("span", { class: "wave-counts" }, [summary]),
  ]);
}

function actions(r, onDone) {
  const ops = r.actions || [];
  const box = el("div", { class: "actions" }, ops.map((op) =>
    el("button", { type: "button", class: "op", "data-op": op, "data-release": String(r.id), textContent: op })
  ));
  if (pending && pending.id === r.id && ops.includes(pending.op)) {
    box.appendChild(confirmBox(r, pending.op, onDone));
  }
  box.addEventListener("click", (e) => {
    const b = e.target.closest("button.op");
    if (!b || b.disabled) return;
    pending = { id: r.id, op: b.dataset.op };
    box.querySelector(".confirm")?.remove();
    const panel = confirmBox(r, b.dataset.op, onDone);
    box.appendChild(panel);
    panel.querySelector("button.confirm-op").focus();
  });
  return box;
}

function confirmBox(r, op, onDone) {
  const yes = el("button", { type: "button", class: "confirm-op", "data-op": op, textContent: "Yes, " + op });
  const no = el("button", { type: "button", class: "cancel-op", textContent: "No, leave it" });
  const panel = el("div", { class: "confirm", role: "alertdialog", "aria-label": "confirm " + op }, [
    el("p", { class: "effect" }, [EFFECT[op] ? EFFECT[op](r) : op + " release " + r.id + "?"]), yes, " ", no,
  ]);
  const close = () => {
    pending = null;
    panel.remove();
  };
  no.addEventListener("click", () => {
    close();
    onDone(null);
  });
  panel.addEventListener("keydown", (e) => {
    if (e.key === "Escape") no.click();
  });
  yes.addEventListener("click", async () => {
    for (const b of panel.querySelectorAll("button")) b.disabled = true;
    try {
      const after = await post("/api/v1/releases/" + r.id + "/" + op);
      close();
      onDone(op === "rollback"
        ? "release " + r.id + " rolled back: release " + after.id + " of " + after.version + " created"
        : "release " + r.id + ": " + op + " done, now " + after.status);
    } catch (e) {
      close();
      onDone(e);
    }
  });
  return panel;
}

// The nodes that failed or rolled back, newest first, each a link to its view.
function failures(r, failed) {
  const c = r.counts || {};
  if ((c.failed || 0) + (c.rolled_back || 0) === 0 || !failed) return null;
  const rows = failed.list.map((f) =>
    el("tr", { "data-node-id": f.node_id, class: f.status }, [
      el("td", { class: "node" }, [el("a", { href: "#node/" + encodeURIComponent(f.node_id) }, [f.node_id])]),
      el("td", { class: "status" }, [f.status.replace("_", " ")]),
      el("td", { class: "message" }, [f.message || "(no message)"]),
      el("td", { class: "when", title: f.received_at }, [f.received_at ? ago(f.received_at) : ""]),
    ])
  );
  const more = failed.total > failed.list.length ? el("p", { class: "more" }, ["and " + count(failed.total - failed.list.length) + " more"]) : null;
  return el("div", { class: "failures" }, [
    el("h4", {}, ["Failed or rolled back: " + count(failed.total)]),
    el("table", {}, [
      el("thead", {}, [el("tr", {}, [el("th", {}, ["Node"]), el("th", {}, ["Status"]), el("th", {}, ["Reason"]), el("th", {}, ["When"])])]),
      el("tbody", {}, rows),
    ]),
    more,
  ]);
}

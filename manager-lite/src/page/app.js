// The admin page's script. It reads the manager's JSON API with the token
// the user typed (kept in sessionStorage, sent as "Authorization: Bearer"),
// renders with textContent only, and shows every API error in the status
// line. No framework, no build step; served from the binary as /ui/app.js.
"use strict";

(function () {
  const TOKEN_KEY = "manager-lite.token";
  const MAX_RELEASES = 50;
  const MAX_PROGRESS = 20;
  const LIVE = ["pending_approval", "rolling_out", "paused"];
  const OPS = ["approve", "pause", "resume", "promote", "rollback"];

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let loadSeq = 0;
  let loads = 0;

  // ---- DOM helpers: text only, never markup.

  function el(tag, props, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children || []) {
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return e;
  }

  function cell(text, cls) {
    return el("td", cls ? { class: cls } : {}, [String(text)]);
  }

  function fill(tableId, rows, emptyText, columns) {
    const body = $(tableId).tBodies[0];
    body.replaceChildren(...rows);
    if (rows.length === 0) {
      body.appendChild(el("tr", { class: "empty" }, [el("td", { colSpan: columns }, [emptyText])]));
    }
  }

  function setStatus(text, isError) {
    const s = $("status");
    s.textContent = text;
    s.className = isError ? "error" : "ok";
  }

  function setState(state) {
    document.body.dataset.state = state;
  }

  // ---- The API.

  async function api(method, path) {
    const what = method + " " + path;
    const headers = {};
    if (token) headers.Authorization = "Bearer " + token;
    let resp;
    try {
      resp = await fetch(path, { method, headers, cache: "no-store", credentials: "omit" });
    } catch (e) {
      throw new Error(what + ": " + e.message);
    }
    const text = await resp.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (e) {
      body = null;
    }
    if (!resp.ok) {
      const msg = body && typeof body.error === "string" ? body.error : text.slice(0, 200);
      throw new Error(what + ": " + resp.status + " " + msg);
    }
    return body;
  }

  const enc = encodeURIComponent;

  // ---- Loading and rendering.

  async function recentProgress(bins) {
    const lists = await Promise.all(
      bins.map((b) => api("GET", "/api/v1/bins/" + enc(b.bin_name) + "/progress?limit=" + MAX_PROGRESS))
    );
    const all = [].concat(...lists);
    all.sort((a, b) => (a.received_at < b.received_at ? 1 : a.received_at > b.received_at ? -1 : b.id - a.id));
    return all.slice(0, MAX_PROGRESS);
  }

  // sha256 → "version" (with the arch when it has one), from the bins listing.
  function versionNames(bins) {
    const names = new Map();
    for (const b of bins) {
      for (const v of b.versions) names.set(v.sha256sum, v.version);
    }
    return names;
  }

  function shown(sha, names) {
    if (!sha) return "(none)";
    return names.get(sha) || sha.slice(0, 12) + "…";
  }

  function renderSummary(nodes, bins, releases) {
    const online = nodes.filter((n) => n.online).length;
    $("nodes-online").textContent = String(online);
    $("nodes-offline").textContent = String(nodes.length - online);
    $("bins-count").textContent = String(bins.length);
    $("releases-active").textContent = String(releases.filter((r) => LIVE.includes(r.status)).length);
  }

  function releaseRow(r) {
    const waves = Math.max(1, (r.waves || []).length);
    const c = r.counts || {};
    const buttons = OPS.map((op) =>
      el("button", { type: "button", class: "op", "data-op": op, "data-release": String(r.id), textContent: op })
    );
    return el("tr", { "data-release-id": String(r.id), class: "release " + r.status }, [
      cell(r.id, "id"),
      cell(r.bin_name, "bin"),
      cell(r.version, "version"),
      cell(r.status, "status"),
      cell((r.wave || 0) + 1 + " of " + waves, "wave"),
      cell(r.percent + "%", "percent"),
      cell(c.targeted || 0, "targeted"),
      cell(c.in_progress || 0, "in-progress"),
      cell(c.success || 0, "success"),
      cell(c.failed || 0, "failed"),
      cell(c.rolled_back || 0, "rolled-back"),
      cell(r.paused_reason || "", "paused-reason"),
      el("td", { class: "actions" }, buttons),
    ]);
  }

  function nodeRow(n, names) {
    const versions = Object.entries(n.bins || {}).map(([bin, sha]) =>
      el("li", { "data-bin": bin, title: sha || "" }, [bin + ": " + shown(sha, names)])
    );
    return el("tr", { "data-node-id": n.node_id, class: n.online ? "online" : "offline" }, [
      cell(n.node_id, "id"),
      cell(n.node_name || "", "name"),
      cell(n.cpu_arch || "", "arch"),
      cell(n.online ? "online" : "offline", "state"),
      cell(n.last_seen, "last-seen"),
      el("td", { class: "versions" }, [el("ul", {}, versions)]),
    ]);
  }

  function binRow(b) {
    const byVersion = new Map();
    for (const v of b.versions) {
      const arches = byVersion.get(v.version) || [];
      arches.push(v.arch || "any arch");
      byVersion.set(v.version, arches);
    }
    const items = [...byVersion].map(([version, arches]) =>
      el("li", { "data-version": version }, [version + " (" + arches.join(", ") + ")"])
    );
    return el("tr", { "data-bin": b.bin_name }, [
      cell(b.bin_name, "bin"),
      cell(byVersion.size, "count"),
      el("td", { class: "list" }, [el("ul", {}, items)]),
    ]);
  }

  function progressRow(p, names) {
    return el("tr", { class: "progress " + p.status }, [
      cell(p.received_at, "received"),
      cell(p.node_id, "node"),
      cell(p.bin_name, "bin"),
      cell(shown(p.target_hash, names), "version"),
      cell(p.status, "status"),
      cell(p.message || "", "message"),
    ]);
  }

  function renderPicker(nodes) {
    const picker = $("node-picker");
    const chosen = picker.value;
    const options = nodes.map((n) => el("option", { value: n.node_id, textContent: n.node_id }));
    picker.replaceChildren(el("option", { value: "", textContent: "(pick a node)" }), ...options);
    picker.value = nodes.some((n) => n.node_id === chosen) ? chosen : "";
  }

  async function showWhyNot() {
    const id = $("node-picker").value;
    if (!id) {
      fill("why-not", [], "Pick a node to see each bin's target and why.", 3);
      return;
    }
    try {
      const view = await api("GET", "/api/v1/nodes/" + enc(id));
      const rows = Object.entries(view.bins || {}).map(([bin, b]) =>
        el("tr", { "data-bin": bin }, [
          cell(bin, "bin"),
          cell(b.target ? b.target.version : "(none)", "target"),
          cell(b.reason || "", "reason"),
        ])
      );
      fill("why-not", rows, "This node reports no bins.", 3);
    } catch (e) {
      setStatus(e.message, true);
    }
  }

  async function load(message) {
    if (!token) {
      setStatus("Enter a token to load the fleet.", false);
      setState("no-token");
      return;
    }
    const seq = ++loadSeq;
    setState("loading");
    try {
      const [nodes, bins, releases] = await Promise.all([
        api("GET", "/api/v1/nodes"),
        api("GET", "/api/v1/bins"),
        api("GET", "/api/v1/releases"),
      ]);
      const progress = await recentProgress(bins);
      if (seq !== loadSeq) return;
      const names = versionNames(bins);
      renderSummary(nodes, bins, releases);
      fill("releases", releases.slice(0, MAX_RELEASES).map(releaseRow), "No releases.", 13);
      fill("nodes", nodes.map((n) => nodeRow(n, names)), "No nodes.", 6);
      fill("bins", bins.map(binRow), "No bins uploaded.", 3);
      fill("progress", progress.map((p) => progressRow(p, names)), "No progress reports.", 6);
      renderPicker(nodes);
      await showWhyNot();
      loads += 1;
      document.body.dataset.loads = String(loads);
      const when = "loaded " + new Date().toLocaleTimeString();
      setStatus(message ? message + " · " + when : when, false);
      setState("ready");
    } catch (e) {
      if (seq !== loadSeq) return;
      setStatus(e.message, true);
      setState("error");
    }
  }

  // ---- Release operations.

  async function operate(button) {
    const id = button.dataset.release;
    const op = button.dataset.op;
    if (!OPS.includes(op) || !/^[0-9]+$/.test(id)) return;
    for (const b of document.querySelectorAll("button.op")) b.disabled = true;
    try {
      const r = await api("POST", "/api/v1/releases/" + id + "/" + op);
      const done =
        op === "rollback"
          ? "release " + id + " rolled back: release " + r.id + " of " + r.version + " created"
          : "release " + id + ": " + op + " done, now " + r.status;
      await load(done);
    } catch (e) {
      setStatus(e.message, true);
      for (const b of document.querySelectorAll("button.op")) b.disabled = false;
    }
  }

  // ---- Token handling.

  function useToken() {
    token = $("token").value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    load();
  }

  function forgetToken() {
    token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    for (const t of ["releases", "nodes", "bins", "progress", "why-not"]) $(t).tBodies[0].replaceChildren();
    for (const s of ["nodes-online", "nodes-offline", "bins-count", "releases-active"]) $(s).textContent = "–";
    setStatus("Token forgotten.", false);
    setState("no-token");
  }

  function start() {
    $("token").value = token;
    $("use-token").addEventListener("click", useToken);
    $("forget-token").addEventListener("click", forgetToken);
    $("refresh").addEventListener("click", () => load());
    $("token").addEventListener("keydown", (e) => {
      if (e.key === "Enter") useToken();
    });
    $("node-picker").addEventListener("change", showWhyNot);
    $("releases").addEventListener("click", (e) => {
      const b = e.target.closest("button.op");
      if (b && !b.disabled) operate(b);
    });
    load();
  }

  start();
})();

// The admin page's script. It reads the manager's JSON API with the token
// the user typed (kept in sessionStorage, sent as "Authorization: Bearer"),
// renders with textContent only, and shows every API error in the status
// line. No framework, no build step; served from the binary as /ui/app.js.
"use strict";

(function () {
  const TOKEN_KEY = "manager-lite.token";
  const MAX_RELEASES = 50;
  const MAX_PROGRESS = 20;
  // Nodes per page of GET /api/v1/nodes; "More nodes" loads the next one.
  const NODE_PAGE = 1000;
  const LIVE = ["pending_approval", "rolling_out", "paused"];
  const OPS = ["approve", "pause", "resume", "promote", "rollback"];

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let loadSeq = 0;
  let loads = 0;
  // The nodes loaded so far, where the next page starts (null: none), and
  // the version names to show them with.
  let nodes = [];
  let nodesNext = null;
  let names = new Map();

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
    return (await call(method, path)).body;
  }

  // One page of nodes: { body, next } (next: the X-Next-After cursor or null).
  async function nodePage(after) {
    let path = "/api/v1/nodes?limit=" + NODE_PAGE;
    if (after !== null) path += "&after=" + enc(after);
    const { body, resp } = await call("GET", path);
    return { body, next: resp.headers.get("X-Next-After") };
  }

  async function call(method, path) {
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
    return { body, resp };
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

  function renderSummary(bins, releases) {
    $("bins-count").textContent = String(bins.length);
    $("releases-active").textContent = String(releases.filter((r) => LIVE.includes(r.status)).length);
  }

  // The node table, picker and counts, of the nodes loaded so far: with
  // more pages to load, the counts end in "+".
  function renderNodes() {
    const online = nodes.filter((n) => n.online).length;
    const more = nodesNext !== null ? "+" : "";
    $("nodes-online").textContent = String(online) + more;
    $("nodes-offline").textContent = String(nodes.length - online) + more;
    fill("nodes", nodes.map((n) => nodeRow(n, names)), "No nodes.", 6);
    $("more-nodes").hidden = nodesNext === null;
    renderPicker(nodes);
  }

  async function moreNodes() {
    if (nodesNext === null) return;
    $("more-nodes").disabled = true;
    try {
      const page = await nodePage(nodesNext);
      nodes = nodes.concat(page.body);
      nodesNext = page.next;
      renderNodes();
      setStatus(nodes.length + " nodes loaded", false);
    } catch (e) {
      setStatus(e.message, true);
    } finally {
      $("more-nodes").disabled = false;
    }
  }

  // "4.8 MB (92%)": what deltas and the zst form saved the nodes that
  // succeeded, against full downloads; empty before any such report.
  function saved(c) {
    const full = c.bytes_full || 0;
    if (full === 0) return "";
    const kept = full - (c.bytes_downloaded || 0);
    return bytes(kept) + " (" + Math.round((100 * kept) / full) + "%)";
  }

  function bytes(n) {
    if (n >= 1e6) return (n / 1e6).toFixed(1) + " MB";
    if (n >= 1e3) return (n / 1e3).toFixed(1) + " KB";
    return n + " B";
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
      cell(saved(c), "saved"),
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
      const [firstNodes, bins, releases] = await Promise.all([
        nodePage(null),
        api("GET", "/api/v1/bins"),
        api("GET", "/api/v1/releases"),
      ]);
      const progress = await recentProgress(bins);
      if (seq !== loadSeq) return;
      names = versionNames(bins);
      nodes = firstNodes.body;
      nodesNext = firstNodes.next;
      renderSummary(bins, releases);
      fill("releases", releases.slice(0, MAX_RELEASES).map(releaseRow), "No releases.", 14);
      renderNodes();
      fill("bins", bins.map(binRow), "No bins uploaded.", 3);
      fill("progress", progress.map((p) => progressRow(p, names)), "No progress reports.", 6);
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
    nodes = [];
    nodesNext = null;
    $("more-nodes").hidden = true;
    setStatus("Token forgotten.", false);
    setState("no-token");
  }

  function start() {
    $("token").value = token;
    $("use-token").addEventListener("click", useToken);
    $("forget-token").addEventListener("click", forgetToken);
    $("refresh").addEventListener("click", () => load());
    $("more-nodes").addEventListener("click", moreNodes);
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

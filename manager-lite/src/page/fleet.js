// What the fleet runs, from GET /api/v1/fleet (counted by the manager, not
// by downloading every node): the summary figures and, per bin, a stacked
// bar of the nodes on each version, missing the file or on a hash no
// upload has. Every part of a bar, and its legend entry, is a button that
// lists those nodes below.

import { $, el, count } from "./dom.js";
import { LIVE } from "./releases.js";

// The bar parts beyond eight versions share the last colour.
const COLOURS = 8;

export function renderSummary(fleet, bins, releases) {
  $("nodes-online").textContent = count(fleet.online);
  $("nodes-offline").textContent = count(fleet.offline);
  $("bins-count").textContent = count(bins.length);
  $("releases-active").textContent = count(releases.filter((r) => LIVE.includes(r.status)).length);
  const arch = $("node-arch");
  const chosen = arch.value;
  const options = Object.keys(fleet.arches || {}).filter((a) => a !== "").sort()
    .map((a) => el("option", { value: a, textContent: a + " (" + count(fleet.arches[a]) + ")" }));
  arch.replaceChildren(el("option", { value: "", textContent: "any" }), ...options);
  arch.value = chosen;
}

// onPick(bin, version, label): version is a name, "*missing" or "*unknown".
export function renderVersions(fleet, onPick) {
  const bars = (fleet.bins || []).map((b) => binBar(b, onPick));
  if (bars.length === 0) bars.push(el("p", { class: "empty" }, ["No node lists a bin yet."]));
  $("versions").replaceChildren(...bars);
}

function binBar(b, onPick) {
  const parts = b.versions.map((v, i) => ({
    key: v.version, label: v.version, nodes: v.nodes, cls: "v" + Math.min(i, COLOURS - 1),
  }));
  if (b.missing > 0) parts.push({ key: "*missing", label: "missing", nodes: b.missing, cls: "missing" });
  if (b.unknown > 0) parts.push({ key: "*unknown", label: "unknown build", nodes: b.unknown, cls: "unknown" });
  const pick = (p) => () => onPick(b.bin_name, p.key, b.bin_name + ": " + p.label);
  const segments = parts.map((p) => {
    const seg = el("button", {
      type: "button", class: "seg " + p.cls, "data-version": p.key, "data-count": String(p.nodes),
      title: p.label + ": " + count(p.nodes) + " nodes", tabIndex: -1,
      "aria-label": b.bin_name + " " + p.label + ": " + count(p.nodes) + " nodes",
    }, []);
    seg.style.width = (b.nodes > 0 ? (100 * p.nodes) / b.nodes : 0) + "%";
    seg.addEventListener("click", pick(p));
    return seg;
  });
  const legend = parts.map((p) => {
    const button = el("button", { type: "button", "data-version": p.key }, [
      el("span", { class: "swatch " + p.cls }, []),
      p.label + " ",
      el("b", { class: "n" }, [count(p.nodes)]),
    ]);
    button.addEventListener("click", pick(p));
    return el("li", {}, [button]);
  });
  return el("div", { class: "bin-bar", "data-bin": b.bin_name }, [
    el("h3", {}, [b.bin_name + " ", el("span", { class: "total" }, [count(b.nodes) + " nodes"])]),
    el("div", { class: "bar stacked", role: "group", "aria-label": b.bin_name + " by version" }, segments),
    el("ul", { class: "legend" }, legend),
  ]);
}

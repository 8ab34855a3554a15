//! The fleet at a glance and the node search behind the admin page.
//!
//! `GET /api/v1/fleet` counts the whole fleet in one pass over the nodes in
//! memory: online and offline, per arch, and per bin how many nodes run
//! each version, miss the file or run a hash no upload has. A page that
//! polls it gets the same bytes (and, with `If-None-Match`, a bodiless
//! 304) until something changes, and the pass is made at most once per
//! [`FLEET_TTL`] however many pages poll.
//!
//! `GET /api/v1/nodes` with any of `q`, `state`, `arch`, `label`, `bin`,
//! `version`, `sort` or `offset` is a search ([`NodeQuery`]): one pass over
//! the nodes, the matches sorted, the page at `offset` answered with
//! `X-Total-Count`. A pass over 100,000 nodes takes milliseconds and holds
//! no lock for longer than a chunk of them.

use binproxy_protocol::{
    check_arch, check_bin_name, check_version, names::normalize_arch, NodeFacts,
};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use crate::api::app::App;
use crate::api::reply::{Answer, ApiError, Reply};
use crate::api::request::Url;
use crate::store::Seen;

/// How long one count of the fleet is answered before the next.
pub const FLEET_TTL: Duration = Duration::from_secs(1);

#[derive(Serialize)]
struct Fleet {
    nodes: u64,
    online: u64,
    offline: u64,
    /// Arch → nodes; `""` for nodes that did not say.
    arches: BTreeMap<String, u64>,
    bins: Vec<BinFleet>,
}

#[derive(Serialize)]
struct BinFleet {
    bin_name: String,
    /// Nodes that list the bin.
    nodes: u64,
    /// Most nodes first.
    versions: Vec<VersionCount>,
    missing: u64,
    unknown: u64,
}

#[derive(Serialize)]
struct VersionCount {
    version: String,
    nodes: u64,
}

/// `GET /api/v1/fleet`.
pub fn fleet(app: &App) -> Answer {
    let body = app.fleet.get(FLEET_TTL, || count(app))?;
    Ok(Reply::json_bytes(200, body))
}

fn count(app: &App) -> Result<Vec<u8>, ApiError> {
    let snapshot = app.store.fleet_snapshot()?;
    let bins = snapshot
        .running
        .into_iter()
        .map(|(bin_name, r)| {
            let mut versions: Vec<VersionCount> = r
                .versions
                .into_iter()
                .map(|(version, nodes)| VersionCount { version, nodes })
                .collect();
            versions.sort_by_key(|v| Reverse(v.nodes));
            let listed: u64 = versions.iter().map(|v| v.nodes).sum();
            BinFleet {
                bin_name,
                nodes: listed + r.missing + r.unknown,
                versions,
                missing: r.missing,
                unknown: r.unknown,
            }
        })
        .collect();
    let answer = Fleet {
        nodes: snapshot.online + snapshot.offline,
        online: snapshot.online,
        offline: snapshot.offline,
        arches: snapshot.arches,
        bins,
    };
    serde_json::to_vec(&answer).map_err(|e| ApiError::internal(format!("encoding the fleet: {e}")))
}

// ---- the node search ----

/// The query parameters that make `GET /api/v1/nodes` a search.
pub const SEARCH_PARAMS: [&str; 8] = [
    "q", "state", "arch", "label", "bin", "version", "sort", "offset",
];

/// What a node must run of one bin.
enum Running {
    /// Any of these hashes (the version's, every arch).
    Hashes(HashSet<String>),
    /// The bin listed without a file.
    Missing,
    /// A hash none of the bin's uploads has.
    Unknown(HashSet<String>),
    /// Anything, as long as the node lists the bin.
    Listed,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    Id,
    Name,
    LastSeen,
    Arch,
}

/// A search of the fleet, parsed and checked.
pub struct NodeQuery {
    /// Lowercase; matched against id and name.
    text: Option<String>,
    online: Option<bool>,
    arch: Option<String>,
    label: Option<(String, String)>,
    bin: Option<(String, Running)>,
    sort: Sort,
    descending: bool,
    offset: usize,
}

impl NodeQuery {
    /// The search `url` asks for; `None` when it asks for none.
    pub fn parse(app: &App, url: &Url) -> Result<Option<NodeQuery>, ApiError> {
        if !SEARCH_PARAMS.iter().any(|p| url.query(p).is_some()) {
            return Ok(None);
        }
        let text = match url.query("q").map(str::trim) {
            Some(q) if q.chars().count() > 128 => {
                return Err(ApiError::bad_request("q: at most 128 characters"))
            }
            Some(q) if !q.is_empty() => Some(q.to_lowercase()),
            _ => None,
        };
        let online = match url.query("state") {
            None | Some("") => None,
            Some("online") => Some(true),
            Some("offline") => Some(false),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid state {other:?}: online or offline"
                )))
            }
        };
        let arch = match url.query("arch") {
            None | Some("") => None,
            Some(a) => {
                check_arch(a)?;
                // As nodes' arches are stored: amd64 is x86_64.
                Some(normalize_arch(a).to_owned())
            }
        };
        let (sort, descending) = parse_sort(url.query("sort").unwrap_or("id"))?;
        let offset = match url.query("offset") {
            None | Some("") => 0,
            Some(n) => n.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid offset {n:?}: a number from 0"))
            })?,
        };
        Ok(Some(NodeQuery {
            text,
            online,
            arch,
            label: parse_label(url.query("label"))?,
            bin: parse_running(app, url)?,
            sort,
            descending,
            offset,
        }))
    }

    fn matches(&self, n: &Seen) -> bool {
        let node = &n.node;
        if self.online.is_some_and(|o| o != n.online)
            || self.arch.as_deref().is_some_and(|a| a != node.cpu_arch())
        {
            return false;
        }
        if let Some((key, value)) = &self.label {
            if node.label(key) != Some(value.as_str()) {
                return false;
            }
        }
        if let Some((bin, running)) = &self.bin {
            let Some(sha) = node.bin(bin) else {
                return false;
            };
            let ok = match running {
                Running::Hashes(h) => h.contains(sha),
                Running::Missing => sha.is_empty(),
                Running::Unknown(known) => !sha.is_empty() && !known.contains(sha),
                Running::Listed => true,
            };
            if !ok {
                return false;
            }
        }
        self.text
            .as_deref()
            .is_none_or(|t| contains_folded(node.id, t) || contains_folded(node.name(), t))
    }
}

/// `id`, `name`, `last_seen` or `arch`, `-` first for descending.
fn parse_sort(text: &str) -> Result<(Sort, bool), ApiError> {
    let (descending, key) = match text.strip_prefix('-') {
        Some(key) => (true, key),
        None => (false, text),
    };
    let sort = match key {
        "id" => Sort::Id,
        "name" => Sort::Name,
        "last_seen" => Sort::LastSeen,
        "arch" => Sort::Arch,
        _ => {
            return Err(ApiError::bad_request(format!(
                "invalid sort {text:?}: id, name, last_seen or arch, - first for descending"
            )))
        }
    };
    Ok((sort, descending))
}

/// `label=key=value`.
fn parse_label(text: Option<&str>) -> Result<Option<(String, String)>, ApiError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let bad = || ApiError::bad_request(format!("invalid label {text:?}: key=value"));
    let (key, value) = text.split_once('=').ok_or_else(bad)?;
    check_bin_name(key).map_err(|_| bad())?;
    if value.chars().count() > 256 {
        return Err(bad());
    }
    Ok(Some((key.to_owned(), value.to_owned())))
}

/// `bin=B` alone: nodes that list B; with `version=V`: nodes that run V of
/// B; `version=*missing` and `version=*unknown` (`*` is never part of a
/// version): nodes without the file, or on a hash no upload has.
fn parse_running(app: &App, url: &Url) -> Result<Option<(String, Running)>, ApiError> {
    let version = url.query("version").filter(|v| !v.is_empty());
    let Some(bin) = url.query("bin").filter(|b| !b.is_empty()) else {
        return match version {
            Some(_) => Err(ApiError::bad_request("version needs bin")),
            None => Ok(None),
        };
    };
    check_bin_name(bin)?;
    let hashes = |version: Option<&str>| -> Result<HashSet<String>, ApiError> {
        let versions = app.store.versions(bin, version)?;
        Ok(versions.into_iter().map(|v| v.sha256sum).collect())
    };
    let running = match version {
        None => Running::Listed,
        Some("*missing") => Running::Missing,
        Some("*unknown") => Running::Unknown(hashes(None)?),
        Some(v) => {
            check_version(v)?;
            Running::Hashes(hashes(Some(v))?)
        }
    };
    Ok(Some((bin.to_owned(), running)))
}

/// Whether `text` holds `needle` (already lowercase), ignoring case.
fn contains_folded(text: &str, needle: &str) -> bool {
    if text.is_ascii() && needle.is_ascii() {
        let (t, n) = (text.as_bytes(), needle.as_bytes());
        return n.is_empty()
            || t.windows(n.len())
                .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b));
    }
    text.to_lowercase().contains(needle)
}

/// A match, with what it is sorted by.
struct Hit {
    key: Key,
    id: String,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    None,
    Text(String),
    Time(SystemTime),
}

/// The nodes of one page of a search (newest state of each), and how many
/// nodes match in all.
pub fn search(app: &App, query: &NodeQuery, limit: usize) -> (Vec<binproxy_protocol::Node>, usize) {
    let mut hits = Vec::new();
    app.store.scan_nodes(|n| {
        if !query.matches(n) {
            return;
        }
        let key = match query.sort {
            Sort::Id => Key::None,
            Sort::Name => Key::Text(n.node.name().to_lowercase()),
            Sort::LastSeen => Key::Time(n.last_seen),
            Sort::Arch => Key::Text(n.node.cpu_arch().to_owned()),
        };
        hits.push(Hit {
            key,
            id: n.node.id.to_owned(),
        });
    });
    // The scan is in id order: a stable sort keeps it within equal keys,
    // descending or not.
    match (query.sort, query.descending) {
        (Sort::Id, false) => {}
        (Sort::Id, true) => hits.reverse(),
        (_, false) => hits.sort_by(|a, b| a.key.cmp(&b.key)),
        (_, true) => hits.sort_by(|a, b| b.key.cmp(&a.key)),
    }
    let total = hits.len();
    let page = hits
        .iter()
        .skip(query.offset)
        .take(limit)
        .filter_map(|h| app.store.node(&h.id))
        .collect();
    (page, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_search_ignores_case_only() {
        assert!(contains_folded("Web-01.Example", "web-01"));
        assert!(contains_folded("abc", ""));
        assert!(!contains_folded("web-01", "web-02"));
        assert!(contains_folded("Ärger-1", "ärger"));
    }

    #[test]
    fn sorts_and_labels_parse_or_say_why() {
        assert!(parse_sort("-last_seen").is_ok_and(|s| s == (Sort::LastSeen, true)));
        assert!(parse_sort("name").is_ok_and(|s| s == (Sort::Name, false)));
        let e = parse_sort("size")
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(e.contains("id, name, last_seen or arch"), "{e}");
        assert_eq!(
            parse_label(Some("env=prod")).ok().flatten(),
            Some(("env".into(), "prod".into()))
        );
        assert!(parse_label(Some("env")).is_err());
        assert!(parse_label(Some("../x=1")).is_err());
        assert!(parse_label(Some("")).is_ok_and(|l| l.is_none()));
    }
}

//! The node endpoints: a node's keepalive (which enrolls it with the
//! enrollment token, [`crate::api::enroll`]) and its record
//! (`GET /api/v1/keepalive?node_id=`); for admins, the fleet
//! (`GET /api/v1/nodes`, paged or streamed), one node's view of its
//! targets, forgetting a node or revoking its secret, and pins.
//!
//! The fleet listing: with `limit` or `after` the answer is one page, a JSON
//! array of at most `limit` nodes (default [`DEFAULT_PAGE`], at most
//! [`MAX_PAGE`]) with ids after `after`, and, when more follow,
//! `X-Next-After: ID` and a `Link: <…>; rel="next"` header naming the next
//! page. A page is built from the in-memory mirror under one short read lock.
//! Without either, the answer is what it always was, every node in one JSON
//! array, so a client written before paging never gets a cut fleet; it is
//! made one page at a time as the client reads (a chunked stream), so its
//! memory is one page's, not the fleet's. Paging through a fleet that
//! changes sees every node that stays registered exactly once: the cursor is
//! a node id, not an offset. With any search parameter (`q`, `state`,
//! `arch`, `label`, `bin`, `version`, `sort`, `offset`) the answer is one
//! page of the matching nodes and `X-Total-Count` ([`crate::api::fleet`]).

use binproxy_protocol::{
    check_arch, check_bin_name, check_node_id, check_sha256, check_version, names::normalize_arch,
    BinView, Keepalive, KeepaliveReply, Node, NodeView, Pin, Secret,
};
use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::api::app::App;
use crate::api::auth::NodeCaller;
use crate::api::enroll::{enroll, Enrolled};
use crate::api::fleet::{search, NodeQuery};
use crate::api::reply::{Answer, ApiError, Body, Reply, NO_STORE};
use crate::api::request::{check_text, read_json, Request, Url};
use crate::store::Store;
use crate::time::now_rfc3339;

type Answered<T> = Result<T, ApiError>;

const MAX_LABELS: usize = 64;

/// `POST /api/v1/keepalive`: registers or updates the node (durably when
/// new or changed) and answers its targets; with the enrollment token, it
/// enrolls the node first ([`crate::api::enroll`]).
pub fn keepalive(app: &App, caller: &NodeCaller, rq: &mut Request) -> Answer {
    let (node, bins_given, proposed) = keepalive_node(caller, rq)?;
    let enrolled = match caller {
        NodeCaller::Enroll => Some(enroll(app, &node.node_id, proposed.as_ref())?),
        _ => None,
    };
    let node = app.store.keepalive(node, bins_given, SystemTime::now())?;
    keepalive_reply(app, node, bins_given, enrolled)
}

/// The steady state of a fleet: a keepalive that changes nothing but
/// `last_seen`, answered from memory without a blocking thread. `None`
/// when it needs a write: [`keepalive`] then answers it.
pub fn keepalive_in_memory(app: &App, caller: &NodeCaller, rq: &mut Request) -> Option<Answer> {
    if *caller == NodeCaller::Enroll {
        return None;
    }
    let (mut node, bins_given, _) = match keepalive_node(caller, rq) {
        Ok(parsed) => parsed,
        Err(e) => return Some(Err(e)),
    };
    let node = app
        .store
        .keepalive_unchanged(&mut node, bins_given, SystemTime::now())?;
    Some(keepalive_reply(app, node, bins_given, None))
}

/// The node a keepalive describes, checked, whether it listed its bins, and
/// the secret it proposes (used only with the enrollment token).
fn keepalive_node(caller: &NodeCaller, rq: &mut Request) -> Answered<(Node, bool, Option<Secret>)> {
    let mut k: Keepalive = read_json(rq)?;
    let bins_given = k.bins.is_some();
    let proposed = k.proposed_secret.take();
    let node = node_from_keepalive(k)?;
    if *caller != NodeCaller::Enroll {
        caller.may_write_as(&node.node_id)?;
    }
    Ok((node, bins_given, proposed))
}

fn keepalive_reply(app: &App, node: Node, bins_given: bool, enrolled: Option<Enrolled>) -> Answer {
    let (mut targets, mut reasons) = (BTreeMap::new(), BTreeMap::new());
    if bins_given {
        for bin in node.bins.keys() {
            let decision = app.decide(&node, bin, None)?;
            targets.insert(bin.clone(), decision.target);
            reasons.insert(bin.clone(), decision.reason);
        }
    }
    Ok(Reply::json(
        200,
        &KeepaliveReply {
            node,
            server_time: now_rfc3339(),
            targets,
            reasons,
            enrolled: enrolled.is_some(),
            node_secret: enrolled.and_then(|e| e.node_secret),
        },
    )
    .header("Cache-Control", NO_STORE))
}

/// `DELETE /api/v1/nodes/{node_id}`: forgets the node, its pins and its
/// secret; its progress reports stay with the releases.
pub fn delete_node(app: &App, node_id: &str) -> Answer {
    check_node_id(node_id)?;
    if !app.store.delete_node(node_id)? {
        return Err(ApiError::not_found(format!("unknown node {node_id}")));
    }
    log::info!("node {node_id} deleted");
    Ok(Reply::json(
        200,
        &serde_json::json!({"node_id": node_id, "deleted": true}),
    ))
}

/// `DELETE /api/v1/nodes/{node_id}/secret`: the node must enroll again.
pub fn revoke_node(app: &App, node_id: &str) -> Answer {
    check_node_id(node_id)?;
    if !app.store.revoke_node(node_id)? {
        return Err(ApiError::not_found(format!(
            "node {node_id} is not enrolled"
        )));
    }
    log::info!("node {node_id}: secret revoked");
    Ok(Reply::json(
        200,
        &serde_json::json!({"node_id": node_id, "revoked": true}),
    ))
}

/// Checks every field of a keepalive and builds the node record it describes.
fn node_from_keepalive(mut k: Keepalive) -> Result<Node, ApiError> {
    if k.node().is_empty() {
        return Err(ApiError::bad_request(
            "missing field node_id (or nodeName, as the old agents name the node)",
        ));
    }
    if k.node_id.is_empty() {
        k.node_id.clone_from(&k.node_name);
    }
    check_node_id(&k.node_id)?;
    if !k.cpu_arch.is_empty() {
        check_arch(&k.cpu_arch)?;
    }
    for (field, value) in [
        ("os", &k.os),
        ("os_release", &k.os_release),
        ("node_name", &k.node_name),
        ("bin_proxy_version", &k.bin_proxy_version),
    ] {
        check_text(field, value)?;
    }
    check_labels(&k.labels)?;
    let mut bins = BTreeMap::new();
    for (bin, sha) in k.bins.unwrap_or_default() {
        check_bin_name(&bin)?;
        let sha = if sha.is_empty() {
            sha
        } else {
            check_sha256("bins sha256", &sha)?
        };
        bins.insert(bin, sha);
    }
    Ok(Node {
        cpu_arch: normalize_arch(&k.cpu_arch).to_owned(),
        node_id: k.node_id,
        os: k.os,
        os_release: k.os_release,
        node_name: k.node_name,
        bin_proxy_version: k.bin_proxy_version,
        labels: k.labels,
        bins,
        ..Node::default()
    })
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::bad_request(format!(
            "invalid labels: at most {MAX_LABELS}"
        )));
    }
    for (key, value) in labels {
        if check_bin_name(key).is_err() {
            return Err(ApiError::bad_request(format!(
                "invalid label key {key:?}: must be 1 to 64 of A-Z a-z 0-9 . _ -"
            )));
        }
        check_text("label value", value)?;
    }
    Ok(())
}

/// `GET /api/v1/keepalive?node_id=`: the node's record. Asked by the node
/// itself (the old agents' keepalive), it also proves the node alive.
pub fn node_status(app: &App, caller: Option<&NodeCaller>, url: &Url) -> Answer {
    let id = url
        .query("node_id")
        .ok_or_else(|| ApiError::bad_request("missing query parameter node_id"))?;
    check_node_id(id)?;
    let by_itself = caller.is_some_and(|c| c.may_write_as(id).is_ok());
    let node = if by_itself {
        app.store.seen(id, SystemTime::now())
    } else {
        app.store.node(id)
    }
    .ok_or_else(|| ApiError::not_found(format!("unknown node {id}")))?;
    Ok(Reply::json(200, &node).header("Cache-Control", NO_STORE))
}

/// `PUT /api/v1/nodes/{node}/pins/{bin}`: holds the node on a version of
/// `bin` that exists, whatever the releases say.
pub fn put_pin(app: &App, node: &str, bin: &str, rq: &mut Request) -> Answer {
    check_node_id(node)?;
    check_bin_name(bin)?;
    let pin: Pin = read_json(rq)?;
    check_version(&pin.version)?;
    if app.store.versions(bin, Some(&pin.version))?.is_empty() {
        return Err(ApiError::not_found(format!(
            "unknown version {} of {bin}",
            pin.version
        )));
    }
    app.store.set_pin(node, bin, Some(&pin.version))?;
    log::info!("{node}: {bin} pinned to {}", pin.version);
    Ok(Reply::json(
        200,
        &Pin {
            node_id: node.to_owned(),
            bin_name: bin.to_owned(),
            version: pin.version,
        },
    ))
}

pub fn delete_pin(app: &App, node: &str, bin: &str) -> Answer {
    check_node_id(node)?;
    check_bin_name(bin)?;
    let version = app
        .store
        .pin(node, bin)
        .ok_or_else(|| ApiError::not_found(format!("{node} has no pin for {bin}")))?;
    app.store.set_pin(node, bin, None)?;
    log::info!("{node}: {bin} unpinned");
    Ok(Reply::json(
        200,
        &Pin {
            node_id: node.to_owned(),
            bin_name: bin.to_owned(),
            version,
        },
    ))
}

/// `GET /api/v1/nodes/{node_id}`: per bin, the target and why.
pub fn node_view(app: &App, id: &str) -> Answer {
    check_node_id(id)?;
    let node = app
        .store
        .node(id)
        .ok_or_else(|| ApiError::not_found(format!("unknown node {id}")))?;
    let mut names: std::collections::BTreeSet<String> = node.bins.keys().cloned().collect();
    names.extend(app.store.live_releases().iter().map(|r| r.bin_name.clone()));
    names.extend(app.store.pinned_bins(id));
    let mut bins = BTreeMap::new();
    for bin in names {
        let d = app.decide(&node, &bin, None)?;
        bins.insert(
            bin,
            BinView {
                target: d.target,
                reason: d.reason,
            },
        );
    }
    Ok(Reply::json(200, &NodeView { node, bins }))
}

// ---- the fleet listing ----

/// Nodes per page when `limit` is not given, and per piece of a stream.
pub const DEFAULT_PAGE: usize = 1000;
/// The largest `limit`.
pub const MAX_PAGE: usize = 10_000;

pub fn list_nodes(app: &App, url: &Url) -> Result<Reply, ApiError> {
    let limit = url.query("limit").map(parse_limit).transpose()?;
    if let Some(query) = NodeQuery::parse(app, url)? {
        if url.query("after").is_some() {
            return Err(ApiError::bad_request(
                "after pages the whole fleet by id; a search pages with offset",
            ));
        }
        let (page, total) = search(app, &query, limit.unwrap_or(DEFAULT_PAGE));
        return Ok(Reply::json(200, &page).header("X-Total-Count", total.to_string()));
    }
    // `after=` (empty) is the first page, so a pager can start with it.
    let after = match url.query("after") {
        None => None,
        Some("") => Some(None),
        Some(id) => {
            check_node_id(id).map_err(|e| ApiError::bad_request(format!("after: {e}")))?;
            Some(Some(id))
        }
    };
    if limit.is_none() && after.is_none() {
        return Ok(every_node());
    }
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    let (page, more) = app.store.nodes_page(after.flatten(), limit);
    let mut reply = Reply::json(200, &page);
    if let (true, Some(last)) = (more, page.last()) {
        let id = &last.node_id;
        reply = reply.header("X-Next-After", id).header(
            "Link",
            format!("</api/v1/nodes?limit={limit}&after={id}>; rel=\"next\""),
        );
    }
    Ok(reply)
}

fn parse_limit(text: &str) -> Result<usize, ApiError> {
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid limit {text:?}: a number from 1 to {MAX_PAGE}"
            ))
        })
}

/// Every node as one JSON array, made a page at a time.
fn every_node() -> Reply {
    let mut after: Option<String> = None;
    let mut started = false;
    let mut done = false;
    let next = move |store: &Store| {
        if done {
            return None;
        }
        let (page, more) = store.nodes_page(after.as_deref(), DEFAULT_PAGE);
        let mut piece = Vec::with_capacity(page.len() * 256 + 2);
        for node in &page {
            piece.push(if started { b',' } else { b'[' });
            started = true;
            if let Err(e) = serde_json::to_writer(&mut piece, node) {
                // The client sees a cut array, not a short fleet.
                log::error!("listing nodes: encoding {}: {e}", node.node_id);
                done = true;
                return Some(piece);
            }
        }
        if !more {
            piece.extend_from_slice(if started { b"]" } else { b"[]" });
            done = true;
        }
        after = page.last().map(|n| n.node_id.clone());
        Some(piece)
    };
    Reply {
        status: 200,
        headers: vec![("Content-Type", "application/json".into())],
        body: Body::Stream(Box::new(next)),
    }
}

//! `GET /api/v1/nodes`: the fleet, by node id, in pages or streamed.
//!
//! With `limit` or `after` the answer is one page: a JSON array of at most
//! `limit` nodes (default [`DEFAULT_PAGE`], at most [`MAX_PAGE`]) with ids
//! after `after`, and, when more follow, `X-Next-After: ID` and a `Link:
//! <…>; rel="next"` header naming the next page. A page is built from the
//! in-memory mirror under one short read lock.
//!
//! Without either, the answer is what it always was, every node in one JSON
//! array, so a client written before paging never gets a cut fleet; it is
//! made one page at a time as the client reads (a chunked stream), so its
//! memory is one page's, not the fleet's. Paging through a fleet that
//! changes sees every node that stays registered exactly once: the cursor is
//! a node id, not an offset.

use binproxy_protocol::check_node_id;

use crate::handlers::App;
use crate::http::{ApiError, Body, Reply, Url};

/// Nodes per page when `limit` is not given, and per piece of a stream.
pub const DEFAULT_PAGE: usize = 1000;
/// The largest `limit`.
pub const MAX_PAGE: usize = 10_000;

pub fn list_nodes(app: &App, url: &Url) -> Result<Reply, ApiError> {
    let limit = url.query("limit").map(parse_limit).transpose()?;
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
    let next = move |app: &App| {
        if done {
            return None;
        }
        let (page, more) = app.store.nodes_page(after.as_deref(), DEFAULT_PAGE);
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

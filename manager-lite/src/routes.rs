//! The route table: which handler answers a (method, path), and which routes
//! need the admin token. Unknown paths get 404, known paths with another
//! method 405 (with `Allow`); admin routes check the token before anything
//! else, so an anonymous caller learns nothing from validation errors.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;
use tiny_http::{Method, Request};

use crate::handlers::{self, App};
use crate::http::{header, ApiError, Reply, Url};

/// Answers one request. Never panics outward: a handler panic is logged and
/// answered with 500, and the worker goes on.
pub fn handle(app: &App, mut rq: Request) {
    let started = Instant::now();
    let method = rq.method().clone();
    let path = rq.url().split('?').next().unwrap_or("").to_owned();
    let reply = catch_unwind(AssertUnwindSafe(|| dispatch(app, &mut rq)))
        .unwrap_or_else(|_| Err(ApiError::internal("internal error (logged)")))
        .unwrap_or_else(|e| {
            if e.status >= 500 {
                log::error!("{method} {path}: {}", e.message);
            }
            e.into_reply()
        });
    let status = reply.status;
    if let Err(e) = rq.respond(reply.into_response()) {
        log::debug!("{method} {path}: sending the answer failed: {e}");
    }
    log::debug!(
        "{method} {path} {status} {}ms",
        started.elapsed().as_millis()
    );
}

/// A known path, with the names it carries (still unchecked).
#[derive(Clone, Copy)]
enum Route<'a> {
    Health,
    Keepalive,
    Bins,
    Bin(&'a str),
    BinProgress(&'a str),
    BinVersions(&'a str),
    Download(&'a str),
    Releases,
    Release(&'a str),
    ReleaseOp(&'a str, &'a str),
    Nodes,
    Node(&'a str),
    Pin(&'a str, &'a str),
}

impl<'a> Route<'a> {
    fn parse(segments: &[&'a str]) -> Option<Route<'a>> {
        Some(match *segments {
            ["health"] => Route::Health,
            ["api", "v1", "keepalive"] => Route::Keepalive,
            ["api", "v1", "bins"] => Route::Bins,
            ["api", "v1", "bins", bin] => Route::Bin(bin),
            ["api", "v1", "bins", bin, "progress"] => Route::BinProgress(bin),
            ["api", "v1", "bins", bin, "versions"] => Route::BinVersions(bin),
            ["api", "v1", "download", name] => Route::Download(name),
            ["api", "v1", "releases"] => Route::Releases,
            ["api", "v1", "releases", id] => Route::Release(id),
            ["api", "v1", "releases", id, op @ ("approve" | "pause" | "resume" | "promote" | "rollback" | "cancel")] => {
                Route::ReleaseOp(id, op)
            }
            ["api", "v1", "nodes"] => Route::Nodes,
            ["api", "v1", "nodes", node] => Route::Node(node),
            ["api", "v1", "nodes", node, "pins", bin] => Route::Pin(node, bin),
            _ => return None,
        })
    }

    fn allow(self) -> &'static str {
        match self {
            Route::Health
            | Route::Bins
            | Route::Download(_)
            | Route::Release(_)
            | Route::Nodes
            | Route::Node(_) => "GET, HEAD",
            Route::ReleaseOp(..) => "POST",
            Route::Pin(..) => "PUT, DELETE",
            Route::Keepalive
            | Route::Bin(_)
            | Route::BinProgress(_)
            | Route::BinVersions(_)
            | Route::Releases => "GET, HEAD, POST",
        }
    }
}

#[derive(PartialEq, Eq)]
enum Verb {
    /// GET, and HEAD (tiny_http leaves out the body).
    Get,
    Post,
    Put,
    Delete,
    Other,
}

fn dispatch(app: &App, rq: &mut Request) -> Result<Reply, ApiError> {
    let url = Url::parse(rq.url());
    let segments: Vec<&str> = url.segments.iter().map(String::as_str).collect();
    let route = Route::parse(&segments).ok_or_else(|| {
        let path: String = rq
            .url()
            .split('?')
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        ApiError::not_found(format!("no such route: {path}"))
    })?;
    let verb = match rq.method() {
        Method::Get | Method::Head => Verb::Get,
        Method::Post => Verb::Post,
        Method::Put => Verb::Put,
        Method::Delete => Verb::Delete,
        _ => Verb::Other,
    };
    match (route, verb) {
        // Node-facing.
        (Route::Health, Verb::Get) => handlers::health(),
        (Route::Keepalive, Verb::Get) => handlers::node_status(app, &url),
        (Route::Keepalive, Verb::Post) => handlers::keepalive(app, rq),
        (Route::Bin(bin), Verb::Get) => handlers::bin_target(app, bin, &url, rq),
        (Route::Bin(bin), Verb::Post) => handlers::installed(app, bin, rq),
        (Route::BinProgress(bin), Verb::Post) => handlers::report_progress(app, bin, rq),
        (Route::Download(name), Verb::Get) => handlers::download(app, name, rq),
        // Admin.
        (Route::Bins, Verb::Get) => admin(app, rq).and_then(|_| handlers::list_bins(app)),
        (Route::BinProgress(bin), Verb::Get) => {
            admin(app, rq).and_then(|_| handlers::list_progress(app, bin, &url))
        }
        (Route::BinVersions(bin), Verb::Get) => {
            admin(app, rq).and_then(|_| handlers::bin_versions(app, bin))
        }
        (Route::BinVersions(bin), Verb::Post) => {
            admin(app, rq).and_then(|_| handlers::upload(app, bin, &url, rq))
        }
        (Route::Releases, Verb::Get) => {
            admin(app, rq).and_then(|_| handlers::list_releases(app, &url))
        }
        (Route::Releases, Verb::Post) => {
            admin(app, rq).and_then(|actor| handlers::create_release(app, &actor, rq))
        }
        (Route::Release(id), Verb::Get) => admin(app, rq).and_then(|_| handlers::release(app, id)),
        (Route::Nodes, Verb::Get) => admin(app, rq).and_then(|_| handlers::list_nodes(app)),
        (Route::ReleaseOp(id, op), Verb::Post) => {
            admin(app, rq).and_then(|actor| handlers::release_op(app, &actor, id, op, rq))
        }
        (Route::Node(node), Verb::Get) => {
            admin(app, rq).and_then(|_| handlers::node_view(app, node))
        }
        (Route::Pin(node, bin), Verb::Put) => {
            admin(app, rq).and_then(|_| handlers::put_pin(app, node, bin, rq))
        }
        (Route::Pin(node, bin), Verb::Delete) => {
            admin(app, rq).and_then(|_| handlers::delete_pin(app, node, bin))
        }
        (route, _) => Err(ApiError::method_not_allowed(route.allow())),
    }
}

fn admin(app: &App, rq: &Request) -> Result<crate::auth::Actor, ApiError> {
    let result = app.auth.admin(header(rq, "Authorization"));
    if result.is_err() && rq.body_length().unwrap_or(0) > 0 {
        // The body stays unread: ask the client to close instead of reusing
        // a connection whose next bytes are the rest of that body.
        return result.map_err(|e| ApiError { close: true, ..e });
    }
    result
}

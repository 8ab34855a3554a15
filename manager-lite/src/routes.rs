//! The route table: which handler answers a (method, path), and which role an
//! admin route needs. Unknown paths get 404, known paths with another method
//! 405 (with `Allow`); admin routes check the token (401) and its role (403)
//! before anything else, so a caller learns nothing from validation errors.
//! Every admin write, whatever its outcome, leaves an audit record.

use crate::httpd::{Method, Request};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use binproxy_protocol::{AuditRecord, Role};

use crate::auth::{Actor, NodeCaller};
use crate::handlers::{self, App};
use crate::http::{header, ApiError, Reply, Url};

/// Answers one request. Never panics outward: a handler panic is logged and
/// answered with 500, and the worker goes on.
pub fn handle(app: &App, rq: &mut Request) -> Reply {
    let started = Instant::now();
    let method = rq.method().clone();
    let path = rq.url().split('?').next().unwrap_or("").to_owned();
    let mut audit = Audit::default();
    let reply = catch_unwind(AssertUnwindSafe(|| dispatch(app, rq, &mut audit)))
        .unwrap_or_else(|_| Err(ApiError::internal("internal error (logged)")))
        .unwrap_or_else(|e| {
            if e.status >= 500 {
                log::error!("{method} {path}: {}", e.message);
            }
            e.into_reply()
        });
    let status = reply.status;
    app.metrics.request(audit.route, status, started.elapsed());
    if audit.write {
        record(app, audit, &method, &path, status, rq.remote_addr());
    }
    log::debug!(
        "{method} {path} {status} {}ms",
        started.elapsed().as_millis()
    );
    reply
}

/// Stores the audit record of an admin write before its answer goes out.
fn record(
    app: &App,
    audit: Audit,
    method: &Method,
    path: &str,
    status: u16,
    from: std::net::SocketAddr,
) {
    let entry = AuditRecord {
        id: 0,
        at: crate::time::now_rfc3339(),
        actor: audit.actor,
        method: method.to_string(),
        path: path.chars().take(300).collect(),
        status,
        remote_addr: Some(from.ip().to_string()),
    };
    if let Err(e) = app.store.add_audit(entry) {
        log::error!("audit record of {method} {path}: {e}");
    }
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
    Signature(&'a str, &'a str),
    Download(&'a str),
    Releases,
    Release(&'a str),
    ReleaseOp(&'a str, &'a str),
    Nodes,
    Node(&'a str),
    Pin(&'a str, &'a str),
    Tokens,
    Token(&'a str),
    Audit,
    NodeSecret(&'a str),
    /// The admin page: `/` (empty name) and its assets `/ui/{name}`.
    Page(&'a str),
    Metrics,
}

impl<'a> Route<'a> {
    fn parse(segments: &[&'a str]) -> Option<Route<'a>> {
        Some(match *segments {
            ["health"] => Route::Health,
            [""] => Route::Page(""),
            ["ui", name] => Route::Page(name),
            ["api", "v1", "keepalive"] => Route::Keepalive,
            ["api", "v1", "bins"] => Route::Bins,
            ["api", "v1", "bins", bin] => Route::Bin(bin),
            ["api", "v1", "bins", bin, "progress"] => Route::BinProgress(bin),
            ["api", "v1", "bins", bin, "versions"] => Route::BinVersions(bin),
            ["api", "v1", "bins", bin, "versions", version, "signature"] => {
                Route::Signature(bin, version)
            }
            ["api", "v1", "download", name] => Route::Download(name),
            ["api", "v1", "releases"] => Route::Releases,
            ["api", "v1", "releases", id] => Route::Release(id),
            ["api", "v1", "releases", id, op @ ("approve" | "pause" | "resume" | "promote" | "rollback" | "cancel")] => {
                Route::ReleaseOp(id, op)
            }
            ["api", "v1", "nodes"] => Route::Nodes,
            ["api", "v1", "nodes", node] => Route::Node(node),
            ["api", "v1", "nodes", node, "pins", bin] => Route::Pin(node, bin),
            ["api", "v1", "nodes", node, "secret"] => Route::NodeSecret(node),
            ["api", "v1", "tokens"] => Route::Tokens,
            ["api", "v1", "tokens", name] => Route::Token(name),
            ["api", "v1", "audit"] => Route::Audit,
            ["metrics"] => Route::Metrics,
            _ => return None,
        })
    }

    /// Paths that only admins use: a write to one is audited, even when
    /// its method is wrong.
    fn is_admin(self) -> bool {
        !matches!(
            self,
            Route::Health
                | Route::Page(_)
                | Route::Keepalive
                | Route::Bin(_)
                | Route::BinProgress(_)
                | Route::Download(_)
        )
    }

    /// The route's name in metrics: bounded, unlike paths.
    fn name(self) -> &'static str {
        match self {
            Route::Health => "Health",
            Route::Keepalive => "Keepalive",
            Route::Bins => "Bins",
            Route::Bin(_) => "Bin",
            Route::BinProgress(_) => "BinProgress",
            Route::BinVersions(_) => "BinVersions",
            Route::Signature(..) => "Signature",
            Route::Download(_) => "Download",
            Route::Releases => "Releases",
            Route::Release(_) => "Release",
            Route::ReleaseOp(..) => "ReleaseOp",
            Route::Nodes => "Nodes",
            Route::Node(_) => "Node",
            Route::Pin(..) => "Pin",
            Route::Tokens => "Tokens",
            Route::Token(_) => "Token",
            Route::Audit => "Audit",
            Route::NodeSecret(_) => "NodeSecret",
            Route::Metrics => "Metrics",
            Route::Page(_) => "Page",
        }
    }

    fn allow(self) -> &'static str {
        match self {
            Route::Health
            | Route::Page(_)
            | Route::Bins
            | Route::Download(_)
            | Route::Release(_)
            | Route::Nodes
            | Route::Node(_)
            | Route::Audit
            | Route::Metrics => "GET, HEAD",
            Route::ReleaseOp(..) => "POST",
            Route::Token(_) | Route::NodeSecret(_) => "DELETE",
            Route::Pin(..) => "PUT, DELETE",
            Route::Signature(..) => "PUT",
            Route::Keepalive
            | Route::Bin(_)
            | Route::BinProgress(_)
            | Route::BinVersions(_)
            | Route::Releases
            | Route::Tokens => "GET, HEAD, POST",
        }
    }
}

#[derive(PartialEq, Eq)]
enum Verb {
    /// GET, and HEAD (the server leaves out the body).
    Get,
    Post,
    Put,
    Delete,
    Other,
}

fn dispatch(app: &App, rq: &mut Request, audit: &mut Audit) -> Result<Reply, ApiError> {
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
    audit.route = route.name();
    let verb = match rq.method() {
        Method::Get | Method::Head => Verb::Get,
        Method::Post => Verb::Post,
        Method::Put => Verb::Put,
        Method::Delete => Verb::Delete,
        Method::Other(_) => Verb::Other,
    };
    audit.write = route.is_admin() && verb != Verb::Get;
    match (route, verb) {
        // Node-facing: with node authentication on, a node's secret.
        (Route::Health, Verb::Get) => handlers::health(),
        (Route::Page(name), Verb::Get) => crate::page::asset(name),
        (Route::Keepalive, Verb::Get) => {
            node_read(app, rq).and_then(|()| handlers::node_status(app, &url))
        }
        (Route::Keepalive, Verb::Post) => {
            node(app, rq).and_then(|c| handlers::keepalive(app, &c, rq))
        }
        (Route::Bin(bin), Verb::Get) => {
            node_read(app, rq).and_then(|()| handlers::bin_target(app, bin, &url, rq))
        }
        (Route::Bin(bin), Verb::Post) => {
            node(app, rq).and_then(|c| handlers::installed(app, &c, bin, rq))
        }
        (Route::BinProgress(bin), Verb::Post) => {
            node(app, rq).and_then(|c| handlers::report_progress(app, &c, bin, rq))
        }
        (Route::Download(name), Verb::Get) => {
            node_read(app, rq).and_then(|()| handlers::download(app, name, rq))
        }
        // Admin reads: every role.
        (Route::Bins, Verb::Get) => {
            need(app, rq, audit, READ).and_then(|_| handlers::list_bins(app))
        }
        (Route::BinProgress(bin), Verb::Get) => {
            need(app, rq, audit, READ).and_then(|_| handlers::list_progress(app, bin, &url))
        }
        (Route::BinVersions(bin), Verb::Get) => {
            need(app, rq, audit, READ).and_then(|_| handlers::bin_versions(app, bin))
        }
        (Route::Releases, Verb::Get) => {
            need(app, rq, audit, READ).and_then(|_| handlers::list_releases(app, &url))
        }
        (Route::Release(id), Verb::Get) => {
            need(app, rq, audit, READ).and_then(|_| handlers::release(app, id))
        }
        (Route::Nodes, Verb::Get) => {
            need(app, rq, audit, READ).and_then(|_| handlers::list_nodes(app))
        }
        (Route::Node(node), Verb::Get) => {
            need(app, rq, audit, READ).and_then(|_| handlers::node_view(app, node))
        }
        (Route::Tokens, Verb::Get) => {
            need(app, rq, audit, READ).and_then(|_| handlers::list_tokens(app))
        }
        (Route::Audit, Verb::Get) => {
            need(app, rq, audit, READ).and_then(|_| handlers::list_audit(app, &url))
        }
        (Route::Metrics, Verb::Get) if app.metrics.public => handlers::metrics(app),
        (Route::Metrics, Verb::Get) => {
            need(app, rq, audit, READ).and_then(|_| handlers::metrics(app))
        }
        // Admin writes.
        (Route::BinVersions(bin), Verb::Post) => {
            need(app, rq, audit, PUBLISH).and_then(|_| handlers::upload(app, bin, &url, rq))
        }
        (Route::Signature(bin, version), Verb::Put) => need(app, rq, audit, PUBLISH)
            .and_then(|actor| handlers::put_signature(app, &actor, bin, version, &url, rq)),
        (Route::Releases, Verb::Post) => need(app, rq, audit, PUBLISH)
            .and_then(|actor| handlers::create_release(app, &actor, rq)),
        (Route::ReleaseOp(id, op), Verb::Post) => need(app, rq, audit, op_roles(op))
            .and_then(|actor| handlers::release_op(app, &actor, id, op, rq)),
        (Route::Pin(node, bin), Verb::Put) => {
            need(app, rq, audit, ADMIN).and_then(|_| handlers::put_pin(app, node, bin, rq))
        }
        (Route::Pin(node, bin), Verb::Delete) => {
            need(app, rq, audit, ADMIN).and_then(|_| handlers::delete_pin(app, node, bin))
        }
        (Route::Tokens, Verb::Post) => {
            need(app, rq, audit, ADMIN).and_then(|actor| handlers::create_token(app, &actor, rq))
        }
        (Route::NodeSecret(node), Verb::Delete) => {
            need(app, rq, audit, ADMIN).and_then(|_| handlers::revoke_node(app, node))
        }
        (Route::Token(name), Verb::Delete) => {
            need(app, rq, audit, ADMIN).and_then(|_| handlers::revoke_token(app, name))
        }
        (route, _) => Err(ApiError::method_not_allowed(route.allow())),
    }
}

/// Who sent a node-facing request (anyone, when node auth is off).
fn node(app: &App, rq: &Request) -> Result<NodeCaller, ApiError> {
    app.auth
        .node_caller(header(rq, "Authorization"), &app.store)
}

/// Node reads: a node's secret or an admin token, not the enrollment token.
fn node_read(app: &App, rq: &Request) -> Result<(), ApiError> {
    node(app, rq)?.may_read()
}

/// Roles besides `admin` (which may do everything) allowed on a route.
const READ: &[Role] = &[Role::Viewer, Role::Publisher, Role::Approver];
const PUBLISH: &[Role] = &[Role::Publisher];
const ADMIN: &[Role] = &[];

fn op_roles(op: &str) -> &'static [Role] {
    match op {
        "pause" => &[Role::Publisher, Role::Approver],
        "cancel" => ADMIN,
        _ => &[Role::Approver],
    }
}

/// What the audit log (and the metrics) need to know about a request.
struct Audit {
    /// An admin write (authenticated or not): recorded.
    write: bool,
    actor: Option<String>,
    /// The route's name for metrics; `None` until a route matched.
    route: &'static str,
}

impl Default for Audit {
    fn default() -> Self {
        Self {
            write: false,
            actor: None,
            route: "None",
        }
    }
}

/// Authenticates an admin request and checks its role: 401 for no or an
/// unknown token, 403 for a role that may not.
fn need(app: &App, rq: &Request, audit: &mut Audit, roles: &[Role]) -> Result<Actor, ApiError> {
    audit.write = !matches!(rq.method(), Method::Get | Method::Head);
    let actor = app
        .auth
        .authenticate(header(rq, "Authorization"), &app.store)
        .map_err(|e| {
            // The body stays unread: ask the client to close instead of
            // reusing a connection whose next bytes are the rest of it.
            let close = rq.body_length() != Some(0);
            ApiError { close, ..e }
        })?;
    audit.actor = Some(actor.name.clone());
    if actor.role == Role::Admin || roles.contains(&actor.role) {
        return Ok(actor);
    }
    let allowed: Vec<&str> = std::iter::once("admin")
        .chain(roles.iter().map(|r| r.as_str()))
        .collect();
    Err(ApiError::forbidden(format!(
        "this needs role {}; token {} is {}",
        allowed.join(" or "),
        actor.name,
        actor.role.as_str()
    )))
}

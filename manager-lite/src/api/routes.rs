//! The route table: which handler answers a (method, path), who may call it,
//! what body it reads and whether it may block. Unknown paths get 404,
//! known paths with another method 405 (with `Allow`); a route's caller is
//! checked (401, then 403 for a role that may not) before its body is read,
//! so a caller learns nothing from validation errors and an unauthenticated
//! client never costs a body read, a blocking thread or a durable write.
//!
//! A request goes through [`admit`] (route, caller, body and thread class,
//! in memory, on the server's async side) and then [`run`] (the handler,
//! the metrics and the audit record). Every authenticated admin write,
//! whatever its outcome, leaves an audit record; unauthenticated ones are
//! counted, and summed up in at most one audit record a minute
//! ([`audit::summarize_refused`]), so anonymous traffic cannot push real admin
//! actions out of the audit log.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use binproxy_protocol::{ReleaseOp, Role, MAX_JSON_BODY};

use crate::api::app::App;
use crate::api::auth::{op_roles, Actor, NodeCaller};
use crate::api::reply::{conditional, private, ApiError, Reply};
use crate::api::request::{header, Method, Request, Url};
use crate::api::{access, audit, bins, fleet, health, metrics, nodes, releases};

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
    Version(&'a str, &'a str),
    Download(&'a str),
    Releases,
    Release(&'a str),
    ReleaseOp(&'a str, ReleaseOp),
    /// `GET /api/v1/releases/{id}/failures`.
    ReleaseFailures(&'a str),
    /// `GET /api/v1/fleet`: the fleet counted.
    Fleet,
    Nodes,
    Node(&'a str),
    Pin(&'a str, &'a str),
    Tokens,
    Token(&'a str),
    Audit,
    /// `GET /api/v1/backup`: the backup archive.
    Backup,
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
            ["api", "v1", "bins", bin, "versions", version] => Route::Version(bin, version),
            ["api", "v1", "bins", bin, "versions", version, "signature"] => {
                Route::Signature(bin, version)
            }
            ["api", "v1", "download", name] => Route::Download(name),
            ["api", "v1", "releases"] => Route::Releases,
            ["api", "v1", "releases", id] => Route::Release(id),
            ["api", "v1", "releases", id, "failures"] => Route::ReleaseFailures(id),
            ["api", "v1", "releases", id, op] => Route::ReleaseOp(id, ReleaseOp::parse(op)?),
            ["api", "v1", "fleet"] => Route::Fleet,
            ["api", "v1", "nodes"] => Route::Nodes,
            ["api", "v1", "nodes", node] => Route::Node(node),
            ["api", "v1", "nodes", node, "pins", bin] => Route::Pin(node, bin),
            ["api", "v1", "nodes", node, "secret"] => Route::NodeSecret(node),
            ["api", "v1", "tokens"] => Route::Tokens,
            ["api", "v1", "tokens", name] => Route::Token(name),
            ["api", "v1", "audit"] => Route::Audit,
            ["api", "v1", "backup"] => Route::Backup,
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
            Route::Version(..) => "Version",
            Route::Download(_) => "Download",
            Route::Releases => "Releases",
            Route::Release(_) => "Release",
            Route::ReleaseOp(..) => "ReleaseOp",
            Route::ReleaseFailures(_) => "ReleaseFailures",
            Route::Fleet => "Fleet",
            Route::Nodes => "Nodes",
            Route::Node(_) => "Node",
            Route::Pin(..) => "Pin",
            Route::Tokens => "Tokens",
            Route::Token(_) => "Token",
            Route::Audit => "Audit",
            Route::Backup => "Backup",
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
            | Route::ReleaseFailures(_)
            | Route::Fleet
            | Route::Nodes
            | Route::Audit
            | Route::Backup
            | Route::Metrics => "GET, HEAD",
            Route::Node(_) => "GET, HEAD, DELETE",
            Route::ReleaseOp(..) => "POST",
            Route::Token(_) | Route::NodeSecret(_) | Route::Version(..) => "DELETE",
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    /// GET, and HEAD (the server leaves out the body).
    Get,
    Post,
    Put,
    Delete,
    Other,
}

fn verb(method: &Method) -> Verb {
    match method {
        Method::Get | Method::Head => Verb::Get,
        Method::Post => Verb::Post,
        Method::Put => Verb::Put,
        Method::Delete => Verb::Delete,
        Method::Other(_) => Verb::Other,
    }
}

/// Who may call an endpoint.
#[derive(Clone, Copy)]
enum Access {
    Anyone,
    /// A node's secret or an admin token (when node auth is on).
    NodeRead,
    /// A node writing its own records (or enrolling).
    NodeWrite,
    /// An admin token of `admin` or one of these roles.
    Roles(&'static [Role]),
}

/// What the server reads of a request's body before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyUse {
    /// Nothing: the handler does not read it.
    Ignored,
    /// Read whole into memory first, at most this many bytes.
    Buffered(u64),
    /// Streamed to the handler as it arrives, at most this many bytes.
    Streamed(u64),
}

/// Where a handler runs: on the async side (memory only, never blocks) or
/// on the bounded blocking pool (redb commits, file I/O, large answers).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Work {
    Inline,
    Blocking,
    /// Inline when it needs no write ([`try_inline`]), else blocking.
    InlineFirst,
}

struct Endpoint {
    access: Access,
    body: BodyUse,
    work: Work,
}

const JSON: BodyUse = BodyUse::Buffered(MAX_JSON_BODY as u64);

/// The endpoint table; `None` for a method the route does not allow.
fn endpoint(app: &App, route: Route, verb: Verb) -> Option<Endpoint> {
    use Access::{Anyone, NodeRead, NodeWrite, Roles};
    use BodyUse::{Buffered, Ignored, Streamed};
    use Work::{Blocking, Inline};
    let e = |access, body, work| Some(Endpoint { access, body, work });
    match (route, verb) {
        (Route::Health | Route::Page(_), Verb::Get) => e(Anyone, Ignored, Inline),
        (Route::Keepalive | Route::Bin(_), Verb::Get) => e(NodeRead, Ignored, Inline),
        (Route::Download(_), Verb::Get) => e(NodeRead, Ignored, Blocking),
        (Route::Keepalive, Verb::Post) => e(NodeWrite, JSON, Work::InlineFirst),
        (Route::Bin(_) | Route::BinProgress(_), Verb::Post) => e(NodeWrite, JSON, Blocking),
        (Route::Metrics, Verb::Get) if app.metrics.public => e(Anyone, Ignored, Blocking),
        (
            Route::Bins
            | Route::BinProgress(_)
            | Route::BinVersions(_)
            | Route::Releases
            | Route::Release(_)
            | Route::ReleaseFailures(_)
            | Route::Fleet
            | Route::Nodes
            | Route::Node(_)
            | Route::Tokens
            | Route::Audit
            | Route::Metrics,
            Verb::Get,
        ) => e(Roles(READ), Ignored, Blocking),
        (Route::BinVersions(_), Verb::Post) => {
            e(Roles(PUBLISH), Streamed(app.max_artifact_size), Blocking)
        }
        (Route::Signature(..), Verb::Put) => e(
            Roles(PUBLISH),
            Buffered(crate::signature::MAX_SIGNATURE as u64),
            Blocking,
        ),
        (Route::Releases, Verb::Post) => e(Roles(PUBLISH), JSON, Blocking),
        (Route::ReleaseOp(_, op), Verb::Post) => e(Roles(op_roles(op)), JSON, Blocking),
        (Route::Pin(..), Verb::Put) | (Route::Tokens, Verb::Post) => {
            e(Roles(ADMIN), JSON, Blocking)
        }
        // A backup holds node-secret and token hashes: admins only.
        (
            Route::Pin(..)
            | Route::NodeSecret(_)
            | Route::Token(_)
            | Route::Node(_)
            | Route::Version(..),
            Verb::Delete,
        )
        | (Route::Backup, Verb::Get) => e(Roles(ADMIN), Ignored, Blocking),
        _ => None,
    }
}

/// Who a request is, once its access rule has let it in.
enum Caller {
    Anyone,
    Node(NodeCaller),
    Admin(Actor),
}

/// A request admitted to be run: what [`admit`] found out.
pub struct Ticket {
    started: Instant,
    url: Url,
    route: &'static str,
    caller: Caller,
    /// The answer already decided (404, 405, 401, 403).
    refusal: Option<ApiError>,
    body: BodyUse,
    work: Work,
    audit: Audit,
}

impl Ticket {
    pub fn body(&self) -> BodyUse {
        self.body
    }

    /// Whether [`run`] must go to the blocking pool.
    pub fn blocking(&self) -> bool {
        self.work != Work::Inline
    }

    /// Whether [`try_inline`] may answer it first.
    pub fn inline_first(&self) -> bool {
        self.work == Work::InlineFirst && self.refusal.is_none()
    }
}

/// What the audit log needs to know about a request.
#[derive(Default)]
struct Audit {
    /// An admin write: recorded (authenticated) or counted (not).
    write: bool,
    actor: Option<String>,
}

/// Routes a request and checks its caller, in memory: never blocks.
pub fn admit(app: &App, rq: &Request) -> Ticket {
    let mut t = Ticket {
        started: Instant::now(),
        url: Url::parse(rq.url()),
        route: "None",
        caller: Caller::Anyone,
        refusal: None,
        body: BodyUse::Ignored,
        work: Work::Inline,
        audit: Audit::default(),
    };
    let segments: Vec<&str> = t.url.segments.iter().map(String::as_str).collect();
    let Some(route) = Route::parse(&segments) else {
        let path: String = rq.path().chars().take(200).collect();
        t.refusal = Some(ApiError::not_found(format!("no such route: {path}")));
        return t;
    };
    t.route = route.name();
    let verb = verb(rq.method());
    // A backup is a read, but of every secret's hash: audited like a write.
    t.audit.write = route.is_admin() && (verb != Verb::Get || matches!(route, Route::Backup));
    let Some(ep) = endpoint(app, route, verb) else {
        t.refusal = Some(ApiError::method_not_allowed(route.allow()));
        if t.audit.write {
            let token = app
                .auth
                .authenticate(header(rq, "Authorization"), &app.store);
            t.audit.actor = token.ok().map(|a| a.name);
        }
        t.work = durable_audit(&t.audit);
        return t;
    };
    match authorize(app, rq, ep.access, &mut t.audit) {
        Ok(caller) => {
            t.caller = caller;
            t.body = ep.body;
            t.work = if t.audit.write {
                Work::Blocking
            } else {
                ep.work
            };
        }
        Err(e) => {
            t.refusal = Some(e);
            t.work = durable_audit(&t.audit);
        }
    }
    t
}

/// A refused request blocks only to write its audit record.
fn durable_audit(audit: &Audit) -> Work {
    if audit.write && audit.actor.is_some() {
        Work::Blocking
    } else {
        Work::Inline
    }
}

/// Checks the caller against the endpoint's access rule.
fn authorize(
    app: &App,
    rq: &Request,
    access: Access,
    audit: &mut Audit,
) -> Result<Caller, ApiError> {
    match access {
        Access::Anyone => Ok(Caller::Anyone),
        Access::NodeRead => {
            let c = node(app, rq)?;
            c.may_read()?;
            Ok(Caller::Node(c))
        }
        Access::NodeWrite => node(app, rq).map(Caller::Node),
        Access::Roles(roles) => need(app, rq, audit, roles).map(Caller::Admin),
    }
}

/// Answers an admitted request: its refusal, the body's `failure`, or its
/// handler. Never panics outward: a handler panic is logged and answered
/// with 500. Counts it in the metrics and audits it.
pub fn run(app: &App, mut ticket: Ticket, rq: &mut Request, failure: Option<ApiError>) -> Reply {
    let result = match ticket.refusal.take().or(failure) {
        Some(e) => Err(e),
        None => catch_unwind(AssertUnwindSafe(|| call(app, &ticket, rq)))
            .unwrap_or_else(|_| Err(ApiError::internal("internal error (logged)"))),
    };
    let mut reply = result.unwrap_or_else(|e| {
        // A 503 of degraded storage is logged once, by its condition.
        if e.status >= 500 && e.retry_after.is_none() {
            log::error!("{} {}: {}", rq.method(), rq.path(), e.message);
        }
        e.into_reply()
    });
    if matches!(ticket.caller, Caller::Admin(_)) {
        reply = private(reply);
    }
    if verb(rq.method()) == Verb::Get {
        // Polling an unchanged answer (the admin page does) costs a 304.
        reply = conditional(reply, header(rq, "If-None-Match"));
    }
    finish(app, &ticket, rq, reply.status);
    reply
}

/// Answers an [`Ticket::inline_first`] request on the async side if it
/// needs no write (an unchanged keepalive); gives the ticket back if it
/// does, for [`run`] on the blocking pool (with the body set again).
pub fn try_inline(app: &App, ticket: Ticket, rq: &mut Request) -> Result<Reply, Box<Ticket>> {
    let Caller::Node(caller) = &ticket.caller else {
        return Err(Box::new(ticket));
    };
    let attempt = catch_unwind(AssertUnwindSafe(|| {
        nodes::keepalive_in_memory(app, caller, rq)
    }))
    .unwrap_or_else(|_| Some(Err(ApiError::internal("internal error (logged)"))));
    let Some(result) = attempt else {
        return Err(Box::new(ticket));
    };
    let reply = result.unwrap_or_else(ApiError::into_reply);
    finish(app, &ticket, rq, reply.status);
    Ok(reply)
}

/// The answer when no blocking thread came free in time: counted, never
/// audited (a saturated server must not take on more writes).
pub fn busy(app: &App, ticket: &Ticket, rq: &Request, waited: Duration) -> Reply {
    app.metrics.net.busy();
    let reply = ApiError::with_status(
        503,
        format!(
            "server busy: no worker free within {}; retry shortly",
            humantime::format_duration(waited)
        ),
    )
    .into_reply()
    .header("Retry-After", "1");
    app.metrics
        .request(ticket.route, reply.status, ticket.started.elapsed());
    log::debug!("{} {}: 503 busy", rq.method(), rq.path());
    reply
}

/// Metrics, the audit record, the debug log line.
fn finish(app: &App, ticket: &Ticket, rq: &Request, status: u16) {
    let elapsed = ticket.started.elapsed();
    app.metrics.request(ticket.route, status, elapsed);
    if ticket.audit.write {
        match &ticket.audit.actor {
            Some(actor) => audit::record(app, actor, rq, status),
            None => app.metrics.net.unauthenticated(rq.remote_addr().ip()),
        }
    }
    log::debug!(
        "{} {} {status} {}ms",
        rq.method(),
        rq.path(),
        elapsed.as_millis()
    );
}

/// Calls the handler of an admitted request.
fn call(app: &App, ticket: &Ticket, rq: &mut Request) -> Result<Reply, ApiError> {
    let url = &ticket.url;
    let segments: Vec<&str> = url.segments.iter().map(String::as_str).collect();
    let route = Route::parse(&segments).ok_or_else(|| ApiError::internal("route vanished"))?;
    match (route, verb(rq.method()), &ticket.caller) {
        (Route::Health, _, _) => Ok(health::answer(&app.store, &app.artifacts)),
        (Route::Page(name), _, _) => crate::page::asset(name),
        (Route::Metrics, _, _) => metrics::answer(app),
        // Node-facing.
        (Route::Keepalive, Verb::Get, Caller::Node(c)) => nodes::node_status(app, Some(c), url),
        (Route::Keepalive, Verb::Get, _) => nodes::node_status(app, None, url),
        (Route::Keepalive, Verb::Post, Caller::Node(c)) => nodes::keepalive(app, c, rq),
        (Route::Bin(bin), Verb::Get, _) => bins::bin_target(app, bin, url, rq),
        (Route::Bin(bin), Verb::Post, Caller::Node(c)) => bins::installed(app, c, bin, rq),
        (Route::BinProgress(bin), Verb::Post, Caller::Node(c)) => {
            bins::report_progress(app, c, bin, rq)
        }
        (Route::Download(name), _, _) => bins::download(app, name, rq),
        // Admin reads.
        (Route::Bins, _, _) => bins::list_bins(app),
        (Route::BinProgress(bin), Verb::Get, _) => bins::list_progress(app, bin, url),
        (Route::BinVersions(bin), Verb::Get, _) => bins::bin_versions(app, bin),
        (Route::Releases, Verb::Get, Caller::Admin(a)) => releases::list_releases(app, a, url),
        (Route::Release(id), _, Caller::Admin(a)) => releases::release(app, a, id),
        (Route::ReleaseFailures(id), _, _) => releases::failures(app, id, url),
        (Route::Fleet, _, _) => fleet::fleet(app),
        (Route::Nodes, _, _) => nodes::list_nodes(app, url),
        (Route::Node(node), Verb::Delete, _) => nodes::delete_node(app, node),
        (Route::Node(node), _, _) => nodes::node_view(app, node),
        (Route::Tokens, Verb::Get, _) => access::list_tokens(app),
        (Route::Audit, _, _) => access::list_audit(app, url),
        (Route::Backup, _, _) => crate::backup::make::answer(app),
        // Admin writes.
        (Route::BinVersions(bin), Verb::Post, _) => bins::upload(app, bin, url, rq),
        (Route::Signature(bin, version), _, Caller::Admin(a)) => {
            bins::put_signature(app, a, bin, version, url, rq)
        }
        (Route::Releases, Verb::Post, Caller::Admin(a)) => releases::create_release(app, a, rq),
        (Route::ReleaseOp(id, op), _, Caller::Admin(a)) => releases::release_op(app, a, id, op, rq),
        (Route::Pin(node, bin), Verb::Put, _) => nodes::put_pin(app, node, bin, rq),
        (Route::Pin(node, bin), Verb::Delete, _) => nodes::delete_pin(app, node, bin),
        (Route::Tokens, Verb::Post, Caller::Admin(a)) => access::create_token(app, a, rq),
        (Route::NodeSecret(node), _, _) => nodes::revoke_node(app, node),
        (Route::Version(bin, version), _, _) => bins::delete_version(app, bin, version, url),
        (Route::Token(name), _, _) => access::revoke_token(app, name),
        (route, _, _) => Err(ApiError::method_not_allowed(route.allow())),
    }
}

/// Who sent a node-facing request (anyone, when node auth is off).
fn node(app: &App, rq: &Request) -> Result<NodeCaller, ApiError> {
    app.auth
        .node_caller(header(rq, "Authorization"), &app.store)
}

/// Roles besides `admin` (which may do everything) allowed on a route.
const READ: &[Role] = &[Role::Viewer, Role::Publisher, Role::Approver];
const PUBLISH: &[Role] = &[Role::Publisher];
const ADMIN: &[Role] = &[];

/// Authenticates an admin request and checks its role: 401 for no or an
/// unknown token, 403 for a role that may not.
fn need(app: &App, rq: &Request, audit: &mut Audit, roles: &[Role]) -> Result<Actor, ApiError> {
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
    if actor.may(roles) {
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

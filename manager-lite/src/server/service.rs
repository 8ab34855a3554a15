//! One request, from the head hyper parsed to the answer it writes.
//!
//! The head is checked (one `Host` on HTTP/1.1, at most one
//! `Authorization`, header values that are text), then [`routes::admit`]
//! routes it and checks its caller in memory. Only an admitted request has
//! its body read: collected whole within the request deadline, or streamed
//! to its handler. Handlers that may block (redb commits, file I/O) run on
//! the blocking pool, at most `blocking_threads` at once; a request that
//! cannot get a thread within `queue_timeout` is answered 503 with
//! `Retry-After`, so the queue in front of the pool is bounded in time.

use std::convert::Infallible;
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::{Body as _, Incoming};
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Response, Version};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::answer::{self, ReplyBody};
use super::body::{self, ChannelReader, Pace};
use super::guard::ConnState;
use super::Shared;
use crate::api::reply::{ApiError, Reply};
use crate::api::request::{Method, Request};
use crate::api::routes::{self, BodyUse, Ticket};
use crate::metrics::Cut;

/// Pieces of an upload in flight between the socket and its handler.
const UPLOAD_QUEUE: usize = 8;

/// hyper's service function: never fails; every error is an answer.
pub async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    conn: Arc<ConnState>,
    request: hyper::Request<Incoming>,
) -> Result<Response<ReplyBody>, Infallible> {
    conn.begin();
    let head_only = request.method() == hyper::Method::HEAD;
    let closes = closes_after(&request);
    let mut reply = respond(&shared, peer, request).await;
    let says_close = reply
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("connection"));
    if closes && !says_close {
        reply = reply.header("Connection", "close");
    }
    Ok(answer::response(
        reply,
        head_only,
        conn,
        &shared.file_chunks,
        &shared.app,
    ))
}

async fn respond(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    request: hyper::Request<Incoming>,
) -> Reply {
    let started = Instant::now();
    let (parts, mut body) = request.into_parts();
    if let Err(e) = check_head(&parts) {
        shared
            .app
            .metrics
            .request("None", e.status, started.elapsed());
        return ApiError { close: true, ..e }.into_reply();
    }
    let target = match parts.uri.path_and_query() {
        Some(pq) => pq.as_str().to_owned(),
        None => parts.uri.path().to_owned(),
    };
    let length = body.size_hint().exact();
    let method = Method::parse(parts.method.as_str());
    let mut rq = Request::new(method, target, parts.headers, peer, length);
    let ticket = routes::admit(&shared.app, &rq);
    match ticket.body() {
        BodyUse::Ignored => run(shared, ticket, rq, None).await,
        BodyUse::Buffered(max) => {
            let pace = Pace {
                deadline: Some(started + shared.limits.request_timeout),
                ..shared.pace()
            };
            match buffered(shared, &mut body, length, max, pace).await {
                Ok((bytes, _budget)) => {
                    rq.set_body(Box::new(Cursor::new(bytes.clone())));
                    if !ticket.inline_first() {
                        return run(shared, ticket, rq, None).await;
                    }
                    match routes::try_inline(&shared.app, ticket, &mut rq) {
                        Ok(reply) => reply,
                        Err(ticket) => {
                            rq.set_body(Box::new(Cursor::new(bytes)));
                            run(shared, *ticket, rq, None).await
                        }
                    }
                }
                Err(e) => run(shared, ticket, rq, Some(e)).await,
            }
        }
        BodyUse::Streamed(max) => streamed(shared, ticket, rq, body, max).await,
    }
}

/// An HTTP/1.0 client that did not ask for keep-alive: hyper closes the
/// connection after the answer, which then says so.
fn closes_after(request: &hyper::Request<Incoming>) -> bool {
    request.version() == Version::HTTP_10
        && !request
            .headers()
            .get(hyper::header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("keep-alive"))
}

/// The protocol rules hyper leaves to the application.
fn check_head(parts: &hyper::http::request::Parts) -> Result<(), ApiError> {
    // Origin-form (`/path`) or absolute-form (`http://host/path`) only: an
    // authority (`health`) or `*` names nothing here.
    if parts.uri.scheme().is_none() && !parts.uri.path().starts_with('/') {
        return Err(ApiError::bad_request(
            "request target must be a path (/...) or an absolute URL",
        ));
    }
    let hosts = parts.headers.get_all(HOST).iter().count();
    if parts.version == Version::HTTP_11 && hosts != 1 {
        return Err(ApiError::bad_request(if hosts == 0 {
            "HTTP/1.1 request without a Host header"
        } else {
            "more than one Host header"
        }));
    }
    if parts.headers.get_all(AUTHORIZATION).iter().count() > 1 {
        return Err(ApiError::bad_request("more than one Authorization header"));
    }
    if let Some((name, _)) = parts
        .headers
        .iter()
        .find(|(_, v)| std::str::from_utf8(v.as_bytes()).is_err())
    {
        return Err(ApiError::bad_request(format!(
            "header {name}: value is not valid UTF-8"
        )));
    }
    Ok(())
}

/// Reads a small body into memory, within its share of the body budget.
async fn buffered(
    shared: &Shared,
    body: &mut Incoming,
    length: Option<u64>,
    max: u64,
    pace: Pace,
) -> Result<(bytes::Bytes, OwnedSemaphorePermit), ApiError> {
    if length.is_some_and(|n| n > max) {
        return Err(crate::api::request::BodyError::TooLarge(max).into_api("the request body"));
    }
    let reserve = usize::try_from(length.unwrap_or(max).min(max)).unwrap_or(usize::MAX);
    let Ok(permit) = Arc::clone(&shared.body_budget).try_acquire_many_owned(answer::units(reserve))
    else {
        shared.app.metrics.net.busy();
        return Err(ApiError::with_status(
            503,
            "server busy: too many request bodies in memory; retry shortly",
        ));
    };
    match body::collect(body, max, pace).await {
        Ok(bytes) => Ok((bytes, permit)),
        Err(e) => {
            if e.status() == 408 {
                let cut = if Instant::now() >= pace.deadline.unwrap_or_else(Instant::now) {
                    Cut::RequestTimeout
                } else {
                    Cut::BodyTooSlow
                };
                shared.app.metrics.net.cut(cut);
            }
            Err(e.into_api("the request body"))
        }
    }
}

/// Runs the handler where its ticket says: inline, or on the blocking pool
/// once a thread is free.
async fn run(
    shared: &Arc<Shared>,
    ticket: Ticket,
    mut rq: Request,
    failure: Option<ApiError>,
) -> Reply {
    if !ticket.blocking() {
        return routes::run(&shared.app, ticket, &mut rq, failure);
    }
    let Some(permit) = shared.worker().await else {
        return routes::busy(&shared.app, &ticket, &rq, shared.limits.queue_timeout);
    };
    let app = Arc::clone(&shared.app);
    let work = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        routes::run(&app, ticket, &mut rq, failure)
    });
    work.await.unwrap_or_else(|e| {
        log::error!("a handler thread failed: {e}");
        ApiError::internal("internal error (logged)").into_reply()
    })
}

/// An upload: its handler reads the body on a blocking thread while it
/// arrives; the socket side holds the client to the minimum rate.
async fn streamed(
    shared: &Arc<Shared>,
    ticket: Ticket,
    mut rq: Request,
    body: Incoming,
    max: u64,
) -> Reply {
    if rq.body_length().is_some_and(|n| n > max) {
        let e = crate::api::request::BodyError::TooLarge(max).into_api("the upload");
        return run(shared, ticket, rq, Some(e)).await;
    }
    let Some(permit) = shared.worker().await else {
        return routes::busy(&shared.app, &ticket, &rq, shared.limits.queue_timeout);
    };
    let (tx, rx) = mpsc::channel(UPLOAD_QUEUE);
    rq.set_body(Box::new(ChannelReader::new(rx)));
    let app = Arc::clone(&shared.app);
    let mut handler = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        routes::run(&app, ticket, &mut rq, None)
    });
    let feeder = body::feed(body, tx, shared.pace());
    tokio::pin!(feeder);
    let mut fed = false;
    loop {
        tokio::select! {
            done = &mut handler => {
                return done.unwrap_or_else(|e| {
                    log::error!("an upload thread failed: {e}");
                    ApiError::internal("internal error (logged)").into_reply()
                });
            }
            outcome = &mut feeder, if !fed => {
                fed = true;
                if outcome.is_err_and(|e| e.status() == 408) {
                    shared.app.metrics.net.cut(Cut::BodyTooSlow);
                }
            }
        }
    }
}

//! manager-lite's own HTTP/1.1 server (plain or TLS), built to be hard to
//! hold down: a fixed pool of `max_connections` workers, one connection
//! each; a connection that finds them all busy gets `503` with
//! `Retry-After: 1` at once (the accept loop never waits for a worker). The
//! request head must arrive within `header_timeout`, every socket read and
//! write within `io_timeout`, and an idle kept-alive connection is closed
//! after `keepalive_timeout` (or at once when the pool turned someone away).
//! Heads are bounded (16 KiB, 100 fields: 431), bodies by their handler (413).
//!
//! [`parse`] reads heads, [`body`] bodies, [`conn`] holds the socket and its
//! buffer, [`write`] sends answers, [`tls`] loads the certificate. On stop
//! the accept loop ends, each worker finishes the request in hand (answering
//! it with `Connection: close`) and the pool is joined.

mod body;
mod conn;
pub mod parse;
pub mod tls;
mod write;

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};

pub use body::Body;
use conn::{Conn, HeadError, Stream};
use parse::Head;
pub use parse::{Method, Version};

use crate::http::{ApiError, Reply};

/// Requests served on one connection; the last is answered with
/// `Connection: close`.
const MAX_REQUESTS_PER_CONNECTION: usize = 100_000;
/// Connections being turned away (503) at the same time; more are dropped.
const MAX_REJECTING: usize = 8;
/// How long turning a connection away may take.
const REJECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The server's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub io_timeout: Duration,
    pub keepalive_timeout: Duration,
}

/// What answers requests.
pub type Handler<'h> = &'h (dyn Fn(&mut Request) -> Reply + Sync);

/// One request: its head, who sent it, and its body as a reader.
pub struct Request<'c> {
    head: Head,
    peer: SocketAddr,
    body: Body<'c>,
}

impl<'c> Request<'c> {
    pub fn method(&self) -> &Method {
        &self.head.method
    }

    /// The request target: path and query, as sent.
    pub fn url(&self) -> &str {
        &self.head.target
    }

    pub fn headers(&self) -> &[(String, String)] {
        &self.head.headers
    }

    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// The TCP peer (a reverse proxy's address when behind one).
    pub fn remote_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The announced body length; `None` for a chunked body.
    pub fn body_length(&self) -> Option<u64> {
        self.body.length()
    }

    pub fn as_reader(&mut self) -> &mut Body<'c> {
        &mut self.body
    }
}

/// A bound listener, ready to [`Server::run`].
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<Arc<ServerConfig>>,
    limits: Limits,
}

/// What the accept loop and the workers share.
struct Pool {
    queue: Mutex<VecDeque<(TcpStream, SocketAddr)>>,
    ready: Condvar,
    /// Connections handed to workers and not finished.
    busy: AtomicUsize,
    rejecting: AtomicUsize,
    /// Connections turned away so far: idle kept-alive ones yield to them.
    rejected: AtomicUsize,
}

impl Server {
    pub fn bind(
        addr: SocketAddr,
        tls: Option<Arc<ServerConfig>>,
        limits: Limits,
    ) -> Result<Server, String> {
        let listener = TcpListener::bind(addr).map_err(|e| format!("listening on {addr}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("listening on {addr}: {e}"))?;
        Ok(Server {
            listener,
            addr,
            tls,
            limits,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Serves until `stop` is set, then lets the requests in hand finish.
    pub fn run(&self, handler: Handler, stop: &AtomicBool) -> Result<(), String> {
        let pool = Pool {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            busy: AtomicUsize::new(0),
            rejecting: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
        };
        std::thread::scope(|scope| {
            let mut started = Ok(());
            for _ in 0..self.limits.max_connections {
                started = std::thread::Builder::new()
                    .name("http-worker".into())
                    .spawn_scoped(scope, || self.worker(&pool, handler, stop))
                    .map(drop);
                if started.is_err() {
                    break;
                }
            }
            if started.is_ok() {
                started = std::thread::Builder::new()
                    .name("http-waker".into())
                    .spawn_scoped(scope, || self.wake_on_stop(stop))
                    .map(drop);
            }
            if let Err(e) = started {
                stop.store(true, Ordering::Relaxed);
                pool.ready.notify_all();
                return Err(format!("starting the HTTP threads: {e}"));
            }
            self.accept_loop(&pool, stop, scope);
            pool.ready.notify_all();
            Ok(())
        })
    }

    fn accept_loop<'s>(
        &'s self,
        pool: &'s Pool,
        stop: &'s AtomicBool,
        scope: &'s std::thread::Scope<'s, '_>,
    ) {
        while !stop.load(Ordering::Relaxed) {
            let (stream, peer) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: do not spin.
                    log::warn!("accepting a connection: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let max = self.limits.max_connections;
            let took_slot = pool
                .busy
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                    (b < max).then_some(b + 1)
                })
                .is_ok();
            if took_slot {
                lock(&pool.queue).push_back((stream, peer));
                pool.ready.notify_one();
            } else {
                pool.rejected.fetch_add(1, Ordering::Relaxed);
                self.reject(stream, peer, pool, scope);
            }
        }
    }

    /// Answers 503 on its own short-lived thread (a TLS handshake or a slow
    /// client must not hold the accept loop); past [`MAX_REJECTING`] of
    /// those, the connection is just closed.
    fn reject<'s>(
        &'s self,
        stream: TcpStream,
        peer: SocketAddr,
        pool: &'s Pool,
        scope: &'s std::thread::Scope<'s, '_>,
    ) {
        let slot = pool
            .rejecting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                (r < MAX_REJECTING).then_some(r + 1)
            });
        if slot.is_err() {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("http-reject".into())
            .spawn_scoped(scope, move || {
                self.refuse(stream, peer);
                pool.rejecting.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            pool.rejecting.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn refuse(&self, stream: TcpStream, peer: SocketAddr) {
        let deadline = Instant::now() + REJECT_TIMEOUT;
        if stream.set_write_timeout(Some(REJECT_TIMEOUT)).is_err() {
            return;
        }
        let Some(stream) = self.wrap(stream, deadline) else {
            return;
        };
        let mut conn = Conn::new(stream);
        log::debug!(
            "{peer}: all {} connections busy: 503",
            self.limits.max_connections
        );
        let reply = ApiError::with_status(
            503,
            format!(
                "server busy: all {} connections in use; retry shortly",
                self.limits.max_connections
            ),
        )
        .into_reply()
        .header("Retry-After", "1");
        if write::write_reply(&mut conn, reply, false, false).is_ok() {
            conn.close_gracefully();
        }
    }

    /// Blocks the accept loop no longer once `stop` is set: connects to it.
    fn wake_on_stop(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wake_accept();
    }

    fn wake_accept(&self) {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            log::error!("waking the accept loop on {addr} to stop: {e}");
        }
    }

    fn worker(&self, pool: &Pool, handler: Handler, stop: &AtomicBool) {
        while let Some((stream, peer)) = next_job(pool, stop) {
            let served = catch_unwind(AssertUnwindSafe(|| {
                self.serve(stream, peer, handler, stop, pool)
            }));
            // The slot is free before the client sees the close, so a
            // client that reconnects at once is not turned away.
            pool.busy.fetch_sub(1, Ordering::AcqRel);
            match served {
                Ok(Some(Closing::Linger(conn))) => conn.close_gracefully(),
                Ok(Some(Closing::Now(conn))) => conn.close(),
                Ok(None) => {}
                Err(_) => log::error!(
                    "serving {peer} panicked; the connection is closed, the worker goes on"
                ),
            }
        }
    }

    /// The socket as this server speaks on it: TLS when configured. A
    /// client that talks plain HTTP to the TLS port gets a plain-text 400.
    fn wrap(&self, stream: TcpStream, deadline: Instant) -> Option<Stream> {
        let Some(config) = &self.tls else {
            return Some(Stream::Plain(stream));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let mut first = [0u8; 1];
        match stream.peek(&mut first) {
            Ok(1) if first[0].is_ascii_alphabetic() => {
                plain_http_on_tls_port(stream);
                return None;
            }
            Ok(1) => {}
            _ => return None,
        }
        match ServerConnection::new(Arc::clone(config)) {
            Ok(tls) => Some(Stream::Tls(Box::new(StreamOwned::new(tls, stream)))),
            Err(e) => {
                log::error!("starting a TLS session: {e}");
                None
            }
        }
    }

    fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        handler: Handler,
        stop: &AtomicBool,
        pool: &Pool,
    ) -> Option<Closing> {
        let limits = self.limits;
        let mut deadline = Instant::now() + limits.header_timeout;
        if stream.set_nodelay(true).is_err()
            || stream.set_write_timeout(Some(limits.io_timeout)).is_err()
        {
            return None;
        }
        let mut conn = Conn::new(self.wrap(stream, deadline)?);
        let rejected_before = || pool.rejected.load(Ordering::Relaxed);
        for n in 0..MAX_REQUESTS_PER_CONNECTION {
            if n > 0 {
                let seen = rejected_before();
                let give_up = || stop.load(Ordering::Relaxed) || rejected_before() != seen;
                if !conn.wait_for_request(limits.keepalive_timeout, &give_up) {
                    return Some(Closing::Now(conn));
                }
                deadline = Instant::now() + limits.header_timeout;
            }
            let last = n + 1 == MAX_REQUESTS_PER_CONNECTION;
            match serve_one(
                &mut conn,
                peer,
                handler,
                (stop, last),
                deadline,
                limits.io_timeout,
            ) {
                Next::KeepAlive => {}
                Next::Close => return Some(Closing::Now(conn)),
                Next::Linger => return Some(Closing::Linger(conn)),
            }
        }
        Some(Closing::Now(conn))
    }
}

/// How a served connection is to be closed (once its slot is free).
enum Closing {
    Now(Conn),
    Linger(Conn),
}

/// What to do with a connection after a request.
enum Next {
    KeepAlive,
    /// Close now: nothing is left unread (or the peer is gone).
    Close,
    /// Close after draining what the client still sends.
    Linger,
}

/// Reads one request, answers it, and says whether the connection goes on.
fn serve_one(
    conn: &mut Conn,
    peer: SocketAddr,
    handler: Handler,
    (stop, last): (&AtomicBool, bool),
    deadline: Instant,
    io_timeout: Duration,
) -> Next {
    let stopping = || stop.load(Ordering::Relaxed);
    let head = match conn.read_head(deadline, io_timeout, &stopping) {
        Ok(head) => head,
        Err(HeadError::Closed | HeadError::Timeout { partial: false }) => return Next::Close,
        Err(HeadError::Timeout { partial: true }) => {
            log::debug!("{peer}: request head not complete in time: 408");
            let e = ApiError::with_status(408, "request head not received in time");
            return refuse_head(conn, e);
        }
        Err(HeadError::Parse(e)) => {
            log::debug!("{peer}: {e}");
            return refuse_head(conn, ApiError::with_status(e.status(), e.to_string()));
        }
    };
    let framing = match head.framing() {
        Ok(f) => f,
        Err(e) => return refuse_head(conn, ApiError::with_status(e.status(), e.to_string())),
    };
    if conn.set_read_timeout(io_timeout).is_err() {
        return Next::Close;
    }
    let head_only = head.method == Method::Head;
    let keep_alive = head.keep_alive();
    let expects_continue = head.expects_continue();
    let mut rq = Request {
        head,
        peer,
        body: Body::new(conn, framing, expects_continue),
    };
    let reply = handler(&mut rq);
    let body_done = rq.body.is_done();
    drop(rq);
    let keep = keep_alive && body_done && !last && !stopping();
    match write::write_reply(conn, reply, head_only, keep) {
        Ok(true) => Next::KeepAlive,
        Ok(false) if body_done => Next::Close,
        Ok(false) => Next::Linger,
        Err(e) => {
            log::debug!("{peer}: sending the answer: {e}");
            Next::Close
        }
    }
}

/// Answers a head that will not be served, then closes.
fn refuse_head(conn: &mut Conn, e: ApiError) -> Next {
    match write::write_reply(conn, e.into_reply(), false, false) {
        Ok(_) => Next::Linger,
        Err(_) => Next::Close,
    }
}

/// Waits for a connection to serve; `None` once stopped with none queued.
fn next_job(pool: &Pool, stop: &AtomicBool) -> Option<(TcpStream, SocketAddr)> {
    let mut queue = lock(&pool.queue);
    // Bounded in time by `stop`: each wait is at most 200 ms.
    loop {
        if let Some(job) = queue.pop_front() {
            return Some(job);
        }
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        queue = pool
            .ready
            .wait_timeout(queue, Duration::from_millis(200))
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A plain-text answer to plain HTTP on the TLS port, then close.
fn plain_http_on_tls_port(stream: TcpStream) {
    let reply = ApiError::bad_request("this port speaks HTTPS: use an https:// URL").into_reply();
    let mut conn = Conn::new(Stream::Plain(stream));
    if write::write_reply(&mut conn, reply, false, false).is_ok() {
        conn.close_gracefully();
    }
}

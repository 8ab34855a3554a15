//! manager-lite's network layer: hyper 1.x (HTTP/1.1) on a tokio runtime,
//! TLS through tokio-rustls, built so that no socket, slow client or flood
//! can take the control plane down.
//!
//! A connection costs a task and its buffers, never a thread: idle and
//! half-open sockets cost memory, bounded by `max_connections` in all and
//! `max_connections_per_ip` per client ([`conn`]). Every connection is held
//! to its head deadlines and every answer to the minimum rate on the socket
//! itself ([`guard`], [`rate`]); every body to the minimum rate and a
//! request deadline ([`body`]). Handlers are synchronous: the cheap
//! in-memory ones run on the async side, the rest on a bounded blocking
//! pool with a bounded wait ([`service`]). [`answer`] turns replies into
//! responses with their length up front, streaming files. On stop the
//! listener closes, idle connections close, requests in hand finish within
//! `shutdown_timeout`, and [`Server::run`] returns.

mod answer;
mod body;
mod conn;
mod guard;
pub mod rate;
mod service;
mod splice;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api::app::App;
use conn::Caps;
use guard::Deadlines;
use rate::MinRate;

/// Request heads: at most this many bytes (request line and fields)...
const MAX_HEAD: usize = 16 * 1024;
/// ... and this many fields; over either, hyper answers 431.
const MAX_FIELDS: usize = 100;
/// Memory for small request bodies read ahead of their handler, in all.
const BODY_BUDGET: usize = 64 << 20;
/// Memory for file chunks waiting to be written to slow clients, in all.
const FILE_BUDGET: usize = 256 << 20;
/// Connections the kernel queues before the accept loop takes them
/// (capped by `net.core.somaxconn`): the default of 128 drops SYNs, and
/// clients wait a second for their retry, under a burst of connections.
const BACKLOG: u32 = 4096;
/// How often the accept loop looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);

/// The server's bounds (see `manager-lite serve --help`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    /// The longest a body or answer may stall with no byte moving.
    pub io_timeout: Duration,
    pub min_rate: MinRate,
    /// A whole request with a small body, from its head to its last byte.
    pub request_timeout: Duration,
    pub blocking_threads: usize,
    pub queue_timeout: Duration,
    pub shutdown_timeout: Duration,
}

/// What every connection and request shares.
pub struct Shared {
    app: Arc<App>,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    http: http1::Builder,
    caps: Arc<Caps>,
    workers: Arc<Semaphore>,
    body_budget: Arc<Semaphore>,
    /// Set on SIGTERM/SIGINT.
    stopping: Arc<AtomicBool>,
    file_chunks: Arc<answer::Chunks>,
}

impl Shared {
    fn deadlines(&self) -> Deadlines {
        Deadlines {
            header_timeout: self.limits.header_timeout,
            keepalive_timeout: self.limits.keepalive_timeout,
            io_timeout: self.limits.io_timeout,
            min_rate: self.limits.min_rate,
        }
    }

    fn pace(&self) -> body::Pace {
        body::Pace {
            min_rate: self.limits.min_rate,
            io_timeout: self.limits.io_timeout,
            deadline: None,
        }
    }

    /// A blocking thread, or `None` once `queue_timeout` has passed.
    async fn worker(&self) -> Option<OwnedSemaphorePermit> {
        let wait = Arc::clone(&self.workers).acquire_owned();
        match tokio::time::timeout(self.limits.queue_timeout, wait).await {
            Ok(Ok(permit)) => Some(permit),
            _ => None,
        }
    }
}

/// File descriptors kept for everything but client connections (the
/// database, artifacts being read or written, webhooks, the listener).
const FD_RESERVE: u64 = 256;

/// Raises the open-file limit to the hard limit and returns how many
/// connections fit under it, at most `wanted` (logged when fewer).
pub fn fd_budget(wanted: usize) -> usize {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            log::warn!("raising the open-file limit: {e}");
            return wanted;
        }
    };
    let fit = usize::try_from(soft.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX);
    if fit < wanted {
        log::warn!(
            "--max-connections {wanted} lowered to {fit}: the open-file limit is {soft} \
             (raise it, e.g. LimitNOFILE= in the systemd unit)"
        );
    }
    wanted.min(fit)
}

/// A bound listener, ready to [`Server::run`].
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<Arc<ServerConfig>>,
    limits: Limits,
}

impl Server {
    /// Binds `addr`. Call inside the tokio runtime (`Runtime::enter`).
    pub fn bind(
        addr: SocketAddr,
        tls: Option<Arc<ServerConfig>>,
        limits: Limits,
    ) -> Result<Server, BindError> {
        let listening = || {
            let socket = match addr {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            let listener = socket.listen(BACKLOG)?;
            let local = listener.local_addr()?;
            Ok::<_, std::io::Error>((listener, local))
        };
        let (listener, addr) = listening().map_err(|source| BindError { addr, source })?;
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

    /// Serves until `stop` is set, then lets the requests in hand finish
    /// (within `shutdown_timeout`). Call inside the tokio runtime.
    pub async fn run(self, app: Arc<App>, stop: Arc<AtomicBool>) {
        let listener = self.listener;
        let mut http = http1::Builder::new();
        // writev: body frames are queued, never copied (splice.rs needs it).
        http.keep_alive(true)
            .writev(true)
            .max_headers(MAX_FIELDS)
            .max_header_size(MAX_HEAD)
            .header_read_timeout(None);
        let limits = self.limits;
        let shared = Arc::new(Shared {
            app,
            limits,
            tls: self.tls.map(tokio_rustls::TlsAcceptor::from),
            http,
            caps: Caps::new(limits.max_connections, limits.max_connections_per_ip),
            workers: Arc::new(Semaphore::new(limits.blocking_threads)),
            body_budget: answer::budget(BODY_BUDGET),
            file_chunks: answer::Chunks::new(FILE_BUDGET),
            stopping: Arc::clone(&stop),
        });
        let graceful = GracefulShutdown::new();
        let mut poll = tokio::time::interval(STOP_POLL);
        let mut accept_errors = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let accepted = tokio::select! {
                _ = poll.tick() => continue,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: log now and then, do not spin.
                    accept_errors += 1;
                    if accept_errors.is_power_of_two() {
                        log::warn!("accepting a connection ({accept_errors} failures so far): {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            match shared.caps.admit(peer.ip()) {
                Ok(slot) => {
                    let task =
                        conn::serve(Arc::clone(&shared), tcp, peer, slot, graceful.watcher());
                    tokio::spawn(task);
                }
                Err((why, message)) => conn::refuse(&shared, tcp, peer, why, message),
            }
        }
        drop(listener);
        let open = graceful.count();
        log::info!("stopping: no new connections; {open} open, finishing requests in hand");
        if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            log::warn!(
                "stopping: requests still running after {}; cut",
                humantime::format_duration(limits.shutdown_timeout)
            );
        }
    }
}

/// The listening socket could not be made.
#[derive(Debug)]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "listening on {}: {}", self.addr, self.source)
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

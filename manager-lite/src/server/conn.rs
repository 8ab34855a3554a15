//! Connections: the caps they are admitted under, the TLS handshake, and
//! handing the socket to hyper.
//!
//! A connection costs a small task and its buffers, not a thread, so the
//! caps are about memory and file descriptors: `max_connections` in all and
//! `max_connections_per_ip` from one client address (one IPv6 /64 counts
//! as one address: a single host usually has a whole /64). Over a cap, the
//! new connection is answered `503` with `Retry-After` on a short-lived
//! task (at most [`MAX_REJECTING`] at once, each bounded by
//! [`REJECT_TIMEOUT`]; past that it is just closed), and nothing already
//! open is disturbed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::guard::{ConnState, Guarded};
use super::splice::SendFile;
use super::{answer, service, Shared};
use crate::metrics::{Cut, Refused};

/// Connections being answered 503 at the same time; more are just closed.
const MAX_REJECTING: usize = 64;
/// How long answering a refused connection may take (TLS handshake included).
const REJECT_TIMEOUT: Duration = Duration::from_secs(2);
/// What a refused client may still send while its 503 goes out (read and
/// dropped, so its close is not a reset that eats the answer).
const REJECT_DRAIN: usize = 64 * 1024;

/// The connection caps.
pub struct Caps {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    rejecting: AtomicUsize,
}

/// A connection's place under the caps, given back when it is dropped.
pub struct Slot {
    caps: Arc<Caps>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.caps.total.fetch_sub(1, Ordering::AcqRel);
        let mut map = self
            .caps
            .per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl Caps {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Caps> {
        Arc::new(Caps {
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            rejecting: AtomicUsize::new(0),
        })
    }

    /// A slot for a connection from `ip`, or why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, (Refused, String)> {
        let key = client_key(ip);
        let mut map = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let from_ip = map.get(&key).copied().unwrap_or(0);
        if from_ip >= self.max_per_ip {
            return Err((
                Refused::PerIp,
                format!(
                    "server busy: too many connections from {ip} (at most {} per client address); retry shortly",
                    self.max_per_ip
                ),
            ));
        }
        let took = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_total).then_some(n + 1)
            });
        if took.is_err() {
            return Err((
                Refused::MaxConnections,
                format!(
                    "server busy: all {} connections in use; retry shortly",
                    self.max_total
                ),
            ));
        }
        map.insert(key, from_ip + 1);
        Ok(Slot {
            caps: Arc::clone(self),
            key,
        })
    }
}

/// The address a per-client cap counts: IPv4 as is (IPv4-mapped IPv6
/// included), IPv6 by its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// Serves one admitted connection until it ends.
pub async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    watcher: Watcher,
) {
    let accepted = Instant::now();
    let _slot = slot;
    let net = Arc::clone(&shared.app.metrics.net);
    net.opened();
    let _open = OnDrop(move || net.closed());
    let _ = tcp.set_nodelay(true);
    let deadline = accepted + shared.limits.header_timeout;
    let Some(acceptor) = shared.tls.clone() else {
        // hyper allocates its buffers (16 KiB) when it takes a connection:
        // a socket that never sends a byte costs only its task.
        let mut first = [0u8; 1];
        match tokio::time::timeout_at(deadline.into(), tcp.peek(&mut first)).await {
            Ok(Ok(1)) => Box::pin(http(shared, tcp, peer, accepted, watcher, true)).await,
            Ok(_) => {}
            Err(_) => shared.app.metrics.net.cut(Cut::HeaderTimeout),
        }
        return;
    };
    // Boxed: a waiting connection's task stays small (see Performance).
    let handshake = Box::pin(handshake(&acceptor, tcp));
    match tokio::time::timeout_at(deadline.into(), handshake).await {
        Ok(Some(tls)) => Box::pin(http(shared, tls, peer, accepted, watcher, false)).await,
        Ok(None) => {}
        Err(_) => {
            shared.app.metrics.net.cut(Cut::HeaderTimeout);
            log::debug!("{peer}: TLS handshake not done within --header-timeout");
        }
    }
}

/// The TLS handshake; a client that speaks plain HTTP to the TLS port gets
/// a plain-text 400 instead.
async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(1) if first[0].is_ascii_alphabetic() => {
            let out = answer::raw(400, "this port speaks HTTPS: use an https:// URL", &[]);
            linger(tcp, &out).await;
            return None;
        }
        Ok(1) => {}
        _ => return None,
    }
    match acceptor.accept(tcp).await {
        Ok(tls) => Some(tls),
        Err(e) => {
            log::debug!("TLS handshake: {e}");
            None
        }
    }
}

/// hyper on the guarded socket, watched for a graceful shutdown.
/// `can_splice`: a plain TCP socket, which may send files by itself.
async fn http<T>(
    shared: Arc<Shared>,
    io: T,
    peer: SocketAddr,
    accepted: Instant,
    watcher: Watcher,
    can_splice: bool,
) where
    T: AsyncRead + AsyncWrite + SendFile + Unpin + Send + 'static,
{
    let state = Arc::new(ConnState::new(can_splice));
    let guarded = Guarded::new(
        io,
        Arc::clone(&state),
        Arc::clone(&shared.stopping),
        shared.deadlines(),
        Arc::clone(&shared.app.metrics.net),
        accepted,
    );
    let svc = {
        let shared = Arc::clone(&shared);
        service_fn(move |rq| service::handle(Arc::clone(&shared), peer, Arc::clone(&state), rq))
    };
    let conn = shared.http.serve_connection(TokioIo::new(guarded), svc);
    if let Err(e) = watcher.watch(conn).await {
        log::debug!("{peer}: {e}");
    }
}

/// Answers a connection over a cap with 503 and closes it, without
/// holding up the accept loop.
pub fn refuse(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    why: Refused,
    message: String,
) {
    shared.app.metrics.net.refused(why);
    log::debug!("{peer}: {message}");
    let caps = Arc::clone(&shared.caps);
    if caps.rejecting.fetch_add(1, Ordering::AcqRel) >= MAX_REJECTING {
        caps.rejecting.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let tls = shared.tls.clone();
    tokio::spawn(async move {
        let out = answer::raw(503, &message, &[("Retry-After", "1")]);
        let _ = tokio::time::timeout(REJECT_TIMEOUT, async {
            match tls {
                None => linger(tcp, &out).await,
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        linger(tls, &out).await;
                    }
                }
            }
        })
        .await;
        caps.rejecting.fetch_sub(1, Ordering::AcqRel);
    });
}

/// Writes `out`, ends the sending side, and reads what the client still
/// sends (bounded), so the client reads the answer instead of a reset.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, out: &[u8]) {
    if s.write_all(out).await.is_err() || s.shutdown().await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut drained = 0;
    while drained < REJECT_DRAIN {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// Runs a closure when dropped.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_address_and_in_all() {
        let caps = Caps::new(3, 2);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let s1 = caps.admit(a).unwrap();
        let _s2 = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).err().map(|e| e.0), Some(Refused::PerIp));
        let _s3 = caps.admit(b).unwrap();
        assert_eq!(
            caps.admit(b).err().map(|e| e.0),
            Some(Refused::MaxConnections)
        );
        drop(s1);
        assert!(caps.admit(a).is_ok(), "a freed slot is given again");
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(one), client_key(two));
        assert_ne!(client_key(one), client_key(other));
        let mapped: IpAddr = "::ffff:127.0.0.9".parse().unwrap();
        assert_eq!(client_key(mapped), IpAddr::from([127, 0, 0, 9]));
    }
}

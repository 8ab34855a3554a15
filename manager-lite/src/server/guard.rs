//! The deadlines of one connection, enforced on its socket.
//!
//! hyper reads and writes through [`Guarded`], which knows from
//! [`ConnState`] whether a request is being served. While none is, it holds
//! the client to the head deadlines: the first head (TLS handshake included)
//! within `header_timeout` of the accept; between requests, the next head
//! must start within `keepalive_timeout` and then be complete within
//! `header_timeout`. A head that started and did not finish gets `408`
//! written here, before the connection is closed; an idle one is just
//! closed. Whenever an answer is waiting on the client (a write that could
//! not go out), the client must drain it at the minimum rate of
//! [`super::rate`], and never stall longer than `io_timeout`, or the
//! connection is dropped. Request bodies are timed by [`super::body`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::rate::{Meter, MinRate};
use super::splice::{is_placeholder, SendFile, Splice};
use crate::metrics::{Cut, Net};

/// How long writing the `408` may take before the connection is just closed.
const EXPIRY_WRITE: Duration = Duration::from_secs(2);
/// After the server ends a connection, what the client still sends is read
/// and dropped for this long, up to [`LINGER_BYTES`]: closing a socket with
/// unread bytes sends a reset, which can destroy the answer before the
/// client reads it (a `413` for an upload refused half-way, say).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// Whether a request is in hand on a connection; shared by the connection's
/// socket and the requests served on it.
#[derive(Default)]
pub struct ConnState {
    active: AtomicBool,
    /// Requests finished: a change starts the wait for the next head.
    finished: AtomicU64,
    /// The connection's task, parked whenever it waits on the socket: woken
    /// when a request ends, so the keep-alive clock starts then and not at
    /// some later wake-up.
    parked: Mutex<Option<Waker>>,
    /// Plain TCP: file answers may go out with sendfile ([`super::splice`]).
    can_splice: bool,
    splice: Mutex<Option<Splice>>,
}

impl ConnState {
    pub fn new(can_splice: bool) -> ConnState {
        ConnState {
            can_splice,
            ..ConnState::default()
        }
    }

    pub fn can_splice(&self) -> bool {
        self.can_splice
    }

    /// The file whose bytes the next placeholders written stand for.
    pub fn set_splice(&self, splice: Splice) {
        *self.splice.lock().unwrap_or_else(PoisonError::into_inner) = Some(splice);
    }

    /// A head arrived: its request is being served.
    pub fn begin(&self) {
        self.active.store(true, Ordering::Release);
    }

    /// The answer is out (or abandoned): the connection waits for a head.
    pub fn end(&self) {
        self.active.store(false, Ordering::Release);
        self.finished.fetch_add(1, Ordering::AcqRel);
        let parked = self.lock_parked().take();
        if let Some(waker) = parked {
            waker.wake();
        }
    }

    fn park(&self, cx: &Context<'_>) {
        let mut parked = self.lock_parked();
        if !parked.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *parked = Some(cx.waker().clone());
        }
    }

    fn lock_parked(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    fn finished(&self) -> u64 {
        self.finished.load(Ordering::Acquire)
    }
}

/// The bounds a connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub io_timeout: Duration,
    pub min_rate: MinRate,
}

/// A socket (plain or TLS) with the connection's deadlines.
pub struct Guarded<T> {
    inner: T,
    state: Arc<ConnState>,
    /// The server is stopping: a connection waiting for a head closes.
    stopping: Arc<AtomicBool>,
    limits: Deadlines,
    net: Arc<Net>,
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Instant>,
    head: HeadWait,
    expiring: Option<Expiry>,
    answer: AnswerPace,
    dead: bool,
    /// Set once the sending side is shut: until when, and bytes drained.
    linger: Option<(Instant, usize)>,
}

/// The wait for the next request head.
struct HeadWait {
    /// [`ConnState::finished`] when last looked at.
    seen: u64,
    /// Still the connection's first request (its deadline counts from the accept).
    first: bool,
    since: Instant,
    /// Bytes of the head have arrived.
    started: bool,
}

/// How an answer moves while it waits on the client.
struct AnswerPace {
    meter: Meter,
    /// The last write could not go out: the client is behind.
    behind: bool,
    stalled_since: Instant,
}

/// The `408` being written before a connection whose head came too slowly
/// is closed.
struct Expiry {
    out: Vec<u8>,
    written: usize,
    until: Instant,
}

impl<T> Guarded<T> {
    /// `accepted`: when the TCP connection was accepted (the first head's
    /// deadline counts from there, TLS handshake included).
    pub fn new(
        inner: T,
        state: Arc<ConnState>,
        stopping: Arc<AtomicBool>,
        limits: Deadlines,
        net: Arc<Net>,
        accepted: Instant,
    ) -> Self {
        let now = Instant::now();
        Guarded {
            inner,
            state,
            stopping,
            limits,
            net,
            timer: Box::pin(tokio::time::sleep_until(now.into())),
            timer_at: None,
            head: HeadWait {
                seen: 0,
                first: true,
                since: accepted,
                started: false,
            },
            expiring: None,
            answer: AnswerPace {
                meter: Meter::new(limits.min_rate, now),
                behind: false,
                stalled_since: now,
            },
            dead: false,
            linger: None,
        }
    }

    /// Notices a finished request: the wait for the next head starts.
    fn sync(&mut self) {
        let finished = self.state.finished();
        if finished != self.head.seen {
            self.head = HeadWait {
                seen: finished,
                first: false,
                since: Instant::now(),
                started: false,
            };
        }
    }

    /// Wakes the connection's task at `at` (or earlier, if already armed
    /// earlier: a wake-up too early only makes the deadlines be checked).
    fn arm(&mut self, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        if self.timer_at.is_none_or(|t| at < t || t <= now) {
            self.timer.as_mut().reset(at.into());
            self.timer_at = Some(at);
        }
        self.timer.as_mut().poll(cx)
    }

    fn timed_out(&mut self, cut: Cut, why: &str) -> io::Error {
        self.dead = true;
        self.net.cut(cut);
        io::Error::new(io::ErrorKind::TimedOut, why.to_owned())
    }
}

impl<T: AsyncRead + AsyncWrite + SendFile + Unpin> Guarded<T> {
    /// Writes `want` bytes of the answer's file in place of a placeholder.
    fn poll_splice(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        let mut splice = self
            .state
            .splice
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(sp) = splice.as_mut() else {
            return Poll::Ready(Err(io::Error::other("a placeholder without its file")));
        };
        let count = usize::try_from(sp.left).unwrap_or(usize::MAX).min(want);
        let sent = match self.inner.poll_send_file(cx, &sp.file, count) {
            Poll::Ready(Ok(0)) if count > 0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the artifact file ended before its length",
            )),
            Poll::Ready(r) => r,
            Poll::Pending => {
                drop(splice);
                return self.poll_write_deadline(cx).map(Err);
            }
        };
        if let Ok(n) = sent {
            sp.left -= n as u64;
            if sp.left == 0 {
                *splice = None;
            }
        }
        drop(splice);
        Poll::Ready(sent.and_then(|n| self.after_write(n).map(|()| n)))
    }

    fn after_read(&mut self, n: usize) {
        self.sync();
        if n > 0 && !self.head.started && !self.state.active() {
            self.head.started = true;
            if !self.head.first {
                self.head.since = Instant::now();
            }
        }
    }

    /// Nothing to read: is the client still within its head deadline?
    fn poll_head_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper does not poll the socket again when an answer is out: it
        // waits for a wake-up. `end()` gives it one, so the keep-alive
        // clock starts when the answer is out.
        self.state.park(cx);
        if self.state.active() {
            return Poll::Pending;
        }
        self.sync();
        if self.stopping.load(Ordering::Relaxed) {
            self.dead = true;
            return Poll::Ready(Err(io::Error::other("the server is stopping")));
        }
        let (deadline, counts) = if self.head.first || self.head.started {
            (self.head.since + self.limits.header_timeout, true)
        } else {
            (self.head.since + self.limits.keepalive_timeout, false)
        };
        if Instant::now() < deadline && self.arm(deadline, cx).is_pending() {
            return Poll::Pending;
        }
        if !counts {
            self.dead = true;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "idle past the keep-alive timeout",
            )));
        }
        let err = self.timed_out(Cut::HeaderTimeout, "request head not received in time");
        if !self.head.started {
            return Poll::Ready(Err(err));
        }
        self.expiring = Some(Expiry {
            out: super::answer::raw(408, "request head not received in time", &[]),
            written: 0,
            until: Instant::now() + EXPIRY_WRITE,
        });
        self.poll_expiry(cx)
    }

    /// Writes the `408`, then fails the read so hyper closes.
    fn poll_expiry(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let gone = || Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "head timeout")));
        let Some(e) = self.expiring.as_mut() else {
            return gone();
        };
        let until = e.until;
        while e.written < e.out.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &e.out[e.written..]) {
                Poll::Ready(Ok(n)) if n > 0 => e.written += n,
                Poll::Ready(_) => return gone(),
                Poll::Pending if Instant::now() >= until => return gone(),
                Poll::Pending => {
                    let _ = self.arm(until, cx);
                    return Poll::Pending;
                }
            }
        }
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending if Instant::now() < until => {
                let _ = self.arm(until, cx);
                Poll::Pending
            }
            _ => gone(),
        }
    }

    /// A write went through. A window that ended while the answer was
    /// waiting on the client is still judged (a slow reader's next write
    /// often goes through: it drained a little).
    fn after_write(&mut self, n: usize) -> io::Result<()> {
        let now = Instant::now();
        if !self.answer.meter.check(now, self.answer.behind) {
            return Err(self.timed_out(Cut::AnswerTooSlow, "answer not read in time"));
        }
        let a = &mut self.answer;
        a.meter.record(n);
        a.behind = false;
        a.stalled_since = now;
        Ok(())
    }

    /// A write is waiting on the client: is it draining fast enough?
    fn poll_write_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let now = Instant::now();
        let a = &mut self.answer;
        if a.behind {
            if !a.meter.check(now, true) {
                return Poll::Ready(self.timed_out(Cut::AnswerTooSlow, "answer not read in time"));
            }
            if now >= a.stalled_since + self.limits.io_timeout {
                return Poll::Ready(self.timed_out(Cut::AnswerTooSlow, "answer stalled"));
            }
        } else {
            // A new wait on the client: an old window that ended is not
            // held against it.
            let _ = a.meter.check(now, false);
            a.behind = true;
            a.stalled_since = now;
        }
        let next = a
            .meter
            .window_end()
            .min(a.stalled_since + self.limits.io_timeout);
        if self.arm(next, cx).is_ready() {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

fn dead() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection cut by its deadlines")
}

impl<T: AsyncRead + AsyncWrite + SendFile + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expiring.is_some() {
            return this.poll_expiry(cx);
        }
        if this.dead {
            return Poll::Ready(Err(dead()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.after_read(buf.filled().len() - before);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_head_deadline(cx),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + SendFile + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(Err(dead()));
        }
        if is_placeholder(buf) {
            return this.poll_splice(cx, buf.len());
        }
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => Poll::Ready(this.after_write(n).map(|()| n)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_write_deadline(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(Err(dead()));
        }
        // What comes before a placeholder goes out first, on its own.
        let bufs = match bufs.iter().position(|b| is_placeholder(b)) {
            Some(0) => return this.poll_splice(cx, bufs[0].len()),
            Some(i) => &bufs[..i],
            None => bufs,
        };
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => Poll::Ready(this.after_write(n).map(|()| n)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_write_deadline(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.dead {
            return Poll::Ready(Err(dead()));
        }
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(this.after_write(0)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_write_deadline(cx).map(Err),
        }
    }

    /// Ends the sending side, then lingers (see [`LINGER`]).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.linger.is_none() {
            match Pin::new(&mut this.inner).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => this.linger = Some((Instant::now() + LINGER, 0)),
                other => return other,
            }
        }
        let mut scratch = [0u8; 8192];
        while let Some((until, drained)) = this.linger {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() && drained < LINGER_BYTES => {
                    this.linger = Some((until, drained + buf.filled().len()));
                }
                Poll::Pending if Instant::now() < until => {
                    if this.arm(until, cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                // The client closed too, failed, sent too much, or took too long.
                _ => break,
            }
        }
        Poll::Ready(Ok(()))
    }
}

//! One client connection: its socket (plain TCP or TLS over it), a read
//! buffer shared by the head parser and the body reader, the socket
//! timeouts, and a graceful close.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use rustls::{ServerConnection, StreamOwned};

use super::parse::{self, Head, ParseError};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// Longest single wait for bytes, so that a stop is noticed.
const POLL: Duration = Duration::from_millis(200);
/// A graceful close reads what the client still sends for at most this long...
const LINGER_TIME: Duration = Duration::from_secs(1);
/// ...or this many bytes, so that our answer is not lost to a reset.
const LINGER_BYTES: usize = 1 << 20;

/// The socket, with or without TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

/// Why no request head could be read.
#[derive(Debug)]
pub enum HeadError {
    /// The bytes are not a request we take: answer the error and close.
    Parse(ParseError),
    /// The head did not arrive in time; `partial`: some of it did.
    Timeout { partial: bool },
    /// The client closed (or reset) the connection.
    Closed,
}

/// A buffered connection.
pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    /// Where the unread bytes of `buf` start.
    start: usize,
    read_timeout: Option<Duration>,
}

/// Whether an I/O error is a socket timeout.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Conn {
    pub fn new(stream: Stream) -> Conn {
        Conn {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
            read_timeout: None,
        }
    }

    /// Bytes read from the socket and not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
    }

    /// Sets the socket read timeout (a zero duration counts as 1 ms).
    pub fn set_read_timeout(&mut self, d: Duration) -> io::Result<()> {
        let d = d.max(Duration::from_millis(1));
        if self.read_timeout != Some(d) {
            self.stream.tcp().set_read_timeout(Some(d))?;
            self.read_timeout = Some(d);
        }
        Ok(())
    }

    /// Reads more bytes from the socket into the buffer; `Ok(0)` at end of stream.
    pub fn fill_more(&mut self) -> io::Result<usize> {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start >= READ_CHUNK {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let read = self.stream.read(&mut self.buf[old..]);
        self.buf.truncate(old + *read.as_ref().unwrap_or(&0));
        read
    }

    /// Reads one request head, which must be complete by `deadline`. Gives
    /// up (as if closed) when `stop` turns true: a head still on its way is
    /// not a request in hand.
    pub fn read_head(
        &mut self,
        deadline: Instant,
        io_timeout: Duration,
        stop: &dyn Fn() -> bool,
    ) -> Result<Head, HeadError> {
        let mut fresh = true;
        // Every round reads at least one byte or waits POLL, and both the
        // head and the wait are bounded.
        let waits = deadline
            .saturating_duration_since(Instant::now())
            .as_millis()
            / POLL.as_millis();
        let rounds = usize::try_from(waits)
            .unwrap_or(usize::MAX)
            .saturating_add(parse::MAX_HEAD + 2);
        for _ in 0..rounds {
            if fresh || self.buffered().len() >= parse::MAX_HEAD {
                match parse::parse_head(self.buffered()) {
                    Ok(Some((head, n))) => {
                        self.consume(n);
                        return Ok(head);
                    }
                    Ok(None) => {}
                    Err(e) => return Err(HeadError::Parse(e)),
                }
            }
            let partial = !self.buffered().is_empty();
            let now = Instant::now();
            if now >= deadline {
                return Err(HeadError::Timeout { partial });
            }
            if stop() {
                return Err(HeadError::Closed);
            }
            self.set_read_timeout((deadline - now).min(io_timeout).min(POLL))
                .map_err(|_| HeadError::Closed)?;
            let before = self.buf.len();
            match self.fill_more() {
                Ok(0) => return Err(HeadError::Closed),
                // Only a new line can complete the head or judge its first line.
                Ok(_) => fresh = self.buf[before.min(self.buf.len())..].contains(&b'\n'),
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                    fresh = false;
                }
                Err(_) => return Err(HeadError::Closed),
            }
        }
        Err(HeadError::Parse(ParseError::TooLarge))
    }

    /// Waits up to `idle` for the first byte of a next request, polling
    /// `give_up` (shutdown, a full pool) every [`POLL`]. True: bytes are there.
    pub fn wait_for_request(&mut self, idle: Duration, give_up: &dyn Fn() -> bool) -> bool {
        if !self.buffered().is_empty() {
            return true;
        }
        let until = Instant::now() + idle;
        let slice = POLL;
        // Bounded by `idle` / POLL rounds, plus spurious wake-ups.
        for _ in 0..(idle.as_millis() / POLL.as_millis() + 16) {
            let now = Instant::now();
            if now >= until || give_up() || self.set_read_timeout((until - now).min(slice)).is_err()
            {
                return false;
            }
            match self.fill_more() {
                Ok(0) => return false,
                Ok(_) => return true,
                Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Reads a line of at most `max` bytes (without its LF and CR).
    pub fn read_line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        for _ in 0..=max {
            if let Some(i) = self.buffered().iter().position(|&b| b == b'\n') {
                let line = self.buffered()[..i].to_vec();
                self.consume(i + 1);
                let line = line.strip_suffix(b"\r").map(<[u8]>::to_vec).unwrap_or(line);
                return Ok(line);
            }
            if self.buffered().len() > max {
                break;
            }
            if self.fill_more()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection closed inside the body",
                ));
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a chunked-body line over {max} bytes"),
        ))
    }

    /// Closes at once (after a TLS close_notify, so that a client reading
    /// to the end can tell the end from a cut).
    pub fn close(mut self) {
        if let Stream::Tls(t) = &mut self.stream {
            t.conn.send_close_notify();
            let _ = t.conn.complete_io(&mut t.sock);
        }
    }

    /// Sends TLS close_notify (if any), stops writing, and reads what the
    /// client still sends for a short while: closing with unread bytes would
    /// reset the connection and could destroy the answer before it is read.
    pub fn close_gracefully(mut self) {
        if let Stream::Tls(t) = &mut self.stream {
            t.conn.send_close_notify();
            let _ = t.conn.complete_io(&mut t.sock);
        }
        let tcp = self.stream.tcp();
        if tcp.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let until = Instant::now() + LINGER_TIME;
        let mut sink = [0u8; 8192];
        let mut tcp: &TcpStream = tcp;
        let mut total = 0;
        while total < LINGER_BYTES {
            let now = Instant::now();
            if now >= until || tcp.set_read_timeout(Some(until - now)).is_err() {
                return;
            }
            match tcp.read(&mut sink) {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buffered().is_empty() {
            if out.len() >= READ_CHUNK {
                return self.stream.read(out);
            }
            if self.fill_more()? == 0 {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buffered().len());
        out[..n].copy_from_slice(&self.buffered()[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

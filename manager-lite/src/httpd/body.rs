//! The request body as a reader: `Content-Length` bytes or a chunked body,
//! read straight from the connection. It sends `100 Continue` on its first
//! read, so a client that waits for it is only asked for its body when a
//! handler actually reads it. Malformed chunking is an `InvalidData` error;
//! a body that was not read to its end tells the server to close.

use std::io::{self, Read, Write};

use super::conn::Conn;
use super::parse::Framing;

/// Longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 1024;
/// Longest trailer line, and most trailer lines.
const MAX_TRAILER_LINE: usize = 4096;
const MAX_TRAILERS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    /// Before a chunk-size line.
    ChunkSize,
    /// Bytes left of the current chunk.
    Chunk(u64),
    Done,
    /// A read failed: what follows on the connection is unknown.
    Failed,
}

/// The body of one request.
pub struct Body<'c> {
    conn: &'c mut Conn,
    state: State,
    declared: Option<u64>,
    continue_pending: bool,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl<'c> Body<'c> {
    pub fn new(conn: &'c mut Conn, framing: Framing, expects_continue: bool) -> Body<'c> {
        let (state, declared) = match framing {
            Framing::Length(0) => (State::Done, Some(0)),
            Framing::Length(n) => (State::Length(n), Some(n)),
            Framing::Chunked => (State::ChunkSize, None),
        };
        Body {
            conn,
            state,
            declared,
            continue_pending: expects_continue && state != State::Done,
        }
    }

    /// The announced length; `None` for a chunked body.
    pub fn length(&self) -> Option<u64> {
        self.declared
    }

    /// Whether the body was read to its end (the connection may go on).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn send_continue(&mut self) -> io::Result<()> {
        self.continue_pending = false;
        self.conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        self.conn.flush()
    }

    fn read_state(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // Bounded: each round reads bytes, moves to the next state, or ends.
        for _ in 0..4 {
            match self.state {
                State::Done => return Ok(0),
                State::Failed => return Err(invalid("the request body could not be read")),
                State::Length(left) => return self.read_some(out, left, State::Length),
                State::Chunk(left) => return self.read_some(out, left, State::Chunk),
                State::ChunkSize => self.chunk_size()?,
            }
        }
        Err(invalid("chunked body: no data after several empty reads"))
    }

    /// Reads at most `left` bytes; `next(left - n)` is the state after.
    fn read_some(
        &mut self,
        out: &mut [u8],
        left: u64,
        next: fn(u64) -> State,
    ) -> io::Result<usize> {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(out.len());
        let n = self.conn.read(&mut out[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the connection closed with {left} body bytes still to come"),
            ));
        }
        let left = left - n as u64;
        self.state = match (next(left), left) {
            (State::Length(_), 0) => State::Done,
            (State::Chunk(_), 0) => {
                self.chunk_end()?;
                State::ChunkSize
            }
            (s, _) => s,
        };
        Ok(n)
    }

    /// Reads a chunk-size line; size 0 ends the body (after its trailers).
    fn chunk_size(&mut self) -> io::Result<()> {
        let line = self.conn.read_line(MAX_CHUNK_LINE)?;
        let size = line.split(|&b| b == b';').next().unwrap_or_default();
        let size = size.trim_ascii_end();
        if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err(invalid(format!(
                "chunked body: invalid chunk size {:?}",
                String::from_utf8_lossy(&size[..size.len().min(40)])
            )));
        }
        // Checked above: at most 15 hex digits.
        let size = u64::from_str_radix(&String::from_utf8_lossy(size), 16)
            .map_err(|_| invalid("chunked body: invalid chunk size"))?;
        if size == 0 {
            self.trailers()?;
            self.state = State::Done;
        } else {
            self.state = State::Chunk(size);
        }
        Ok(())
    }

    /// The CRLF after a chunk's data.
    fn chunk_end(&mut self) -> io::Result<()> {
        if self.conn.read_line(2)?.is_empty() {
            Ok(())
        } else {
            Err(invalid("chunked body: chunk data longer than its size"))
        }
    }

    /// Trailer fields after the last chunk: read and dropped.
    fn trailers(&mut self) -> io::Result<()> {
        for _ in 0..=MAX_TRAILERS {
            if self.conn.read_line(MAX_TRAILER_LINE)?.is_empty() {
                return Ok(());
            }
        }
        Err(invalid("chunked body: too many trailer fields"))
    }
}

impl Read for Body<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.continue_pending {
            self.send_continue()
                .inspect_err(|_| self.state = State::Failed)?;
        }
        self.read_state(out)
            .inspect_err(|_| self.state = State::Failed)
    }
}

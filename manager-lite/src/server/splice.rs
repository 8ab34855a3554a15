//! Artifacts go out on plain HTTP with sendfile(2), as nginx's `sendfile
//! on`: the kernel hands page-cache pages to the socket, and the bytes never
//! pass through the manager's memory (reading them into a buffer and
//! writing that out costs two copies of every byte, measured at 2.7 times
//! nginx's CPU per byte).
//!
//! hyper knows nothing of it. The answer's body is frames of the right
//! lengths that point into [`PLACEHOLDER`]; hyper frames them with the
//! `Content-Length` head and writes them through
//! [`super::guard::Guarded`], which sends that many bytes of the file, from
//! the [`Splice`] of the connection, in their place. hyper must queue body
//! frames rather than copy them (`writev(true)`), or the placeholder would
//! lose its address. TLS connections read the file in chunks instead
//! ([`super::answer`]).

use std::fs::File;
use std::io;
use std::task::{Context, Poll};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// What placeholder frames point into. Never read: its bytes never leave
/// the process (and, untouched, cost no memory).
pub static PLACEHOLDER: [u8; 256 * 1024] = [0; 256 * 1024];

/// Whether `buf` is (part of) a placeholder frame.
pub fn is_placeholder(buf: &[u8]) -> bool {
    !buf.is_empty() && PLACEHOLDER.as_ptr_range().contains(&buf.as_ptr())
}

/// The file whose bytes stand for the placeholders of the answer in hand,
/// read from its current position on.
pub struct Splice {
    pub file: File,
    pub left: u64,
}

/// A socket that can send a file's bytes by itself.
pub trait SendFile {
    /// Sends up to `count` bytes of `file` from its position (advanced by
    /// what was sent).
    fn poll_send_file(
        &mut self,
        cx: &mut Context<'_>,
        file: &File,
        count: usize,
    ) -> Poll<io::Result<usize>>;
}

impl SendFile for TcpStream {
    fn poll_send_file(
        &mut self,
        cx: &mut Context<'_>,
        file: &File,
        count: usize,
    ) -> Poll<io::Result<usize>> {
        let socket: &TcpStream = self;
        loop {
            match socket.poll_write_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let sent = socket.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(socket, file, None, count).map_err(io::Error::from)
            });
            match sent {
                // The readiness was stale: try_io cleared it, so the next
                // poll_write_ready waits for the real thing.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return Poll::Ready(other),
            }
        }
    }
}

impl SendFile for tokio_rustls::server::TlsStream<TcpStream> {
    /// Never asked: a TLS connection gets no placeholders.
    fn poll_send_file(
        &mut self,
        _: &mut Context<'_>,
        _: &File,
        _: usize,
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "sendfile on a TLS connection",
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_slices_of_the_placeholder_are_placeholders() {
        assert!(is_placeholder(&PLACEHOLDER[..10]));
        assert!(is_placeholder(&PLACEHOLDER[1000..]));
        assert!(!is_placeholder(&PLACEHOLDER[..0]));
        let copy = PLACEHOLDER[..10].to_vec();
        assert!(!is_placeholder(&copy), "zeros elsewhere are data");
    }
}

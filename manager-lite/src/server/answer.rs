//! A handler's [`Reply`] as a hyper response, and the few answers the server
//! writes by itself on a raw socket (503 when over a cap, 408 for a head
//! that came too slowly, 400 for plain HTTP on the TLS port).
//!
//! Every body has its length up front (`Content-Length`: a downloader and an
//! HTTP cache want the size), except a [`Body::Stream`] (a listing of every
//! node), which is made piece by piece as the client reads and sent
//! chunked. A file is streamed in [`FILE_CHUNK`] reads on the blocking pool
//! (so is a [`Body::Reader`], such as a backup archive produced as it is
//! read), each holding its share of a
//! global budget of answer memory until hyper has written it, so thousands
//! of slow readers cost at most that budget. HEAD gets the headers and the
//! length of the body GET would send.

use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use hyper::{Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::guard::ConnState;
use super::splice::{Splice, PLACEHOLDER};
use crate::api::app::App;
use crate::api::reply::{ApiError, Body, Reply, Stream};

/// Bytes per file read: large enough that the hop to the blocking pool is
/// noise beside the copy.
pub const FILE_CHUNK: usize = 256 * 1024;
/// The budget is counted in these units (semaphore permits are `u32`).
const BUDGET_UNIT: usize = 1024;

/// Headers the server owns; a handler's copy is dropped.
const OWNED: [&str; 4] = ["content-length", "transfer-encoding", "date", "keep-alive"];

/// Budget permits for `bytes` bytes.
pub fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(BUDGET_UNIT)).unwrap_or(u32::MAX)
}

/// Budget permits in a budget of `bytes` bytes.
pub fn budget(bytes: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(
        (bytes / BUDGET_UNIT).min(Semaphore::MAX_PERMITS),
    ))
}

/// Chunk buffers kept for reuse (16 MiB): a fresh 256 KiB buffer is a
/// zeroed, page-faulted allocation, a third pass over every byte sent.
const SPARE_CHUNKS: usize = 64;

/// File chunks in flight: their memory budget, and spare buffers.
pub struct Chunks {
    budget: Arc<Semaphore>,
    spare: Mutex<Vec<Vec<u8>>>,
}

impl Chunks {
    pub fn new(bytes: usize) -> Arc<Chunks> {
        Arc::new(Chunks {
            budget: budget(bytes),
            spare: Mutex::new(Vec::new()),
        })
    }

    fn buffer(&self) -> Vec<u8> {
        let spare = self
            .spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        spare.unwrap_or_else(|| vec![0u8; FILE_CHUNK])
    }

    fn give_back(&self, buf: Vec<u8>) {
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < SPARE_CHUNKS {
            spare.push(buf);
        }
    }
}

/// Builds the response for `reply`. `done` is told when the body is out.
pub fn response(
    reply: Reply,
    head_only: bool,
    done: Arc<ConnState>,
    chunks: &Arc<Chunks>,
    app: &Arc<App>,
) -> Response<ReplyBody> {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let length = match &reply.body {
        Body::Bytes(b) => b.len() as u64,
        Body::File(_, len) | Body::Reader(_, len) => *len,
        Body::Stream(_) | Body::Empty => 0,
    };
    let kind = match reply.body {
        _ if head_only => Kind::Empty,
        Body::Bytes(b) => Kind::Bytes(Some(Bytes::from(b))),
        Body::File(file, len) if done.can_splice() => placeholders(file, len, &done),
        Body::File(file, len) => Kind::File(FileStream {
            file: Some(Box::new(file)),
            left: len,
            reading: None,
            chunks: Arc::clone(chunks),
        }),
        Body::Reader(reader, len) => Kind::File(FileStream {
            file: Some(reader),
            left: len,
            reading: None,
            chunks: Arc::clone(chunks),
        }),
        Body::Stream(next) => Kind::Stream(Some((next, Arc::clone(app)))),
        Body::Empty => Kind::Empty,
    };
    let mut response = Response::new(ReplyBody {
        kind,
        done: Done(done),
    });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in reply.headers {
        if OWNED.iter().any(|o| name.eq_ignore_ascii_case(o)) {
            continue;
        }
        // A value with a line break cannot be sent: dropped, and said.
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => log::error!("answer header {name}: not a valid header; left out"),
        }
    }
    if head_only && length > 0 {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}

/// Tells the connection its request is finished when the body is dropped
/// (written out, or abandoned).
struct Done(Arc<ConnState>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The body of an answer.
pub struct ReplyBody {
    kind: Kind,
    #[allow(dead_code)] // held for its Drop
    done: Done,
}

enum Kind {
    Empty,
    Bytes(Option<Bytes>),
    File(FileStream),
    /// Bytes of a file sendfile writes in their place ([`super::splice`]).
    Placeholders(u64),
    /// `None` once the last piece is out.
    Stream(Option<(Stream, Arc<App>)>),
}

/// A file answer on a connection that sends files itself.
/// The handler placed the file at the first byte to send (a Range):
/// sendfile reads on from the file's own position.
fn placeholders(file: File, len: u64, conn: &ConnState) -> Kind {
    conn.set_splice(Splice { file, left: len });
    Kind::Placeholders(len)
}

/// What a [`FileStream`] reads from: a file, or a reader that produces its
/// bytes as they are read (a backup archive).
type Source = Box<dyn Read + Send>;

type Reading = Pin<Box<dyn Future<Output = io::Result<(Source, Bytes)>> + Send>>;

/// A file (or another [`Source`]) streamed chunk by chunk from the blocking pool.
struct FileStream {
    file: Option<Source>,
    /// Bytes not yet handed to hyper.
    left: u64,
    reading: Option<Reading>,
    chunks: Arc<Chunks>,
}

impl FileStream {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.reading.is_none() {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            let Some(file) = self.file.take() else {
                return Poll::Ready(Some(Err(io::Error::other("file read failed earlier"))));
            };
            let want = usize::try_from(self.left)
                .unwrap_or(FILE_CHUNK)
                .min(FILE_CHUNK);
            self.reading = Some(Box::pin(read_chunk(file, want, Arc::clone(&self.chunks))));
        }
        let Some(reading) = self.reading.as_mut() else {
            return Poll::Ready(None);
        };
        let (file, chunk) = match reading.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => {
                self.reading = None;
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Ready(Ok(read)) => read,
        };
        self.reading = None;
        self.file = Some(file);
        self.left -= chunk.len() as u64;
        Poll::Ready(Some(Ok(chunk)))
    }
}

/// Reads `want` bytes on the blocking pool, once the budget allows.
async fn read_chunk(
    mut file: Source,
    want: usize,
    chunks: Arc<Chunks>,
) -> io::Result<(Source, Bytes)> {
    let permit = Arc::clone(&chunks.budget)
        .acquire_many_owned(units(want))
        .await
        .map_err(|_| io::Error::other("the server is stopping"))?;
    let mut buf = chunks.buffer();
    let (file, buf) = tokio::task::spawn_blocking(move || {
        // A source shorter than announced breaks the framing: an error, and
        // hyper closes the connection.
        file.read_exact(&mut buf[..want]).map(|()| (file, buf))
    })
    .await
    .map_err(io::Error::other)??;
    Ok((
        file,
        Bytes::from_owner(Budgeted {
            buf,
            len: want,
            chunks,
            _permit: permit,
        }),
    ))
}

/// A chunk that gives its buffer and its budget back when hyper has
/// written it.
struct Budgeted {
    buf: Vec<u8>,
    len: usize,
    chunks: Arc<Chunks>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Budgeted {
    fn drop(&mut self) {
        self.chunks.give_back(std::mem::take(&mut self.buf));
    }
}

impl HttpBody for ReplyBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Bytes(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::File(f) => f.poll_chunk(cx).map(|c| c.map(|r| r.map(Frame::data))),
            Kind::Placeholders(left) => {
                let n = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(PLACEHOLDER.len());
                *left -= n as u64;
                Poll::Ready((n > 0).then(|| Ok(Frame::data(Bytes::from_static(&PLACEHOLDER[..n])))))
            }
            Kind::Stream(stream) => {
                let piece = stream.as_mut().and_then(|(next, app)| next(&app.store));
                if piece.is_none() {
                    *stream = None;
                }
                Poll::Ready(piece.map(|p| Ok(Frame::data(Bytes::from(p)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Bytes(b) => b.is_none(),
            Kind::File(f) => f.left == 0,
            Kind::Placeholders(left) => *left == 0,
            Kind::Stream(stream) => stream.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty | Kind::Stream(None) => SizeHint::with_exact(0),
            Kind::Bytes(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::File(f) => SizeHint::with_exact(f.left),
            Kind::Placeholders(left) => SizeHint::with_exact(*left),
            Kind::Stream(Some(_)) => SizeHint::default(),
        }
    }
}

/// A whole answer with a JSON error, for the raw socket: `Connection: close`.
pub fn raw(status: u16, message: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    use std::fmt::Write as _;
    let reply = ApiError::with_status(status, message).into_reply();
    let body = match reply.body {
        Body::Bytes(b) => b,
        _ => Vec::new(),
    };
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nDate: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        httpdate::fmt_http_date(std::time::SystemTime::now()),
        body.len()
    );
    for (k, v) in extra {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_answers_frame_their_json_body() {
        let out = raw(503, "server busy", &[("Retry-After", "1")]);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nRetry-After: 1"), "{head}");
        assert!(head.contains("\r\nConnection: close"), "{head}");
        assert!(
            head.contains(&format!("\r\nContent-Length: {}", body.len())),
            "{head}"
        );
        assert_eq!(body, r#"{"error":"server busy"}"#);
    }

    #[test]
    fn budget_units_round_up() {
        assert_eq!(units(0), 0);
        assert_eq!(units(1), 1);
        assert_eq!(units(FILE_CHUNK), 256);
    }
}

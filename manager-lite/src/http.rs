//! HTTP plumbing the handlers share: the request as they see it, splitting
//! and decoding URLs, reading bounded JSON bodies, the error type every
//! handler returns, replies, and byte ranges. Nothing here knows the
//! network: [`crate::server`] builds a [`Request`] and writes the [`Reply`].
//!
//! Path segments are percent-decoded one by one *after* splitting on `/`, so
//! `a%2fb` stays one segment (and then fails its name check) instead of
//! becoming two.

use binproxy_protocol::{ErrorBody, NameError, MAX_JSON_BODY};
use serde::{de::DeserializeOwned, Serialize};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::SocketAddr;

use crate::store::StoreError;

/// A request method; routes match on these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    /// Any other method (answered 405 or 404 by the routes).
    Other(String),
}

impl Method {
    pub fn parse(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            other => Method::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Other(m) => m,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request as handlers see it: its head, who sent it, and its body as
/// a blocking reader (already in memory, or streamed by the server).
pub struct Request {
    method: Method,
    target: String,
    headers: hyper::HeaderMap,
    peer: SocketAddr,
    length: Option<u64>,
    body: Box<dyn Read + Send>,
}

impl Request {
    /// A request whose body is not attached yet. `length`: the announced
    /// body length (`Some(0)` for none), `None` for a chunked body.
    pub fn new(
        method: Method,
        target: String,
        headers: hyper::HeaderMap,
        peer: SocketAddr,
        length: Option<u64>,
    ) -> Request {
        Request {
            method,
            target,
            headers,
            peer,
            length,
            body: Box::new(io::empty()),
        }
    }

    pub fn set_body(&mut self, body: Box<dyn Read + Send>) {
        self.body = body;
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request target: path and query.
    pub fn url(&self) -> &str {
        &self.target
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The first value of a header, by case-insensitive name (`None` when
    /// it is not visible ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The TCP peer (a reverse proxy's address when behind one).
    pub fn remote_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The announced body length; `None` for a chunked body.
    pub fn body_length(&self) -> Option<u64> {
        self.length
    }

    pub fn as_reader(&mut self) -> &mut (dyn Read + Send) {
        &mut *self.body
    }
}

/// Why a request body could not be read; carried inside the `io::Error`
/// its reader returns, so a handler answers with the right status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Over the route's limit, in bytes.
    TooLarge(u64),
    /// Slower than the minimum rate, stalled, or past the request deadline.
    TooSlow(String),
    /// Broken framing, or the client went away.
    Broken(String),
}

impl BodyError {
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge(_) => 413,
            BodyError::TooSlow(_) => 408,
            BodyError::Broken(_) => 400,
        }
    }

    pub fn into_io(self) -> io::Error {
        io::Error::other(self)
    }

    /// The answer to a request whose body failed `what`.
    pub fn into_api(self, what: &str) -> ApiError {
        let close = |e: ApiError| ApiError { close: true, ..e };
        match self {
            BodyError::TooLarge(max) => ApiError::too_large(format!("{what} over {max} bytes")),
            BodyError::TooSlow(why) => close(ApiError::with_status(408, why)),
            BodyError::Broken(why) => {
                close(ApiError::bad_request(format!("reading {what}: {why}")))
            }
        }
    }

    /// The body error inside a reader's error, if it is one.
    pub fn of(e: &io::Error) -> Option<&BodyError> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<BodyError>())
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge(max) => write!(f, "body over {max} bytes"),
            BodyError::TooSlow(why) | BodyError::Broken(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for BodyError {}

/// An error answer: a status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// The methods a route allows, for 405.
    pub allow: Option<&'static str>,
    /// Ask the client to close: sent when a request body was left unread.
    pub close: bool,
    /// `Retry-After` in seconds: the server cannot take it now, later it may.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with any status (the server's own 408, 431, 503...).
    pub fn with_status(status: u16, message: impl Into<String>) -> Self {
        Self::new(status, message)
    }

    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            allow: None,
            close: false,
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(405, format!("method not allowed here; allowed: {allow}"))
        }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self {
            close: true,
            ..Self::new(413, message)
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }
    /// 503 with `Retry-After`: storage that cannot take a write now (a
    /// full disk) but may later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(crate::degraded::RETRY_EVERY.as_secs().max(1)),
            ..Self::new(503, message)
        }
    }

    pub fn into_reply(self) -> Reply {
        let mut reply = Reply::json(
            self.status,
            &ErrorBody {
                error: self.message,
            },
        );
        if let Some(allow) = self.allow {
            reply = reply.header("Allow", allow);
        }
        if self.close {
            reply = reply.header("Connection", "close");
        }
        if let Some(seconds) = self.retry_after {
            reply = reply.header("Retry-After", seconds.to_string());
        }
        reply
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            // Logged once by the degraded state, not at every refusal.
            return Self::unavailable(format!("storage unavailable, retry later: {e}"));
        }
        log::error!("{e}");
        Self::internal(format!("storage error: {e}"))
    }
}

/// What a reply carries.
pub enum Body {
    Bytes(Vec<u8>),
    /// `len` bytes of a file, read from its current position.
    File(File, u64),
    /// `len` bytes produced by a reader as they are sent (a backup archive).
    Reader(Box<dyn Read + Send>, u64),
    /// Made piece by piece as the client reads, sent chunked (no length):
    /// each call gives the next piece, `None` after the last. A large
    /// answer (every node) never exists whole in memory.
    Stream(Stream),
    Empty,
}

/// The pieces of a [`Body::Stream`], made from the app's state of the moment.
pub type Stream = Box<dyn FnMut(&crate::handlers::App) -> Option<Vec<u8>> + Send>;

/// A handler's answer, written out by [`crate::server`].
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

impl Reply {
    pub fn json<T: Serialize>(status: u16, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => Self::json_bytes(status, bytes),
            Err(e) => ApiError::internal(format!("encoding the answer: {e}")).into_reply(),
        }
    }

    /// A JSON answer already encoded.
    pub fn json_bytes(status: u16, bytes: Vec<u8>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body: Body::Bytes(bytes),
        }
    }

    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    #[must_use]
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// A request URL split into decoded path segments and query pairs.
pub struct Url {
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
}

impl Url {
    pub fn parse(raw: &str) -> Url {
        let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
        let mut segments: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|s| percent_decode(s, false))
            .collect();
        // "/api/v1/bins/" names the same thing as "/api/v1/bins".
        if segments.len() > 1 && segments.last().is_some_and(String::is_empty) {
            segments.pop();
        }
        let query = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k, true), percent_decode(v, true))
            })
            .collect();
        Url { segments, query }
    }

    /// The first value of a query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Decodes `%XX` (and `+` in queries). Invalid UTF-8 becomes U+FFFD, which no
/// name rule accepts; a stray `%` stays literal, which no name rule accepts either.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match b {
            b'%' => {
                if let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) {
                    // hi and lo are < 16, so this fits a byte.
                    out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'%'));
                    i += 3;
                    continue;
                }
                out.push(b);
            }
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of a request header, by case-insensitive name.
pub fn header<'r>(rq: &'r Request, name: &str) -> Option<&'r str> {
    rq.header(name)
}

/// The answer for a body that failed to read: its own status when the
/// server cut it (413, 408), else 400 naming `what`.
pub fn body_error(e: &io::Error, what: &str) -> ApiError {
    match BodyError::of(e) {
        Some(b) => b.clone().into_api(what),
        None => ApiError::bad_request(format!("reading {what}: {e}")),
    }
}

/// Reads and parses a JSON body of at most [`MAX_JSON_BODY`] bytes.
pub fn read_json<T: DeserializeOwned>(rq: &mut Request) -> Result<T, ApiError> {
    parse_json(&read_bounded(rq, MAX_JSON_BODY, "JSON body")?)
}

/// A body already read, as a JSON object of type `T`; 400 otherwise.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let invalid = |e: serde_json::Error| ApiError::bad_request(format!("invalid JSON body: {e}"));
    // serde reads a struct from an array too, field by field; only objects are bodies here.
    let value: serde_json::Value = serde_json::from_slice(body).map_err(invalid)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid JSON body: expected an object",
        ));
    }
    serde_json::from_value(value).map_err(invalid)
}

/// Reads a body of at most `max` bytes; 413 naming `what` above that.
pub fn read_bounded(rq: &mut Request, max: usize, what: &str) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::too_large(format!("{what} over {max} bytes"));
    if rq.body_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    rq.as_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| body_error(&e, "the request body"))?;
    if body.len() > max {
        return Err(too_large());
    }
    Ok(body)
}

/// The part of a resource a `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No range, or one we answer with the whole body (several ranges, or a
    /// header we do not understand: RFC 9110 lets a server ignore those).
    Full,
    /// First and last byte, inclusive.
    Part(u64, u64),
    /// Starts past the end: 416.
    Unsatisfiable,
}

pub fn parse_range(header: Option<&str>, len: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return ByteRange::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(a), Ok(b)) if a <= b => Some((a, b.min(len.saturating_sub(1)))),
        (Ok(a), Err(_)) if last.is_empty() => Some((a, len.saturating_sub(1))),
        (Err(_), Ok(n)) if first.is_empty() && n > 0 => {
            Some((len.saturating_sub(n), len.saturating_sub(1)))
        }
        (Err(_), Ok(0)) if first.is_empty() => return ByteRange::Unsatisfiable,
        _ => None,
    };
    match parsed {
        Some((a, _)) if a >= len => ByteRange::Unsatisfiable,
        Some((a, b)) => ByteRange::Part(a, b),
        None => ByteRange::Full,
    }
}

/// A reply with the file's bytes, or the part a `Range` header asks for.
pub fn file_reply(
    mut file: File,
    len: u64,
    range: ByteRange,
    etag: &str,
) -> Result<Reply, ApiError> {
    let base = |status| {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Empty,
        }
        .header("Content-Type", "application/octet-stream")
        .header("Accept-Ranges", "bytes")
        .header("ETag", etag)
    };
    Ok(match range {
        ByteRange::Full => Reply {
            body: Body::File(file, len),
            ..base(200)
        },
        ByteRange::Part(first, last) => {
            file.seek(SeekFrom::Start(first))
                .map_err(|e| ApiError::internal(format!("seeking in artifact: {e}")))?;
            Reply {
                body: Body::File(file, last - first + 1),
                ..base(206).header("Content-Range", format!("bytes {first}-{last}/{len}"))
            }
        }
        ByteRange::Unsatisfiable => base(416).header("Content-Range", format!("bytes */{len}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_segments_decode_after_split() {
        let u = Url::parse("/api/v1/bins/a%2fb/versions?version=1%2E0&arch=x86_64&x");
        assert_eq!(u.segments, ["api", "v1", "bins", "a/b", "versions"]);
        assert_eq!(u.query("version"), Some("1.0"));
        assert_eq!(u.query("arch"), Some("x86_64"));
        assert_eq!(u.query("x"), Some(""));
        assert_eq!(u.query("y"), None);
    }

    #[test]
    fn url_edge_cases() {
        assert_eq!(Url::parse("/api/v1/bins/").segments, ["api", "v1", "bins"]);
        assert_eq!(Url::parse("/").segments, [""]);
        assert_eq!(Url::parse("/a/%2e%2e").segments, ["a", ".."]);
        assert_eq!(Url::parse("/a/%00").segments, ["a", "\0"]);
        assert_eq!(Url::parse("/a/%zz%4").segments, ["a", "%zz%4"]);
        assert_eq!(Url::parse("/a/%ff").segments, ["a", "\u{fffd}"]);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), ByteRange::Full);
        assert_eq!(
            parse_range(Some("bytes=10-19"), 100),
            ByteRange::Part(10, 19)
        );
        assert_eq!(parse_range(Some("bytes=90-"), 100), ByteRange::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=-5"), 100), ByteRange::Part(95, 99));
        assert_eq!(parse_range(Some("bytes=-500"), 100), ByteRange::Part(0, 99));
        assert_eq!(
            parse_range(Some("bytes=50-500"), 100),
            ByteRange::Part(50, 99)
        );
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            ByteRange::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=-0"), 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), ByteRange::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-1"), 100), ByteRange::Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), ByteRange::Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), ByteRange::Full);
    }
}

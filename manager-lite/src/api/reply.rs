//! What an endpoint answers: a [`Reply`] (status, headers, a body of bytes,
//! a file, a reader or a stream), [`ApiError`] (every error answer: a status
//! and `{"error": message}`), byte ranges of a file (`Range`, 206, 416) and
//! the cache headers, ETags and 304 ([`conditional`]). Nothing here knows the network: [`crate::server`]
//! writes the reply out.

use binproxy_protocol::{hex, ErrorBody, NameError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use crate::store::{Store, StoreError};

/// What every endpoint returns.
pub type Answer = Result<Reply, ApiError>;

/// Answers that must never be cached (they change with every call).
pub const NO_STORE: &str = "no-store";

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

/// The pieces of a [`Body::Stream`], made from the store's state of the moment.
pub type Stream = Box<dyn FnMut(&Store) -> Option<Vec<u8>> + Send>;

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

/// Marks an answer to a token's request as that token's: no shared cache
/// may keep it, a browser asks again before reusing it, and never for
/// another token (a release's `actions` differ by role). An answer that
/// already says how it may be cached (a backup: `no-store`) keeps its word.
pub fn private(reply: Reply) -> Reply {
    let reply = reply.header("Vary", "Authorization");
    if reply.headers.iter().any(|(k, _)| *k == "Cache-Control") {
        return reply;
    }
    reply.header("Cache-Control", "private, no-cache")
}

/// Gives a 200 answer of bytes a strong ETag (of the body's SHA-256) and
/// answers 304, without the body, when `if_none_match` names it: a client
/// that polls an answer that did not change gets a few headers back.
pub fn conditional(reply: Reply, if_none_match: Option<&str>) -> Reply {
    let Body::Bytes(bytes) = &reply.body else {
        return reply;
    };
    if reply.status != 200 || reply.headers.iter().any(|(k, _)| *k == "ETag") {
        return reply;
    }
    let etag = format!("\"{}\"", &hex(&Sha256::digest(bytes))[..32]);
    let matched = if_none_match.is_some_and(|v| {
        v.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag || t == "*")
    });
    if !matched {
        return reply.header("ETag", etag);
    }
    let mut headers: Vec<_> = reply
        .headers
        .into_iter()
        .filter(|(k, _)| *k != "Content-Type")
        .collect();
    headers.push(("ETag", etag));
    Reply {
        status: 304,
        headers,
        body: Body::Empty,
    }
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
    fn unchanged_answers_are_304_without_a_body() {
        let answer = || Reply::json_bytes(200, b"[1,2]".to_vec());
        let first = conditional(answer(), None);
        let etag = first
            .headers
            .iter()
            .find(|(k, _)| *k == "ETag")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        assert_eq!(etag.len(), 34, "{etag}");
        let again = conditional(answer(), Some(&format!("\"x\", W/{etag}")));
        assert_eq!(again.status, 304);
        assert!(matches!(again.body, Body::Empty));
        let changed = conditional(Reply::json_bytes(200, b"[1]".to_vec()), Some(&etag));
        assert_eq!(changed.status, 200);
        let error = conditional(Reply::json_bytes(404, b"{}".to_vec()), Some("*"));
        assert_eq!(error.status, 404);
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

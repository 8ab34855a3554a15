//! What an endpoint reads of a request: its head ([`Request`], [`Method`]),
//! its URL split into decoded segments and query pairs ([`Url`]), bounded
//! bodies (JSON objects only), why a body failed ([`BodyError`]), and the
//! checks of fields every area shares (free text, the `limit` of a
//! listing). Nothing here knows the network: [`crate::server`] builds the
//! [`Request`].
//!
//! Path segments are percent-decoded one by one *after* splitting on `/`, so
//! `a%2fb` stays one segment (and then fails its name check) instead of
//! becoming two.

use binproxy_protocol::MAX_JSON_BODY;
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;

use crate::api::reply::ApiError;

/// Longest free-text field we keep (node names, OS strings, messages).
pub const MAX_TEXT: usize = 1024;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

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
    // A literal `+` only: `%2B` decodes to `+` afterwards.
    let s = if plus_is_space {
        Cow::Owned(s.replace('+', " "))
    } else {
        Cow::Borrowed(s)
    };
    percent_decode_str(&s).decode_utf8_lossy().into_owned()
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

/// A free-text field: at most [`MAX_TEXT`] bytes, no control characters.
pub fn check_text(field: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "invalid {field}: at most {MAX_TEXT} bytes, no control characters"
        )));
    }
    Ok(())
}

/// The `limit` query parameter of a listing: 1 to 1000, default 100.
pub fn limit(url: &Url) -> Result<usize, ApiError> {
    match url.query("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("invalid limit {l:?}: 1 to {MAX_LIMIT}"))),
    }
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
}

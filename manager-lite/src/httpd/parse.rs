//! The request head parser: request line and header fields, from bytes.
//!
//! Pure (no I/O) so it can be tested and fuzzed on its own. It is strict on
//! what could smuggle a second request (bare CR, obsolete line folding,
//! whitespace before the colon, conflicting lengths) and bounded: the head is
//! at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`] fields. A request line is
//! judged as soon as it is complete, so garbage is refused without waiting for
//! a blank line that may never come.

use std::fmt;

/// Largest request head (request line, header fields, blank line).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one request.
pub const MAX_HEADERS: usize = 100;
/// Longest method name accepted.
const MAX_METHOD: usize = 32;

/// A request method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    /// Any other valid token (answered 405 or 404 by the routes).
    Other(String),
}

impl Method {
    fn from_token(token: &str) -> Method {
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

/// The protocol versions served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The request target as sent: an absolute path, maybe with a query.
    pub target: String,
    pub version: Version,
    /// Field names as sent, values without surrounding whitespace.
    pub headers: Vec<(String, String)>,
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: n` (0 without any length).
    Length(u64),
    Chunked,
}

impl Head {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn all<'h>(&'h self, name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client lets the connection stay open: HTTP/1.1 unless it
    /// says `Connection: close`; HTTP/1.0 never.
    pub fn keep_alive(&self) -> bool {
        self.version == Version::Http11
            && !self
                .all("connection")
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
    }

    /// Whether the client waits for `100 Continue` before sending its body.
    pub fn expects_continue(&self) -> bool {
        self.version == Version::Http11
            && self
                .header("expect")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    }

    /// How the body is delimited. Both a length and chunked, several
    /// different lengths, or a coding other than chunked are refused: each
    /// is a way to make two parsers disagree on where the body ends.
    pub fn framing(&self) -> Result<Framing, ParseError> {
        let mut codings = self.all("transfer-encoding").peekable();
        let mut lengths = self.all("content-length").flat_map(|v| v.split(','));
        if codings.peek().is_some() {
            if self.header("content-length").is_some() {
                return Err(ParseError::Bad(
                    "both Transfer-Encoding and Content-Length".into(),
                ));
            }
            let all: Vec<&str> = codings.flat_map(|v| v.split(',')).map(str::trim).collect();
            return match all.as_slice() {
                [one] if one.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
                _ => Err(ParseError::Coding),
            };
        }
        let Some(first) = lengths.next() else {
            return Ok(Framing::Length(0));
        };
        let n = parse_length(first.trim())?;
        for other in lengths {
            if parse_length(other.trim())? != n {
                return Err(ParseError::Bad("conflicting Content-Length values".into()));
            }
        }
        Ok(Framing::Length(n))
    }
}

/// A Content-Length value: digits only, fitting a u64.
fn parse_length(v: &str) -> Result<u64, ParseError> {
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Bad(format!(
            "invalid Content-Length {:?}",
            shown(v.as_bytes())
        )));
    }
    v.parse()
        .map_err(|_| ParseError::Bad("invalid Content-Length".into()))
}

/// Why a head was refused; [`ParseError::status`] is the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Malformed: 400.
    Bad(String),
    /// Over [`MAX_HEAD`] bytes: 431.
    TooLarge,
    /// Over [`MAX_HEADERS`] fields: 431.
    TooManyHeaders,
    /// An HTTP version other than 1.0 and 1.1: 505.
    Version,
    /// A transfer coding other than chunked: 501.
    Coding,
}

impl ParseError {
    pub fn status(&self) -> u16 {
        match self {
            ParseError::Bad(_) => 400,
            ParseError::TooLarge | ParseError::TooManyHeaders => 431,
            ParseError::Version => 505,
            ParseError::Coding => 501,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Bad(m) => write!(f, "bad request: {m}"),
            ParseError::TooLarge => write!(f, "request head over {MAX_HEAD} bytes"),
            ParseError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} header fields"),
            ParseError::Version => f.write_str("HTTP version not supported (1.0 and 1.1 are)"),
            ParseError::Coding => f.write_str("transfer coding not supported (only chunked is)"),
        }
    }
}

fn bad(m: impl Into<String>) -> ParseError {
    ParseError::Bad(m.into())
}

/// At most 60 bytes of `b`, for an error message (control bytes escaped by `{:?}`).
fn shown(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(60)]).into_owned()
}

/// Parses a head at the start of `buf`. `Ok(None)`: not complete yet, read
/// more. `Ok(Some((head, n)))`: the head took `n` bytes (the body follows).
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, ParseError> {
    // A few empty lines before a request are tolerated (RFC 9112, 2.2).
    let skip = buf
        .iter()
        .take(8)
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let rest = &buf[skip..];
    let Some(line_end) = rest.iter().position(|&b| b == b'\n') else {
        check_method_prefix(rest)?;
        return if buf.len() >= MAX_HEAD {
            Err(ParseError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let (method, target, version) = request_line(strip_cr(&rest[..line_end])?)?;
    let fields_start = line_end + 1;
    let Some(fields_len) = fields_end(&rest[fields_start..])? else {
        return if buf.len() >= MAX_HEAD {
            Err(ParseError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let total = skip + fields_start + fields_len;
    if total > MAX_HEAD {
        return Err(ParseError::TooLarge);
    }
    let headers = fields(&rest[fields_start..fields_start + fields_len])?;
    let head = Head {
        method,
        target,
        version,
        headers,
    };
    Ok(Some((head, total)))
}

/// The length of the header fields block including its blank line, once
/// complete. Too many lines are refused before the block ends.
fn fields_end(b: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut start = 0;
    let mut lines = 0;
    for (i, &c) in b.iter().enumerate() {
        if c == b'\n' {
            let line = &b[start..i];
            if line.is_empty() || line == b"\r" {
                return Ok(Some(i + 1));
            }
            lines += 1;
            if lines > MAX_HEADERS {
                return Err(ParseError::TooManyHeaders);
            }
            start = i + 1;
        }
    }
    Ok(None)
}

/// Refuses an unfinished request line whose method is already wrong.
fn check_method_prefix(partial: &[u8]) -> Result<(), ParseError> {
    let method = partial.split(|&b| b == b' ').next().unwrap_or_default();
    let complete = method.len() < partial.len();
    let valid = method.iter().all(|&b| is_tchar(b)) && method.len() <= MAX_METHOD;
    if !valid || (complete && method.is_empty()) {
        return Err(bad(format!("invalid method {:?}", shown(method))));
    }
    Ok(())
}

/// A line without its trailing CR; a CR anywhere else is refused.
fn strip_cr(line: &[u8]) -> Result<&[u8], ParseError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.contains(&b'\r') {
        return Err(bad("bare CR in the request head"));
    }
    Ok(line)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn request_line(line: &[u8]) -> Result<(Method, String, Version), ParseError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(format!(
            "request line must be METHOD TARGET VERSION, got {:?}",
            shown(line)
        )));
    };
    if method.is_empty() || method.len() > MAX_METHOD || !method.iter().all(|&b| is_tchar(b)) {
        return Err(bad(format!("invalid method {:?}", shown(method))));
    }
    if target.first() != Some(&b'/') || !target.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Err(bad(format!(
            "request target must be an absolute path of visible ASCII, got {:?}",
            shown(target)
        )));
    }
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(ParseError::Version)
        }
        _ => return Err(bad(format!("invalid HTTP version {:?}", shown(version)))),
    };
    // Both were checked to be ASCII above.
    let method = String::from_utf8_lossy(method);
    let target = String::from_utf8_lossy(target).into_owned();
    Ok((Method::from_token(&method), target, version))
}

/// The header fields, `block` ending with its blank line.
fn fields(block: &[u8]) -> Result<Vec<(String, String)>, ParseError> {
    let mut headers = Vec::new();
    for raw in block.split(|&b| b == b'\n') {
        let line = strip_cr(raw)?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(ParseError::TooManyHeaders);
        }
        headers.push(field(line)?);
    }
    Ok(headers)
}

fn field(line: &[u8]) -> Result<(String, String), ParseError> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(bad("obsolete line folding in a header field"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| bad(format!("header line without a colon: {:?}", shown(line))))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(bad(format!("invalid header name {:?}", shown(name))));
    }
    let value = value.trim_ascii();
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(bad(format!(
            "control character in header {}",
            String::from_utf8_lossy(name)
        )));
    }
    let value = std::str::from_utf8(value).map_err(|_| {
        bad(format!(
            "header {} is not valid UTF-8",
            String::from_utf8_lossy(name)
        ))
    })?;
    Ok((String::from_utf8_lossy(name).into_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<Option<(Head, usize)>, ParseError> {
        parse_head(s.as_bytes())
    }

    #[test]
    fn a_simple_request() {
        let (head, n) = parse("GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-A:  1 \r\n\r\nBODY")
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            "GET /a?b=c HTTP/1.1\r\nHost: x\r\nX-A:  1 \r\n\r\n".len()
        );
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.target, "/a?b=c");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.header("x-a"), Some("1"));
        assert!(head.keep_alive());
        assert_eq!(head.framing(), Ok(Framing::Length(0)));
    }

    #[test]
    fn bare_lf_and_leading_blank_lines() {
        let (head, n) = parse("\r\nPOST / HTTP/1.0\ncontent-length: 5\n\n")
            .unwrap()
            .unwrap();
        assert_eq!(n, 37);
        assert_eq!(head.method, Method::Post);
        assert!(!head.keep_alive());
        assert_eq!(head.framing(), Ok(Framing::Length(5)));
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("GET / HT"), Ok(None));
        assert_eq!(parse("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
    }

    #[test]
    fn garbage_is_refused_as_soon_as_its_line_ends() {
        for bad_line in [
            "GARBAGE\r\n",
            "GET  / HTTP/1.1\r\n",
            "GET / HTTP/1.1 x\r\n",
            "GET x HTTP/1.1\r\n",
            "GET /\x01 HTTP/1.1\r\n",
            "G(T / HTTP/1.1\r\n",
            "GET / FTP/1.1\r\n",
            "GET / HTTP/1.1\rX\r\n",
            "\u{e9}T / HTTP/1.1\r\n",
        ] {
            assert_eq!(
                parse(bad_line).map_err(|e| e.status()),
                Err(400),
                "{bad_line:?}"
            );
        }
        assert_eq!(parse("GET / HTTP/2.0\r\n"), Err(ParseError::Version));
    }

    #[test]
    fn bad_fields() {
        for head in [
            "GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            "GET / HTTP/1.1\r\nName : v\r\n\r\n",
            "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n",
            "GET / HTTP/1.1\r\n: v\r\n\r\n",
        ] {
            assert_eq!(parse(head).map_err(|e| e.status()), Err(400), "{head:?}");
        }
        let not_utf8 = b"GET / HTTP/1.1\r\nA: \xff\xfe\r\n\r\n";
        assert_eq!(parse_head(not_utf8).map_err(|e| e.status()), Err(400));
    }

    #[test]
    fn limits() {
        let lines = |n: usize| {
            (0..n)
                .map(|i| format!("h{i}: v\r\n"))
                .collect::<Vec<_>>()
                .concat()
        };
        let many = lines(MAX_HEADERS + 1);
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(&head), Err(ParseError::TooManyHeaders));
        let exactly = lines(MAX_HEADERS);
        assert!(parse(&format!("GET / HTTP/1.1\r\n{exactly}\r\n"))
            .unwrap()
            .is_some());
        let big = format!("GET / HTTP/1.1\r\nA: {}\r\n", "x".repeat(MAX_HEAD));
        assert_eq!(parse(&big), Err(ParseError::TooLarge));
        let long_line = format!("GET /{}", "x".repeat(MAX_HEAD));
        assert_eq!(parse(&long_line), Err(ParseError::TooLarge));
        let complete_but_big = format!("GET / HTTP/1.1\r\nA: {}\r\n\r\n", "x".repeat(MAX_HEAD));
        assert_eq!(parse(&complete_but_big), Err(ParseError::TooLarge));
    }

    fn framing(extra: &str) -> Result<Framing, ParseError> {
        let (head, _) = parse(&format!("POST / HTTP/1.1\r\n{extra}\r\n"))
            .unwrap()
            .unwrap();
        head.framing()
    }

    #[test]
    fn framings() {
        assert_eq!(framing("Content-Length: 10\r\n"), Ok(Framing::Length(10)));
        assert_eq!(
            framing("Content-Length: 10\r\nContent-Length: 10\r\n"),
            Ok(Framing::Length(10))
        );
        assert_eq!(framing("Content-Length: 7, 7\r\n"), Ok(Framing::Length(7)));
        assert_eq!(
            framing("Transfer-Encoding: Chunked\r\n"),
            Ok(Framing::Chunked)
        );
        for bad_one in [
            "Content-Length: 10\r\nContent-Length: 11\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: +1\r\n",
            "Content-Length: 1 2\r\n",
            "Content-Length: 99999999999999999999999\r\n",
            "Content-Length: 18446744073709551616\r\n",
            "Content-Length:\r\n",
            "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
        ] {
            assert_eq!(
                framing(bad_one).map_err(|e| e.status()),
                Err(400),
                "{bad_one:?}"
            );
        }
        assert_eq!(
            framing("Transfer-Encoding: gzip, chunked\r\n"),
            Err(ParseError::Coding)
        );
        assert_eq!(
            framing("Transfer-Encoding: gzip\r\n"),
            Err(ParseError::Coding)
        );
    }

    #[test]
    fn connection_and_expect() {
        let head = |extra: &str| {
            parse(&format!("GET / HTTP/1.1\r\n{extra}\r\n"))
                .unwrap()
                .unwrap()
                .0
        };
        assert!(!head("Connection: keep-alive, Close\r\n").keep_alive());
        assert!(head("Connection: keep-alive\r\n").keep_alive());
        assert!(head("Expect: 100-Continue\r\n").expects_continue());
        assert!(!head("").expects_continue());
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}"
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(Some((head, n))) = parse_head(&bytes) {
                prop_assert!(n <= bytes.len() && n <= MAX_HEAD);
                let _ = head.framing();
            }
        }

        #[test]
        fn near_valid_bytes_never_panic(
            prefix in prop_oneof![Just("GET / HTTP/1.1\r\n"), Just("POST /x HTTP/1.0\n")],
            tail in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b':'), Just(b' '), any::<u8>()],
                0..512,
            ),
        ) {
            let mut bytes = prefix.as_bytes().to_vec();
            bytes.extend_from_slice(&tail);
            if let Ok(Some((head, _))) = parse_head(&bytes) {
                let _ = (head.framing(), head.keep_alive(), head.expects_continue());
            }
        }

        #[test]
        fn valid_requests_round_trip(
            method in token(),
            path in "/[A-Za-z0-9._~%/?=&-]{0,100}",
            http10 in any::<bool>(),
            headers in proptest::collection::vec(
                (token(), "[ -~]{0,40}".prop_map(|v| v.trim().to_owned())),
                0..MAX_HEADERS,
            ),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let version = if http10 { Version::Http10 } else { Version::Http11 };
            let mut wire = format!("{method} {path} {}\r\n", version.as_str());
            for (k, v) in &headers {
                wire.push_str(&[k.as_str(), ": ", v.as_str(), "\r\n"].concat());
            }
            wire.push_str("\r\n");
            let head_len = wire.len();
            let mut bytes = wire.into_bytes();
            bytes.extend_from_slice(&body);
            let (head, n) = parse_head(&bytes).unwrap().unwrap();
            prop_assert_eq!(n, head_len);
            prop_assert_eq!(head.method.as_str(), method.as_str());
            prop_assert_eq!(head.target, path);
            prop_assert_eq!(head.version, version);
            prop_assert_eq!(head.headers, headers);
        }
    }
}

//! The shape of an artifact's minisign signature (the `.minisig` file), which
//! the server stores with a version and the CLI checks before sending.
//!
//! The manager holds no key and never verifies a signature: the agents do,
//! against the public key they are configured with. This only refuses text
//! that no agent could use, so a mistake is caught at upload instead of at
//! every node. A `.minisig` is four lines:
//!
//! ```text
//! untrusted comment: <anything>
//! <base64: algorithm "ED", 8-byte key id, 64-byte Ed25519 signature>
//! trusted comment: <anything, signed too>
//! <base64: 64-byte Ed25519 signature of the signature and the trusted comment>
//! ```
//!
//! with a newline after the last line or not. "ED" is minisign's default,
//! prehashed kind; the legacy kind ("Ed", `minisign -S -l`) is refused because
//! agents verify while the artifact streams in, which only the prehashed kind
//! allows. The text is stored and served byte for byte as uploaded.

use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use std::fmt;

/// Largest signature accepted, in bytes. A real one is about 300.
pub const MAX_SIGNATURE: usize = 4096;

const UNTRUSTED: &str = "untrusted comment: ";
const TRUSTED: &str = "trusted comment: ";
/// Algorithm (2) + key id (8) + signature (64).
const SIGNATURE_LEN: usize = 74;
const GLOBAL_LEN: usize = 64;

/// What is wrong with a signature: one line, without the "invalid
/// signature" prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    TooLarge,
    NotUtf8,
    Empty,
    /// Line `n` (from 1) ends with `\r`.
    CarriageReturn(usize),
    /// The text has this many lines, not 4.
    Lines(usize),
    /// Line `n` does not start with this prefix.
    Prefix(usize, &'static str),
    /// Line `n` is not standard base64.
    NotBase64(usize),
    /// Line `n` is base64 of `got` bytes; it must be `want`.
    Length {
        line: usize,
        got: usize,
        want: usize,
    },
    /// The legacy, not prehashed kind (`minisign -S -l`).
    Legacy,
    /// Another algorithm than "ED".
    Algorithm(String),
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => write!(f, "over the limit of {MAX_SIGNATURE} bytes"),
            Self::NotUtf8 => f.write_str("not UTF-8 text"),
            Self::Empty => f.write_str("empty: send the .minisig file's text"),
            Self::CarriageReturn(n) => write!(
                f,
                "line {n} ends with a carriage return: use LF line endings, as minisign writes them"
            ),
            Self::Lines(n) => write!(
                f,
                "{n} line{}; a .minisig has 4 (untrusted comment, signature, trusted comment, \
                 global signature)",
                if *n == 1 { "" } else { "s" }
            ),
            Self::Prefix(n, prefix) => write!(f, "line {n} must start with {prefix:?}"),
            Self::NotBase64(n) => write!(
                f,
                "line {n} is not base64 (A-Z a-z 0-9 + /, padded with = to a multiple of 4)"
            ),
            Self::Length { line, got, want } => write!(
                f,
                "line {line} is base64 of {got} bytes; a minisign {} is {want}",
                if *line == 2 {
                    "signature line"
                } else {
                    "global signature"
                }
            ),
            Self::Legacy => f.write_str(
                "line 2: a legacy signature (minisign -S -l); agents verify while \
                 downloading, which needs the default prehashed kind: sign again without -l",
            ),
            Self::Algorithm(a) => write!(
                f,
                "line 2: algorithm {a:?} is not minisign's Ed25519 (\"ED\")"
            ),
        }
    }
}

impl std::error::Error for SignatureError {}

/// Checks that `bytes` look like a minisign signature; returns the text, or
/// what is wrong with it.
pub fn check(bytes: &[u8]) -> Result<&str, SignatureError> {
    if bytes.len() > MAX_SIGNATURE {
        return Err(SignatureError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| SignatureError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(SignatureError::Empty);
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines: Vec<&str> = body.split('\n').collect();
    if let Some(n) = lines.iter().position(|l| l.ends_with('\r')) {
        return Err(SignatureError::CarriageReturn(n + 1));
    }
    if lines.len() != 4 {
        return Err(SignatureError::Lines(lines.len()));
    }
    if !lines[0].starts_with(UNTRUSTED) {
        return Err(SignatureError::Prefix(1, UNTRUSTED));
    }
    let signature = base64_line(lines[1], 2, SIGNATURE_LEN)?;
    match &signature[..2] {
        b"ED" => {}
        b"Ed" => return Err(SignatureError::Legacy),
        other => {
            return Err(SignatureError::Algorithm(
                String::from_utf8_lossy(other).into_owned(),
            ))
        }
    }
    if !lines[2].starts_with(TRUSTED) {
        return Err(SignatureError::Prefix(3, TRUSTED));
    }
    base64_line(lines[3], 4, GLOBAL_LEN)?;
    Ok(text)
}

/// The bytes of line `n`, which must be base64 of `len` bytes.
fn base64_line(line: &str, n: usize, len: usize) -> Result<Vec<u8>, SignatureError> {
    let bytes = decode_base64(line).ok_or(SignatureError::NotBase64(n))?;
    if bytes.len() != len {
        return Err(SignatureError::Length {
            line: n,
            got: bytes.len(),
            want: len,
        });
    }
    Ok(bytes)
}

/// Standard base64 with its `=` padding, as minisign writes it. Bits past
/// the last byte are ignored (as they always were here), not refused.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// The bytes `text` is base64 of; `None` if it is not (or is empty).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text).ok().filter(|bytes| !bytes.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by `minisign -S -W -t "bin=tool version=1.0 arch=x86_64
    /// timestamp=1700000000"` (minisign 0.11).
    const REAL: &str = "untrusted comment: signature from minisign secret key\n\
        RUS/6ARklDCuZucTpt+RnHwxPQQVoBhvNhJaitDn16AWO1o+21elY7nnfC3f6X79V2U4x7EHazg3tTD9MXtJYSzHFiD37mRcnQw=\n\
        trusted comment: bin=tool version=1.0 arch=x86_64 timestamp=1700000000\n\
        NJa3FKs9y0AKjHaxW9fhpycmdS1ManTIIEgQXEXPXKQ7VH0nr3kLP/PUQTUdxU1IohV89S60PCSyKZRt8TuhDQ==\n";

    fn lines() -> Vec<String> {
        REAL.lines().map(str::to_owned).collect()
    }

    fn with_line(n: usize, line: &str) -> String {
        let mut l = lines();
        l[n - 1] = line.to_owned();
        l.join("\n") + "\n"
    }

    fn error(text: &str) -> String {
        check(text.as_bytes()).expect_err(text).to_string()
    }

    #[test]
    fn a_real_signature_passes_with_or_without_the_last_newline() {
        assert_eq!(check(REAL.as_bytes()), Ok(REAL));
        let bare = REAL.trim_end();
        assert_eq!(check(bare.as_bytes()), Ok(bare));
        // Comments may be empty after their prefix.
        let empty = with_line(1, "untrusted comment: ");
        assert!(check(with_line(3, "trusted comment: ").as_bytes()).is_ok());
        assert!(check(empty.as_bytes()).is_ok());
    }

    #[test]
    fn the_line_count_is_named() {
        assert!(error("").contains("empty"));
        assert!(error("\n \n").contains("empty"));
        assert!(error(&lines()[..3].join("\n")).contains("3 lines"));
        assert!(error(&(REAL.to_owned() + "\n")).contains("5 lines"));
        assert!(error(&(REAL.to_owned() + "extra\n")).contains("5 lines"));
        assert!(error(&lines().join("\r\n")).contains("line 1 ends with a carriage return"));
    }

    #[test]
    fn each_faulty_line_is_named() {
        let e = error(&with_line(1, "comment: x"));
        assert!(e.starts_with("line 1 must start with"), "{e}");
        let e = error(&with_line(3, "trusted: x"));
        assert!(e.starts_with("line 3 must start with"), "{e}");
        let e = error(&with_line(2, "not base64!"));
        assert!(e.starts_with("line 2 is not base64"), "{e}");
        let e = error(&with_line(4, &lines()[3][..87]));
        assert!(e.starts_with("line 4 is not base64"), "{e}");
        let e = error(&with_line(4, &lines()[1]));
        assert!(e.contains("line 4 is base64 of 74 bytes"), "{e}");
        let e = error(&with_line(2, &lines()[3]));
        assert!(e.contains("line 2 is base64 of 64 bytes"), "{e}");
        let e = error(&with_line(2, &lines()[1].replacen("RUS", "AAA", 1)));
        assert!(
            e.contains("algorithm") && e.contains("not minisign's Ed25519"),
            "{e}"
        );
        // Legacy (not prehashed) signatures start with "Ed": base64 "RW".
        let e = error(&with_line(2, &lines()[1].replacen("RUS", "RWS", 1)));
        assert!(
            e.contains("legacy signature") && e.contains("without -l"),
            "{e}"
        );
    }

    #[test]
    fn bytes_that_are_not_text_or_too_many_are_refused() {
        assert_eq!(error_bytes(b"untrusted comment: \xff\n"), "not UTF-8 text");
        let big = vec![b'a'; MAX_SIGNATURE + 1];
        assert!(error_bytes(&big).contains("over the limit of 4096"));
    }

    fn error_bytes(bytes: &[u8]) -> String {
        check(bytes).expect_err("must be refused").to_string()
    }

    #[test]
    fn base64_is_strict() {
        assert_eq!(decode_base64("aGk="), Some(b"hi".to_vec()));
        assert_eq!(decode_base64("aGlo"), Some(b"hih".to_vec()));
        assert_eq!(decode_base64("aA=="), Some(b"h".to_vec()));
        for bad in [
            "", "aGk", "aGk=aGk=", "a===", "a=k=", "aG k", "aGk-", "====", "aGk===",
        ] {
            assert_eq!(decode_base64(bad), None, "{bad:?}");
        }
    }
}

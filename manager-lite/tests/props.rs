//! Property tests of the manager's parsers of untrusted input, with a fixed
//! budget of cases each so a run is bounded: the `.minisig` shape check
//! ([`manager_lite::signature::check`]), URL splitting and percent decoding
//! ([`manager_lite::api::request::Url::parse`]) and `Range` headers
//! ([`manager_lite::api::reply::parse_range`]) and `--min-rate` values
//! ([`manager_lite::server::rate::parse`]) never panic, accept what is well
//! formed, and a range always lies within the file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use manager_lite::api::reply::{parse_range, ByteRange};
use manager_lite::api::request::Url;
use manager_lite::signature::{self, MAX_SIGNATURE};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use std::fmt::Write as _;

const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(CASES)
}

// ---------------------------------------------------------------------------
// .minisig text

/// Standard base64 with padding, as minisign writes it.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let n = u32::from_be_bytes([0, group[0], group[1], group[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn minisig(untrusted: &str, sig: &[u8], trusted: &str, global: &[u8]) -> String {
    format!(
        "untrusted comment: {untrusted}\n{}\ntrusted comment: {trusted}\n{}\n",
        base64(sig),
        base64(global)
    )
}

/// The algorithm, key id and signature of a well-formed signature line.
fn sig_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 72).prop_map(|rest| [b"ED".as_slice(), &rest].concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        if let Err(e) = signature::check(&bytes).map_err(|e| e.to_string()) {
            prop_assert!(!e.is_empty() && !e.contains('\n'), "{:?}", e);
        }
    }

    #[test]
    fn arbitrary_four_line_texts_never_panic(lines in vec("[ -~]{0,120}", 4)) {
        let _ = signature::check(lines.join("\n").as_bytes());
    }

    #[test]
    fn well_formed_signatures_pass_byte_for_byte(
        untrusted in "[ -~]{0,60}", trusted in "[ -~]{0,200}",
        sig in sig_bytes(), global in vec(any::<u8>(), 64), newline in any::<bool>(),
    ) {
        let mut text = minisig(&untrusted, &sig, &trusted, &global);
        if !newline {
            text.pop();
        }
        prop_assert_eq!(signature::check(text.as_bytes()), Ok(text.as_str()));
    }

    #[test]
    fn wrong_lengths_algorithms_and_endings_are_refused(
        sig in sig_bytes(), global in vec(any::<u8>(), 64),
        short in 1usize..72, algo in any::<[u8; 2]>(), at in 0usize..4,
    ) {
        let bad_len = minisig("u", &sig[..short], "t", &global);
        prop_assert!(signature::check(bad_len.as_bytes()).is_err());
        let bad_global = minisig("u", &sig, "t", &global[..short.min(63)]);
        prop_assert!(signature::check(bad_global.as_bytes()).is_err());
        let mut other = sig.clone();
        other[..2].copy_from_slice(&algo);
        let text = minisig("u", &other, "t", &global);
        prop_assert_eq!(signature::check(text.as_bytes()).is_ok(), algo == *b"ED");
        let good = minisig("u", &sig, "t", &global);
        let mut lines: Vec<&str> = good.lines().collect();
        let crlf = format!("{}\r", lines[at]);
        lines[at] = &crlf;
        prop_assert!(signature::check(lines.join("\n").as_bytes()).is_err());
    }

    #[test]
    fn any_base64_alphabet_line_never_panics(line in "[A-Za-z0-9+/=]{0,120}") {
        let text = format!("untrusted comment: u\n{line}\ntrusted comment: t\n{line}\n");
        let _ = signature::check(text.as_bytes());
    }
}

#[test]
fn oversized_signatures_are_refused() {
    let sig = [b"ED".as_slice(), &[0; 72]].concat();
    let text = minisig("u", &sig, &"t".repeat(MAX_SIGNATURE), &[0; 64]);
    let e = signature::check(text.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("over the limit"), "{e}");
}

// ---------------------------------------------------------------------------
// URLs

/// `%XX` for every byte of `s`.
fn encode_all(s: &str) -> String {
    s.bytes().fold(String::new(), |mut out, b| {
        let _ = write!(out, "%{b:02X}");
        out
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_urls_never_panic(raw in ".{0,200}") {
        let url = Url::parse(&raw);
        let _ = url.query("node_id");
    }

    #[test]
    fn arbitrary_bytes_as_urls_never_panic(bytes in vec(any::<u8>(), 0..200)) {
        let raw = String::from_utf8_lossy(&bytes);
        let _ = Url::parse(&raw);
    }

    #[test]
    fn plain_segments_and_query_pairs_come_back(
        segments in vec("[A-Za-z0-9._~:@!$'()*,;-]{1,12}", 1..6),
        pairs in vec(("[a-z_]{1,8}", "[A-Za-z0-9._~-]{0,12}"), 0..4),
    ) {
        let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let raw = format!("/{}?{}", segments.join("/"), query.join("&"));
        let url = Url::parse(&raw);
        prop_assert_eq!(&url.segments, &segments);
        let got: Vec<(String, String)> = url.query.clone();
        prop_assert_eq!(got, pairs.clone());
        if let Some((k, v)) = pairs.first() {
            prop_assert_eq!(url.query(k), Some(v.as_str()));
        }
    }

    #[test]
    fn percent_encoding_round_trips_and_never_splits(segment in ".{1,24}", value in ".{0,24}") {
        let raw = format!("/api/{}?k={}", encode_all(&segment), encode_all(&value));
        let url = Url::parse(&raw);
        // An encoded '/' stays inside its segment: two segments, always.
        prop_assert_eq!(url.segments.len(), 2);
        prop_assert_eq!(&url.segments[1], &segment);
        prop_assert_eq!(url.query("k"), Some(value.as_str()));
    }

    #[test]
    fn stray_percents_and_plus_signs(word in "[a-z]{1,8}") {
        let url = Url::parse(&format!("/{word}%/{word}%4?q={word}+{word}%zz"));
        prop_assert_eq!(&url.segments[0], &format!("{word}%"));
        prop_assert_eq!(&url.segments[1], &format!("{word}%4"));
        let want = format!("{word} {word}%zz");
        prop_assert_eq!(url.query("q"), Some(want.as_str()));
    }
}

// ---------------------------------------------------------------------------
// Range headers

/// What RFC 9110 says a single range means for a file of `len` bytes.
fn expected(first: Option<u64>, last: Option<u64>, len: u64) -> ByteRange {
    let (a, b) = match (first, last) {
        (Some(a), Some(b)) if a <= b => (a, b.min(len.saturating_sub(1))),
        (Some(a), None) => (a, len.saturating_sub(1)),
        (None, Some(0)) => return ByteRange::Unsatisfiable,
        (None, Some(n)) => (len.saturating_sub(n), len.saturating_sub(1)),
        _ => return ByteRange::Full,
    };
    if a >= len {
        ByteRange::Unsatisfiable
    } else {
        ByteRange::Part(a, b)
    }
}

fn small_or_any() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..2048, any::<u64>()]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_range_headers_never_panic_and_stay_in_bounds(
        header in prop_oneof![".{0,40}", "bytes=[0-9 ,-]{0,30}"], len in small_or_any(),
    ) {
        match parse_range(Some(&header), len) {
            ByteRange::Part(a, b) => prop_assert!(a <= b && b < len, "{} of {}: {}-{}", header, len, a, b),
            ByteRange::Full | ByteRange::Unsatisfiable => {}
        }
    }

    #[test]
    fn single_ranges_mean_what_the_rfc_says(
        first in option::of(small_or_any()), last in option::of(small_or_any()), len in small_or_any(),
    ) {
        prop_assume!(first.is_some() || last.is_some());
        let show = |v: Option<u64>| v.map_or_else(String::new, |n| n.to_string());
        let header = format!("bytes={}-{}", show(first), show(last));
        prop_assert_eq!(parse_range(Some(&header), len), expected(first, last, len), "{}", header);
    }

    #[test]
    fn several_ranges_or_other_units_get_the_whole_file(a in any::<u64>(), b in any::<u64>(), len in any::<u64>()) {
        prop_assert_eq!(parse_range(Some(&format!("bytes={a}-,{b}-")), len), ByteRange::Full);
        prop_assert_eq!(parse_range(Some(&format!("items={a}-{b}")), len), ByteRange::Full);
        prop_assert_eq!(parse_range(None, len), ByteRange::Full);
    }
}

proptest! {
    #![proptest_config(config())]

    /// `--min-rate`: any text is a rate or an error, never a panic; a
    /// number with a unit means that many bytes per second.
    #[test]
    fn min_rates_parse_or_refuse(text in ".{0,40}") {
        if let Ok(n) = manager_lite::server::rate::parse(&text) {
            prop_assert!(n > 0);
        }
    }

    #[test]
    fn min_rates_mean_what_they_say(n in 1u64..1_000_000, unit in 0usize..4, per_s in any::<bool>()) {
        let (name, size) = [("", 1u64), ("B", 1), ("KiB", 1024), ("MiB", 1 << 20)][unit];
        let text = format!("{n}{name}{}", if per_s { "/s" } else { "" });
        prop_assert_eq!(manager_lite::server::rate::parse(&text), Ok(n * size));
    }
}

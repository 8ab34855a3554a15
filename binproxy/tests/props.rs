//! Property tests of the agent's parsers, with a fixed budget of cases each
//! so a run is bounded: the config parser ([`binproxy::config::parse`]) never
//! panics on arbitrary bytes or JSON and its errors are config errors naming
//! the file; the signature path ([`binproxy::verify::authorize`] and the
//! streaming [`binproxy::verify::Verifier`]) never panics on arbitrary
//! signature text or trusted comments, and refuses any changed byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy::config::{self, Config};
use binproxy::error::Error;
use binproxy::verify::{authorize, Policy, Verifier};
use binproxy_protocol::{hex, Target};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

const CASES: u32 = 256;
const ORIGIN: &str = "/etc/binproxy/fuzz.json";

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(CASES)
}

// ---------------------------------------------------------------------------
// The config parser

/// Parses `text`; a failure must be a config error naming the file.
fn parse(text: &str) -> Result<Option<Config>, TestCaseError> {
    match config::parse(text, Path::new(ORIGIN)) {
        Ok(c) => Ok(Some(c)),
        Err(Error::Config { path, message }) => {
            prop_assert_eq!(path, Path::new(ORIGIN));
            prop_assert!(!message.is_empty());
            Ok(None)
        }
        Err(other) => Err(TestCaseError::fail(format!("not a config error: {other}"))),
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
        "/[a-z/.]{0,12}".prop_map(Value::String),
        "[0-9]{1,4}(ms|s|m|h)?".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const KEYS: &[&str] = &[
    "manager_url",
    "node_id",
    "labels",
    "state_dir",
    "splay",
    "timeout",
    "bins",
    "trusted_keys",
    "allow_downgrade",
    "enroll_token_file",
    "ca_file",
    "name",
    "path",
    "mode",
    "preflight",
    "restart",
    "health",
    "keep",
    "command",
    "http",
    "retries",
    "interval",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => ".{0,10}",
    ]
}

/// A config that parses, as JSON.
fn base() -> Value {
    json!({
        "manager_url": "https://127.0.0.1:38012/",
        "node_id": "web-01",
        "labels": {"env": "prod"},
        "state_dir": "/var/lib/binproxy",
        "splay": "30s",
        "timeout": "30s",
        "ca_file": "/etc/binproxy/ca.pem",
        "bins": [{
            "name": "streamd",
            "path": "/usr/local/bin/streamd",
            "mode": "0755",
            "preflight": ["{path}", "--version"],
            "restart": ["systemctl", "restart", "streamd"],
            "health": {"command": ["/usr/local/bin/streamd", "--check"],
                       "http": "http://127.0.0.1:8080/health",
                       "timeout": "5s", "retries": 10, "interval": "1s"},
            "keep": 3
        }]
    })
}

/// The object paths of `base()` a mutation may replace.
const SLOTS: &[&[&str]] = &[
    &["manager_url"],
    &["node_id"],
    &["labels"],
    &["labels", "env"],
    &["state_dir"],
    &["splay"],
    &["timeout"],
    &["ca_file"],
    &["bins"],
    &["trusted_keys"],
    &["allow_downgrade"],
    &["enroll_token_file"],
    &["bins", "0"],
    &["bins", "0", "name"],
    &["bins", "0", "path"],
    &["bins", "0", "mode"],
    &["bins", "0", "preflight"],
    &["bins", "0", "restart"],
    &["bins", "0", "health"],
    &["bins", "0", "keep"],
    &["bins", "0", "health", "timeout"],
    &["bins", "0", "health", "retries"],
    &["bins", "0", "health", "interval"],
    &["bins", "0", "health", "http"],
];

fn set(root: &mut Value, path: &[&str], v: Value) {
    let (last, parents) = path.split_last().unwrap();
    let mut at = root;
    for p in parents {
        at = match at {
            Value::Array(a) => &mut a[p.parse::<usize>().unwrap()],
            other => other.get_mut(*p).unwrap(),
        };
    }
    match at {
        Value::Array(a) => a[last.parse::<usize>().unwrap()] = v,
        Value::Object(o) => {
            o.insert((*last).to_owned(), v);
        }
        _ => unreachable!("slots name objects and arrays"),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        parse(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn arbitrary_json_never_panics(v in json_value()) {
        parse(&v.to_string())?;
    }

    #[test]
    fn one_field_replaced_by_anything_never_panics(
        slot in proptest::sample::select(SLOTS), v in json_value()
    ) {
        let mut c = base();
        set(&mut c, slot, v);
        parse(&c.to_string())?;
    }

    #[test]
    fn the_base_cut_anywhere_never_panics(at in any::<Index>(), byte in any::<u8>()) {
        let text = base().to_string();
        let i = at.index(text.len());
        let mut bytes = text.into_bytes();
        parse(&String::from_utf8_lossy(&bytes[..i]))?;
        bytes[i] = byte;
        parse(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn generated_valid_configs_parse_to_their_values(
        name in "[a-z0-9_-]{1,20}",
        dir in "(/[a-z0-9]{1,8}){1,4}",
        keep in 1usize..=100,
        mode in 0u32..=0o7777,
        secs in 1u64..100_000,
        label in "[a-z]{1,10}",
        value in "[ -~]{0,40}",
    ) {
        let text = json!({
            "manager_url": format!("https://m{name}:1/"),
            "node_id": format!("n-{name}"),
            "labels": {label.clone(): value.clone()},
            "state_dir": dir,
            "timeout": format!("{secs}s"),
            "ca_file": format!("{dir}/ca.pem"),
            "bins": [{"name": name, "path": format!("{dir}/{name}"), "keep": keep,
                      "mode": format!("{mode:o}")}],
        }).to_string();
        let c = parse(&text)?.ok_or_else(|| TestCaseError::fail(format!("refused: {text}")))?;
        prop_assert_eq!(&c.manager_url, &format!("https://m{name}:1"));
        prop_assert_eq!(c.timeout.as_secs(), secs);
        prop_assert_eq!(&c.labels[&label], &value);
        prop_assert_eq!(c.ca_file, Some(format!("{dir}/ca.pem").into()));
        prop_assert!(c.ca_roots.is_empty());
        prop_assert_eq!(&c.bins[0].name, &name);
        prop_assert_eq!(c.bins[0].keep, keep);
        prop_assert_eq!(c.bins[0].mode, Some(mode));
    }
}

// ---------------------------------------------------------------------------
// Signatures and the streaming verification

// The test vectors of `binproxy::verify`'s unit tests, made with the real
// minisign 0.11 CLI.
const KEY: &str = "RWQcdYBpDRlaiSQRcR9X1rlXxXWwg32IY6psdEkh271+J/GdigEBOShL";
const ART: &[u8] = b"hello world\n";
const SIG_HEAD: &str = "untrusted comment: signature from minisign secret key
RUQcdYBpDRlaictdrNP+j3Izb8rlIe7Zbl76gtsb0FIgg0bLOYLfQBe9HVI5y6braSedk/o2/PAEe0fUWxeR/h8Yzr0uJ2WehgA=
";
const COMMENT: &str = "bin=streamd version=1.2.0 arch=x86_64 timestamp=1700000000";
const SIG_TAIL: &str =
    "CC2ZQxU6aFiQode/k5YZJWauPJraUHHTPHDKsOlcIaPSb1+/pKYBXWKTAs32MShftETBZFdW4oLaOy4/o9lUBg==\n";

fn sig_with_comment(comment: &str) -> String {
    format!("{SIG_HEAD}trusted comment: {comment}\n{SIG_TAIL}")
}

fn sha(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

fn target(bytes: &[u8], version: &str, signature: Option<String>) -> Target {
    Target {
        bin_name: "streamd".into(),
        version: version.into(),
        sha256sum: sha(bytes),
        size: bytes.len() as u64,
        signature,
        ..Target::default()
    }
}

/// authorize, then stream `bytes` through the verifier in `chunks`.
fn install(keys: &[String], t: &Target, bytes: &[u8], chunk: usize) -> Result<Option<u64>, String> {
    let policy = Policy {
        keys,
        arch: "x86_64",
        newest: None,
        allow_downgrade: false,
    };
    let signed = authorize(&policy, t)?;
    let mut v = Verifier::new(t.size, &t.sha256sum, signed.as_ref());
    for part in bytes.chunks(chunk.max(1)) {
        v.update(part)?;
    }
    v.finish()?;
    Ok(signed.map(|s| s.timestamp))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_signature_text_never_panics_and_is_refused(text in ".{0,400}") {
        let keys = [KEY.to_owned()];
        prop_assert!(install(&keys, &target(ART, "1.2.0", Some(text)), ART, 4).is_err());
    }

    #[test]
    fn a_signature_with_one_line_changed_is_refused(
        line in 1usize..4, replacement in "[ -~]{0,120}"
    ) {
        let good = sig_with_comment(COMMENT);
        let mut lines: Vec<&str> = good.lines().collect();
        prop_assume!(lines[line] != replacement);
        lines[line] = &replacement;
        let text = lines.join("\n");
        let keys = [KEY.to_owned()];
        let got = install(&keys, &target(ART, "1.2.0", Some(text.clone())), ART, 5);
        // Line 0, the untrusted comment, is the only one that may change.
        prop_assert!(got.is_err(), "{:?}\n{}", got, text);
    }

    #[test]
    fn any_other_trusted_comment_is_refused(comment in "[ -~]{0,120}") {
        prop_assume!(comment != COMMENT);
        let keys = [KEY.to_owned()];
        let sig = sig_with_comment(&comment);
        // The target claims whatever the forged comment says.
        let version = comment
            .split_whitespace()
            .find_map(|p| p.strip_prefix("version="))
            .unwrap_or("1.2.0")
            .to_owned();
        let got = install(&keys, &target(ART, &version, Some(sig)), ART, 3);
        prop_assert!(got.is_err(), "forged comment {:?} accepted", comment);
    }

    #[test]
    fn the_signed_bytes_pass_in_any_chunking(chunk in 1usize..16) {
        let keys = [KEY.to_owned()];
        let t = target(ART, "1.2.0", Some(sig_with_comment(COMMENT)));
        prop_assert_eq!(install(&keys, &t, ART, chunk), Ok(Some(1_700_000_000)));
    }

    #[test]
    fn signed_bytes_mutated_are_refused(at in any::<Index>(), flip in 1u8..=255) {
        let keys = [KEY.to_owned()];
        let mut evil = ART.to_vec();
        let i = at.index(evil.len());
        evil[i] ^= flip;
        // A compromised manager announces the hash of its own bytes.
        let t = target(&evil, "1.2.0", Some(sig_with_comment(COMMENT)));
        prop_assert!(install(&keys, &t, &evil, 4).is_err());
    }

    #[test]
    fn unsigned_bytes_must_match_size_and_sha256(
        bytes in vec(any::<u8>(), 1..4096),
        at in any::<Index>(),
        flip in 1u8..=255,
        chunk in 1usize..1024,
        extra in vec(any::<u8>(), 1..8),
    ) {
        let t = target(&bytes, "1", None);
        prop_assert_eq!(install(&[], &t, &bytes, chunk), Ok(None));
        let mut changed = bytes.clone();
        let i = at.index(changed.len());
        changed[i] ^= flip;
        prop_assert!(install(&[], &t, &changed, chunk).is_err(), "a changed byte passed");
        let cut = &bytes[..at.index(bytes.len())];
        prop_assert!(install(&[], &t, cut, chunk).is_err(), "a short file passed");
        let mut long = bytes.clone();
        long.extend_from_slice(&extra);
        prop_assert!(install(&[], &t, &long, chunk).is_err(), "a long file passed");
    }
}

// ---------------------------------------------------------------------------
// Names the agent derives from what the manager sends

proptest! {
    #![proptest_config(config())]

    #[test]
    fn part_paths_never_panic_and_stay_beside_the_live_file(sha in ".{0,80}") {
        let live = Path::new("/srv/bin/streamd");
        let part = binproxy::fetch::part_path(live, &sha);
        prop_assert_eq!(part.parent(), Some(Path::new("/srv/bin")));
    }
}

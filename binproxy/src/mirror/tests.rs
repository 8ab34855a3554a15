//! The mirror rules without a network: the order of an artifact's sources,
//! what a `bins/<bin>.json` must be, and when a mirror's target installs
//! (signatures made with the real minisign CLI, see `verify.rs`).

use super::*;
use crate::verify::tests::{ANY_ARCH_SIG, ART, KEY, OTHER_SIG, SIG};
use binproxy_protocol::hex;
use binproxy_protocol::mirror::ANY_ARCH;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;

const SHA: &str = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";

fn target(url: &str) -> Target {
    Target {
        bin_name: "streamd".into(),
        version: "1.2.0".into(),
        sha256sum: SHA.into(),
        size: 12,
        url: url.into(),
        reason: None,
        signature: None,
        ..Target::default()
    }
}

fn urls(sources: &[Source]) -> Vec<(&str, Peer, &str)> {
    sources
        .iter()
        .map(|s| (s.url.as_str(), s.peer, s.shown.as_str()))
        .collect()
}

#[test]
fn mirrors_come_first_in_order_then_the_targets_own_url() {
    let m = Manager::with_timeout("http://127.0.0.1:1", Duration::from_secs(1));
    let mirrors = ["https://m1/".to_owned(), "http://m2:8/fleet/".to_owned()];
    let from_manager = target(&format!("/api/v1/download/{SHA}"));
    let got = sources(&mirrors, &m, &from_manager, &TargetFrom::Manager);
    let own = format!("http://127.0.0.1:1/api/v1/download/{SHA}");
    assert_eq!(
        urls(&got),
        [
            (
                format!("https://m1/artifacts/{SHA}").as_str(),
                Peer::Mirror,
                "https://m1/"
            ),
            (
                format!("http://m2:8/fleet/artifacts/{SHA}").as_str(),
                Peer::Mirror,
                "http://m2:8/fleet/"
            ),
            (own.as_str(), Peer::Manager, own.as_str()),
        ]
    );
    // Without mirrors: the target's URL alone, as before.
    let got = sources(&[], &m, &from_manager, &TargetFrom::Manager);
    assert_eq!(urls(&got), [(own.as_str(), Peer::Manager, own.as_str())]);
    // The manager's artifact URL base: still the manager's target.
    let cdn = target(&format!("https://cdn/a/{SHA}"));
    let got = sources(&mirrors[..1], &m, &cdn, &TargetFrom::Manager);
    assert_eq!(got[1].peer, Peer::Manager);
    assert_eq!(got[1].url, format!("https://cdn/a/{SHA}"));
}

#[test]
fn a_mirror_targets_own_url_is_on_its_mirror_and_never_the_managers() {
    let m = Manager::with_timeout("http://127.0.0.1:1", Duration::from_secs(1));
    let mirrors = ["https://m1/".to_owned(), "https://m2/".to_owned()];
    let from = TargetFrom::Mirror("https://m2/".into());
    // As `mirror sync` writes it: the same file as m2's own entry, tried once.
    let got = sources(&mirrors, &m, &target(&artifact_file(SHA)), &from);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|s| s.peer == Peer::Mirror));
    // Elsewhere on the mirror, or absolute: after the mirrors, no credential.
    let got = sources(&mirrors, &m, &target("/odd/place"), &from);
    assert_eq!(got[2].url, "https://m2/odd/place");
    assert_eq!(got[2].shown, "https://m2/");
    for url in ["http://127.0.0.1:1/api/v1/download/x", "https://cdn/x"] {
        let got = sources(&mirrors, &m, &target(url), &from);
        assert_eq!(urls(&got)[2], (url, Peer::Mirror, url));
    }
    assert_eq!(from.to_string(), "mirror https://m2/");
    assert_eq!(TargetFrom::Manager.to_string(), "manager");
}

fn bin_doc(bin_name: &str, targets: &[(&str, Target)]) -> Vec<u8> {
    let doc = MirrorBin {
        bin_name: bin_name.into(),
        release_id: 7,
        version: "1.2.0".into(),
        generated_at: "2026-12-03T00:00:00Z".into(),
        targets: targets
            .iter()
            .map(|(a, t)| ((*a).to_owned(), t.clone()))
            .collect::<BTreeMap<_, _>>(),
    };
    serde_json::to_vec(&doc).unwrap()
}

#[test]
fn a_bin_file_gives_this_archs_target_with_its_sha256_lowered() {
    let url = "https://m1/bins/streamd.json";
    let mut upper = target(&artifact_file(SHA));
    upper.sha256sum = SHA.to_uppercase();
    let doc = bin_doc("streamd", &[(ANY_ARCH, upper)]);
    let t = parse_bin(url, &doc, "streamd", "x86_64").unwrap().unwrap();
    assert_eq!(t.sha256sum, SHA);
    let only_arm = bin_doc("streamd", &[("aarch64", target("x"))]);
    assert_eq!(
        parse_bin(url, &only_arm, "streamd", "x86_64").unwrap(),
        None
    );
}

#[test]
fn a_bin_file_about_another_bin_or_off_the_format_is_refused_naming_its_url() {
    let url = "https://m1/bins/streamd.json";
    let mut bad_sha = target("x");
    bad_sha.sha256sum = "../../etc/passwd".into();
    let mut other_target = target("x");
    other_target.bin_name = "other".into();
    let cases: [(Vec<u8>, &str); 5] = [
        (
            bin_doc("other", &[(ANY_ARCH, target("x"))]),
            "about bin \"other\", not \"streamd\"",
        ),
        (
            bin_doc("streamd", &[(ANY_ARCH, other_target)]),
            "about bin \"other\"",
        ),
        (bin_doc("streamd", &[(ANY_ARCH, bad_sha)]), "sha256"),
        (b"<html>not found</html>".to_vec(), "not the mirror's JSON"),
        (
            b"{\"bin_name\":\"streamd\"}".to_vec(),
            "not the mirror's JSON",
        ),
    ];
    for (bytes, want) in cases {
        let e = parse_bin(url, &bytes, "streamd", "x86_64").unwrap_err();
        assert!(matches!(e, Error::Mirror { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.starts_with(&format!("mirror {url}: ")) && e.contains(want),
            "{want}: {e}"
        );
    }
}

fn signed(signature: Option<&str>) -> Target {
    Target {
        sha256sum: hex(&Sha256::digest(ART)),
        size: ART.len() as u64,
        signature: signature.map(Into::into),
        ..target("artifacts/x")
    }
}

fn policy(keys: &[String], newest: Option<u64>, allow_downgrade: bool) -> Policy<'_> {
    Policy {
        keys,
        arch: "x86_64",
        newest,
        allow_downgrade,
    }
}

fn verdict(p: &Policy, bin: &str, t: &Target) -> Result<u64, (bool, String)> {
    match judge(p, bin, t) {
        Verdict::Install(s) => Ok(s.timestamp),
        Verdict::Stale(why) => Err((true, why)),
        Verdict::Refused(why) => Err((false, why)),
    }
}

#[test]
fn a_mirror_target_installs_only_when_signed_and_strictly_newer() {
    let keys = [KEY.to_owned()];
    let t = signed(Some(SIG));
    assert_eq!(
        verdict(&policy(&keys, None, false), "streamd", &t),
        Ok(1_700_000_000)
    );
    assert_eq!(
        verdict(&policy(&keys, Some(1_699_999_999), false), "streamd", &t),
        Ok(1_700_000_000)
    );
    // The same timestamp (a replay of what runs) and older ones are stale,
    // even where allow_downgrade lets the manager downgrade.
    for (newest, allow) in [
        (1_700_000_000, false),
        (1_800_000_000, false),
        (1_800_000_000, true),
    ] {
        let (stale, why) = verdict(&policy(&keys, Some(newest), allow), "streamd", &t).unwrap_err();
        assert!(stale, "{why}");
        assert!(
            why.contains("not newer than") && why.contains("never downgrades or replays"),
            "{why}"
        );
    }
    // An arch=any signature, older: installs only where nothing newer is known.
    let any = signed(Some(ANY_ARCH_SIG));
    let arm = Policy {
        arch: "aarch64",
        ..policy(&keys, None, false)
    };
    assert_eq!(verdict(&arm, "streamd", &any), Ok(1_600_000_000));
}

#[test]
fn a_mirror_target_is_refused_without_keys_a_signature_or_the_right_bin() {
    let keys = [KEY.to_owned()];
    let p = policy(&keys, None, false);
    let for_svc = Target {
        bin_name: "svc".into(),
        ..signed(Some(SIG))
    };
    let cases = [
        (
            policy(&[], None, true),
            "streamd",
            signed(Some(SIG)),
            UNTRUSTED,
        ),
        (
            policy(&keys, None, false),
            "streamd",
            signed(None),
            "no signature",
        ),
        (
            policy(&keys, None, false),
            "streamd",
            signed(Some(OTHER_SIG)),
            "not in trusted_keys",
        ),
        // The file says svc, and the signature was made for streamd.
        (
            policy(&keys, None, false),
            "svc",
            for_svc,
            "bin=\"streamd\"",
        ),
        // A target about another bin than the one asked for.
        (
            policy(&keys, None, false),
            "svc",
            signed(Some(SIG)),
            "for bin \"streamd\", not \"svc\"",
        ),
    ];
    for (p, bin, t, want) in cases {
        let (stale, why) = verdict(&p, bin, &t).unwrap_err();
        assert!(!stale && why.contains(want), "{want}: {why}");
    }
    let wrong_version = Target {
        version: "9.9.9".into(),
        ..signed(Some(SIG))
    };
    let (_, why) = verdict(&p, "streamd", &wrong_version).unwrap_err();
    assert!(why.contains("version="), "{why}");
}

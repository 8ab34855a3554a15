//! Checking what was downloaded against what the manager announced: the
//! bytes are hashed and counted as they stream in (no second pass over the
//! file), more bytes than announced are refused at once, and the finished
//! file must match both size and sha256 exactly.
//!
//! With `trusted_keys` configured, the manager is not trusted either: the
//! artifact must carry a minisign signature by one of those keys, whose
//! trusted comment (covered by the signature) names this bin, the target's
//! version, this host's arch and a timestamp no older than the newest signed
//! version installed here. [`authorize`] checks all of that before a byte is
//! downloaded; the signature over the bytes themselves is checked in the same
//! streaming pass as the sha256.

use binproxy_protocol::Target;
use minisign_verify::{PublicKey, Signature, StreamVerifier};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

use binproxy_protocol::hex;

use crate::hashcache::short;

/// A signature that passed every check but the one over the bytes.
pub struct Signed {
    pub key: PublicKey,
    pub signature: Signature,
    /// The signed `timestamp=`: recorded once the version is installed.
    pub timestamp: u64,
}

/// What the signature rules need to know about this host.
pub struct Policy<'a> {
    pub keys: &'a [String],
    pub arch: &'a str,
    /// Newest signed timestamp installed for this bin.
    pub newest: Option<u64>,
    pub allow_downgrade: bool,
}

/// Checks a target's signature before the download: `Ok(None)` when no
/// trusted key is configured, else the signature to verify the bytes with,
/// or why the target is refused.
pub fn authorize(policy: &Policy, target: &Target) -> Result<Option<Signed>, String> {
    if policy.keys.is_empty() {
        return Ok(None);
    }
    let text = target
        .signature
        .as_deref()
        .ok_or("no signature, and this host installs only signed artifacts (trusted_keys)")?;
    let signature =
        Signature::decode(text).map_err(|e| format!("the signature does not parse: {e}"))?;
    let keys = policy
        .keys
        .iter()
        .filter_map(|k| PublicKey::from_base64(k).ok());
    let mut legacy = false;
    let mut found = None;
    for k in keys {
        match k.verify_stream(&signature) {
            Ok(_) => {
                found = Some(k);
                break;
            }
            Err(minisign_verify::Error::UnsupportedLegacyMode) => legacy = true,
            Err(_) => {}
        }
    }
    let key = match found {
        Some(k) => k,
        None if legacy => {
            return Err("a legacy (not prehashed) minisign signature: sign without -l".into())
        }
        None => return Err("signed by a key that is not in trusted_keys".into()),
    };
    let comment = parse_comment(signature.trusted_comment());
    let field = |name: &str| comment.get(name).copied().unwrap_or("");
    let expect = |name: &str, want: &str| {
        if field(name) == want {
            Ok(())
        } else {
            Err(format!(
                "the signature is for {name}={:?}, not {want:?}",
                field(name)
            ))
        }
    };
    expect("bin", &target.bin_name)?;
    expect("version", &target.version)?;
    if !matches!(field("arch"), "any" | "all") {
        expect("arch", policy.arch)?;
    }
    let timestamp: u64 = field("timestamp").parse().map_err(|_| {
        format!(
            "the signature has no valid timestamp= ({:?})",
            field("timestamp")
        )
    })?;
    if let Some(newest) = policy
        .newest
        .filter(|n| timestamp < *n && !policy.allow_downgrade)
    {
        return Err(format!(
            "signed timestamp {timestamp} is older than {newest}, the newest installed here: \
             a downgrade or replay (re-sign the old artifact to roll back, or set allow_downgrade)"
        ));
    }
    Ok(Some(Signed {
        key,
        signature,
        timestamp,
    }))
}

/// `bin=streamd version=1.2.0 arch=x86_64 timestamp=1700000000` → fields.
fn parse_comment(comment: &str) -> HashMap<&str, &str> {
    comment
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .collect()
}

/// Hashes and counts a download against its expected size and sha256, and
/// against a signature when there is one.
pub struct Verifier<'a> {
    hasher: Sha256,
    seen: u64,
    size: u64,
    sha256: String,
    signed: Option<StreamVerifier<'a>>,
}

impl<'a> Verifier<'a> {
    pub fn new(size: u64, sha256: &str, signed: Option<&'a Signed>) -> Verifier<'a> {
        Verifier {
            hasher: Sha256::new(),
            seen: 0,
            size,
            sha256: sha256.to_owned(),
            // authorize() already found that this key accepts this signature.
            signed: signed.and_then(|s| s.key.verify_stream(&s.signature).ok()),
        }
    }

    /// How many bytes are still expected.
    pub fn remaining(&self) -> u64 {
        self.size.saturating_sub(self.seen)
    }

    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Takes the next bytes; refuses more than announced.
    pub fn update(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.seen += bytes.len() as u64;
        if self.seen > self.size {
            return Err(format!("more bytes than the announced {}", self.size));
        }
        self.hasher.update(bytes);
        if let Some(s) = self.signed.as_mut() {
            s.update(bytes);
        }
        Ok(())
    }

    /// The whole file arrived: size and hash must match, and the signature.
    pub fn finish(mut self) -> Result<(), String> {
        if self.seen != self.size {
            return Err(format!("got {} of {} bytes", self.seen, self.size));
        }
        let got = hex(&self.hasher.finalize());
        if got != self.sha256 {
            return Err(format!(
                "sha256 {} does not match the target {}",
                short(&got),
                short(&self.sha256)
            ));
        }
        if let Some(s) = self.signed.as_mut() {
            s.finalize()
                .map_err(|e| format!("the signature does not match the bytes: {e}"))?;
        }
        Ok(())
    }
}

/// Shared with the mirror rules' tests (`mirror/tests.rs`).
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn sha(b: &[u8]) -> String {
        hex(&Sha256::digest(b))
    }

    #[test]
    fn exact_bytes_pass() {
        let mut v = Verifier::new(5, &sha(b"hello"), None);
        v.update(b"he").unwrap();
        v.update(b"llo").unwrap();
        assert_eq!(v.remaining(), 0);
        v.finish().unwrap();
    }

    #[test]
    fn wrong_short_and_long_fail() {
        let mut v = Verifier::new(5, &sha(b"hello"), None);
        v.update(b"hellO").unwrap();
        assert!(v.finish().unwrap_err().contains("does not match"));
        let mut v = Verifier::new(5, &sha(b"hello"), None);
        v.update(b"hell").unwrap();
        assert!(v.finish().unwrap_err().contains("got 4 of 5"));
        let mut v = Verifier::new(5, &sha(b"hello"), None);
        assert!(v.update(b"hello!").unwrap_err().contains("more bytes"));
    }

    // Made with the real minisign 0.11 CLI:
    //   minisign -G -W -p k.pub -s k.sec
    //   minisign -S -s k.sec -m art -t "bin=streamd version=1.2.0 arch=x86_64 timestamp=1700000000"
    pub(crate) const KEY: &str = "RWQcdYBpDRlaiSQRcR9X1rlXxXWwg32IY6psdEkh271+J/GdigEBOShL";
    pub(crate) const ART: &[u8] = b"hello world\n";
    pub(crate) const SIG: &str = "untrusted comment: signature from minisign secret key
RUQcdYBpDRlaictdrNP+j3Izb8rlIe7Zbl76gtsb0FIgg0bLOYLfQBe9HVI5y6braSedk/o2/PAEe0fUWxeR/h8Yzr0uJ2WehgA=
trusted comment: bin=streamd version=1.2.0 arch=x86_64 timestamp=1700000000
CC2ZQxU6aFiQode/k5YZJWauPJraUHHTPHDKsOlcIaPSb1+/pKYBXWKTAs32MShftETBZFdW4oLaOy4/o9lUBg==
";
    /// The same bytes signed by another key (not trusted).
    pub(crate) const OTHER_SIG: &str = "untrusted comment: signature from minisign secret key
RUQukdZKFR4dfilgLnAhsx7qk2MoOxw7Kc6Y60AOXuXsXo9m6vPbvtXwdcJ6vL3tvIV5buskbFy8C99gkcVYcDS3EhmlB90QgQg=
trusted comment: bin=streamd version=1.2.0 arch=x86_64 timestamp=1700000000
lgHynfj0RyNmslSN29ya3cMaeglVmWNCQ09OmVp5EzedCUE4u7eCT17QukujlaTpeW03/32nTC8rH+ysY0JjCQ==
";
    /// Signed for any arch, with an older timestamp.
    pub(crate) const ANY_ARCH_SIG: &str = "untrusted comment: signature from minisign secret key
RUQcdYBpDRlaictdrNP+j3Izb8rlIe7Zbl76gtsb0FIgg0bLOYLfQBe9HVI5y6braSedk/o2/PAEe0fUWxeR/h8Yzr0uJ2WehgA=
trusted comment: bin=streamd version=1.2.0 arch=any timestamp=1600000000
RgpZH+YEZfj3nI3lKcZUbxgdVuZKxQu3w4uBs/oObnd13sPNUlhFINqMMGPOHItB6tHueg5EGCMMEasSNqJ/DA==
";

    fn target(bytes: &[u8], version: &str, signature: Option<&str>) -> Target {
        Target {
            bin_name: "streamd".into(),
            version: version.into(),
            sha256sum: sha(bytes),
            size: bytes.len() as u64,
            url: String::new(),
            reason: None,
            signature: signature.map(Into::into),
            ..Target::default()
        }
    }

    fn policy(keys: &[String], newest: Option<u64>) -> Policy<'_> {
        Policy {
            keys,
            arch: "x86_64",
            newest,
            allow_downgrade: false,
        }
    }

    /// authorize, then stream `bytes` through the verifier.
    fn install(p: &Policy, t: &Target, bytes: &[u8]) -> Result<Option<u64>, String> {
        let signed = authorize(p, t)?;
        let mut v = Verifier::new(t.size, &t.sha256sum, signed.as_ref());
        v.update(bytes)?;
        v.finish()?;
        Ok(signed.map(|s| s.timestamp))
    }

    #[test]
    fn a_good_signature_installs_and_yields_its_timestamp() {
        let keys = [KEY.to_owned()];
        let t = target(ART, "1.2.0", Some(SIG));
        assert_eq!(
            install(&policy(&keys, None), &t, ART),
            Ok(Some(1_700_000_000))
        );
        assert_eq!(
            install(&policy(&[], None), &target(ART, "9", None), ART),
            Ok(None),
            "no keys: no check"
        );
    }

    #[test]
    fn every_refusal_says_why() {
        let keys = [KEY.to_owned()];
        let p = policy(&keys, None);
        let cases = [
            (target(ART, "1.2.0", None), "no signature"),
            (target(ART, "1.2.0", Some("garbage")), "does not parse"),
            (target(ART, "1.2.0", Some(OTHER_SIG)), "not in trusted_keys"),
            (target(ART, "1.3.0", Some(SIG)), "version="),
            (
                Target {
                    bin_name: "other".into(),
                    ..target(ART, "1.2.0", Some(SIG))
                },
                "bin=",
            ),
        ];
        for (t, want) in cases {
            let e = install(&p, &t, ART).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
        let arm = Policy {
            arch: "aarch64",
            ..policy(&keys, None)
        };
        assert!(install(&arm, &target(ART, "1.2.0", Some(SIG)), ART)
            .unwrap_err()
            .contains("arch="));
        assert!(
            install(&arm, &target(ART, "1.2.0", Some(ANY_ARCH_SIG)), ART).is_ok(),
            "arch=any"
        );
    }

    #[test]
    fn tampered_bytes_or_comment_fail_in_the_stream() {
        let keys = [KEY.to_owned()];
        let p = policy(&keys, None);
        // A compromised manager announces the hash of its own bytes.
        let evil = b"hello World\n";
        let e = install(&p, &target(evil, "1.2.0", Some(SIG)), evil).unwrap_err();
        assert!(e.contains("signature does not match"), "{e}");
        // Editing the trusted comment breaks the global signature.
        let forged = SIG.replace("version=1.2.0", "version=1.3.0");
        let e = install(&p, &target(ART, "1.3.0", Some(&forged)), ART).unwrap_err();
        assert!(e.contains("signature does not match"), "{e}");
    }

    #[test]
    fn older_timestamps_are_refused_unless_allowed() {
        let keys = [KEY.to_owned()];
        let t = target(ART, "1.2.0", Some(SIG));
        let e = install(&policy(&keys, Some(1_700_000_001)), &t, ART).unwrap_err();
        assert!(e.contains("downgrade or replay"), "{e}");
        assert!(
            install(&policy(&keys, Some(1_700_000_000)), &t, ART).is_ok(),
            "same timestamp: reinstall"
        );
        let allow = Policy {
            allow_downgrade: true,
            ..policy(&keys, Some(1_800_000_000))
        };
        assert!(install(&allow, &t, ART).is_ok());
    }
}

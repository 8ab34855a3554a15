//! Mirrors: static copies of the manager's releases (`manager-lite mirror
//! sync` trees, see [`binproxy_protocol::mirror`]) that any file server, CDN
//! or bucket serves, listed in the config's `mirrors`. They play two parts.
//! For every download, [`sources`] puts `artifacts/<sha256>` on each mirror
//! before the target's own URL, so the bytes come from the nearest copy; a
//! mirror is not trusted for them, because the same size, sha256 and
//! signature checks apply whatever sent them. And while the manager is
//! unreachable, [`find`] reads a bin's `bins/<bin>.json` from the first
//! mirror that answers usably, and [`judge`] decides whether its target may
//! be installed: only on a host with `trusted_keys`, only with a signature
//! by one of them naming this bin, version and arch, and only when its
//! signed timestamp is newer than the newest installed here, so a mirror can
//! neither install what the publisher did not sign nor downgrade or replay,
//! whatever `allow_downgrade` says. Nothing of the node's credentials ever
//! goes to a mirror ([`Peer::Mirror`]).

use binproxy_protocol::mirror::{artifact_file, bin_file, MirrorBin, MAX_MIRROR_JSON};
use binproxy_protocol::{check_sha256, Target};
use std::fmt;

use crate::error::{Error, MirrorProblem, Result};
use crate::manager::{Manager, Peer};
use crate::verify::{self, Policy, Signed};

/// Why nothing is taken from a mirror on a host without `trusted_keys`.
pub const UNTRUSTED: &str =
    "targets are taken from a mirror only with trusted_keys (a mirror is not trusted)";

/// Who named a bin's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetFrom {
    /// The manager's keepalive answer.
    Manager,
    /// `bins/<bin>.json` on the mirror with this base URL, read while the
    /// manager was unreachable.
    Mirror(String),
}

impl fmt::Display for TargetFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manager => f.write_str("manager"),
            Self::Mirror(base) => write!(f, "mirror {base}"),
        }
    }
}

/// One place an artifact's bytes may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub url: String,
    pub peer: Peer,
    /// What the state and `binproxy status` record as where the bytes came
    /// from: the mirror's base URL, or `url` itself.
    pub shown: String,
}

/// Where to fetch `target`, in order, each once: `artifacts/<sha256>` on
/// every mirror, then the target's own URL, which is the manager's route (or
/// an absolute URL) when the manager named the target, and relative to its
/// mirror when a mirror did. Nothing in the list from a mirror gets a
/// credential, including a mirror target's absolute URL.
pub fn sources(
    mirrors: &[String],
    manager: &Manager,
    target: &Target,
    from: &TargetFrom,
) -> Vec<Source> {
    file_sources(mirrors, manager, &target.sha256sum, &target.url, from)
}

/// [`sources`] of any file a target names by its sha256 and `url`: the
/// artifact, one of its patches (`deltas`) or its `zst` form, which a mirror
/// holds as `artifacts/<sha256>` too.
pub fn file_sources(
    mirrors: &[String],
    manager: &Manager,
    sha256: &str,
    url: &str,
    from: &TargetFrom,
) -> Vec<Source> {
    let mut out: Vec<Source> = mirrors
        .iter()
        .map(|base| Source {
            url: format!("{base}{}", artifact_file(sha256)),
            peer: Peer::Mirror,
            shown: base.clone(),
        })
        .collect();
    let own = match from {
        TargetFrom::Manager => {
            let url = manager.url(url);
            Source {
                shown: url.clone(),
                url,
                peer: Peer::Manager,
            }
        }
        TargetFrom::Mirror(base) => {
            let absolute = ["http://", "https://"].iter().any(|s| url.starts_with(s));
            if absolute {
                Source {
                    url: url.to_owned(),
                    peer: Peer::Mirror,
                    shown: url.to_owned(),
                }
            } else {
                Source {
                    url: format!("{base}{}", url.trim_start_matches('/')),
                    peer: Peer::Mirror,
                    shown: base.clone(),
                }
            }
        }
    };
    if !out.iter().any(|s| s.url == own.url) {
        out.push(own);
    }
    out
}

/// `bin`'s target for `arch` from the first mirror whose `bins/<bin>.json`
/// answers usably (found, within [`MAX_MIRROR_JSON`] bytes and the request
/// `timeout`, the mirror's JSON, about this bin, with a well-formed sha256):
/// that mirror's base URL, and its target (`None` when it has none for this
/// arch). Each mirror that failed is logged; when all did, the error lists
/// them.
pub fn find(
    manager: &Manager,
    mirrors: &[String],
    bin: &str,
    arch: &str,
) -> Result<(String, Option<Target>)> {
    let mut tried = Vec::new();
    for base in mirrors {
        let url = format!("{base}{}", bin_file(bin));
        match read_bin(manager, &url, bin, arch) {
            Ok(target) => return Ok((base.clone(), target)),
            Err(e) => {
                log::warn!("{bin}: {e}");
                tried.push(e);
            }
        }
    }
    Err(Error::Sources {
        what: format!("{bin}: {}", bin_file(bin)),
        tried,
    })
}

/// One mirror's `bins/<bin>.json`, checked; its target for `arch`.
fn read_bin(manager: &Manager, url: &str, bin: &str, arch: &str) -> Result<Option<Target>> {
    let bytes = manager.mirror_get(url, MAX_MIRROR_JSON)?;
    parse_bin(url, &bytes, bin, arch)
}

/// [`read_bin`] once the bytes are in.
fn parse_bin(url: &str, bytes: &[u8], bin: &str, arch: &str) -> Result<Option<Target>> {
    let bad = |problem| Error::Mirror {
        url: url.to_owned(),
        problem,
    };
    let doc: MirrorBin =
        serde_json::from_slice(bytes).map_err(|e| bad(MirrorProblem::NotJson(e)))?;
    let wrong_bin = |found: &str| {
        bad(MirrorProblem::WrongBin {
            want: bin.to_owned(),
            found: found.to_owned(),
        })
    };
    if doc.bin_name != bin {
        return Err(wrong_bin(&doc.bin_name));
    }
    let Some(target) = doc.target_for(arch) else {
        return Ok(None);
    };
    if target.bin_name != bin {
        return Err(wrong_bin(&target.bin_name));
    }
    let mut target = target.clone();
    // It names the `.part` file and is compared with local hashes: 64 hex
    // digits, one spelling (as from the manager).
    target.sha256sum = check_sha256("sha256sum", &target.sha256sum)
        .map_err(|e| bad(MirrorProblem::BadTarget(e)))?;
    crate::delivery::check_offers(&mut target);
    Ok(Some(target))
}

/// What may be done with a mirror's target for `bin`.
pub enum Verdict {
    /// Signed by a trusted key for this bin, version and arch, and newer
    /// than the newest installed here: install it (the bytes are checked
    /// against this signature as they stream in).
    Install(Box<Signed>),
    /// Properly signed, but not newer than what is installed: a mirror that
    /// lags behind, or one replaying an old release. Kept what runs.
    Stale(String),
    /// Not to be installed from a mirror, and why.
    Refused(String),
}

/// The rules for a mirror's target: those of [`verify::authorize`] (a
/// signature by one of `policy.keys` whose trusted comment names `bin`, the
/// target's version and this arch), with `trusted_keys` required and a
/// signed timestamp strictly newer than `policy.newest` when one is known;
/// `policy.allow_downgrade` does not apply.
pub fn judge(policy: &Policy, bin: &str, target: &Target) -> Verdict {
    if policy.keys.is_empty() {
        return Verdict::Refused(UNTRUSTED.into());
    }
    if target.bin_name != bin {
        return Verdict::Refused(format!(
            "the mirror's target is for bin {:?}, not {bin:?}",
            target.bin_name
        ));
    }
    // The timestamp rule is this function's own (strictly newer, always).
    let signature_only = Policy {
        keys: policy.keys,
        arch: policy.arch,
        newest: None,
        allow_downgrade: false,
    };
    match verify::authorize(&signature_only, target) {
        Err(why) => Verdict::Refused(why),
        Ok(None) => Verdict::Refused(UNTRUSTED.into()),
        Ok(Some(signed)) => match policy.newest {
            Some(newest) if signed.timestamp <= newest => Verdict::Stale(format!(
                "version {} signed at timestamp {} is not newer than {newest}, the newest \
                 installed here (a mirror never downgrades or replays); kept what runs",
                target.version, signed.timestamp
            )),
            _ => Verdict::Install(Box::new(signed)),
        },
    }
}

#[cfg(test)]
mod tests;

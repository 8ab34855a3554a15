//! What the keepalive says about this host: its node id and labels, the
//! CPU, OS and release it runs, its name, this agent's version and the
//! sha256 of every managed file. The manager shows these in its fleet view
//! and chooses each bin's target from them.

use binproxy_protocol::{Keepalive, Secret};
use std::collections::BTreeMap;

use crate::config::Config;

/// The keepalive body; `locals` maps each bin to its hash on disk (`None`
/// when the file is missing), `proposed_secret` is sent while enrolling.
pub fn keepalive(
    config: &Config,
    locals: &BTreeMap<String, Option<String>>,
    proposed_secret: Option<&str>,
) -> Keepalive {
    Keepalive {
        node_id: config.node_id.clone(),
        cpu_arch: std::env::consts::ARCH.into(),
        os: std::env::consts::OS.into(),
        os_release: os_release(),
        node_name: hostname(),
        bin_proxy_version: env!("CARGO_PKG_VERSION").into(),
        labels: config.labels.clone(),
        bins: Some(
            locals
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().unwrap_or_default()))
                .collect(),
        ),
        proposed_secret: proposed_secret.map(|s| Secret(s.to_owned())),
    }
}

/// `PRETTY_NAME` from `/etc/os-release`; empty when unknown.
fn os_release() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
        })
        .unwrap_or_default()
}

/// The kernel's host name; empty when unknown.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

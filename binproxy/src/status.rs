//! `binproxy status`: per bin, what is on disk and where it came from (the
//! manager's target or a mirror's, and which server sent its bytes), what
//! the manager targets, how the last attempt ended, what is kept and
//! quarantined, and — in words — why the bin is not on its target. It reads; it never changes anything and
//! takes no lock, so it answers even while a cycle runs.

use binproxy_protocol::Target;
use serde::Serialize;
use std::path::PathBuf;

use crate::config::{BinConfig, Config};
use crate::credential::Credentials;
use crate::delivery::Delivery;
use crate::error::Result;
use crate::hashcache::{self, short};
use crate::journal;
use crate::manager::Manager;
use crate::report::Outbox;
use crate::state::{BinState, Outcome, Quarantined, State};

#[derive(Debug, Serialize)]
pub struct Status {
    pub node_id: String,
    pub manager_url: String,
    /// Reports waiting to be delivered.
    pub queued_reports: usize,
    /// `outside maintenance window until <RFC 3339>` while the windows are
    /// closed; null when they are open (or none are configured).
    pub maintenance: Option<String>,
    /// When runs may contact the manager again, and why they wait.
    pub backoff: Option<BackoffStatus>,
    pub bins: Vec<BinStatus>,
}

/// A back-off in force (see [`crate::backoff`]).
#[derive(Debug, Serialize)]
pub struct BackoffStatus {
    /// Unix seconds before which no run contacts the manager.
    pub not_before: u64,
    /// The same, RFC 3339 UTC.
    pub not_before_utc: String,
    pub failures: u32,
    /// "manager asked to retry after 120s (503)" or "backing off after N failures: ...".
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct BinStatus {
    pub name: String,
    pub path: PathBuf,
    /// sha256 on disk; null when the file is missing.
    pub sha256: Option<String>,
    /// Who named the version on disk as the target: `manager`, or
    /// `mirror <base URL>` (the manager was unreachable). Null when binproxy
    /// did not install it (placed by hand, or put back by a rollback).
    pub target_from: Option<String>,
    /// Where the bytes on disk came from: a mirror's base URL, or the URL
    /// the target named (the manager's download route or its artifact URL).
    pub artifact_from: Option<String>,
    /// How the bytes on disk came: `delta`, `zst` or `full`, the bytes
    /// downloaded and what failed first; null when not known.
    pub delivery: Option<Delivery>,
    pub target: Option<Target>,
    /// Why the bin is where it is, in words.
    pub reason: String,
    /// The manager's reason for this node's target (wave, pin, selector...).
    pub manager_reason: Option<String>,
    pub last: Option<Outcome>,
    pub kept: Vec<String>,
    pub quarantined: Vec<Quarantined>,
    /// Unix seconds before which the target is not downloaded again.
    pub next_try: Option<u64>,
    /// An update an earlier cycle left unfinished.
    pub interrupted: Option<String>,
}

/// What the manager said about a bin's target.
enum Asked {
    Target(Box<Target>),
    None(String),
    Unknown(String),
}

/// Gathers the status; `offline` skips the manager.
pub fn gather(config: &Config, offline: bool) -> Result<Status> {
    let state = State::load(&config.state_dir)?;
    let manager = Manager::new(config, Credentials::stored(&config.state_dir));
    let mut bins = Vec::new();
    let mut unreachable: Option<String> =
        offline.then(|| "manager not asked (--offline)".to_owned());
    let maintenance = crate::cycle::closed_until(&config.windows, crate::state::now_unix())
        .map(|until| format!("outside maintenance window until {until}"));
    for bin in &config.bins {
        let asked = match &unreachable {
            Some(why) => Asked::Unknown(why.clone()),
            None => match manager.target(&bin.name, &config.node_id) {
                Ok(Ok(t)) => Asked::Target(Box::new(t)),
                Ok(Err(reason)) => Asked::None(reason),
                Err(e) => {
                    let why = e.to_string();
                    unreachable = Some(why.clone());
                    Asked::Unknown(why)
                }
            },
        };
        let st = state.bins.get(&bin.name);
        bins.push(bin_status(config, bin, st, asked, maintenance.as_deref())?);
    }
    Ok(Status {
        node_id: config.node_id.clone(),
        manager_url: config.manager_url.clone(),
        queued_reports: Outbox::new(&config.state_dir).len(),
        maintenance,
        backoff: backoff_status(config)?,
        bins,
    })
}

fn backoff_status(config: &Config) -> Result<Option<BackoffStatus>> {
    let now = crate::state::now_unix();
    Ok(
        crate::backoff::active(&config.state_dir, now)?.map(|b| BackoffStatus {
            not_before: b.not_before,
            not_before_utc: humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(b.not_before),
            )
            .to_string(),
            failures: b.failures,
            reason: b.reason(),
        }),
    )
}

fn bin_status(
    config: &Config,
    bin: &BinConfig,
    st: Option<&BinState>,
    asked: Asked,
    maintenance: Option<&str>,
) -> Result<BinStatus> {
    let empty = BinState::default();
    let st = st.unwrap_or(&empty);
    let sha256 = hashcache::local_hash(&bin.path, st.hash.as_ref())?.sha256;
    let installed = (st.installed_from.as_ref()).filter(|p| Some(&p.sha256) == sha256.as_ref());
    let interrupted = journal::read(&config.state_dir, &bin.name)?
        .map(|e| format!("{:?} towards {}", e.phase, short(&e.target_sha)));
    let (target, reason, manager_reason) = match asked {
        Asked::Target(t) => {
            let why = explain(bin, st, sha256.as_deref(), &t, interrupted.as_deref())
                .unwrap_or_else(|| pending(bin, &t, maintenance));
            let manager = t.reason.clone();
            (Some(*t), why, manager)
        }
        Asked::None(r) => (None, format!("no target: {r}"), Some(r)),
        Asked::Unknown(r) => (None, r, None),
    };
    let next_try = st
        .backoff
        .as_ref()
        .filter(|b| b.until > crate::state::now_unix())
        .map(|b| b.until);
    Ok(BinStatus {
        name: bin.name.clone(),
        path: bin.path.clone(),
        target_from: installed.map(|p| p.target.clone()),
        artifact_from: installed.map(|p| p.artifact.clone()),
        delivery: installed.and_then(|p| p.delivery.clone()),
        sha256,
        target,
        reason,
        manager_reason,
        last: st.last.clone(),
        kept: st.kept.clone(),
        quarantined: st.quarantined.clone(),
        next_try,
        interrupted,
    })
}

/// Why a bin with a target is, or is not, on it; `None`: an update is pending.
fn explain(
    bin: &BinConfig,
    st: &BinState,
    local: Option<&str>,
    t: &Target,
    interrupted: Option<&str>,
) -> Option<String> {
    let sha = t.sha256sum.as_str();
    if let Some(i) = interrupted {
        return Some(format!(
            "an update was interrupted ({i}); the next run finishes or undoes it"
        ));
    }
    if local == Some(sha) {
        return Some(format!("on target (version {})", t.version));
    }
    if let Some(q) = st.quarantine_of(sha) {
        return Some(format!(
            "target {} is quarantined: it failed here ({}); clear with: binproxy unquarantine --config FILE {}",
            short(sha),
            q.reason,
            bin.name
        ));
    }
    if let Some(left) = st.backoff_left(sha) {
        return Some(format!(
            "download of {} failed; next try in {left}s",
            short(sha)
        ));
    }
    None
}

/// An update that the next run makes, or the first run inside the windows.
fn pending(bin: &BinConfig, t: &Target, maintenance: Option<&str>) -> String {
    let what = format!("{} (version {})", short(&t.sha256sum), t.version);
    let staged = if crate::cycle::is_staged(bin, t) {
        ", already staged"
    } else {
        ""
    };
    match maintenance {
        Some(closed) => format!("{closed}: then installs {what}{staged}"),
        None => format!("update pending: the next run installs {what}{staged}"),
    }
}

/// The status for people.
pub fn render(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = format!("node {} (manager {})\n", s.node_id, s.manager_url);
    if let Some(closed) = &s.maintenance {
        let _ = writeln!(out, "{closed}: nothing new is installed before then");
    }
    if s.queued_reports > 0 {
        let _ = writeln!(out, "{} report(s) queued for the manager", s.queued_reports);
    }
    if let Some(b) = &s.backoff {
        let _ = writeln!(
            out,
            "next contact with the manager not before {}: {} (run --ignore-backoff overrides)",
            b.not_before_utc, b.reason
        );
    }
    for b in &s.bins {
        let _ = writeln!(out, "\n{}  {}", b.name, b.path.display());
        let _ = writeln!(
            out,
            "  on disk:     {}",
            b.sha256.as_deref().map_or("(missing)", short)
        );
        if let (Some(target), Some(bytes)) = (&b.target_from, &b.artifact_from) {
            let _ = writeln!(out, "  target from: {target}");
            let _ = writeln!(out, "  bytes from:  {bytes}");
        }
        if let Some(d) = &b.delivery {
            let _ = writeln!(
                out,
                "  by:          {} ({} downloaded)",
                d.method.as_str(),
                d.downloaded()
            );
        }
        if let Some(t) = &b.target {
            let _ = writeln!(
                out,
                "  target:      {} (version {})",
                short(&t.sha256sum),
                t.version
            );
        }
        let _ = writeln!(out, "  status:      {}", b.reason);
        if let (Some(why), Some(_)) = (&b.manager_reason, &b.target) {
            let _ = writeln!(out, "  manager:     {why}");
        }
        if let Some(l) = &b.last {
            let at = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(l.at),
            );
            let _ = writeln!(
                out,
                "  last:        {} {} at {at}: {}",
                l.status,
                short(&l.target),
                l.message
            );
        }
        if !b.kept.is_empty() {
            let live = b.sha256.as_deref();
            let kept: Vec<String> = b
                .kept
                .iter()
                .rev()
                .map(|s| {
                    let tag = if Some(s.as_str()) == live {
                        " (live)"
                    } else {
                        ""
                    };
                    format!("{}{tag}", short(s))
                })
                .collect();
            let _ = writeln!(out, "  kept:        {}", kept.join(", "));
        }
        for q in &b.quarantined {
            let _ = writeln!(out, "  quarantined: {} ({})", short(&q.sha256), q.reason);
        }
    }
    out
}

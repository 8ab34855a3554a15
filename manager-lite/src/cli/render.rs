//! What the admin commands print: the server's JSON with `--json`, else
//! tables and key/value blocks ([`crate::table`]) made from the typed answer.
//! Every string from the network goes through the table's escaping, so an
//! answer cannot move the terminal's cursor or forge a line.

use super::http::Answer;
use super::ClientError;
use crate::table;
use binproxy_protocol::{
    AuditRecord, Node, NodeView, ProgressRecord, Release, ReleaseStatus, Selector, TokenInfo,
    Version,
};
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::io::{self, Write};

/// Hex digits shown of a sha256 in tables: enough to tell builds apart.
const SHORT_SHA: usize = 12;

/// Prints the answer: as pretty JSON with `--json`, else as `render` makes it
/// of the answer read as a `T`.
pub fn show<T: DeserializeOwned>(
    json: bool,
    answer: &Answer,
    render: impl FnOnce(T) -> String,
) -> Result<(), ClientError> {
    let text = if json {
        pretty(&answer.body)
    } else {
        render(answer.parse()?)
    };
    emit(&text)
}

/// JSON as `--json` prints it: indented, ending in a newline.
pub fn pretty(body: &Json) -> String {
    let mut text = serde_json::to_string_pretty(body).unwrap_or_else(|_| body.to_string());
    text.push('\n');
    text
}

/// Writes to stdout. A closed pipe (`| head`) is not an error.
pub fn emit(text: &str) -> Result<(), ClientError> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(ClientError::Failed(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

pub fn versions_table(versions: &[Version]) -> String {
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            vec![
                v.bin_name.clone(),
                v.version.clone(),
                v.arch.clone().unwrap_or_else(|| "any".to_owned()),
                v.sha256sum.clone(),
                v.size.to_string(),
                v.created_at.clone(),
            ]
        })
        .collect();
    table::render(
        &["BIN", "VERSION", "ARCH", "SHA256", "SIZE", "CREATED"],
        &rows,
    )
}

pub fn releases_table(releases: &[Release]) -> String {
    let rows: Vec<Vec<String>> = releases
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.bin_name.clone(),
                r.version.clone(),
                r.status.as_str().to_owned(),
                wave(r),
                format!("{}%", r.percent),
                r.counts.targeted.to_string(),
                r.counts.success.to_string(),
                r.counts.failed.to_string(),
                r.counts.rolled_back.to_string(),
                r.created_at.clone(),
                r.created_by.clone(),
                note(r),
            ]
        })
        .collect();
    let header = [
        "ID", "BIN", "VERSION", "STATUS", "WAVE", "PERCENT", "TARGETED", "OK", "FAIL", "RB",
        "CREATED", "BY", "NOTE",
    ];
    table::render(&header, &rows)
}

/// The current wave, counted from 1, of how many: `2/3`. A release awaiting
/// approval is in none yet: `0/3`.
fn wave(r: &Release) -> String {
    let waves = r.waves.len().max(1);
    let current = if r.status == ReleaseStatus::PendingApproval {
        0
    } else {
        (r.wave + 1).min(waves)
    };
    format!("{current}/{waves}")
}

/// The note; for a paused release, why it paused first.
fn note(r: &Release) -> String {
    let note = r.note.as_deref().unwrap_or_default();
    // A reason outlives its pause only when the release ended paused
    // (superseded, cancelled): shown as history.
    let paused = match (r.status, r.paused_reason.as_deref()) {
        (_, None) => return note.to_owned(),
        (ReleaseStatus::Paused, Some(reason)) => format!("paused: {reason}"),
        (_, Some(reason)) => format!("was paused: {reason}"),
    };
    if note.is_empty() {
        paused
    } else {
        format!("{paused}; {note}")
    }
}

/// History events a release's block shows, the latest.
const HISTORY_SHOWN: usize = 5;

/// One release as a key/value block, with its latest history events.
pub fn release_block(r: &Release) -> String {
    let plan = if r.waves.is_empty() {
        "100%".to_owned()
    } else {
        r.waves
            .iter()
            .map(|w| match &w.wait {
                Some(wait) => format!("{}%:{wait}", w.percent),
                None => format!("{}%", w.percent),
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let c = &r.counts;
    let mut fields = vec![
        ("release", r.id.to_string()),
        ("bin", format!("{} {}", r.bin_name, r.version)),
        ("status", r.status.as_str().to_owned()),
    ];
    if let Some(reason) = &r.paused_reason {
        fields.push(("paused", reason.clone()));
    }
    fields.extend([
        (
            "wave",
            format!(
                "{} at {}%{}",
                wave(r),
                r.percent,
                r.wave_started_at
                    .as_deref()
                    .map(|t| format!(" since {t}"))
                    .unwrap_or_default()
            ),
        ),
        ("plan", plan),
        ("selector", selector_summary(&r.selector)),
        (
            "thresholds",
            format!(
                "success {}, max failures {}",
                r.success_threshold.as_deref().unwrap_or("default"),
                r.max_failures.as_deref().unwrap_or("none")
            ),
        ),
        (
            "approval",
            if r.require_approval {
                "required"
            } else {
                "not required"
            }
            .to_owned(),
        ),
        (
            "windows",
            if r.windows.is_empty() {
                "always open".to_owned()
            } else {
                r.windows.join("; ")
            },
        ),
        (
            "counts",
            format!(
                "targeted {}, in progress {}, ok {}, failed {}, rolled back {}",
                c.targeted, c.in_progress, c.success, c.failed, c.rolled_back
            ),
        ),
        ("baseline", r.baseline_version.clone().unwrap_or_default()),
        ("note", r.note.clone().unwrap_or_default()),
        ("created", format!("{} by {}", r.created_at, r.created_by)),
        ("updated", r.updated_at.clone()),
    ]);
    let mut out = table::fields(&fields);
    let skip = r.history.len().saturating_sub(HISTORY_SHOWN);
    if skip < r.history.len() {
        let rows: Vec<Vec<String>> = r.history[skip..]
            .iter()
            .map(|e| {
                vec![
                    e.at.clone(),
                    e.actor.clone(),
                    e.action.clone(),
                    e.detail.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let shown = if skip > 0 {
            format!("history (last {} of {}):\n", rows.len(), r.history.len())
        } else {
            "history:\n".to_owned()
        };
        out.push_str(&shown);
        for line in table::render(&["AT", "ACTOR", "ACTION", "DETAIL"], &rows).lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Which nodes a selector names, in a few words: `arch x86_64; env=canary,staging`.
fn selector_summary(s: &Selector) -> String {
    let mut parts = Vec::new();
    for (what, list) in [
        ("nodes", &s.node_ids),
        ("except", &s.exclude_node_ids),
        ("arch", &s.cpu_arch),
        ("os", &s.os),
    ] {
        if !list.is_empty() {
            parts.push(format!("{what} {}", list.join(",")));
        }
    }
    for (key, values) in &s.labels {
        parts.push(format!("{key}={}", values.join(",")));
    }
    if parts.is_empty() {
        "all nodes".to_owned()
    } else {
        parts.join("; ")
    }
}

/// A node, then per bin: its target, what it runs, and why.
pub fn node_view(v: &NodeView) -> String {
    let n = &v.node;
    let head = table::render(
        &["NODE", "ONLINE", "LAST_SEEN", "ARCH", "OS", "LABELS"],
        &[vec![
            n.node_id.clone(),
            if n.online { "yes" } else { "no" }.to_owned(),
            n.last_seen.clone(),
            n.cpu_arch.clone(),
            n.os.clone(),
            pairs(&n.labels, str::to_owned),
        ]],
    );
    let rows: Vec<Vec<String>> = v
        .bins
        .iter()
        .map(|(bin, view)| {
            vec![
                bin.clone(),
                view.target
                    .as_ref()
                    .map(|t| format!("{}@{}", t.version, short(&t.sha256sum)))
                    .unwrap_or_default(),
                // Not reported (""), or reported without a file on disk.
                match n.bins.get(bin).map(String::as_str) {
                    None => String::new(),
                    Some("") => "missing".to_owned(),
                    Some(sha) => short(sha),
                },
                view.reason.clone(),
            ]
        })
        .collect();
    let bins = table::render(&["BIN", "TARGET", "INSTALLED", "REASON"], &rows);
    format!("{head}\n{bins}")
}

pub fn nodes_table(nodes: &[Node]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.node_id.clone(),
                if n.online { "yes" } else { "no" }.to_owned(),
                n.last_seen.clone(),
                n.cpu_arch.clone(),
                n.bin_proxy_version.clone(),
                // A bin the node has no file for is reported with "".
                pairs(&n.bins, |sha| {
                    if sha.is_empty() {
                        "-".to_owned()
                    } else {
                        short(sha)
                    }
                }),
                pairs(&n.labels, str::to_owned),
            ]
        })
        .collect();
    let header = [
        "NODE",
        "ONLINE",
        "LAST_SEEN",
        "ARCH",
        "VERSION",
        "BINS",
        "LABELS",
    ];
    table::render(&header, &rows)
}

pub fn progress_table(records: &[ProgressRecord]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.received_at.clone(),
                r.node_id.clone(),
                r.status.as_str().to_owned(),
                short(&r.target_hash),
                r.from_hash.as_deref().map(short).unwrap_or_default(),
                r.processing_time_ms.to_string(),
                r.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = [
        "ID", "TIME", "NODE", "STATUS", "TARGET", "FROM", "MS", "MESSAGE",
    ];
    table::render(&header, &rows)
}

pub fn tokens_table(tokens: &[TokenInfo]) -> String {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.role.as_str().to_owned(),
                t.created_at.clone(),
                t.created_by.clone(),
            ]
        })
        .collect();
    table::render(&["NAME", "ROLE", "CREATED", "BY"], &rows)
}

/// Unauthenticated callers have no actor, and shows as `-`.
pub fn audit_table(records: &[AuditRecord]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.at.clone(),
                r.actor.clone().unwrap_or_default(),
                r.method.clone(),
                r.path.clone(),
                r.status.to_string(),
                r.remote_addr.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["ID", "TIME", "ACTOR", "METHOD", "PATH", "STATUS", "FROM"];
    table::render(&header, &rows)
}

pub(super) fn short(sha: &str) -> String {
    sha.chars().take(SHORT_SHA).collect()
}

/// `key=value,key=value`, each value shown through `value`.
fn pairs(map: &BTreeMap<String, String>, value: impl Fn(&str) -> String) -> String {
    let shown: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", value(v)))
        .collect();
    shown.join(",")
}

#[cfg(test)]
#[path = "render_tests.rs"]
pub(super) mod tests;

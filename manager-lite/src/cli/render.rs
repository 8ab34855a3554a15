//! What the admin commands print: the server's JSON with `--json`, else
//! tables and key/value blocks ([`crate::cli::table`]) made from the typed answer.
//! Every table goes through one helper, [`table`]: a list of columns, each a
//! header and how a record shows in it.
//! Every string from the network goes through the table's escaping, so an
//! answer cannot move the terminal's cursor or forge a line.

use super::http::Answer;
use super::ClientError;
use crate::cli::table;
use binproxy_protocol::{
    AuditRecord, BinView, Node, NodeView, ProgressRecord, Release, ReleaseEvent, ReleaseStatus,
    Selector, TokenInfo, Version,
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

/// One column of a table: its header, and the cell a record shows in it.
type Column<'a, T> = (&'static str, &'a dyn Fn(&T) -> String);

/// The one way the admin commands make a table: a header of the columns'
/// names, then one line per record with each column's cell.
fn table<T>(columns: &[Column<'_, T>], records: &[T]) -> String {
    let header: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|record| columns.iter().map(|(_, cell)| cell(record)).collect())
        .collect();
    table::render(&header, &rows)
}

pub fn versions_table(versions: &[Version]) -> String {
    table(
        &[
            ("BIN", &|v: &Version| v.bin_name.clone()),
            ("VERSION", &|v| v.version.clone()),
            ("ARCH", &|v| {
                v.arch.clone().unwrap_or_else(|| "any".to_owned())
            }),
            ("SHA256", &|v| v.sha256sum.clone()),
            ("SIZE", &|v| v.size.to_string()),
            ("CREATED", &|v| v.created_at.clone()),
        ],
        versions,
    )
}

pub fn releases_table(releases: &[Release]) -> String {
    table(
        &[
            ("ID", &|r: &Release| r.id.to_string()),
            ("BIN", &|r| r.bin_name.clone()),
            ("VERSION", &|r| r.version.clone()),
            ("STATUS", &|r| r.status.as_str().to_owned()),
            ("WAVE", &wave),
            ("PERCENT", &|r| format!("{}%", r.percent)),
            ("TARGETED", &|r| r.counts.targeted.to_string()),
            ("OK", &|r| r.counts.success.to_string()),
            ("FAIL", &|r| r.counts.failed.to_string()),
            ("RB", &|r| r.counts.rolled_back.to_string()),
            ("CREATED", &|r| r.created_at.clone()),
            ("BY", &|r| r.created_by.clone()),
            ("NOTE", &note),
        ],
        releases,
    )
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
    let latest = &r.history[skip..];
    if !latest.is_empty() {
        let shown = if skip > 0 {
            format!("history (last {} of {}):\n", latest.len(), r.history.len())
        } else {
            "history:\n".to_owned()
        };
        out.push_str(&shown);
        let events = table(
            &[
                ("AT", &|e: &ReleaseEvent| e.at.clone()),
                ("ACTOR", &|e| e.actor.clone()),
                ("ACTION", &|e| e.action.clone()),
                ("DETAIL", &|e| e.detail.clone().unwrap_or_default()),
            ],
            latest,
        );
        for line in events.lines() {
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
    let head = table(
        &[
            ("NODE", &|n: &Node| n.node_id.clone()),
            ("ONLINE", &online),
            ("LAST_SEEN", &|n| n.last_seen.clone()),
            ("ARCH", &|n| n.cpu_arch.clone()),
            ("OS", &|n| n.os.clone()),
            ("LABELS", &labels),
        ],
        std::slice::from_ref(n),
    );
    let bins: Vec<(&String, &BinView)> = v.bins.iter().collect();
    let bins = table(
        &[
            ("BIN", &|(bin, _): &(&String, &BinView)| (*bin).clone()),
            ("TARGET", &|(_, view)| {
                view.target
                    .as_ref()
                    .map(|t| format!("{}@{}", t.version, short(&t.sha256sum)))
                    .unwrap_or_default()
            }),
            // Not reported (""), or reported without a file on disk.
            (
                "INSTALLED",
                &|(bin, _)| match n.bins.get(*bin).map(String::as_str) {
                    None => String::new(),
                    Some("") => "missing".to_owned(),
                    Some(sha) => short(sha),
                },
            ),
            ("REASON", &|(_, view)| view.reason.clone()),
        ],
        &bins,
    );
    format!("{head}\n{bins}")
}

pub fn nodes_table(nodes: &[Node]) -> String {
    table(
        &[
            ("NODE", &|n: &Node| n.node_id.clone()),
            ("ONLINE", &online),
            ("LAST_SEEN", &|n| n.last_seen.clone()),
            ("ARCH", &|n| n.cpu_arch.clone()),
            ("VERSION", &|n| n.bin_proxy_version.clone()),
            // A bin the node has no file for is reported with "".
            ("BINS", &|n| {
                pairs(&n.bins, |sha| {
                    if sha.is_empty() {
                        "-".to_owned()
                    } else {
                        short(sha)
                    }
                })
            }),
            ("LABELS", &labels),
        ],
        nodes,
    )
}

fn online(n: &Node) -> String {
    if n.online { "yes" } else { "no" }.to_owned()
}

fn labels(n: &Node) -> String {
    pairs(&n.labels, str::to_owned)
}

pub fn progress_table(records: &[ProgressRecord]) -> String {
    table(
        &[
            ("ID", &|r: &ProgressRecord| r.id.to_string()),
            ("TIME", &|r| r.received_at.clone()),
            ("NODE", &|r| r.node_id.clone()),
            ("STATUS", &|r| r.status.as_str().to_owned()),
            ("TARGET", &|r| short(&r.target_hash)),
            ("FROM", &|r| {
                r.from_hash.as_deref().map(short).unwrap_or_default()
            }),
            ("MS", &|r| r.processing_time_ms.to_string()),
            ("BY", &|r| {
                r.method.map(|m| m.as_str().to_owned()).unwrap_or_default()
            }),
            ("BYTES", &|r| {
                r.bytes.map(|b| b.to_string()).unwrap_or_default()
            }),
            ("MESSAGE", &|r| r.message.clone().unwrap_or_default()),
        ],
        records,
    )
}

pub fn tokens_table(tokens: &[TokenInfo]) -> String {
    table(
        &[
            ("NAME", &|t: &TokenInfo| t.name.clone()),
            ("ROLE", &|t| t.role.as_str().to_owned()),
            ("CREATED", &|t| t.created_at.clone()),
            ("BY", &|t| t.created_by.clone()),
        ],
        tokens,
    )
}

/// Unauthenticated callers have no actor, and shows as `-`.
pub fn audit_table(records: &[AuditRecord]) -> String {
    table(
        &[
            ("ID", &|r: &AuditRecord| r.id.to_string()),
            ("TIME", &|r| r.at.clone()),
            ("ACTOR", &|r| r.actor.clone().unwrap_or_default()),
            ("METHOD", &|r| r.method.clone()),
            ("PATH", &|r| r.path.clone()),
            ("STATUS", &|r| r.status.to_string()),
            ("FROM", &|r| r.remote_addr.clone().unwrap_or_default()),
        ],
        records,
    )
}

/// `value`, or `fallback` when the server left it out.
pub(super) fn or<'a>(value: &'a str, fallback: &'a str) -> &'a str {
    if value.is_empty() {
        fallback
    } else {
        value
    }
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

//! `manager-lite mirror sync --to DIR`: a static mirror of the manager that
//! any file server or object-store sync can serve (nginx, `aws s3 sync`,
//! rclone), in the layout of [`binproxy_protocol::mirror`]. It is an admin
//! client like the others, and a viewer token suffices: it reads
//! `GET /api/v1/bins` (every stored version, with its signature),
//! `GET /api/v1/releases` (neither answer is paged) and downloads each
//! artifact it lacks from `GET /api/v1/download/<sha256>`.
//!
//! [`mirror_plan`](super::mirror_plan) decides what the tree should hold
//! from the two answers; [`mirror_tree`](super::mirror_tree) makes DIR hold
//! it, in an order that keeps every state a reader can see consistent:
//! artifacts, then signatures, then bins files, then removals, then
//! `index.json`. Each run prints one summary line (or `--json`).

use binproxy_protocol::{BinVersions, Release};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::http::{Answer, Client};
use super::mirror_plan::{self, Plan};
use super::mirror_tree::{Outcome, Tree};
use super::settings::shown;
use super::ClientError;
use crate::time::rfc3339;

/// The long help of `mirror sync`.
pub const SYNC_HELP: &str = "\
WHAT IT WRITES (into DIR, created if missing; its parent must exist):
    artifacts/<sha256>          every artifact the manager stores, of every version,
                                and the zst forms and patches it made for them
    artifacts/<sha256>.minisig  its minisign signature, when one was uploaded
    bins/<bin>.json             the bin's targets by arch (\"*\": uploaded for every arch),
                                each with url artifacts/<sha256> (and its deltas and zst
                                form at theirs)
    index.json                  generation (+1 with each sync that changed a file),
                                time, and the bins that have a file
    .mirror-sync/               the lock and state of this command (not for readers)

WHICH TARGETS:
    A bin's targets come from its newest release that gives every node the same
    version: completed, or rolling out at 100%, with no selector and no maintenance
    window (those depend on the node or the time, which a file cannot). A newer
    release below 100%, paused, or with a selector or window is passed over; a bin
    with no such release gets no bins file.

INCREMENTAL AND SAFE:
    Only what is new is downloaded (an artifact already there with its size is kept);
    each is checked against its size and sha256 as it streams in. Every file is
    written under a .mirror-tmp- name, fsync'd and renamed: artifacts first,
    index.json last, so no bins file names a missing artifact. An artifact the
    manager no longer stores is removed after --grace; a stale bins file at once;
    nothing else in DIR is touched. One sync at a time per DIR (another exits 1);
    after kill -9 the next run finishes the work.

A viewer token suffices. From cron, every minute (MANAGER_URL set, or --server URL):
    * * * * * manager-lite mirror sync --to /srv/mirror --token-file /etc/viewer.token";

/// Runs one sync of `to` from the manager behind `client`; artifacts the
/// manager no longer stores go after `grace`.
pub fn sync(client: &Client, json: bool, to: &Path, grace: Duration) -> Result<(), ClientError> {
    // The lock before any request: two syncs never interleave their views.
    let mut tree = Tree::open(to)?;
    let bins: Vec<BinVersions> = whole(&client.get("/api/v1/bins", &[])?, "/api/v1/bins")?;
    let releases: Vec<Release> = whole(&client.get("/api/v1/releases", &[])?, "/api/v1/releases")?;
    let now = SystemTime::now();
    let generated_at = rfc3339(now);
    let plan = mirror_plan::plan(&bins, &releases, &generated_at).map_err(ClientError::Failed)?;
    tree.prepare()?;
    copy_artifacts(client, &mut tree, &plan)?;
    for (sha, artifact) in &plan.artifacts {
        tree.sync_signature(sha, artifact.signature.as_deref())?;
    }
    for bin in plan.bins.values() {
        tree.sync_bin(bin)?;
    }
    let listed: BTreeSet<&str> = plan.bins.keys().map(String::as_str).collect();
    tree.remove_stale_bins(&listed)?;
    tree.expire_artifacts(&plan.artifacts, grace, now)?;
    let names: Vec<String> = plan.bins.keys().cloned().collect();
    let outcome = tree.finish(names, &generated_at)?;
    let text = if json {
        super::render::pretty(&summary_json(to, plan.artifacts.len(), &outcome))
    } else {
        summary_line(to, &outcome, plan.bins.len())
    };
    super::render::emit(&text)
}

/// A listing's answer, refused if the server paged it (none is paged
/// today; a later server that pages must not make a mirror that quietly
/// lacks the rest).
fn whole<T: serde::de::DeserializeOwned>(answer: &Answer, path: &str) -> Result<T, ClientError> {
    if answer.next_after.is_some() {
        return Err(ClientError::Failed(format!(
            "GET {path} answered one page of several, which this mirror sync cannot follow: \
             use a manager-lite of the server's version"
        )));
    }
    answer.parse()
}

/// Downloads every artifact of the plan the tree lacks, one at a time.
fn copy_artifacts(client: &Client, tree: &mut Tree, plan: &Plan) -> Result<(), ClientError> {
    for (sha, artifact) in &plan.artifacts {
        if tree.has_artifact(sha, artifact.size) {
            continue;
        }
        let path = format!("/api/v1/download/{sha}");
        let source = client.url(&path);
        let (mut body, length) = client.download(&path).map_err(|e| match e {
            ClientError::Refused { status: 404, .. } => ClientError::Failed(format!(
                "artifact {sha} was deleted on the manager during this sync ({source}: 404); \
                 the next sync goes on without it"
            )),
            other => other,
        })?;
        if let Some(announced) = length.filter(|&n| n != artifact.size) {
            return Err(ClientError::Failed(format!(
                "artifact {sha} from {source}: the server announced {announced} bytes, its \
                 version has {}; refused, nothing written",
                artifact.size
            )));
        }
        tree.write_artifact(sha, artifact.size, &mut body, &source)?;
    }
    Ok(())
}

/// `mirror /srv/m: generation 4, 2 artifacts copied (41.9 MB), 0 removed,
/// 1 waiting out the grace period, 3 bins`.
fn summary_line(to: &Path, outcome: &Outcome, bins: usize) -> String {
    let c = &outcome.changes;
    format!(
        "mirror {}: generation {}{}, {} copied ({}), {} removed, {} waiting out the grace period, {}\n",
        shown(to),
        outcome.generation,
        if outcome.changed { "" } else { " (unchanged)" },
        plural(c.artifacts_copied, "artifact"),
        megabytes(c.bytes_copied),
        c.artifacts_removed,
        c.waiting,
        plural(bins as u64, "bin"),
    )
}

/// The same facts for `--json`.
fn summary_json(to: &Path, artifacts: usize, outcome: &Outcome) -> serde_json::Value {
    let c = &outcome.changes;
    json!({
        "dir": to.to_string_lossy(),
        "generation": outcome.generation,
        "changed": outcome.changed,
        "artifacts": artifacts,
        "artifacts_copied": c.artifacts_copied,
        "bytes_copied": c.bytes_copied,
        "artifacts_removed": c.artifacts_removed,
        "waiting": c.waiting,
        "signatures_written": c.signatures_written,
        "signatures_removed": c.signatures_removed,
        "bins_written": c.bins_written,
        "bins_removed": c.bins_removed,
    })
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Decimal megabytes with one decimal, rounded: `41.9 MB`.
fn megabytes(bytes: u64) -> String {
    let tenths = (bytes + 50_000) / 100_000;
    format!("{}.{} MB", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::mirror_tree::Changes;

    #[test]
    fn the_summary_line_says_what_changed() {
        let outcome = Outcome {
            generation: 4,
            changed: true,
            changes: Changes {
                artifacts_copied: 2,
                bytes_copied: 41_940_000,
                waiting: 1,
                ..Changes::default()
            },
        };
        assert_eq!(
            summary_line(Path::new("/srv/m"), &outcome, 3),
            "mirror /srv/m: generation 4, 2 artifacts copied (41.9 MB), 0 removed, \
             1 waiting out the grace period, 3 bins\n"
        );
        let same = Outcome {
            generation: 4,
            changed: false,
            changes: Changes::default(),
        };
        assert_eq!(
            summary_line(Path::new("m"), &same, 1),
            "mirror m: generation 4 (unchanged), 0 artifacts copied (0.0 MB), 0 removed, \
             0 waiting out the grace period, 1 bin\n"
        );
        let json = summary_json(Path::new("m"), 7, &outcome);
        assert_eq!(json["artifacts"], 7);
        assert_eq!(json["bytes_copied"], 41_940_000);
        assert_eq!(json["changed"], true);
    }

    fn checked(words: &[&str]) -> Result<crate::cli::check::Command, ClientError> {
        let line: Vec<std::ffi::OsString> = ["manager-lite", "mirror", "sync"]
            .iter()
            .chain(words)
            .map(Into::into)
            .collect();
        let cli = crate::cli::args::parse(&line).map_err(|e| ClientError::Usage(e.to_string()))?;
        let crate::cli::args::Command::Admin(admin) = cli.command else {
            panic!("not an admin command: {words:?}");
        };
        crate::cli::check::check(admin).map(|p| p.command)
    }

    #[test]
    fn the_command_line_needs_to_and_takes_a_grace_period() {
        use crate::cli::check::Command as C;
        assert_eq!(
            checked(&["--to", "/srv/m"]).unwrap(),
            C::MirrorSync {
                to: "/srv/m".into(),
                grace: Duration::from_secs(24 * 3600),
            }
        );
        assert_eq!(
            checked(&["--grace", "0s", "--to", "m", "--json"]).unwrap(),
            C::MirrorSync {
                to: "m".into(),
                grace: Duration::ZERO,
            }
        );
        let err = checked(&["--to", "m", "--grace", "soon"]).unwrap_err();
        assert!(err.to_string().contains("--grace soon"), "{err}");
        assert_eq!(err.exit_code(), 2);
        let err = checked(&[]).unwrap_err();
        assert!(err.to_string().contains("--to"), "{err}");
        // The same, as the program ends: usage errors exit 2 before any request.
        let line =
            |words: &[&str]| -> Vec<std::ffi::OsString> { words.iter().map(Into::into).collect() };
        let code = crate::cli::main(&line(&["manager-lite", "mirror", "sync"]));
        assert_eq!(code, 2);
        let bad = [
            "manager-lite",
            "mirror",
            "sync",
            "--to",
            "m",
            "--grace",
            "x",
        ];
        assert_eq!(crate::cli::main(&line(&bad)), 2);
    }

    #[test]
    fn megabytes_round_to_a_tenth() {
        for (bytes, shown) in [
            (0, "0.0 MB"),
            (49_999, "0.0 MB"),
            (50_000, "0.1 MB"),
            (1_000_000, "1.0 MB"),
            (41_949_999, "41.9 MB"),
            (31_457_280, "31.5 MB"),
        ] {
            assert_eq!(megabytes(bytes), shown);
        }
    }
}

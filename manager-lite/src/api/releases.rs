//! The release endpoints: create a release (`POST /api/v1/releases`), list
//! and show them, and the operations on one (`POST
//! /api/v1/releases/{id}/{op}`, a [`ReleaseOp`]: approve with four eyes,
//! pause, resume, promote, cancel, and rollback with its own wave plan).
//! Every answer to a write shows the release after a recount, not as of
//! the last tick; the read answers add the operations the release's state
//! accepts now and the caller may do (`actions`: by role, and no approval
//! of one's own release), and `GET /api/v1/releases/{id}/failures` lists
//! the nodes that failed or rolled back with what they last said.

use binproxy_protocol::{
    check_bin_name, check_version, NewRelease, ProgressRecord, ProgressStatus, Release, ReleaseOp,
    ReleaseStatus,
};
use serde::Serialize;
use std::time::SystemTime;

use crate::api::app::App;
use crate::api::auth::Actor;
use crate::api::reply::{Answer, ApiError, Reply};
use crate::api::request::{check_text, limit, parse_json, read_bounded, read_json, Request, Url};
use crate::rollout;
use crate::rollout::ReleaseError;

pub fn create_release(app: &App, actor: &Actor, rq: &mut Request) -> Answer {
    let new: NewRelease = read_json(rq)?;
    check_bin_name(&new.bin_name)?;
    check_version(&new.version)?;
    if let Some(note) = &new.note {
        check_text("note", note)?;
    }
    rollout::validate(&new)
        .map_err(|e| ApiError::bad_request(format!("invalid release plan: {e}")))?;
    let release = rollout::create_release(&app.store, &new, &actor.name, SystemTime::now())
        .map_err(|e| release_error(e, &format!("version {} of {}", new.version, new.bin_name)))?;
    let release = fresh(app, release)?;
    // A release of a version uploaded before patches were made (or made
    // while the queue was full) gets them now.
    if let Ok(versions) = app
        .store
        .versions(&release.bin_name, Some(&release.version))
    {
        for v in &versions {
            app.deltas.request(v);
        }
    }
    log::info!(
        "release {} of {} {} created by {} ({})",
        release.id,
        release.bin_name,
        release.version,
        actor.name,
        release.status.as_str()
    );
    Ok(Reply::json(201, &release))
}

/// The answer for a refused release operation; `what` names the thing.
fn release_error(e: ReleaseError, what: &str) -> ApiError {
    match e {
        ReleaseError::UnknownVersion => {
            ApiError::not_found(format!("unknown {what}: upload it first"))
        }
        ReleaseError::NotFound => ApiError::not_found(format!("unknown {what}")),
        ReleaseError::Conflict(why) => ApiError::conflict(why),
        ReleaseError::Store(e) => e.into(),
    }
}

/// The release after a recount, so an answer shows the nodes it reaches now
/// rather than at the last timer tick.
fn fresh(app: &App, release: Release) -> Result<Release, ApiError> {
    let changed = rollout::tick(
        &app.store,
        &app.counts,
        Some(&release.bin_name),
        SystemTime::now(),
    )?;
    app.alerts.releases(&changed);
    Ok(app.store.release(release.id)?.unwrap_or(release))
}

fn release_id(id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid release id {id:?}: must be a number")))
}

/// `POST /api/v1/releases/{id}/{op}`: approve, pause, resume, promote, cancel, rollback.
pub fn release_op(app: &App, actor: &Actor, id: &str, op: ReleaseOp, rq: &mut Request) -> Answer {
    let id = release_id(id)?;
    let now = SystemTime::now();
    let what = format!("release {id}");
    if op == ReleaseOp::Rollback {
        let plan = read_rollback_plan(rq)?;
        let new = rollout::rollback_release(&app.store, id, plan, &actor.name, now)
            .map_err(|e| release_error(e, &what))?;
        let new = fresh(app, new)?;
        log::info!(
            "release {id} rolled back by {}: release {} of {}",
            actor.name,
            new.id,
            new.version
        );
        return Ok(Reply::json(201, &new));
    }
    let current = app
        .store
        .release(id)?
        .ok_or_else(|| ApiError::not_found(format!("unknown {what}")))?;
    if own_approval(&current, actor, op) {
        return Err(ApiError::forbidden(format!(
            "four eyes: release {id} was created by token {}; another token must approve it",
            actor.name
        )));
    }
    let failures = app
        .counts
        .of(&app.store, &current)
        .map(|c| c.failed + c.rolled_back)?;
    let who = actor.name.clone();
    let release = rollout::update_release(&app.store, id, &actor.name, now, |r| {
        rollout::operate(r, op, &who, failures, now)
    })
    .map_err(|e| release_error(e, &what))?;
    let release = fresh(app, release)?;
    log::info!(
        "release {id}: {op} by {} -> {}",
        actor.name,
        release.status.as_str()
    );
    Ok(Reply::json(200, &release))
}

/// The optional `{"waves": [...]}` of a rollback.
fn read_rollback_plan(rq: &mut Request) -> Result<Vec<binproxy_protocol::Wave>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Plan {
        #[serde(default)]
        waves: Vec<binproxy_protocol::Wave>,
    }
    // Read whatever framing the body came in (a chunked plan must not be
    // ignored); no body, or only whitespace, means the default plan.
    let body = read_bounded(rq, binproxy_protocol::MAX_JSON_BODY, "rollback plan")?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let plan: Plan = parse_json(&body)?;
    let check = NewRelease {
        waves: plan.waves.clone(),
        ..NewRelease::default()
    };
    rollout::validate(&check)
        .map_err(|e| ApiError::bad_request(format!("invalid rollback plan: {e}")))?;
    Ok(plan.waves)
}

/// Four eyes: the token that created a release waiting for approval may
/// not approve it.
fn own_approval(r: &Release, actor: &Actor, op: ReleaseOp) -> bool {
    op == ReleaseOp::Approve
        && r.status == ReleaseStatus::PendingApproval
        && r.created_by == actor.name
}

/// A release as the read endpoints show it: the record, and the
/// operations its state accepts now ([`rollout::allowed_ops`]) that the
/// caller's role may do and four eyes allow it.
#[derive(Serialize)]
struct Shown {
    #[serde(flatten)]
    release: Release,
    actions: Vec<&'static str>,
}

fn shown(release: Release, caller: &Actor, now: SystemTime) -> Shown {
    let actions = rollout::allowed_ops(&release, now)
        .into_iter()
        .filter(|&op| caller.may_operate(op) && !own_approval(&release, caller, op))
        .map(ReleaseOp::as_str)
        .collect();
    Shown { release, actions }
}

/// `GET /api/v1/releases[?bin_name=B][&status=S,S…][&limit=N]`: newest
/// first, of one bin, in these states, the first `N` (all when absent).
pub fn list_releases(app: &App, caller: &Actor, url: &Url) -> Answer {
    let bin = url.query("bin_name");
    if let Some(b) = bin {
        check_bin_name(b)?;
    }
    let states = url.query("status").map(parse_states).transpose()?;
    let most = match url.query("limit") {
        Some(_) => limit(url)?,
        None => usize::MAX,
    };
    let now = SystemTime::now();
    let all: Vec<Shown> = app
        .store
        .releases(bin)?
        .into_iter()
        .filter(|r| states.as_ref().is_none_or(|s| s.contains(&r.status)))
        .take(most)
        .map(|r| shown(r, caller, now))
        .collect();
    Ok(Reply::json(200, &all))
}

/// `rolling_out,paused`: the states named, each known.
fn parse_states(text: &str) -> Result<Vec<ReleaseStatus>, ApiError> {
    text.split(',')
        .map(|word| {
            ReleaseStatus::parse(word.trim()).ok_or_else(|| {
                let known: Vec<&str> = ReleaseStatus::ALL.iter().map(|s| s.as_str()).collect();
                let shown: String = word.chars().take(40).collect();
                ApiError::bad_request(format!(
                    "invalid status {shown:?}: one or more of {}",
                    known.join(", ")
                ))
            })
        })
        .collect()
}

pub fn release(app: &App, caller: &Actor, id: &str) -> Answer {
    let release = known(app, id)?;
    Ok(Reply::json(200, &shown(release, caller, SystemTime::now())))
}

fn known(app: &App, id: &str) -> Result<Release, ApiError> {
    let id = release_id(id)?;
    app.store
        .release(id)?
        .ok_or_else(|| ApiError::not_found(format!("unknown release {id}")))
}

/// A node whose latest report about a release is a failure or a rollback,
/// with what it last said about it.
#[derive(Serialize)]
struct Failure {
    node_id: String,
    node_name: String,
    status: ProgressStatus,
    /// Of its last report about the release (empty when none is kept).
    message: String,
    received_at: String,
    target_hash: String,
}

/// `GET /api/v1/releases/{id}/failures?limit=`: the nodes whose latest
/// report about the release failed or rolled back, most recent first, at
/// most `limit`; `X-Total-Count` says how many there are.
pub fn failures(app: &App, id: &str, url: &Url) -> Answer {
    let release = known(app, id)?;
    let limit = limit(url)?;
    let failed: Vec<(String, ProgressStatus)> = app
        .store
        .release_reports(release.id)
        .into_iter()
        .filter(|(_, s)| matches!(s, ProgressStatus::Failed | ProgressStatus::RolledBack))
        .collect();
    let hashes = app.store.release_hashes(&release)?;
    let mut reports: std::collections::HashMap<String, ProgressRecord> = app
        .store
        .last_reports(
            &release.bin_name,
            failed.iter().map(|(n, _)| n.as_str()),
            &hashes,
        )?
        .into_iter()
        .map(|r| (r.node_id.clone(), r))
        .collect();
    let mut all: Vec<Failure> = failed
        .into_iter()
        .map(|(node_id, status)| {
            let report = reports.remove(&node_id);
            Failure {
                node_name: app
                    .store
                    .node(&node_id)
                    .map(|n| n.node_name)
                    .unwrap_or_default(),
                status,
                message: report
                    .as_ref()
                    .and_then(|r| r.message.clone())
                    .unwrap_or_default(),
                received_at: report
                    .as_ref()
                    .map(|r| r.received_at.clone())
                    .unwrap_or_default(),
                target_hash: report.map(|r| r.target_hash).unwrap_or_default(),
                node_id,
            }
        })
        .collect();
    all.sort_by(|a, b| {
        b.received_at
            .cmp(&a.received_at)
            .then_with(|| a.node_id.cmp(&b.node_id))
    });
    let total = all.len();
    all.truncate(limit);
    Ok(Reply::json(200, &all).header("X-Total-Count", total.to_string()))
}

//! One thin function per endpoint: check the names, call the store, answer.
//!
//! Every name from a URL or body passes its rule from `binproxy_protocol`
//! before it is used as a key or a file name. Handlers never see routing or
//! authentication: [`crate::routes`] did both before calling them.

use binproxy_protocol::{
    check_arch, check_bin_name, check_node_id, check_sha256, check_version, hex,
    names::normalize_arch, BinVersions, BinView, CreatedToken, Installed, Keepalive,
    KeepaliveReply, NewRelease, NewToken, Node, NodeView, Pin, Progress, ProgressStatus, Release,
    ReleaseOp, Role, Secret, TokenInfo, Version,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::artifacts::{Artifacts, IngestError};
use crate::auth::{Actor, Auth, NodeCaller, BOOTSTRAP_NAME};
use crate::enroll::{enroll, Enrolled};
use crate::http::{
    body_error, file_reply, header, parse_json, parse_range, read_bounded, read_json, ApiError,
    Reply, Request, Url,
};
use crate::store::{PutVersion, ReleaseError, Store};
use crate::time::now_rfc3339;
use crate::{rollout, signature, targets};

/// Everything a handler needs.
pub struct App {
    pub store: Store,
    pub artifacts: Artifacts,
    pub auth: Auth,
    pub max_artifact_size: u64,
    /// `--keep-versions`: pruned after each upload; `None`: keep all.
    pub keep_versions: Option<usize>,
    /// When each bin's releases were last recounted after a report.
    pub recounted: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Release counts kept between recounts.
    pub counts: rollout::Counts,
    pub metrics: crate::metrics::Metrics,
    pub alerts: crate::alerts::Alerts,
}

/// Successes recount a bin's releases at most this often (a recount is
/// O(nodes)); failures recount at once, so a pause is never late.
const RECOUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl App {
    /// Whether a report of `status` for `bin` should recount its releases now.
    fn recount_due(&self, bin: &str, status: ProgressStatus) -> bool {
        let failure = matches!(status, ProgressStatus::Failed | ProgressStatus::RolledBack);
        let mut last = self
            .recounted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = failure || last.get(bin).is_none_or(|t| t.elapsed() >= RECOUNT_EVERY);
        if due {
            last.insert(bin.to_owned(), std::time::Instant::now());
        }
        due
    }
}

type Answer = Result<Reply, ApiError>;
type Answered<T> = Result<T, ApiError>;

/// Answers that must never be cached (they change with every call).
const NO_STORE: &str = "no-store";
/// Content-addressed bytes never change: any cache may keep them.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Longest free-text field we keep (node names, OS strings, messages).
const MAX_TEXT: usize = 1024;
const MAX_LABELS: usize = 64;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

// ---- node-facing ----

/// `POST /api/v1/keepalive`: registers or updates the node (durably when
/// new or changed) and answers its targets; with the enrollment token, it
/// enrolls the node first ([`crate::enroll`]).
pub fn keepalive(app: &App, caller: &NodeCaller, rq: &mut Request) -> Answer {
    let (node, bins_given, proposed) = keepalive_node(caller, rq)?;
    let enrolled = match caller {
        NodeCaller::Enroll => Some(enroll(app, &node.node_id, proposed.as_ref())?),
        _ => None,
    };
    let node = app.store.keepalive(node, bins_given, SystemTime::now())?;
    keepalive_reply(app, node, bins_given, enrolled)
}

/// The steady state of a fleet: a keepalive that changes nothing but
/// `last_seen`, answered from memory without a blocking thread. `None`
/// when it needs a write: [`keepalive`] then answers it.
pub fn keepalive_in_memory(app: &App, caller: &NodeCaller, rq: &mut Request) -> Option<Answer> {
    if *caller == NodeCaller::Enroll {
        return None;
    }
    let (mut node, bins_given, _) = match keepalive_node(caller, rq) {
        Ok(parsed) => parsed,
        Err(e) => return Some(Err(e)),
    };
    let node = app
        .store
        .keepalive_unchanged(&mut node, bins_given, SystemTime::now())?;
    Some(keepalive_reply(app, node, bins_given, None))
}

/// The node a keepalive describes, checked, whether it listed its bins, and
/// the secret it proposes (used only with the enrollment token).
fn keepalive_node(caller: &NodeCaller, rq: &mut Request) -> Answered<(Node, bool, Option<Secret>)> {
    let mut k: Keepalive = read_json(rq)?;
    let bins_given = k.bins.is_some();
    let proposed = k.proposed_secret.take();
    let node = node_from_keepalive(k)?;
    if *caller != NodeCaller::Enroll {
        caller.may_write_as(&node.node_id)?;
    }
    Ok((node, bins_given, proposed))
}

fn keepalive_reply(app: &App, node: Node, bins_given: bool, enrolled: Option<Enrolled>) -> Answer {
    let (mut targets, mut reasons) = (BTreeMap::new(), BTreeMap::new());
    if bins_given {
        for bin in node.bins.keys() {
            let decision = targets::decide(&app.store, &node, bin, None)?;
            targets.insert(bin.clone(), decision.target);
            reasons.insert(bin.clone(), decision.reason);
        }
    }
    Ok(Reply::json(
        200,
        &KeepaliveReply {
            node,
            server_time: now_rfc3339(),
            targets,
            reasons,
            enrolled: enrolled.is_some(),
            node_secret: enrolled.and_then(|e| e.node_secret),
        },
    )
    .header("Cache-Control", NO_STORE))
}

/// `DELETE /api/v1/nodes/{node_id}`: forgets the node, its pins and its
/// secret; its progress reports stay with the releases.
pub fn delete_node(app: &App, node_id: &str) -> Answer {
    check_node_id(node_id)?;
    if !app.store.delete_node(node_id)? {
        return Err(ApiError::not_found(format!("unknown node {node_id}")));
    }
    log::info!("node {node_id} deleted");
    Ok(Reply::json(
        200,
        &serde_json::json!({"node_id": node_id, "deleted": true}),
    ))
}

/// `DELETE /api/v1/nodes/{node_id}/secret`: the node must enroll again.
pub fn revoke_node(app: &App, node_id: &str) -> Answer {
    check_node_id(node_id)?;
    if !app.store.revoke_node(node_id)? {
        return Err(ApiError::not_found(format!(
            "node {node_id} is not enrolled"
        )));
    }
    log::info!("node {node_id}: secret revoked");
    Ok(Reply::json(
        200,
        &serde_json::json!({"node_id": node_id, "revoked": true}),
    ))
}

/// Checks every field of a keepalive and builds the node record it describes.
fn node_from_keepalive(mut k: Keepalive) -> Result<Node, ApiError> {
    if k.node().is_empty() {
        return Err(ApiError::bad_request(
            "missing field node_id (or nodeName, as the old agents name the node)",
        ));
    }
    if k.node_id.is_empty() {
        k.node_id.clone_from(&k.node_name);
    }
    check_node_id(&k.node_id)?;
    if !k.cpu_arch.is_empty() {
        check_arch(&k.cpu_arch)?;
    }
    for (field, value) in [
        ("os", &k.os),
        ("os_release", &k.os_release),
        ("node_name", &k.node_name),
        ("bin_proxy_version", &k.bin_proxy_version),
    ] {
        check_text(field, value)?;
    }
    check_labels(&k.labels)?;
    let mut bins = BTreeMap::new();
    for (bin, sha) in k.bins.unwrap_or_default() {
        check_bin_name(&bin)?;
        let sha = if sha.is_empty() {
            sha
        } else {
            check_sha256("bins sha256", &sha)?
        };
        bins.insert(bin, sha);
    }
    Ok(Node {
        cpu_arch: normalize_arch(&k.cpu_arch).to_owned(),
        node_id: k.node_id,
        os: k.os,
        os_release: k.os_release,
        node_name: k.node_name,
        bin_proxy_version: k.bin_proxy_version,
        labels: k.labels,
        bins,
        ..Node::default()
    })
}

fn check_text(field: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "invalid {field}: at most {MAX_TEXT} bytes, no control characters"
        )));
    }
    Ok(())
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::bad_request(format!(
            "invalid labels: at most {MAX_LABELS}"
        )));
    }
    for (key, value) in labels {
        if check_bin_name(key).is_err() {
            return Err(ApiError::bad_request(format!(
                "invalid label key {key:?}: must be 1 to 64 of A-Z a-z 0-9 . _ -"
            )));
        }
        check_text("label value", value)?;
    }
    Ok(())
}

/// `GET /api/v1/keepalive?node_id=`: the node's record. Asked by the node
/// itself (the old agents' keepalive), it also proves the node alive.
pub fn node_status(app: &App, caller: Option<&NodeCaller>, url: &Url) -> Answer {
    let id = url
        .query("node_id")
        .ok_or_else(|| ApiError::bad_request("missing query parameter node_id"))?;
    check_node_id(id)?;
    let by_itself = caller.is_some_and(|c| c.may_write_as(id).is_ok());
    let node = if by_itself {
        app.store.seen(id, SystemTime::now())
    } else {
        app.store.node(id)
    }
    .ok_or_else(|| ApiError::not_found(format!("unknown node {id}")))?;
    Ok(Reply::json(200, &node).header("Cache-Control", NO_STORE))
}

/// The node a target is computed for: the registered one, or one with no
/// attributes (the old agents' call without node_id).
fn target_node(app: &App, url: &Url) -> Result<Node, ApiError> {
    let Some(id) = url.query("node_id") else {
        return Ok(Node::default());
    };
    check_node_id(id)?;
    Ok(app.store.node(id).unwrap_or_else(|| Node {
        node_id: id.to_owned(),
        ..Node::default()
    }))
}

pub fn bin_target(app: &App, bin: &str, url: &Url, rq: &Request) -> Answer {
    check_bin_name(bin)?;
    let node = target_node(app, url)?;
    let arch = url
        .query("arch")
        .map(|a| check_arch(a).map(|()| normalize_arch(a)))
        .transpose()?;
    let decision = targets::decide(&app.store, &node, bin, arch)?;
    let target = decision
        .target
        .ok_or_else(|| ApiError::not_found(decision.reason))?;
    let body = serde_json::to_vec(&target).map_err(|e| ApiError::internal(e.to_string()))?;
    let etag = format!("\"{}\"", &hex(&Sha256::digest(&body))[..32]);
    if header(rq, "If-None-Match").is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        return Ok(Reply::empty(304)
            .header("ETag", etag)
            .header("Cache-Control", NO_STORE));
    }
    Ok(Reply::json_bytes(200, body)
        .header("ETag", etag)
        .header("Cache-Control", NO_STORE))
}

pub fn installed(app: &App, caller: &NodeCaller, bin: &str, rq: &mut Request) -> Answer {
    check_bin_name(bin)?;
    let body: Installed = read_json(rq)?;
    check_node_id(&body.node_id)?;
    caller.may_write_as(&body.node_id)?;
    let sha = check_sha256("sha256sum", &body.sha256sum)?;
    let node = app
        .store
        .set_installed(&body.node_id, bin, &sha)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "unknown node {}: send a keepalive first",
                body.node_id
            ))
        })?;
    Ok(Reply::json(200, &node))
}

pub fn report_progress(app: &App, caller: &NodeCaller, bin: &str, rq: &mut Request) -> Answer {
    check_bin_name(bin)?;
    let mut p: Progress = read_json(rq)?;
    check_node_id(&p.node_id)?;
    caller.may_write_as(&p.node_id)?;
    p.target_hash = check_sha256("targetHash", &p.target_hash)?;
    p.from_hash = match p.from_hash.filter(|h| !h.is_empty()) {
        Some(h) => Some(check_sha256("fromHash", &h)?),
        None => None,
    };
    // A long message is cut, not refused: the report itself must not be lost.
    if let Some(m) = p.message.as_mut() {
        if m.len() > MAX_TEXT {
            let cut = (0..=MAX_TEXT)
                .rev()
                .find(|&i| m.is_char_boundary(i))
                .unwrap_or(0);
            m.truncate(cut);
        }
    }
    let now = SystemTime::now();
    let record = app.store.add_progress(bin, &p, now)?;
    app.store.seen(&p.node_id, now);
    app.metrics.progress(bin, &p);
    app.alerts.progress(bin, &p);
    // The report is stored either way: a failed evaluation is only logged.
    if app.recount_due(bin, p.status) {
        match rollout::tick(&app.store, &app.counts, Some(bin), now) {
            Ok(changed) => app.alerts.releases(&changed),
            Err(e) => log::error!("evaluating releases of {bin} after a report: {e}"),
        }
    }
    Ok(Reply::json(201, &record))
}

/// `{name}` is an artifact's sha256, or a bin name meaning that bin's target
/// for a node with no attributes (the old agents' call).
pub fn download(app: &App, name: &str, rq: &Request) -> Answer {
    let by_hash = check_sha256("artifact", name).ok();
    // By name, the bytes change with the next release: caches must ask.
    let cache = if by_hash.is_some() {
        IMMUTABLE
    } else {
        "no-cache"
    };
    let sha = if let Some(sha) = by_hash {
        sha
    } else {
        check_bin_name(name)?;
        let decision = targets::decide(&app.store, &Node::default(), name, None)?;
        decision
            .target
            .ok_or_else(|| ApiError::not_found(decision.reason))?
            .sha256sum
    };
    let (file, len) = app
        .artifacts
        .open_file(&sha)
        .map_err(|e| ApiError::internal(format!("opening artifact {sha}: {e}")))?
        .ok_or_else(|| ApiError::not_found(format!("no artifact {sha}")))?;
    Ok(file_reply(
        file,
        len,
        parse_range(header(rq, "Range"), len),
        &format!("\"{sha}\""),
    )?
    .header("Cache-Control", cache))
}

// ---- admin ----

pub fn upload(app: &App, bin: &str, url: &Url, rq: &mut Request) -> Answer {
    check_bin_name(bin)?;
    let version = url
        .query("version")
        .ok_or_else(|| ApiError::bad_request("missing query parameter version"))?;
    check_version(version)?;
    let arch = url.query("arch").filter(|a| !a.is_empty());
    if let Some(a) = arch {
        check_arch(a)?;
    }
    let arch = arch.map(|a| normalize_arch(a).to_owned());
    let max = app.max_artifact_size;
    let too_large =
        || ApiError::too_large(format!("artifact larger than the limit of {max} bytes"));
    if rq.body_length().is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let staged = app
        .artifacts
        .ingest(rq.as_reader(), max)
        .map_err(|e| match e {
            IngestError::TooLarge { .. } => too_large(),
            IngestError::Body(e) => body_error(&e, "the upload"),
            // The temp file is gone; the directory is degraded until an
            // upload is stored again.
            IngestError::Disk { path, source } => ApiError::unavailable(format!(
                "storage unavailable, retry later: storing the upload in {}: {source}",
                path.display()
            )),
        })?;
    // A client that goes away early can look like a short body: refuse it.
    if let Some(declared) = rq.body_length() {
        if declared != staged.size {
            return Err(ApiError::bad_request(format!(
                "upload ended after {} of the {declared} bytes announced",
                staged.size
            )));
        }
    }
    let record = Version {
        bin_name: bin.to_owned(),
        version: version.to_owned(),
        arch: arch.clone(),
        sha256sum: staged.sha256.clone(),
        size: staged.size,
        created_at: now_rfc3339(),
        signature: None,
    };
    // Decide before giving the file its name, so a refused upload leaves nothing.
    if let Some(found) = app
        .store
        .versions(bin, Some(version))?
        .into_iter()
        .find(|v| v.arch == arch)
    {
        return existing_version(&found, &record);
    }
    let names = app.artifacts.lock();
    app.artifacts.commit(&staged).map_err(|e| {
        ApiError::unavailable(format!(
            "storage unavailable, retry later: storing artifact {}: {e}",
            record.sha256sum
        ))
    })?;
    let put = app.store.put_version(&record)?;
    drop(names);
    match put {
        PutVersion::Created(v) => {
            prune_versions(app);
            Ok(Reply::json(201, &v))
        }
        PutVersion::Existing(found) | PutVersion::Conflict(found) => {
            existing_version(&found, &record)
        }
    }
}

/// `--keep-versions`, after an upload: a failure is logged, the upload stands.
pub fn prune_versions(app: &App) {
    let Some(keep) = app.keep_versions else {
        return;
    };
    match crate::retention::prune(&app.store, &app.artifacts, keep) {
        Ok(deleted) => {
            for v in deleted {
                let arch = v.arch.as_deref().unwrap_or("any arch");
                log::info!(
                    "deleted {} {} ({arch}): beyond --keep-versions {keep}",
                    v.bin_name,
                    v.version
                );
                crate::audit::by_manager(
                    &app.store,
                    "DELETE",
                    format!(
                        "/api/v1/bins/{}/versions/{} ({arch}): beyond --keep-versions {keep}",
                        v.bin_name, v.version
                    ),
                );
            }
        }
        Err(e) => log::error!("pruning versions (--keep-versions {keep}): {e}"),
    }
}

/// `DELETE /api/v1/bins/{bin}/versions/{version}[?arch=A]`: deletes the
/// version (every arch, or `arch`; `arch=` for the arch-less artifact) with
/// its signature, and the files no version refers to any more; 409 while a
/// release or a pin needs it.
pub fn delete_version(app: &App, bin: &str, version: &str, url: &Url) -> Answer {
    check_bin_name(bin)?;
    check_version(version)?;
    let arch = url.query("arch").map(normalize_arch);
    if let Some(a) = arch.filter(|a| !a.is_empty()) {
        check_arch(a)?;
    }
    match crate::retention::delete(&app.store, &app.artifacts, bin, version, arch)? {
        crate::store::Deletion::Deleted { versions, .. } => Ok(Reply::json(200, &versions)),
        crate::store::Deletion::NotFound => Err(ApiError::not_found(format!(
            "no artifact of {bin} {version}{}",
            arch.map(|a| format!(" for arch {a:?}")).unwrap_or_default()
        ))),
        crate::store::Deletion::Refused(why) => Err(ApiError::conflict(format!(
            "{bin} {version} is kept: {why}"
        ))),
    }
}

fn existing_version(found: &Version, upload: &Version) -> Answer {
    if found.sha256sum == upload.sha256sum {
        Ok(Reply::json(200, &found))
    } else {
        Err(ApiError::conflict(format!(
            "{} {} ({}) is already stored with sha256 {}; this upload is {}: publish it as a new version",
            found.bin_name,
            found.version,
            found.arch.as_deref().unwrap_or("any arch"),
            found.sha256sum,
            upload.sha256sum
        )))
    }
}

/// `PUT /api/v1/bins/{bin}/versions/{version}/signature[?arch=A]`: stores the
/// `.minisig` text of that artifact as given, replacing an earlier one. The
/// manager holds no key: only its shape is checked; agents verify it.
pub fn put_signature(
    app: &App,
    actor: &Actor,
    bin: &str,
    version: &str,
    url: &Url,
    rq: &mut Request,
) -> Answer {
    check_bin_name(bin)?;
    check_version(version)?;
    let arch = url.query("arch").filter(|a| !a.is_empty());
    if let Some(a) = arch {
        check_arch(a)?;
    }
    let arch = arch.map(normalize_arch);
    let body = read_bounded(rq, signature::MAX_SIGNATURE, "signature")?;
    let text = signature::check(&body)
        .map_err(|why| ApiError::bad_request(format!("invalid signature: {why}")))?;
    let Some(stored) = app.store.set_signature(bin, version, arch, text)? else {
        return Err(no_artifact(app, bin, version, arch)?);
    };
    log::info!(
        "signature of {bin} {version} ({}) stored by {}",
        arch.unwrap_or("any arch"),
        actor.name
    );
    Ok(Reply::json(200, &stored))
}

/// The 404 for a signature of an artifact that is not there, saying which
/// artifacts of the version are.
fn no_artifact(
    app: &App,
    bin: &str,
    version: &str,
    arch: Option<&str>,
) -> Result<ApiError, ApiError> {
    let stored = app.store.versions(bin, Some(version))?;
    if stored.is_empty() {
        return Ok(ApiError::not_found(format!(
            "unknown version {version} of {bin}: upload it first"
        )));
    }
    let arches: Vec<&str> = stored
        .iter()
        .map(|v| v.arch.as_deref().unwrap_or("arch-less"))
        .collect();
    let missing = match arch {
        Some(a) => format!("no artifact for arch {a}"),
        None => "no arch-less artifact: pass ?arch=".to_owned(),
    };
    Ok(ApiError::not_found(format!(
        "{bin} {version} has {missing} (its artifacts: {})",
        arches.join(", ")
    )))
}

pub fn list_bins(app: &App) -> Answer {
    let bins: Vec<BinVersions> = app
        .store
        .bins()?
        .into_iter()
        .map(|(bin_name, versions)| {
            // Each file once: two versions of the same bytes share it.
            let files: BTreeMap<&str, u64> = versions
                .iter()
                .map(|v| (v.sha256sum.as_str(), v.size))
                .collect();
            let bytes = files.values().sum();
            BinVersions {
                bin_name,
                bytes,
                versions,
            }
        })
        .collect();
    Ok(Reply::json(200, &bins))
}

pub fn bin_versions(app: &App, bin: &str) -> Answer {
    check_bin_name(bin)?;
    let versions = app.store.versions(bin, None)?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!("unknown bin {bin}")));
    }
    Ok(Reply::json(200, &versions))
}

pub fn create_release(app: &App, actor: &Actor, rq: &mut Request) -> Answer {
    let new: NewRelease = read_json(rq)?;
    check_bin_name(&new.bin_name)?;
    check_version(&new.version)?;
    if let Some(note) = &new.note {
        check_text("note", note)?;
    }
    rollout::validate(&new)
        .map_err(|e| ApiError::bad_request(format!("invalid release plan: {e}")))?;
    let release = app
        .store
        .create_release(&new, &actor.name, SystemTime::now())
        .map_err(|e| release_error(e, &format!("version {} of {}", new.version, new.bin_name)))?;
    let release = fresh(app, release)?;
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

/// `GET /metrics`: the Prometheus text exposition.
/// With the database unreadable (degraded, not reopened yet), the fleet
/// comes from memory: nodes and live releases.
pub fn metrics(app: &App) -> Answer {
    let fleet = match app.store.fleet_snapshot() {
        Ok(fleet) => fleet,
        Err(e) if e.is_unavailable() => app.store.fleet_in_memory(),
        Err(e) => return Err(e.into()),
    };
    let storage = crate::metrics::Storage {
        parts: crate::health::parts(&app.store, &app.artifacts),
        reopens: app.store.reopens(),
    };
    let mut text = app.metrics.render(&fleet, app.alerts.stats(), &storage);
    let artifacts = app
        .artifacts
        .bytes()
        .map_err(|e| ApiError::internal(format!("sizing the artifact files: {e}")))?;
    text.push_str(&crate::metrics::data_bytes(
        artifacts,
        app.store.file_bytes(),
    ));
    Ok(crate::metrics::Metrics::reply(text))
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
        let new = app
            .store
            .rollback_release(id, plan, &actor.name, now)
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
    let awaiting = current.status == binproxy_protocol::ReleaseStatus::PendingApproval;
    if op == ReleaseOp::Approve && awaiting && current.created_by == actor.name {
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
    let release = app
        .store
        .update_release(id, &actor.name, now, |r| {
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

pub fn put_pin(app: &App, node: &str, bin: &str, rq: &mut Request) -> Answer {
    check_node_id(node)?;
    check_bin_name(bin)?;
    let pin: Pin = read_json(rq)?;
    check_version(&pin.version)?;
    if app.store.versions(bin, Some(&pin.version))?.is_empty() {
        return Err(ApiError::not_found(format!(
            "unknown version {} of {bin}",
            pin.version
        )));
    }
    app.store.set_pin(node, bin, Some(&pin.version))?;
    log::info!("{node}: {bin} pinned to {}", pin.version);
    Ok(Reply::json(
        200,
        &Pin {
            node_id: node.to_owned(),
            bin_name: bin.to_owned(),
            version: pin.version,
        },
    ))
}

pub fn delete_pin(app: &App, node: &str, bin: &str) -> Answer {
    check_node_id(node)?;
    check_bin_name(bin)?;
    let version = app
        .store
        .pin(node, bin)
        .ok_or_else(|| ApiError::not_found(format!("{node} has no pin for {bin}")))?;
    app.store.set_pin(node, bin, None)?;
    log::info!("{node}: {bin} unpinned");
    Ok(Reply::json(
        200,
        &Pin {
            node_id: node.to_owned(),
            bin_name: bin.to_owned(),
            version,
        },
    ))
}

/// `GET /api/v1/nodes/{node_id}`: per bin, the target and why.
pub fn node_view(app: &App, id: &str) -> Answer {
    check_node_id(id)?;
    let node = app
        .store
        .node(id)
        .ok_or_else(|| ApiError::not_found(format!("unknown node {id}")))?;
    let mut names: std::collections::BTreeSet<String> = node.bins.keys().cloned().collect();
    names.extend(app.store.live_releases().iter().map(|r| r.bin_name.clone()));
    names.extend(app.store.pinned_bins(id));
    let mut bins = BTreeMap::new();
    for bin in names {
        let d = targets::decide(&app.store, &node, &bin, None)?;
        bins.insert(
            bin,
            BinView {
                target: d.target,
                reason: d.reason,
            },
        );
    }
    Ok(Reply::json(200, &NodeView { node, bins }))
}

pub fn list_releases(app: &App, url: &Url) -> Answer {
    let bin = url.query("bin_name");
    if let Some(b) = bin {
        check_bin_name(b)?;
    }
    Ok(Reply::json(200, &app.store.releases(bin)?))
}

pub fn release(app: &App, id: &str) -> Answer {
    let id = release_id(id)?;
    let release = app
        .store
        .release(id)?
        .ok_or_else(|| ApiError::not_found(format!("unknown release {id}")))?;
    Ok(Reply::json(200, &release))
}

pub fn list_progress(app: &App, bin: &str, url: &Url) -> Answer {
    check_bin_name(bin)?;
    let node = url.query("node_id");
    if let Some(n) = node {
        check_node_id(n)?;
    }
    let limit = limit(url)?;
    Ok(Reply::json(200, &app.store.progress(bin, node, limit)?))
}

/// The `limit` query parameter of a listing: 1 to 1000, default 100.
fn limit(url: &Url) -> Result<usize, ApiError> {
    match url.query("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("invalid limit {l:?}: 1 to {MAX_LIMIT}"))),
    }
}

// ---- admin tokens and audit ----

pub fn list_tokens(app: &App) -> Answer {
    let bootstrap = TokenInfo {
        name: BOOTSTRAP_NAME.into(),
        role: Role::Admin,
        created_at: String::new(),
        created_by: "manager-lite serve (file, environment or generated)".into(),
    };
    let all: Vec<TokenInfo> = std::iter::once(bootstrap)
        .chain(app.store.tokens())
        .collect();
    Ok(Reply::json(200, &all))
}

/// Creates a named token; its secret is in this answer and nowhere else.
pub fn create_token(app: &App, actor: &Actor, rq: &mut Request) -> Answer {
    let new: NewToken = read_json(rq)?;
    check_token_name(&new.name)?;
    if new.name == BOOTSTRAP_NAME {
        return Err(ApiError::conflict(
            "the name admin belongs to the bootstrap token",
        ));
    }
    let secret = crate::auth::random_hex(32).map_err(ApiError::internal)?;
    let info = TokenInfo {
        name: new.name.clone(),
        role: new.role,
        created_at: now_rfc3339(),
        created_by: actor.name.clone(),
    };
    if !app
        .store
        .add_token(&info, &crate::auth::secret_hash(&secret))?
    {
        return Err(ApiError::conflict(format!(
            "a token named {} exists: revoke it first",
            new.name
        )));
    }
    log::info!(
        "token {} ({}) created by {}",
        info.name,
        info.role.as_str(),
        actor.name
    );
    Ok(Reply::json(
        201,
        &CreatedToken {
            info,
            token: secret,
        },
    ))
}

pub fn revoke_token(app: &App, name: &str) -> Answer {
    if name == BOOTSTRAP_NAME {
        return Err(ApiError::conflict(
            "the bootstrap admin token is revoked by replacing its file or environment variable and restarting",
        ));
    }
    check_token_name(name)?;
    let info = app
        .store
        .remove_token(name)?
        .ok_or_else(|| ApiError::not_found(format!("unknown token {name}")))?;
    log::info!("token {name} revoked");
    Ok(Reply::json(200, &info))
}

/// Token names follow the bin name rule, but the error must say "token".
fn check_token_name(name: &str) -> Result<(), ApiError> {
    check_bin_name(name).map_err(|_| {
        ApiError::bad_request(format!(
            "invalid token name {name:?}: 1 to 64 of A-Z a-z 0-9 . _ - and not . or .."
        ))
    })
}

pub fn list_audit(app: &App, url: &Url) -> Answer {
    Ok(Reply::json(200, &app.store.audit(limit(url)?)?))
}

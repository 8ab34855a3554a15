//! The bin endpoints. For nodes: a bin's target (`GET /api/v1/bins/{bin}`,
//! with an ETag), the installed report, progress reports (which may recount
//! the bin's releases) and downloads by sha256 or by bin name (with byte
//! ranges). For admins: uploads (streamed into the artifact directory, then
//! named by their sha256), signatures, the list of bins and of a bin's
//! versions, progress listings, deleting a version and the `--keep-versions`
//! pruning after an upload.

use binproxy_protocol::{
    check_arch, check_bin_name, check_node_id, check_sha256, check_version, download_path,
    names::normalize_arch, BinVersions, Installed, Node, Progress, Version,
};
use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::api::app::App;
use crate::api::audit;
use crate::api::auth::{Actor, NodeCaller};
use crate::api::reply::{conditional, file_reply, parse_range, Answer, ApiError, Reply, NO_STORE};
use crate::api::request::{
    body_error, header, limit, read_bounded, read_json, Request, Url, MAX_TEXT,
};
use crate::artifacts::IngestError;
use crate::rollout::{self, targets};
use crate::signature;
use crate::store::PutVersion;
use crate::time::now_rfc3339;

/// Content-addressed bytes never change: any cache may keep them.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

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
    let decision = app.decide(&node, bin, arch)?;
    let target = decision
        .target
        .ok_or_else(|| ApiError::not_found(decision.reason))?;
    let reply = Reply::json(200, &target).header("Cache-Control", NO_STORE);
    Ok(conditional(reply, header(rq, "If-None-Match")))
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
        deltas: Vec::new(),
        zst: None,
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
            app.deltas.request(&v);
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
                audit::by_manager(
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
            let versions = with_forms(app, versions);
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
    Ok(Reply::json(200, &with_forms(app, versions)))
}

/// Versions with the forms made for them (`mirror sync` copies those too).
fn with_forms(app: &App, mut versions: Vec<Version>) -> Vec<Version> {
    for v in &mut versions {
        app.store.offer_forms(v, download_path);
    }
    versions
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

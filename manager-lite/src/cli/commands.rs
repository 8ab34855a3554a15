//! One function per admin command: each sends its request (one more for
//! each of `publish --signature` and `publish --release`) and shows the
//! answer through [`super::render`]. The token is never printed; the one
//! exception is the secret of a new token, which `token create` prints once
//! on stdout because the server never shows it again.

use super::check::{Publish, Signature};
use super::http::{Answer, Client};
use super::progress::Progress;
use super::render::{
    audit_table, emit, node_view, nodes_table, pretty, progress_table, release_block,
    releases_table, short, show, tokens_table, versions_table,
};
use super::settings::shown;
use super::ClientError;
use crate::table;
use binproxy_protocol::{
    AuditRecord, CreatedToken, NewRelease, NewToken, Node, NodeView, Pin, ProgressRecord, Release,
    TokenInfo, Version, Wave, API_PREFIX,
};
use serde::Serialize;
use serde_json::Value as Json;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

pub fn publish(client: &Client, json: bool, p: &Publish) -> Result<(), ClientError> {
    // Both files are read before anything is sent: a bad signature file
    // uploads nothing.
    let signature = p.signature.as_deref().map(read_signature).transpose()?;
    let (file, size) = open_artifact(&p.file)?;
    let mut query = vec![("version", p.version.as_str())];
    if let Some(arch) = &p.arch {
        query.push(("arch", arch));
    }
    let path = format!("{API_PREFIX}/bins/{}/versions", p.bin);
    let mut body = Progress::new(file, size);
    let uploaded = client.upload(&path, &query, &mut body, size);
    match &uploaded {
        Ok(_) => body.finish(),
        Err(_) => body.abandon(),
    }
    let uploaded = uploaded?;
    let already = uploaded.status == 200;
    // With a signature, show the version as it is once signed.
    let answer = match &signature {
        Some(text) => put_signature(client, &p.bin, &p.version, p.arch.as_deref(), text)?,
        None => uploaded,
    };
    show(json, &answer, |v: Version| {
        let mut text = versions_table(std::slice::from_ref(&v));
        if already {
            text.push_str("(already uploaded with the same bytes)\n");
        }
        if signature.is_some() {
            text.push_str(&signed_line(&v));
        }
        text
    })?;
    let Some(new) = &p.release else {
        return Ok(());
    };
    if !json {
        emit("\n")?;
    }
    release(client, json, new)
}

/// Stores (or replaces) the signature of an uploaded artifact.
pub fn signature(client: &Client, json: bool, s: &Signature) -> Result<(), ClientError> {
    let text = read_signature(&s.file)?;
    let answer = put_signature(client, &s.bin, &s.version, s.arch.as_deref(), &text)?;
    show(json, &answer, |v: Version| {
        let mut out = versions_table(std::slice::from_ref(&v));
        out.push_str(&signed_line(&v));
        out
    })
}

/// `PUT /api/v1/bins/{bin}/versions/{version}/signature[?arch=A]`.
pub(super) fn put_signature(
    client: &Client,
    bin: &str,
    version: &str,
    arch: Option<&str>,
    text: &str,
) -> Result<Answer, ClientError> {
    let query: Vec<_> = arch.map(|a| ("arch", a)).into_iter().collect();
    let path = format!("{API_PREFIX}/bins/{bin}/versions/{version}/signature");
    client.put_text(&path, &query, text)
}

/// The text of a `.minisig` file, checked as the server will check it.
pub(super) fn read_signature(path: &Path) -> Result<String, ClientError> {
    let config = |why: String| ClientError::Config(format!("{}: {why}", shown(path)));
    let file = File::open(path).map_err(|e| config(format!("cannot read it: {e}")))?;
    let mut bytes = Vec::new();
    // One byte over the limit is enough to refuse it.
    file.take(crate::signature::MAX_SIGNATURE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| config(format!("cannot read it: {e}")))?;
    let text = crate::signature::check(&bytes)
        .map_err(|why| config(format!("not a minisign signature: {why}")))?;
    Ok(text.to_owned())
}

/// What the CLI says about a signed version: its trusted comment.
pub(super) fn signed_line(v: &Version) -> String {
    match v.signature.as_deref().and_then(|s| s.lines().nth(2)) {
        Some(trusted) => format!("signature stored ({})\n", table::clean(trusted)),
        None => "no signature stored\n".to_owned(),
    }
}

/// The file to upload and its size, which becomes the Content-Length.
pub(super) fn open_artifact(path: &Path) -> Result<(File, u64), ClientError> {
    let unreadable =
        |e: io::Error| ClientError::Config(format!("cannot read {}: {e}", shown(path)));
    let file = File::open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(ClientError::Config(format!(
            "{} is not a regular file",
            shown(path)
        )));
    }
    Ok((file, meta.len()))
}

pub fn release(client: &Client, json: bool, new: &NewRelease) -> Result<(), ClientError> {
    let answer = client.post_json(&format!("{API_PREFIX}/releases"), new)?;
    show(json, &answer, |r: Release| release_block(&r))
}

/// `approve`, `pause`, ... : the release as it is afterwards.
pub fn operate(client: &Client, json: bool, op: &str, id: u64) -> Result<(), ClientError> {
    let answer = client.post_empty(&format!("{API_PREFIX}/releases/{id}/{op}"))?;
    show(json, &answer, |r: Release| release_block(&r))
}

/// Rolls release `id` back: the answer is the new release of its baseline.
pub fn rollback(client: &Client, json: bool, id: u64, waves: Vec<Wave>) -> Result<(), ClientError> {
    #[derive(Serialize)]
    struct Plan {
        waves: Vec<Wave>,
    }
    let path = format!("{API_PREFIX}/releases/{id}/rollback");
    let answer = if waves.is_empty() {
        client.post_empty(&path)?
    } else {
        client.post_json(&path, &Plan { waves })?
    };
    show(json, &answer, |r: Release| {
        format!(
            "release {id} rolled back; new release:\n{}",
            release_block(&r)
        )
    })
}

pub fn pin(
    client: &Client,
    json: bool,
    node: &str,
    bin: &str,
    version: &str,
) -> Result<(), ClientError> {
    let path = format!("{API_PREFIX}/nodes/{node}/pins/{bin}");
    let answer = client.put_json(&path, &serde_json::json!({ "version": version }))?;
    show(json, &answer, |p: Pin| {
        format!(
            "pinned {} on {} to {}\n",
            table::clean(or(&p.bin_name, bin)),
            table::clean(or(&p.node_id, node)),
            table::clean(&p.version)
        )
    })
}

pub fn unpin(client: &Client, json: bool, node: &str, bin: &str) -> Result<(), ClientError> {
    let answer = client.delete(&format!("{API_PREFIX}/nodes/{node}/pins/{bin}"))?;
    match (json, &answer.body) {
        (false, _) => emit(&format!(
            "unpinned {bin} on {node}: its releases decide its target again\n"
        )),
        // No body to show: say what was done, as JSON.
        (true, Json::Null) => emit(&pretty(
            &serde_json::json!({ "node_id": node, "bin_name": bin, "unpinned": true }),
        )),
        (true, body) => emit(&pretty(body)),
    }
}

/// Forgets a node's secret: the node must enroll again.
pub fn node_revoke(client: &Client, json: bool, node: &str) -> Result<(), ClientError> {
    let answer = client.delete(&format!("{API_PREFIX}/nodes/{node}/secret"))?;
    if json {
        emit(&pretty(&answer.body))
    } else {
        emit(&format!(
            "revoked the secret of {node}: it must enroll again\n"
        ))
    }
}

/// Deletes a node with its pins and secret.
pub fn node_delete(client: &Client, json: bool, node: &str) -> Result<(), ClientError> {
    let answer = client.delete(&format!("{API_PREFIX}/nodes/{node}"))?;
    if json {
        emit(&pretty(&answer.body))
    } else {
        emit(&format!(
            "deleted node {node} with its pins and secret (its progress reports stay)\n"
        ))
    }
}

/// Creates a named token and prints its secret, the one time it is shown.
pub fn token_create(client: &Client, json: bool, new: &NewToken) -> Result<(), ClientError> {
    let answer = client.post_json(&format!("{API_PREFIX}/tokens"), new)?;
    let created: CreatedToken = answer.parse()?;
    if json {
        emit(&pretty(&answer.body))?;
    } else {
        emit(&format!("{}\n", created.token))?;
    }
    // Nothing sensible is left to do if stderr itself is gone.
    let _ = writeln!(
        io::stderr(),
        "manager-lite token: created token {} with role {}; its secret{} will not be shown again: \
         keep it now",
        table::clean(or(&created.info.name, &new.name)),
        created.info.role.as_str(),
        if json { " (\"token\")" } else { " above" },
    );
    Ok(())
}

pub fn token_list(client: &Client, json: bool) -> Result<(), ClientError> {
    let answer = client.get(&format!("{API_PREFIX}/tokens"), &[])?;
    show(json, &answer, |t: Vec<TokenInfo>| tokens_table(&t))
}

pub fn token_revoke(client: &Client, json: bool, name: &str) -> Result<(), ClientError> {
    let answer = client.delete(&format!("{API_PREFIX}/tokens/{name}"))?;
    match (json, &answer.body) {
        (false, Json::Null) => emit(&format!(
            "revoked token {name}: it is refused from now on\n"
        )),
        (false, _) => {
            let t: TokenInfo = answer.parse()?;
            emit(&format!(
                "revoked token {} (role {}): it is refused from now on\n",
                table::clean(or(&t.name, name)),
                t.role.as_str()
            ))
        }
        (true, Json::Null) => emit(&pretty(
            &serde_json::json!({ "name": name, "revoked": true }),
        )),
        (true, body) => emit(&pretty(body)),
    }
}

/// Deletes a version's artifacts (one arch, or every one).
pub fn version_delete(
    client: &Client,
    json: bool,
    bin: &str,
    version: &str,
    arch: Option<&str>,
) -> Result<(), ClientError> {
    let query = arch.map(|a| format!("?arch={a}")).unwrap_or_default();
    let answer = client.delete(&format!(
        "{API_PREFIX}/bins/{bin}/versions/{version}{query}"
    ))?;
    if json {
        return emit(&pretty(&answer.body));
    }
    let deleted: Vec<Version> = answer.parse()?;
    let mut text = String::new();
    for v in &deleted {
        let _ = writeln!(
            text,
            "deleted {} {} ({}, {})",
            table::clean(&v.bin_name),
            table::clean(&v.version),
            table::clean(v.arch.as_deref().unwrap_or("any arch")),
            short(&v.sha256sum)
        );
    }
    emit(&text)
}

/// The latest admin writes, newest first.
pub fn audit(client: &Client, json: bool, limit: Option<u32>) -> Result<(), ClientError> {
    let limit = limit.map(|n| n.to_string());
    let query: Vec<_> = limit.as_deref().map(|n| ("limit", n)).into_iter().collect();
    let answer = client.get(&format!("{API_PREFIX}/audit"), &query)?;
    show(json, &answer, |r: Vec<AuditRecord>| audit_table(&r))
}

/// `value`, or `fallback` when the server left it out.
fn or<'a>(value: &'a str, fallback: &'a str) -> &'a str {
    if value.is_empty() {
        fallback
    } else {
        value
    }
}

pub fn releases(client: &Client, json: bool, bin: Option<&str>) -> Result<(), ClientError> {
    let query: Vec<_> = bin.map(|b| ("bin_name", b)).into_iter().collect();
    let answer = client.get(&format!("{API_PREFIX}/releases"), &query)?;
    show(json, &answer, |r: Vec<Release>| releases_table(&r))
}

/// Every node, page by page (`X-Next-After` names the next page).
pub fn nodes(client: &Client, json: bool) -> Result<(), ClientError> {
    let mut all = Vec::new();
    let mut after = String::new();
    for _ in 0..MAX_PAGES {
        let query = [("limit", NODES_PAGE), ("after", after.as_str())];
        let answer = client.get(&format!("{API_PREFIX}/nodes"), &query)?;
        let Json::Array(page) = answer.body else {
            return Err(ClientError::Failed(
                "unexpected answer from the server: the node list is not an array".into(),
            ));
        };
        all.extend(page);
        match answer.next_after {
            // Ids grow page after page: a cursor that does not is a loop.
            Some(next) if next.as_str() > after.as_str() => after = next,
            Some(next) => {
                return Err(ClientError::Failed(format!(
                    "the server's next page starts at {next:?}, not after {after:?}"
                )))
            }
            None => {
                let answer = Answer {
                    status: 200,
                    body: Json::Array(all),
                    next_after: None,
                };
                return show(json, &answer, |n: Vec<Node>| nodes_table(&n));
            }
        }
    }
    Err(ClientError::Failed(format!(
        "the node list did not end within {MAX_PAGES} pages"
    )))
}

/// Nodes asked for per page, and the most pages followed (10 million nodes).
const NODES_PAGE: &str = "1000";
const MAX_PAGES: usize = 10_000;

/// One node, and for each of its bins the target and why.
pub fn node_details(client: &Client, json: bool, node: &str) -> Result<(), ClientError> {
    let answer = client.get(&format!("{API_PREFIX}/nodes/{node}"), &[])?;
    show(json, &answer, |v: NodeView| node_view(&v))
}

pub fn progress(
    client: &Client,
    json: bool,
    bin: &str,
    node: Option<&str>,
    limit: Option<u32>,
) -> Result<(), ClientError> {
    let limit = limit.map(|n| n.to_string());
    let query: Vec<_> = [("node_id", node), ("limit", limit.as_deref())]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value?)))
        .collect();
    let answer = client.get(&format!("{API_PREFIX}/bins/{bin}/progress"), &query)?;
    show(json, &answer, |r: Vec<ProgressRecord>| progress_table(&r))
}

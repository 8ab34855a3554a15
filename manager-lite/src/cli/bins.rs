//! The commands about a bin's artifacts: `publish` (upload, then maybe
//! sign and release), `signature` (sign an uploaded artifact), `version
//! delete`, and `progress` (what nodes reported installing a bin). The
//! files are read and checked before anything is sent: a bad signature
//! file uploads nothing.

use super::check::{Publish, Signature};
use super::http::{Answer, Client};
use super::progress::Progress;
use super::render::{emit, pretty, progress_table, short, show, versions_table};
use super::settings::shown;
use super::ClientError;
use crate::cli::table;
use binproxy_protocol::{ProgressRecord, Version, API_PREFIX};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
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
    super::releases::release(client, json, new)
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

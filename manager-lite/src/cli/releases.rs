//! The commands about releases: create one (`release`, and `publish
//! --release`), list them, act on one (`approve`, `pause`, `resume`,
//! `promote`, `cancel`) and roll one back. Each shows the release as the
//! server has it afterwards.

use super::http::Client;
use super::render::{release_block, releases_table, show};
use super::ClientError;
use binproxy_protocol::{NewRelease, Release, Wave, API_PREFIX};
use serde::Serialize;

pub fn release(client: &Client, json: bool, new: &NewRelease) -> Result<(), ClientError> {
    let answer = client.post_json(&format!("{API_PREFIX}/releases"), new)?;
    show(json, &answer, |r: Release| release_block(&r))
}

pub fn releases(client: &Client, json: bool, bin: Option<&str>) -> Result<(), ClientError> {
    let query: Vec<_> = bin.map(|b| ("bin_name", b)).into_iter().collect();
    let answer = client.get(&format!("{API_PREFIX}/releases"), &query)?;
    show(json, &answer, |r: Vec<Release>| releases_table(&r))
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

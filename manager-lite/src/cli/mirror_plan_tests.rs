//! Tests of [`super`]: which release a bins file takes its targets from,
//! and what the plan holds for artifacts shared by versions.

use super::*;
use serde_json::json;

fn release(id: u64, version: &str, status: &str, percent: u32) -> Release {
    serde_json::from_value(json!({
        "id": id, "bin_name": "app", "version": version, "status": status,
        "percent": percent, "created_at": "2026-01-01T00:00:00Z",
        "created_by": "admin", "updated_at": "2026-01-01T00:00:00Z",
    }))
    .unwrap()
}

fn version(version: &str, arch: Option<&str>, sha: char, created_at: &str) -> Version {
    Version {
        bin_name: "app".into(),
        version: version.into(),
        arch: arch.map(Into::into),
        sha256sum: sha.to_string().repeat(64),
        size: 10,
        created_at: created_at.into(),
        signature: None,
        deltas: Vec::new(),
        zst: None,
    }
}

fn bins(versions: Vec<Version>) -> Vec<BinVersions> {
    vec![BinVersions {
        bin_name: "app".into(),
        bytes: 0,
        versions,
    }]
}

#[test]
fn the_newest_release_that_reached_every_node_is_chosen() {
    let mut with_selector = release(5, "5", "completed", 100);
    with_selector.selector.cpu_arch = vec!["x86_64".into()];
    let mut with_window = release(6, "6", "rolling_out", 100);
    with_window.windows = vec!["Mon-Fri 01:00-05:00 +00:00".into()];
    let releases = vec![
        release(9, "9", "rolling_out", 50),
        release(8, "8", "paused", 100),
        release(7, "7", "pending_approval", 100),
        with_window,
        with_selector,
        release(4, "4", "cancelled", 100),
        release(3, "3", "rolling_out", 100),
        release(2, "2", "completed", 100),
        release(1, "1", "superseded", 100),
    ];
    assert_eq!(chosen(&releases, "app").map(|r| r.id), Some(3));
    // Completed counts whatever the percent says (a plan's last wave).
    let releases = [
        release(2, "2", "completed", 40),
        release(1, "1", "completed", 100),
    ];
    assert_eq!(chosen(&releases, "app").map(|r| r.id), Some(2));
    // Highest id, not list order.
    let releases = [
        release(1, "1", "completed", 100),
        release(2, "2", "completed", 100),
    ];
    assert_eq!(chosen(&releases, "app").map(|r| r.id), Some(2));
    for status in ["rolled_back", "superseded", "cancelled", "paused"] {
        let releases = [release(1, "1", status, 100)];
        assert_eq!(chosen(&releases, "app"), None, "{status}");
    }
    assert_eq!(chosen(&[release(1, "1", "completed", 100)], "other"), None);
}

#[test]
fn a_bins_file_has_one_target_per_arch_and_star_for_every_arch() {
    let mut signed = version("2", Some("aarch64"), 'b', "2026-01-02T00:00:00Z");
    signed.signature = Some("sig-b".into());
    let stored = bins(vec![
        version("1", None, 'a', "2026-01-01T00:00:00Z"),
        version("2", None, 'c', "2026-01-02T00:00:00Z"),
        signed,
    ]);
    let releases = [
        release(3, "2", "rolling_out", 100),
        release(1, "1", "completed", 100),
    ];
    let plan = plan(&stored, &releases, "2026-02-01T00:00:00Z").unwrap();
    assert_eq!(
        plan.artifacts.len(),
        3,
        "every stored artifact, released or not"
    );
    let bin = &plan.bins["app"];
    assert_eq!((bin.release_id, bin.version.as_str()), (3, "2"));
    assert_eq!(bin.generated_at, "2026-02-01T00:00:00Z");
    let keys: Vec<&str> = bin.targets.keys().map(String::as_str).collect();
    assert_eq!(keys, ["*", "aarch64"]);
    let arm = &bin.targets["aarch64"];
    assert_eq!(arm.url, format!("artifacts/{}", "b".repeat(64)));
    assert_eq!(arm.signature.as_deref(), Some("sig-b"));
    assert_eq!(arm.reason.as_deref(), Some("release 3 (mirror)"));
    assert_eq!(bin.targets["*"].sha256sum, "c".repeat(64));
    assert_eq!(bin.target_for("x86_64").unwrap().sha256sum, "c".repeat(64));
    assert_eq!(
        plan.artifacts[&"b".repeat(64)].signature.as_deref(),
        Some("sig-b")
    );
}

#[test]
fn no_fitting_release_or_no_artifact_left_means_no_bins_file() {
    let stored = bins(vec![version("1", None, 'a', "2026-01-01T00:00:00Z")]);
    let plan_of = |releases: &[Release]| plan(&stored, releases, "t").unwrap();
    assert!(plan_of(&[release(1, "1", "rolling_out", 50)])
        .bins
        .is_empty());
    // The version of the release was deleted: its bin has no target to give.
    assert!(plan_of(&[release(1, "9", "completed", 100)])
        .bins
        .is_empty());
    assert_eq!(plan_of(&[]).artifacts.len(), 1);
}

#[test]
fn shared_bytes_are_one_artifact_with_the_newest_signature() {
    let mut old = version("1", None, 'a', "2026-01-01T00:00:00Z");
    old.signature = Some("old".into());
    let mut new = version("2", None, 'A', "2026-01-03T00:00:00Z");
    new.signature = Some("new".into());
    let unsigned = version("3", None, 'a', "2026-01-04T00:00:00Z");
    // Listed newest first: the order of the answer does not matter.
    let plan = plan(&bins(vec![unsigned, new, old]), &[], "t").unwrap();
    let key = "a".repeat(64);
    assert_eq!(plan.artifacts.keys().collect::<Vec<_>>(), [&key]);
    assert_eq!(plan.artifacts[&key].signature.as_deref(), Some("new"));
}

#[test]
fn bad_names_and_hashes_from_the_server_are_refused() {
    let mut bad_sha = version("1", None, 'a', "t");
    bad_sha.sha256sum = "../../etc/passwd".into();
    let err = plan(&bins(vec![bad_sha]), &[], "t").unwrap_err();
    assert!(err.contains("bad hash"), "{err}");
    let mut bad_bin = bins(Vec::new());
    bad_bin[0].bin_name = "../x".into();
    let err = plan(&bad_bin, &[], "t").unwrap_err();
    assert!(err.contains("bad name"), "{err}");
    let mut other_size = version("2", None, 'a', "t");
    other_size.size = 11;
    let err = plan(
        &bins(vec![version("1", None, 'a', "t"), other_size]),
        &[],
        "t",
    )
    .unwrap_err();
    assert!(err.contains("two sizes"), "{err}");
}

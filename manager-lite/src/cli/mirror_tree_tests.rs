//! Tests of [`super`]: the tree writer on a real directory.

use super::*;
use binproxy_protocol::mirror::ANY_ARCH;
use binproxy_protocol::Target;
use std::os::unix::fs::MetadataExt;

const T0: &str = "2026-03-01T00:00:00Z";

fn sha_of(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn bin(name: &str, release_id: u64, sha: &str, generated_at: &str) -> MirrorBin {
    let target = Target {
        bin_name: name.into(),
        version: "1".into(),
        sha256sum: sha.into(),
        size: 3,
        url: format!("artifacts/{sha}"),
        reason: Some(format!("release {release_id} (mirror)")),
        ..Target::default()
    };
    MirrorBin {
        bin_name: name.into(),
        release_id,
        version: "1".into(),
        generated_at: generated_at.into(),
        targets: [(ANY_ARCH.to_owned(), target)].into(),
    }
}

/// (inode, mtime in ns) of a file: a rewrite by rename changes the inode.
fn stamp(path: &Path) -> (u64, i64) {
    let m = fs::metadata(path).unwrap();
    (m.ino(), m.mtime_nsec() + m.mtime() * 1_000_000_000)
}

fn index(dir: &Path) -> MirrorIndex {
    serde_json::from_slice(&fs::read(dir.join(INDEX_FILE)).unwrap()).unwrap()
}

fn artifact(size: u64) -> Artifact {
    Artifact {
        size,
        signature: None,
    }
}

#[test]
fn a_checked_artifact_a_bins_file_and_the_index_last() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("m");
    let mut tree = Tree::open(&dir).unwrap();
    assert!(
        !dir.join(ARTIFACTS).exists(),
        "nothing of the tree before prepare"
    );
    tree.prepare().unwrap();
    let sha = sha_of(b"abc");
    assert!(!tree.has_artifact(&sha, 3));
    tree.write_artifact(&sha, 3, &mut &b"abc"[..], "test")
        .unwrap();
    assert!(tree.has_artifact(&sha, 3));
    tree.sync_signature(&sha, Some("sig\n")).unwrap();
    tree.sync_bin(&bin("app", 1, &sha, T0)).unwrap();
    let outcome = tree.finish(vec!["app".into()], T0).unwrap();
    assert_eq!((outcome.generation, outcome.changed), (1, true));
    assert_eq!(outcome.changes.artifacts_copied, 1);
    assert_eq!(outcome.changes.bytes_copied, 3);
    assert_eq!(fs::read(dir.join("artifacts").join(&sha)).unwrap(), b"abc");
    assert_eq!(
        fs::read_to_string(dir.join(format!("artifacts/{sha}.minisig"))).unwrap(),
        "sig\n"
    );
    let written: MirrorBin =
        serde_json::from_slice(&fs::read(dir.join("bins/app.json")).unwrap()).unwrap();
    assert_eq!(written, bin("app", 1, &sha, T0));
    let i = index(&dir);
    assert_eq!((i.generation, i.bins), (1, vec!["app".to_owned()]));

    // Again with nothing new (a later time): no file rewritten, same generation.
    let files = [
        dir.join(INDEX_FILE),
        dir.join("bins/app.json"),
        dir.join(format!("artifacts/{sha}.minisig")),
    ];
    let before: Vec<_> = files.iter().map(|p| stamp(p)).collect();
    let mut tree = Tree::open(&dir).unwrap();
    tree.prepare().unwrap();
    tree.sync_signature(&sha, Some("sig\n")).unwrap();
    tree.sync_bin(&bin("app", 1, &sha, "2026-03-02T00:00:00Z"))
        .unwrap();
    let outcome = tree
        .finish(vec!["app".into()], "2026-03-02T00:00:00Z")
        .unwrap();
    assert_eq!((outcome.generation, outcome.changed), (1, false));
    let after: Vec<_> = files.iter().map(|p| stamp(p)).collect();
    assert_eq!(before, after);

    // A new release: the bins file and the index change, generation 2.
    let mut tree = Tree::open(&dir).unwrap();
    tree.sync_bin(&bin("app", 2, &sha, T0)).unwrap();
    tree.sync_signature(&sha, None).unwrap();
    let outcome = tree.finish(vec!["app".into()], T0).unwrap();
    assert_eq!((outcome.generation, outcome.changes.bins_written), (2, 1));
    assert_eq!(outcome.changes.signatures_removed, 1);
    assert!(!dir.join(format!("artifacts/{sha}.minisig")).exists());
}

#[test]
fn wrong_bytes_are_refused_and_leave_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut tree = Tree::open(root.path()).unwrap();
    tree.prepare().unwrap();
    let sha = sha_of(b"abc");
    for (body, why) in [
        (&b"abd"[..], "hash to"),
        (&b"ab"[..], "2 bytes, its version has 3"),
        (&b"abcd"[..], "more than the 3 bytes"),
    ] {
        let err = tree
            .write_artifact(&sha, 3, &mut &body[..], "http://m/x")
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.exit_code(), 1);
        assert!(text.contains(&sha) && text.contains(why), "{text}");
        assert!(text.contains("http://m/x"), "{text}");
        assert!(list(&root.path().join(ARTIFACTS)).unwrap().is_empty());
    }
}

#[test]
fn a_second_sync_on_the_same_dir_is_refused_while_the_first_holds_it() {
    let root = tempfile::tempdir().unwrap();
    let first = Tree::open(root.path()).unwrap();
    let err = Tree::open(root.path()).err().unwrap();
    assert!(
        err.to_string().contains("another mirror sync holds"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 1);
    drop(first);
    Tree::open(root.path()).unwrap();
    let missing_parent = root.path().join("no/such");
    let err = Tree::open(&missing_parent).err().unwrap();
    assert_eq!(err.exit_code(), 2, "{err}");
    let file = root.path().join("file");
    fs::write(&file, b"x").unwrap();
    let err = Tree::open(&file).err().unwrap();
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn a_killed_runs_temp_files_go_and_foreign_files_stay() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    for sub in [ARTIFACTS, BINS] {
        fs::create_dir(dir.join(sub)).unwrap();
    }
    let leftovers = [
        format!("artifacts/{TMP_PREFIX}{}", "a".repeat(64)),
        format!("bins/{TMP_PREFIX}app.json"),
        format!("{TMP_PREFIX}{INDEX_FILE}"),
    ];
    let foreign = [
        "artifacts/README",
        "artifacts/.hidden",
        "bins/notes.txt",
        "other.html",
    ];
    for name in leftovers.iter().map(String::as_str).chain(foreign) {
        fs::write(dir.join(name), b"x").unwrap();
    }
    // A file named like a bins file but not a bin name, and a hash in capitals.
    fs::write(dir.join("bins/..json"), b"x").unwrap();
    fs::write(dir.join(format!("artifacts/{}", "A".repeat(64))), b"x").unwrap();
    let mut tree = Tree::open(dir).unwrap();
    for name in &leftovers {
        assert!(!dir.join(name).exists(), "{name}");
    }
    tree.remove_stale_bins(&BTreeSet::new()).unwrap();
    tree.expire_artifacts(&BTreeMap::new(), Duration::ZERO, SystemTime::now())
        .unwrap();
    let outcome = tree.finish(Vec::new(), T0).unwrap();
    assert_eq!(outcome.changes, Changes::default());
    for name in foreign.into_iter().chain(["bins/..json"]) {
        assert!(dir.join(name).exists(), "{name}");
    }
    assert!(dir.join(format!("artifacts/{}", "A".repeat(64))).exists());
}

#[test]
fn artifacts_gone_from_the_manager_wait_out_the_grace_period() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let (kept, gone) = (sha_of(b"abc"), sha_of(b"xyz"));
    let mut tree = Tree::open(dir).unwrap();
    tree.prepare().unwrap();
    tree.write_artifact(&kept, 3, &mut &b"abc"[..], "t")
        .unwrap();
    tree.write_artifact(&gone, 3, &mut &b"xyz"[..], "t")
        .unwrap();
    tree.sync_signature(&gone, Some("sig")).unwrap();
    tree.sync_bin(&bin("app", 1, &kept, T0)).unwrap();
    tree.sync_bin(&bin("old", 1, &gone, T0)).unwrap();
    assert_eq!(
        tree.finish(vec!["app".into(), "old".into()], T0)
            .unwrap()
            .generation,
        1
    );

    let keep: BTreeMap<String, Artifact> = [(kept.clone(), artifact(3))].into();
    let hour = Duration::from_secs(3600);
    let t0 = parse_rfc3339(T0).unwrap();
    let mut tree = Tree::open(dir).unwrap();
    tree.remove_stale_bins(&["app"].into()).unwrap();
    tree.expire_artifacts(&keep, hour, t0).unwrap();
    let outcome = tree.finish(vec!["app".into()], T0).unwrap();
    assert_eq!(outcome.changes.bins_removed, 1, "a bins file goes at once");
    assert_eq!((outcome.changes.waiting, outcome.generation), (1, 2));
    assert!(dir.join("artifacts").join(&gone).exists());
    assert!(!dir.join("bins/old.json").exists());

    // 59 minutes later: still waiting, nothing changed.
    let mut tree = Tree::open(dir).unwrap();
    tree.expire_artifacts(&keep, hour, t0 + Duration::from_secs(59 * 60))
        .unwrap();
    let outcome = tree.finish(vec!["app".into()], T0).unwrap();
    assert_eq!((outcome.changes.waiting, outcome.changed), (1, false));

    // An hour after it was first seen missing: removed with its signature.
    let mut tree = Tree::open(dir).unwrap();
    tree.expire_artifacts(&keep, hour, t0 + hour).unwrap();
    let outcome = tree.finish(vec!["app".into()], T0).unwrap();
    assert_eq!(outcome.changes.artifacts_removed, 1);
    assert_eq!(outcome.changes.signatures_removed, 1);
    assert_eq!(outcome.generation, 3);
    assert!(!dir.join("artifacts").join(&gone).exists());
    assert!(!dir.join(format!("artifacts/{gone}.minisig")).exists());
    assert!(dir.join("artifacts").join(&kept).exists());
    let state: State =
        serde_json::from_slice(&fs::read(dir.join(".mirror-sync/state.json")).unwrap()).unwrap();
    assert_eq!(
        state,
        State {
            generation: 3,
            missing: BTreeMap::new()
        }
    );
}

#[test]
fn the_generation_survives_a_lost_index() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    for g in 1..=2 {
        let mut tree = Tree::open(dir).unwrap();
        tree.prepare().unwrap();
        tree.sync_bin(&bin("app", g, &sha_of(b"abc"), T0)).unwrap();
        assert_eq!(tree.finish(vec!["app".into()], T0).unwrap().generation, g);
    }
    fs::write(dir.join(INDEX_FILE), b"{not json").unwrap();
    let tree = Tree::open(dir).unwrap();
    let outcome = tree.finish(vec!["app".into()], T0).unwrap();
    assert_eq!((outcome.generation, outcome.changed), (3, true));
    assert_eq!(index(dir).generation, 3);
}

use super::*;

fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// An archive of `files` (path, bytes) after a manifest listing `listed`.
fn archive(listed: &[(&str, &[u8])], files: &[(&str, &[u8])]) -> Vec<u8> {
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        created_at: "2026-12-03T00:00:00Z".into(),
        manager_version: "0.1.0".into(),
        schema_version: 1,
        files: listed
            .iter()
            .map(|(path, bytes)| FileEntry {
                path: (*path).into(),
                size: bytes.len() as u64,
                sha256: sha(bytes),
            })
            .collect(),
    };
    let text = serde_json::to_vec(&manifest).unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut append = |path: &str, bytes: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        builder.append_data(&mut h, path, bytes).unwrap();
    };
    append(MANIFEST, &text);
    for (path, bytes) in files {
        append(path, bytes);
    }
    builder.into_inner().unwrap()
}

fn check(bytes: &[u8]) -> Result<Manifest, ArchiveError> {
    read_archive(bytes, |_| Ok(None))
}

const DB: &[u8] = b"database bytes";
const ART: &[u8] = b"artifact bytes";

fn art_path() -> String {
    format!("artifacts/{}", sha(ART))
}

#[test]
fn a_sound_archive_passes_and_lists_its_files() {
    let art = art_path();
    let files = [(DATABASE, DB), (art.as_str(), ART)];
    let m = check(&archive(&files, &files)).unwrap();
    assert_eq!(m.files.len(), 2);
}

#[test]
fn altered_missing_extra_or_misnamed_files_are_refused() {
    let art = art_path();
    let files = [(DATABASE, DB), (art.as_str(), ART)];
    let altered = [(DATABASE, DB), (art.as_str(), &b"artifact bytez"[..])];
    assert!(matches!(
        check(&archive(&files, &altered)),
        Err(ArchiveError::Mismatch { .. })
    ));
    let missing = [(DATABASE, DB)];
    let e = check(&archive(&files, &missing)).unwrap_err();
    assert!(e.to_string().contains("not in the archive"), "{e}");
    let extra = [(DATABASE, DB), (art.as_str(), ART), (DATABASE, DB)];
    assert!(check(&archive(&files, &extra)).is_err(), "a file twice");
    let sneaky = [(DATABASE, DB), ("../etc/passwd", ART)];
    assert!(
        check(&archive(&sneaky, &files[..1])).is_err(),
        "a path outside"
    );
    let wrong_name = format!("artifacts/{}", sha(DB));
    let misnamed = [(DATABASE, DB), (wrong_name.as_str(), ART)];
    assert!(check(&archive(&misnamed, &misnamed)).is_err());
    let no_db = [(art.as_str(), ART)];
    assert!(check(&archive(&no_db, &no_db)).is_err());
    assert!(check(b"").is_err(), "empty");
    assert!(check(&[0u8; 4096]).is_err(), "zeros only");
}

#[test]
fn only_the_database_and_hash_named_artifacts_are_allowed_paths() {
    assert!(allowed_path(DATABASE));
    assert!(allowed_path(&art_path()));
    for bad in [
        "artifacts/",
        "artifacts/../manager.redb",
        "/manager.redb",
        "admin.token",
        &format!("artifacts/{}", sha(ART).to_uppercase()),
    ] {
        assert!(!allowed_path(bad), "{bad}");
    }
}

//! The choice of ways and their order, the checks of what the manager
//! offers, and patches and zst files made into the artifact (or refused)
//! on disk. The patches and zst files here are made by binproxy-delta's
//! `build` feature, as the manager makes them.

use super::*;
use binproxy_protocol::hex;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, Write};

pub(crate) fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `data` as the manager's zst form (one zstd frame, level 3 here).
pub(crate) fn zstd_raw(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    binproxy_delta::zst::compress(data, &mut out, 3).unwrap();
    out
}

/// The patch the manager makes from `old` to `new` (binproxy-delta's
/// `build`, a dev-dependency only: the agent itself carries no encoder).
pub(crate) fn patch(old: &[u8], new: &[u8]) -> Vec<u8> {
    let file = |bytes: &[u8]| {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    };
    let opts = binproxy_delta::BuildOptions {
        level: 3,
        deadline: None,
        tmp_dir: std::env::temp_dir(),
    };
    let mut out = tempfile::tempfile().unwrap();
    binproxy_delta::build(&file(old), &file(new), &mut out, &opts).unwrap();
    let mut bytes = Vec::new();
    out.seek(std::io::SeekFrom::Start(0)).unwrap();
    out.read_to_end(&mut bytes).unwrap();
    bytes
}

/// A build of `len` bytes; `version` changes a few places of it.
pub(crate) fn build(len: usize, version: u8) -> Vec<u8> {
    let mut b: Vec<u8> = (0..len)
        .map(|i| u8::try_from(i * 7 % 251).unwrap())
        .collect();
    for at in [len / 7, len / 3, len / 2] {
        b[at] = version;
    }
    b
}

fn target(new: &[u8], deltas: &[(&[u8], &[u8])], zst: bool) -> Target {
    Target {
        bin_name: "svc".into(),
        version: "2".into(),
        sha256sum: sha(new),
        size: new.len() as u64,
        url: "/dl".into(),
        deltas: deltas
            .iter()
            .map(|(from, p)| Delta {
                from: sha(from),
                sha256: sha(p),
                size: p.len() as u64,
                url: format!("/api/v1/download/{}", sha(p)),
            })
            .collect(),
        zst: zst.then(|| Packed {
            sha256: "ab".repeat(32),
            size: 10,
            url: "/z".into(),
        }),
        ..Target::default()
    }
}

fn live() -> Base {
    Base {
        path: "/srv/svc".into(),
        kept: false,
    }
}

#[test]
fn a_patch_from_a_build_here_first_then_zst_and_the_artifact_last() {
    let (v1, v2, v3) = (build(1000, 1), build(1000, 2), build(1000, 3));
    let (p1, p2) = (patch(&v1, &v3), patch(&v2, &v3));
    // Newest base first, as the manager lists them; this host has v1 only.
    let t = target(&v3, &[(&v2, &p2), (&v1, &p1)], true);
    let has_v1 = |s: &str| (s == sha(&v1)).then(live);
    let p = plan(&t, false, has_v1);
    assert_eq!(p.no_delta, None);
    assert_eq!(p.ways.len(), 2, "{p:?}");
    assert!(matches!(&p.ways[0], Way::Delta { delta, .. } if delta.from == sha(&v1)));
    assert_eq!(p.ways[1], Way::Zst(t.zst.as_ref().unwrap()));
    assert_eq!(
        p.ways.iter().map(Way::method).collect::<Vec<_>>(),
        [Method::Delta, Method::Zst]
    );
    // Both bases here: the first listed wins.
    let p = plan(&t, false, |_| Some(live()));
    assert!(matches!(&p.ways[0], Way::Delta { delta, .. } if delta.from == sha(&v2)));
}

#[test]
fn no_base_says_so_and_nothing_offered_is_the_artifact_alone() {
    let (v1, v3) = (build(1000, 1), build(1000, 3));
    let p1 = patch(&v1, &v3);
    let t = target(&v3, &[(&v1, &p1)], true);
    let p = plan(&t, false, |_| None);
    assert_eq!(p.ways, [Way::Zst(t.zst.as_ref().unwrap())]);
    let why = p.no_delta.unwrap();
    assert!(why.contains("none of the 1 build(s)"), "{why}");
    let bare = target(&v3, &[], false);
    let p = plan(&bare, false, |_| Some(live()));
    assert_eq!((p.ways.len(), p.no_delta), (0, None));
    // Staged already: nothing but the check of the `.part` file.
    let mut asked = false;
    let p = plan(&t, true, |_| {
        asked = true;
        Some(live())
    });
    assert!(
        p.ways.is_empty() && !asked,
        "a staged artifact looks for no base"
    );
}

#[test]
fn malformed_offers_are_dropped_and_the_rest_lowered() {
    let mut t = target(b"x", &[], true);
    let good = Delta {
        from: "AB".repeat(32),
        sha256: "CD".repeat(32),
        size: 1,
        url: "/p".into(),
    };
    let escape = Delta {
        from: "../../../etc/passwd".into(),
        ..good.clone()
    };
    t.deltas = vec![escape, good];
    t.zst.as_mut().unwrap().sha256 = "zz".into();
    check_offers(&mut t);
    assert_eq!(t.deltas.len(), 1);
    assert_eq!(
        (t.deltas[0].from.as_str(), t.deltas[0].sha256.as_str()),
        ("ab".repeat(32).as_str(), "cd".repeat(32).as_str())
    );
    assert_eq!(t.zst, None);
}

#[test]
fn sizes_read_as_a_person_reads_them() {
    assert_eq!(human(999), "999 B");
    assert_eq!(human(412_345), "412 KB");
    assert_eq!(human(5_234_567), "5.2 MB");
    assert_eq!(human(3_000_000_000), "3.00 GB");
}

/// A directory for a live file and its temp files, removed when dropped.
pub(crate) struct Dir(pub PathBuf);

impl Dir {
    pub(crate) fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("bp-delivery-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    /// Files beside the live one, by name.
    pub(crate) fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_patch_makes_the_artifact_into_its_part_file() {
    let dir = Dir::new("apply");
    let live = dir.0.join("svc");
    let (v1, v2) = (build(300_000, 1), build(310_000, 2));
    fs::write(&live, &v1).unwrap();
    let p = dir.0.join("p");
    fs::write(&p, patch(&v1, &v2)).unwrap();
    let t = target(&v2, &[], false);
    let base = Base {
        path: live.clone(),
        kept: false,
    };
    let made = apply_patch(&base, &p, &t, None, &live).unwrap();
    assert_eq!(made, fetch::part_path(&live, &t.sha256sum));
    assert!(fs::read(&made).unwrap() == v2, "other bytes");
    assert!(!fetch::new_path(&live, &t.sha256sum).exists());
}

#[test]
fn a_bad_patch_or_wrong_result_leaves_nothing_behind() {
    let dir = Dir::new("bad");
    let live = dir.0.join("svc");
    let (v1, v2) = (build(300_000, 1), build(300_000, 2));
    fs::write(&live, &v1).unwrap();
    let base = Base {
        path: live.clone(),
        kept: false,
    };
    let t = target(&v2, &[], false);
    let p = dir.0.join("p");
    let mut cases = Vec::new();
    // Damaged in the middle of a stream, cut short, from another base, and
    // well-formed but making other bytes.
    let mut damaged = patch(&v1, &v2);
    damaged[60] ^= 0xff;
    cases.push((damaged, "corrupt patch"));
    let whole = patch(&v1, &v2);
    cases.push((whole[..whole.len() - 9].to_vec(), "corrupt patch"));
    cases.push((patch(&v1[1..], &v2), "patch is for a base of"));
    cases.push((patch(&v1, &build(300_000, 3)), "the result was rejected"));
    for (bytes, want) in cases {
        fs::write(&p, bytes).unwrap();
        let e = apply_patch(&base, &p, &t, None, &live).unwrap_err();
        assert!(
            matches!(e, Error::Unpack { .. }) && e.to_string().contains(want),
            "{want}: {e}"
        );
        assert_eq!(dir.listing(), ["p", "svc"], "{want}");
    }
}

#[test]
fn a_zst_form_is_decompressed_and_checked() {
    let dir = Dir::new("zst");
    let live = dir.0.join("svc");
    let v2 = build(200_000, 2);
    let t = target(&v2, &[], false);
    let z = dir.0.join("z");
    fs::write(&z, zstd_raw(&v2)).unwrap();
    let made = unpack_zst(&z, &t, None, &live).unwrap();
    assert!(fs::read(&made).unwrap() == v2, "other bytes");
    fs::remove_file(&made).unwrap();
    fs::write(&z, zstd_raw(&v2[1..])).unwrap();
    let e = unpack_zst(&z, &t, None, &live).unwrap_err().to_string();
    assert!(e.contains("makes 199999 bytes"), "{e}");
    fs::write(&z, b"not zstd").unwrap();
    let e = unpack_zst(&z, &t, None, &live).unwrap_err().to_string();
    assert!(e.contains("corrupt"), "{e}");
    assert_eq!(dir.listing(), ["z"]);
}

//! The ways of getting a target's bytes, tried in order against a loopback
//! HTTP server: a patch from a build here is all that is downloaded when it
//! works; a damaged patch falls back to the zst form, a zst form that makes
//! other bytes to the artifact; a kept copy is a base only for the hash it
//! really has; and when everything fails, the artifact's error decides and
//! every failure is said.

use super::*;
use crate::cycle::tests::Node;
use crate::delivery::tests::{build, patch, sha, zstd_raw};
use crate::fetch::tests::{respond, serve_from, Server};
use binproxy_protocol::{Delta, Packed};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

/// What the server holds, by path.
fn serve(files: BTreeMap<String, Vec<u8>>) -> Server {
    Server::start(move |path, offset| match files.get(path) {
        Some(bytes) => serve_from(bytes, offset),
        None => respond("404 Not Found", "", 0, b""),
    })
}

/// A target for `new` offering a patch `delta` from `from` and the zst
/// form `packed`, at the paths [`files`] serves them.
fn target(new: &[u8], from: &[u8], delta: &[u8], packed: &[u8]) -> Target {
    Target {
        bin_name: "svc".into(),
        version: "2".into(),
        sha256sum: sha(new),
        size: new.len() as u64,
        url: "/full".into(),
        deltas: vec![Delta {
            from: sha(from),
            sha256: sha(delta),
            size: delta.len() as u64,
            url: "/patch".into(),
        }],
        zst: Some(Packed {
            sha256: sha(packed),
            size: packed.len() as u64,
            url: "/zst".into(),
        }),
        ..Target::default()
    }
}

fn files(full: &[u8], delta: &[u8], packed: &[u8]) -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        ("/full".to_owned(), full.to_vec()),
        ("/patch".to_owned(), delta.to_vec()),
        ("/zst".to_owned(), packed.to_vec()),
    ])
}

/// Runs [`Agent::obtain`] on a node whose manager is `server`.
fn obtain(
    n: &mut Node,
    server: &Server,
    t: &Target,
    local: Option<&str>,
) -> Result<Obtained, Box<NotObtained>> {
    n.config.manager_url.clone_from(&server.base);
    let stop = AtomicBool::new(false);
    let mut agent = Agent::new(&n.config, &stop).unwrap();
    let bin = n.config.bins[0].clone();
    agent.obtain(&bin, t, local, &TargetFrom::Manager, None)
}

fn asked(server: &Server) -> Vec<String> {
    server.seen().into_iter().map(|s| s.path).collect()
}

/// The files beside the live one.
fn beside(n: &Node) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(n.dir.join("bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_patch_from_the_live_file_is_all_that_is_downloaded() {
    let mut n = Node::new("obtain-delta", true);
    let (v1, v2) = (build(1 << 20, 1), build(1 << 20, 2));
    fs::write(n.live(), &v1).unwrap();
    let (delta, packed) = (patch(&v1, &v2), zstd_raw(&v2));
    let server = serve(files(&v2, &delta, &packed));
    let t = target(&v2, &v1, &delta, &packed);
    let got =
        obtain(&mut n, &server, &t, Some(&sha(&v1))).unwrap_or_else(|e| panic!("{}", e.message()));
    let d = got.delivery.unwrap();
    assert_eq!(
        (d.method, d.bytes, d.size),
        (Method::Delta, delta.len() as u64, v2.len() as u64)
    );
    assert!(d.fallbacks.is_empty(), "{d:?}");
    assert_eq!(asked(&server), ["/patch"]);
    assert!(fs::read(&got.fetched.path).unwrap() == v2, "other bytes");
    // The patch is spent: only the live file and the staged artifact stay.
    let part = got
        .fetched
        .path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(beside(&n), [part, "svc".to_owned()]);
}

#[test]
fn a_damaged_patch_falls_back_to_zst_and_a_wrong_zst_to_the_artifact() {
    let mut n = Node::new("obtain-fallback", true);
    let (v1, v2) = (build(1 << 20, 1), build(1 << 20, 2));
    fs::write(n.live(), &v1).unwrap();
    let (delta, packed) = (patch(&v1, &v2), zstd_raw(&v2));
    let mut hosted = files(&v2, &delta, &packed);
    // A damaged patch: not the bytes announced.
    hosted.get_mut("/patch").unwrap()[100] ^= 1;
    // The zst form of another build, announced as it is: it downloads, and
    // what it makes is refused.
    let other = zstd_raw(&build(1 << 20, 3));
    hosted.insert("/zst".into(), other.clone());
    let server = serve(hosted);
    let mut t = target(&v2, &v1, &delta, &packed);
    t.zst.as_mut().unwrap().sha256 = sha(&other);
    let got =
        obtain(&mut n, &server, &t, Some(&sha(&v1))).unwrap_or_else(|e| panic!("{}", e.message()));
    assert_eq!(
        asked(&server),
        ["/patch", "/zst", "/full"],
        "the order of the ways"
    );
    let d = got.delivery.unwrap();
    assert_eq!(d.method, Method::Full);
    assert_eq!(
        d.bytes,
        (delta.len() + other.len() + v2.len()) as u64,
        "every attempt counts"
    );
    assert_eq!(d.fallbacks.len(), 2, "{d:?}");
    assert!(
        d.fallbacks[0].starts_with("delta failed (") && d.fallbacks[0].contains("does not match"),
        "{d:?}"
    );
    assert!(
        d.fallbacks[1].starts_with("zst failed (the result was rejected"),
        "{d:?}"
    );
    assert!(fs::read(&got.fetched.path).unwrap() == v2, "other bytes");
    assert_eq!(beside(&n).len(), 2, "{:?}", beside(&n));
}

#[test]
fn a_kept_copy_is_a_base_only_for_the_hash_it_has() {
    let mut n = Node::new("obtain-kept", true);
    let (v0, v1, v2) = (build(1 << 20, 0), build(1 << 20, 1), build(1 << 20, 2));
    fs::write(n.live(), &v0).unwrap();
    let kept = crate::swap::kept_path(&n.config.state_dir, "svc", &sha(&v1));
    fs::create_dir_all(kept.parent().unwrap()).unwrap();
    fs::write(&kept, &v1).unwrap();
    let (delta, packed) = (patch(&v1, &v2), zstd_raw(&v2));
    let server = serve(files(&v2, &delta, &packed));
    let t = target(&v2, &v1, &delta, &packed);
    let got =
        obtain(&mut n, &server, &t, Some(&sha(&v0))).unwrap_or_else(|e| panic!("{}", e.message()));
    assert_eq!(got.delivery.unwrap().method, Method::Delta);
    assert!(fs::read(&got.fetched.path).unwrap() == v2, "other bytes");
    fs::remove_file(&got.fetched.path).unwrap();

    // The same name over other bytes is no base: the zst form it is.
    fs::write(&kept, &v0).unwrap();
    let server = serve(files(&v2, &delta, &packed));
    let got =
        obtain(&mut n, &server, &t, Some(&sha(&v0))).unwrap_or_else(|e| panic!("{}", e.message()));
    let d = got.delivery.unwrap();
    assert_eq!(asked(&server), ["/zst"]);
    assert_eq!(d.method, Method::Zst);
    assert!(d.fallbacks[0].starts_with("no delta"), "{d:?}");
    assert!(fs::read(&got.fetched.path).unwrap() == v2, "other bytes");
}

#[test]
fn when_every_way_fails_each_is_said_and_the_artifact_decides() {
    let mut n = Node::new("obtain-none", true);
    let (v1, v2) = (build(100_000, 1), build(100_000, 2));
    fs::write(n.live(), &v1).unwrap();
    let (delta, packed) = (patch(&v1, &v2), zstd_raw(&v2));
    let server = serve(BTreeMap::new());
    let t = target(&v2, &v1, &delta, &packed);
    let Err(not) = obtain(&mut n, &server, &t, Some(&sha(&v1))) else {
        panic!("nothing was served");
    };
    assert_eq!(asked(&server), ["/patch", "/zst", "/full"]);
    assert_eq!((not.delivery.method, not.delivery.bytes), (Method::Full, 0));
    let m = not.message();
    assert!(
        m.starts_with("delta failed (") && m.contains("; zst failed ("),
        "{m}"
    );
    assert!(m.contains("/full: 404"), "{m}");
    assert!(!not.error.is_transient(), "{m}");
    assert_eq!(beside(&n), ["svc"]);
}

//! Round trips of made patches, and patches that are wrong in every way a
//! mirror or a disk could make them wrong.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use proptest::prelude::*;

use crate::{apply, build, BuildOptions, DeltaError, HEADER_LEN};

fn file(bytes: &[u8]) -> File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f
}

fn make(old: &[u8], new: &[u8]) -> File {
    let opts = BuildOptions {
        level: 3,
        deadline: None,
        tmp_dir: std::env::temp_dir(),
    };
    let mut patch = tempfile::tempfile().unwrap();
    let stats = build(&file(old), &file(new), &mut patch, &opts).unwrap();
    assert_eq!(stats.patch_len, patch.metadata().unwrap().len());
    patch
}

fn run(old: &[u8], patch: &File, expected: u64) -> Result<Vec<u8>, DeltaError> {
    let mut out = Vec::new();
    let n = apply(&file(old), patch, &mut out, expected)?;
    assert_eq!(n, out.len() as u64);
    Ok(out)
}

/// A build-like pair: the new one moves, inserts and changes bytes of the old.
fn pair(seed: u64, len: usize) -> (Vec<u8>, Vec<u8>) {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    #[allow(clippy::cast_possible_truncation)]
    let old: Vec<u8> = (0..len)
        .map(|i| {
            if i % 7 == 0 {
                next() as u8
            } else {
                (i / 64) as u8
            }
        })
        .collect();
    let mut new = old.clone();
    for _ in 0..20 {
        if new.is_empty() {
            break;
        }
        #[allow(clippy::cast_possible_truncation)]
        let at = (next() as usize) % new.len();
        #[allow(clippy::cast_possible_truncation)]
        match next() % 3 {
            0 => new.insert(at, next() as u8),
            1 => new[at] = new[at].wrapping_add(4),
            _ => {
                new.remove(at);
            }
        }
    }
    (old, new)
}

#[test]
fn a_patch_makes_the_new_build_and_is_small() {
    let (old, new) = pair(7, 200_000);
    let patch = make(&old, &new);
    assert_eq!(run(&old, &patch, new.len() as u64).unwrap(), new);
    let len = patch.metadata().unwrap().len();
    assert!(len < 5_000, "a few changes make a small patch: {len}");
}

#[test]
fn edge_cases_round_trip() {
    for (old, new) in [
        (&b""[..], &b""[..]),
        (b"", b"all new"),
        (b"all gone", b""),
        (b"same", b"same"),
        (b"abc", b"xyz completely different and longer"),
    ] {
        let patch = make(old, new);
        assert_eq!(run(old, &patch, new.len() as u64).unwrap(), new);
    }
}

#[test]
fn another_base_or_size_is_refused() {
    let (old, new) = pair(3, 10_000);
    let patch = make(&old, &new);
    let err = run(&old[1..], &patch, new.len() as u64).unwrap_err();
    assert!(matches!(err, DeltaError::WrongBase { .. }), "{err}");
    let err = run(&old, &patch, new.len() as u64 + 1).unwrap_err();
    assert!(matches!(err, DeltaError::WrongSize { .. }), "{err}");
}

#[test]
fn a_cut_patch_is_corrupt() {
    let (old, new) = pair(5, 50_000);
    let patch = make(&old, &new);
    let len = patch.metadata().unwrap().len();
    for cut in [0, 10, HEADER_LEN, len - 1] {
        let mut bytes = std::fs::read(format!("/proc/self/fd/{}", fd(&patch))).unwrap();
        bytes.truncate(usize::try_from(cut).unwrap());
        let err = run(&old, &file(&bytes), new.len() as u64).unwrap_err();
        assert!(matches!(err, DeltaError::Corrupt(_)), "cut at {cut}: {err}");
    }
}

fn fd(f: &File) -> i32 {
    use std::os::fd::AsRawFd;
    f.as_raw_fd()
}

#[test]
fn a_deadline_in_the_past_stops_the_build() {
    let (old, new) = pair(9, 2_000_000);
    let opts = BuildOptions {
        level: 1,
        deadline: Some(std::time::Instant::now()),
        tmp_dir: std::env::temp_dir(),
    };
    let err = build(
        &file(&old),
        &file(&new),
        &mut tempfile::tempfile().unwrap(),
        &opts,
    )
    .unwrap_err();
    assert!(matches!(err, DeltaError::TooSlow), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_pair_round_trips(seed in any::<u64>(), len in 0usize..20_000) {
        let (old, new) = pair(seed, len);
        let patch = make(&old, &new);
        prop_assert_eq!(run(&old, &patch, new.len() as u64).unwrap(), new);
    }

    /// Flipped bytes anywhere: an error or some output of the right size
    /// (the caller's sha256 refuses it), never a panic or more output.
    #[test]
    fn a_damaged_patch_never_panics(seed in any::<u64>(), flips in proptest::collection::vec((any::<usize>(), 1u8..), 1..6)) {
        let (old, new) = pair(seed, 5_000);
        let patch = make(&old, &new);
        let mut bytes = std::fs::read(format!("/proc/self/fd/{}", fd(&patch))).unwrap();
        for (at, x) in flips {
            let i = at % bytes.len();
            bytes[i] ^= x;
        }
        if let Ok(out) = run(&old, &file(&bytes), new.len() as u64) {
            prop_assert_eq!(out.len(), new.len());
        }
    }
}

//! Unit tests of `tls init`/`renew`'s checks and all-or-nothing writes.

use super::*;
use std::fs;

#[test]
fn host_lists_take_names_and_addresses() {
    let hosts = parse_hosts("Manager.example, 10.0.0.5,::1,[fe80::1],localhost").unwrap();
    assert_eq!(
        hosts,
        vec![
            Host::Dns("manager.example".into()),
            Host::Ip("10.0.0.5".parse().unwrap()),
            Host::Ip("::1".parse().unwrap()),
            Host::Ip("fe80::1".parse().unwrap()),
            Host::Dns("localhost".into()),
        ]
    );
}

#[test]
fn bad_host_lists_are_usage_errors() {
    for bad in [
        "",
        "a,,b",
        "a,a",
        "bad name",
        "300.1.1.1",
        "1.2.3",
        "*.example",
        "a.",
        "-a.example",
        "a/b",
    ] {
        let e = parse_hosts(bad).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
    }
    let many = (0..=MAX_HOSTS).map(|i| format!("h{i}")).collect::<Vec<_>>();
    assert_eq!(parse_hosts(&many.join(",")).unwrap_err().exit_code(), 2);
}

#[test]
fn days_out_of_range_are_usage_errors() {
    assert!(check_days(1).is_ok() && check_days(MAX_DAYS).is_ok());
    for bad in [0, MAX_DAYS + 1] {
        assert_eq!(check_days(bad).unwrap_err().exit_code(), 2);
    }
}

#[test]
fn a_refused_write_removes_the_files_written_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (first, second, taken) = (dir.join("a"), dir.join("b"), dir.join("c"));
    fs::write(&taken, b"already here").unwrap();
    let err = write_all_new(&[
        (&first, b"1", 0o600),
        (&second, b"2", 0o644),
        (&taken, b"3", 0o600),
    ])
    .unwrap_err();
    assert!(matches!(&err, PkiError::Exists(p) if *p == taken), "{err}");
    assert!(!first.exists() && !second.exists(), "written files removed");
    assert_eq!(fs::read(&taken).unwrap(), b"already here");
    let leftovers: Vec<_> = fs::read_dir(dir).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temp file left: {leftovers:?}");
}

//! `install.sh`: each mode's files and modes, twice the same tree, an
//! operator's config and token kept, uninstall and purge, bad arguments and
//! binaries refused; `build-static.sh` refuses unknown arguments.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use binproxy_tests::packaging::{packaging, read, run, text, write};
use binproxy_tests::{binproxy_bin, sha256_hex, TempDir};

// ---------------------------------------------------------------------------
// install.sh

fn install(root: &Path, args: &[&str]) -> Output {
    run(Command::new(packaging().join("install.sh"))
        .args(args)
        .arg("--root")
        .arg(root))
}

fn install_ok(root: &Path, args: &[&str]) -> String {
    let out = install(root, args);
    assert!(
        out.status.success(),
        "install.sh {args:?}: {}\n{}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Every path under `root` with its permission bits, and for files their
/// sha256 and mtime (an idempotent run rewrites nothing).
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for rel in binproxy_tests::list_tree(root) {
        let path = root.join(&rel);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let what = if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            format!("{mode:o} file {} {}", sha256_hex(&bytes), meta.mtime_nsec())
        } else {
            format!("{mode:o} {:?}", meta.file_type())
        };
        out.insert(rel.display().to_string(), what);
    }
    out
}

/// Files (not directories) under `root` with their permission bits.
fn files(root: &Path) -> BTreeMap<String, u32> {
    binproxy_tests::list_tree(root)
        .into_iter()
        .filter(|rel| root.join(rel).is_file())
        .map(|rel| {
            let mode = std::fs::metadata(root.join(&rel))
                .unwrap()
                .permissions()
                .mode();
            (rel.display().to_string(), mode & 0o7777)
        })
        .collect()
}

fn expected_files(mode: &str) -> BTreeMap<String, u32> {
    let mut want = BTreeMap::from([
        ("usr/local/bin/binproxy".to_owned(), 0o755),
        ("etc/binproxy/agent.json".to_owned(), 0o644),
    ]);
    let extra: &[&str] = match mode {
        "timer" => &[
            "etc/systemd/system/binproxy.service",
            "etc/systemd/system/binproxy.timer",
        ],
        "daemon" => &["etc/systemd/system/binproxy-daemon.service"],
        _ => &["etc/cron.d/binproxy"],
    };
    for f in extra {
        want.insert((*f).to_owned(), 0o644);
    }
    want
}

fn source_of(installed: &str) -> Option<PathBuf> {
    let name = installed.rsplit('/').next()?;
    if installed.starts_with("etc/systemd/system/") {
        Some(packaging().join("systemd").join(name))
    } else if installed.starts_with("etc/cron.d/") {
        Some(packaging().join("cron.d").join(name))
    } else {
        None
    }
}

#[test]
fn each_mode_installs_its_files_with_their_modes() {
    let manager = "https://manager.internal:38012";
    for mode in ["timer", "daemon", "cron"] {
        let tmp = TempDir::new("pkg-install");
        let bin = binproxy_bin();
        let bin = bin.to_str().unwrap();
        install_ok(
            tmp.path(),
            &["--mode", mode, "--binary", bin, "--manager", manager],
        );
        assert_eq!(files(tmp.path()), expected_files(mode), "{mode}");
        let state = std::fs::metadata(tmp.join("var/lib/binproxy")).unwrap();
        assert_eq!(state.permissions().mode() & 0o7777, 0o700, "{mode}");
        for rel in expected_files(mode).keys() {
            if let Some(src) = source_of(rel) {
                assert_eq!(read(&tmp.path().join(rel)), read(&src), "{mode}: {rel}");
            }
        }
        let installed = std::fs::read(tmp.join("usr/local/bin/binproxy")).unwrap();
        assert_eq!(installed, std::fs::read(bin).unwrap(), "{mode}");
        let config = binproxy::config::load(&tmp.join("etc/binproxy/agent.json")).unwrap();
        assert_eq!(config.manager_url, manager, "{mode}");
    }
}

#[test]
fn installing_twice_gives_the_same_tree_and_switching_mode_removes_the_old_one() {
    let tmp = TempDir::new("pkg-twice");
    let bin = binproxy_bin();
    let args = ["--mode", "timer", "--binary", bin.to_str().unwrap()];
    install_ok(tmp.path(), &args);
    let first = snapshot(tmp.path());
    let again = install_ok(tmp.path(), &args);
    assert_eq!(snapshot(tmp.path()), first);
    assert!(
        !again.contains("installed /"),
        "second run rewrote: {again}"
    );
    // The binary is optional once installed; another mode replaces the first.
    install_ok(tmp.path(), &["--mode", "cron"]);
    assert_eq!(files(tmp.path()), expected_files("cron"));
    install_ok(tmp.path(), &["--mode", "daemon"]);
    assert_eq!(files(tmp.path()), expected_files("daemon"));
}

#[test]
fn an_existing_config_and_token_are_kept() {
    let tmp = TempDir::new("pkg-keep");
    let config = tmp.join("etc/binproxy/agent.json");
    let token = tmp.join("etc/binproxy/enroll.token");
    let mine = "{\"operator\": \"wrote this\"}\n";
    write(&config, mine);
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    write(&token, "old-token\n");
    let new_token = tmp.join("new.token");
    write(&new_token, "new-token\n");
    let bin = binproxy_bin();
    let out = install_ok(
        tmp.path(),
        &[
            "--mode",
            "timer",
            "--binary",
            bin.to_str().unwrap(),
            "--manager",
            "http://10.0.0.9:38012",
            "--enroll-token",
            new_token.to_str().unwrap(),
        ],
    );
    assert_eq!(read(&config), mine);
    let mode = std::fs::metadata(&config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(read(&token), "old-token\n");
    assert!(out.contains("kept"), "{out}");
}

#[test]
fn the_enroll_token_is_installed_private() {
    let tmp = TempDir::new("pkg-token");
    let src = tmp.join("enroll.token");
    write(&src, &"e".repeat(64));
    let root = tmp.join("root");
    std::fs::create_dir(&root).unwrap();
    let bin = binproxy_bin();
    let args = [
        "--mode",
        "cron",
        "--binary",
        bin.to_str().unwrap(),
        "--enroll-token",
        src.to_str().unwrap(),
    ];
    install_ok(&root, &args);
    let token = root.join("etc/binproxy/enroll.token");
    assert_eq!(read(&token), "e".repeat(64));
    let mode = std::fs::metadata(&token).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o600);
}

#[test]
fn uninstall_removes_the_agent_and_purge_its_config_and_state() {
    let tmp = TempDir::new("pkg-uninstall");
    let bin = binproxy_bin();
    install_ok(
        tmp.path(),
        &["--mode", "timer", "--binary", bin.to_str().unwrap()],
    );
    write(&tmp.join("var/lib/binproxy/state.json"), "{}");
    install_ok(tmp.path(), &["--uninstall"]);
    let left: Vec<String> = files(tmp.path()).into_keys().collect();
    assert_eq!(
        left,
        ["etc/binproxy/agent.json", "var/lib/binproxy/state.json"]
    );
    install_ok(tmp.path(), &["--uninstall"]);
    install_ok(tmp.path(), &["--uninstall", "--purge"]);
    assert!(files(tmp.path()).is_empty(), "{:?}", files(tmp.path()));
    assert!(!tmp.join("etc/binproxy").exists());
    assert!(!tmp.join("var/lib/binproxy").exists());
}

#[test]
fn bad_arguments_exit_2_with_the_usage_and_touch_nothing() {
    let tmp = TempDir::new("pkg-badargs");
    let bin = binproxy_bin();
    let bin = bin.to_str().unwrap();
    for args in [
        &[][..],
        &["--mode", "hourly", "--binary", bin],
        &["--mode"],
        &["--mode", "timer", "--colour", "red"],
        &["--mode", "timer", "--binary", bin, "--purge"],
        &["--uninstall", "--mode", "timer"],
        &["--mode", "timer", "--binary", bin, "--manager", "ftp://m"],
        &[
            "--mode",
            "timer",
            "--binary",
            bin,
            "--manager",
            "http://m\",\"x",
        ],
        // No --binary and none installed yet.
        &["--mode", "timer"],
    ] {
        let out = install(tmp.path(), args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("usage: install.sh"), "{args:?}: {stderr}");
        assert!(snapshot(tmp.path()).is_empty(), "{args:?} wrote files");
    }
}

#[test]
fn a_missing_or_foreign_binary_is_refused() {
    let tmp = TempDir::new("pkg-badbin");
    let not_binproxy = tmp.join("fake");
    write(&not_binproxy, "#!/bin/sh\necho something else 1.0\n");
    std::fs::set_permissions(&not_binproxy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.join("root");
    std::fs::create_dir(&root).unwrap();
    for bin in [tmp.join("missing"), not_binproxy] {
        let out = install(
            &root,
            &["--mode", "timer", "--binary", bin.to_str().unwrap()],
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(bin.to_str().unwrap()), "{stderr}");
        assert!(snapshot(&root).is_empty());
    }
}

#[test]
fn build_static_refuses_unknown_arguments() {
    let out = run(Command::new(packaging().join("build-static.sh")).arg("--fast"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("usage:"),
        "{}",
        text(&out.stderr)
    );
}

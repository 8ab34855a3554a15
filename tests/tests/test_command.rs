//! The README's test command, `tests/run.sh`, on the machine it runs on: with
//! every tool present it goes on to the tests, and run by a user who cannot
//! install anything, on a `PATH` without the tools, it names the exact
//! packages to install and runs no test.
//!
//! The second test runs the script as `nobody` through util-linux's
//! `setpriv`, so it needs root (CI runs as root) and says so without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use binproxy_tests::{output_within, TempDir};

const LIMIT: Duration = Duration::from_secs(60);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("run.sh")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn which(tool: &str) -> PathBuf {
    let found = Command::new("bash")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap();
    assert!(found.status.success(), "{tool} not found on PATH");
    PathBuf::from(text(&found.stdout).trim())
}

#[test]
fn every_test_need_is_present_here() {
    // The suite is running, so the script installed (or found) everything:
    // its check agrees, and a need the tests use but the script forgot would
    // fail the test that uses it.
    let out = output_within(Command::new("bash").arg(script()).arg("--check"), LIMIT);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("all present"), "{stdout}");
    assert!(
        !stdout.contains("cargo test"),
        "--check ran the tests: {stdout}"
    );
}

#[test]
fn without_root_it_names_what_to_install_and_runs_nothing() {
    let root = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        text(&root.stdout).trim(),
        "0",
        "this test runs tests/run.sh as nobody with setpriv, which needs root (CI runs as root)"
    );
    // A PATH with only what the script itself uses: no tool the tests need.
    let bin = TempDir::new("test-command-path");
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for tool in ["bash", "dirname", "id", "env"] {
        symlink(which(tool), bin.path().join(tool)).unwrap();
    }
    let out = output_within(
        Command::new(which("setpriv"))
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin.path().join("bash"))
            .arg(script())
            .env_clear()
            .env("PATH", bin.path()),
        LIMIT,
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    let apt = stderr
        .lines()
        .find(|l| l.contains("apt-get install -y"))
        .unwrap_or_else(|| panic!("no apt-get line: {stderr}"));
    for package in [
        "gcc",
        "minisign",
        "systemd",
        "dpkg",
        "binutils",
        "util-linux",
        "openssl",
        "nginx",
        "python3",
    ] {
        assert!(
            apt.split_whitespace().any(|w| w == package),
            "{package} missing from {apt:?}"
        );
    }
    assert!(
        stderr.contains("python3 -m pip install prometheus_client"),
        "{stderr}"
    );
    assert!(!stdout.contains("cargo test"), "ran the tests: {stdout}");
}

//! What the packaging tests (`tests/packaging/`) share: where `packaging/`
//! is, the agent's units, a tool that must be installed, bounded commands,
//! and reading and writing files with the path in the panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::{binproxy_bin, manager_bin, output_within};

pub const LIMIT: Duration = Duration::from_secs(120);

pub const AGENT_UNITS: [&str; 3] = [
    "binproxy.service",
    "binproxy.timer",
    "binproxy-daemon.service",
];

pub fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("packaging")
}

/// Fails (never skips) when `tool` is missing, naming the package to install.
pub fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()));
    assert!(
        found,
        "{tool} is not installed: `apt-get install {package}` (tests/run.sh does this)"
    );
}

pub fn run(cmd: &mut Command) -> Output {
    output_within(cmd, LIMIT)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub fn write(path: &Path, contents: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Copies `units` from `src` into `dir`, with every `from` path rewritten to
/// `dir/bin/` holding links to the real binaries, and runs `systemd-analyze
/// verify` on them. Any complaint on stderr counts as a failure: verify exits
/// 0 on an unknown key and only warns.
pub fn verify_units(src: &Path, units: &[&str], from: &str, dir: &Path) -> Result<(), String> {
    require("systemd-analyze", "systemd");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(binproxy_bin(), bin.join("binproxy")).unwrap();
    std::os::unix::fs::symlink(manager_bin(), bin.join("manager-lite")).unwrap();
    let mut paths = Vec::new();
    for unit in units {
        let rewritten = read(&src.join(unit)).replace(from, &format!("{}/", bin.display()));
        let path = dir.join(unit);
        write(&path, &rewritten);
        paths.push(path);
    }
    let out = run(Command::new("systemd-analyze").arg("verify").args(&paths));
    let stderr = text(&out.stderr);
    if out.status.success() && stderr.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("systemd-analyze verify: {}\n{stderr}", out.status))
    }
}

/// `key=value` lines of a unit file, in order, comments left out.
pub fn unit_settings(path: &Path) -> Vec<(String, String)> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

//! Finding (and building) the binaries under test. They are found next to
//! the test executable: `target/<profile>/deps/x` means
//! `target/<profile>/<name>`. They are (re)built once per test process with
//! `cargo build -p <pkg> --bin <name>` into that same target directory, so a
//! test never runs a stale server; `cargo test` releases its build-directory
//! lock before it runs test executables, so this does not deadlock. Setting
//! `BINPROXY_TEST_BIN_DIR` skips the build and takes the binaries from there.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// `target/<profile>` of the running test executable, and the arguments that
/// make `cargo build` write into it.
fn profile_dir_and_args() -> (PathBuf, Vec<OsString>) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("test exe has a directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile directory name")
        .to_string();
    let mut args: Vec<OsString> = Vec::new();
    match profile.as_str() {
        "debug" => {}
        "release" => args.push("--release".into()),
        other => {
            args.push("--profile".into());
            args.push(other.into());
        }
    }
    // target/<profile> or, when cross-compiling, target/<triple>/<profile>.
    let above = dir.parent().expect("target directory").to_path_buf();
    let target_dir = if above.join("CACHEDIR.TAG").exists() || above.parent().is_none() {
        above
    } else if above
        .parent()
        .is_some_and(|p| p.join("CACHEDIR.TAG").exists())
    {
        let triple = above.file_name().expect("triple").to_os_string();
        args.push("--target".into());
        args.push(triple);
        above.parent().expect("target directory").to_path_buf()
    } else {
        above
    };
    args.push("--target-dir".into());
    args.push(target_dir.into_os_string());
    (dir, args)
}

/// Builds `bin` of package `pkg` (once per process) and returns its path.
fn cargo_bin(pkg: &'static str, bin: &'static str, cell: &'static OnceLock<PathBuf>) -> PathBuf {
    cell.get_or_init(|| {
        if let Some(dir) = std::env::var_os("BINPROXY_TEST_BIN_DIR") {
            let path = PathBuf::from(dir).join(bin);
            assert!(
                path.is_file(),
                "BINPROXY_TEST_BIN_DIR has no {}",
                path.display()
            );
            return path;
        }
        let (dir, args) = profile_dir_and_args();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(&cargo);
        build
            .current_dir(&workspace)
            .args(["build", "--quiet", "-p", pkg, "--bin", bin])
            .args(&args)
            .stdin(Stdio::null());
        // cargo sets these for the test or program running now (CARGO_PKG_NAME
        // = binproxy-tests, ...). Passed on, ring's build script, which
        // watches them, sees them change and rebuilds ring, rustls, ureq and
        // the agent (20 s and more) on every switch between this nested
        // build and a plain `cargo build`.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if is_per_crate_cargo_var(&key) {
                build.env_remove(&*key);
            }
        }
        let out = build
            .output()
            .unwrap_or_else(|e| panic!("run {} build -p {pkg}: {e}", cargo.display()));
        assert!(
            out.status.success(),
            "cargo build -p {pkg} --bin {bin} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.join(bin);
        assert!(
            path.is_file(),
            "{} missing after cargo build",
            path.display()
        );
        path
    })
    .clone()
}

/// The variables cargo sets for one crate's build or run, as opposed to
/// settings for cargo itself (`CARGO_HOME`, `CARGO_TARGET_DIR`, ...).
fn is_per_crate_cargo_var(key: &str) -> bool {
    [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_BIN_",
        "CARGO_CRATE_",
    ]
    .iter()
    .any(|p| key.starts_with(p))
        || matches!(
            key,
            "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "CARGO_RUSTC_CURRENT_DIR"
        )
}

/// The `manager-lite` binary of this workspace, built if needed.
pub fn manager_bin() -> PathBuf {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    cargo_bin("manager-lite", "manager-lite", &CELL)
}

/// The `binproxy` binary of this workspace, built if needed.
pub fn binproxy_bin() -> PathBuf {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    cargo_bin("binproxy", "binproxy", &CELL)
}

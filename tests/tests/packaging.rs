//! The files under `packaging/` work with the real tools: every systemd unit
//! passes `systemd-analyze verify` (with its ExecStart pointed at the real
//! binaries of this workspace), the config skeleton is accepted by the agent,
//! `install.sh` installs each mode into a temp root with the expected files
//! and modes (twice gives the same tree, an operator's config is kept,
//! uninstall removes, bad arguments exit 2 with the usage), and
//! `deb/build-deb.sh` builds binproxy and manager-lite packages that
//! `dpkg-deb` reads back with the promised layout. The units'
//! `manager-lite serve` command line is run for real.
//!
//! A missing tool (`systemd-analyze`, `dpkg-deb`) fails the test with what to
//! install; nothing is skipped. `tests/run.sh` installs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use binproxy_tests::{
    binproxy_bin, manager_bin, output_within, sha256_hex, Manager, ManagerOptions, TempDir,
    TokenSource,
};

const LIMIT: Duration = Duration::from_secs(120);

const AGENT_UNITS: [&str; 3] = [
    "binproxy.service",
    "binproxy.timer",
    "binproxy-daemon.service",
];

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("packaging")
}

/// Fails (never skips) when `tool` is missing, naming the package to install.
fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()));
    assert!(
        found,
        "{tool} is not installed: `apt-get install {package}` (tests/run.sh does this)"
    );
}

fn run(cmd: &mut Command) -> Output {
    output_within(cmd, LIMIT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn write(path: &Path, contents: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------
// systemd units

/// Copies `units` from `src` into `dir`, with every `from` path rewritten to
/// `dir/bin/` holding links to the real binaries, and runs `systemd-analyze
/// verify` on them. Any complaint on stderr counts as a failure: verify exits
/// 0 on an unknown key and only warns.
fn verify_units(src: &Path, units: &[&str], from: &str, dir: &Path) -> Result<(), String> {
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

#[test]
fn every_unit_passes_systemd_analyze_verify() {
    let tmp = TempDir::new("pkg-verify");
    let mut units = AGENT_UNITS.to_vec();
    units.push("manager-lite.service");
    let result = verify_units(
        &packaging().join("systemd"),
        &units,
        "/usr/local/bin/",
        tmp.path(),
    );
    result.unwrap();
}

/// The check above can fail: a misspelt key, which verify reports only as a
/// warning, is caught.
#[test]
fn the_verify_check_catches_a_misspelt_key() {
    let tmp = TempDir::new("pkg-verify-bad");
    let src = tmp.join("src");
    let unit = read(&packaging().join("systemd/binproxy.service"))
        .replace("KillMode=process", "KillMod=process");
    write(&src.join("binproxy.service"), &unit);
    let err = verify_units(
        &src,
        &["binproxy.service"],
        "/usr/local/bin/",
        &tmp.join("out"),
    )
    .unwrap_err();
    assert!(err.contains("KillMod"), "{err}");
}

/// `key=value` lines of a unit file, in order, comments left out.
fn unit_settings(path: &Path) -> Vec<(String, String)> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn assert_settings(unit: &str, want: &[(&str, &str)]) {
    let got = unit_settings(&packaging().join("systemd").join(unit));
    for (key, value) in want {
        assert!(
            got.iter().any(|(k, v)| k == key && v == value),
            "{unit}: no {key}={value} in {got:?}"
        );
    }
}

#[test]
fn units_say_what_the_agent_and_the_manager_need() {
    let config = "--config /etc/binproxy/agent.json";
    assert_settings(
        "binproxy.service",
        &[
            ("Type", "oneshot"),
            (
                "ExecStart",
                &format!("/usr/local/bin/binproxy run {config}"),
            ),
        ],
    );
    assert_settings(
        "binproxy.timer",
        &[
            ("OnCalendar", "minutely"),
            ("RandomizedDelaySec", "10s"),
            ("Persistent", "true"),
        ],
    );
    assert_settings(
        "binproxy-daemon.service",
        &[
            (
                "ExecStart",
                &format!("/usr/local/bin/binproxy daemon {config} --interval 60s"),
            ),
            ("Restart", "on-failure"),
            ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ],
    );
    assert_settings(
        "manager-lite.service",
        &[
            ("DynamicUser", "yes"),
            ("StateDirectory", "manager-lite"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("PrivateDevices", "yes"),
            ("ProtectKernelTunables", "yes"),
            ("ProtectKernelModules", "yes"),
            ("ProtectKernelLogs", "yes"),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
            ("SystemCallFilter", "@system-service"),
            ("CapabilityBoundingSet", ""),
            ("EnvironmentFile", "-/etc/default/manager-lite"),
            (
                "LoadCredential",
                "admin.token:/etc/manager-lite/admin.token",
            ),
            (
                "LoadCredential",
                "enroll.token:/etc/manager-lite/enroll.token",
            ),
        ],
    );
}

#[test]
fn the_cron_file_runs_a_cycle_every_minute_as_root() {
    let cron = read(&packaging().join("cron.d/binproxy"));
    let job: Vec<&str> = cron
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains('='))
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(job.len(), 1, "{job:?}");
    assert!(
        job[0].starts_with(
            "* * * * * root /usr/local/bin/binproxy run --config /etc/binproxy/agent.json"
        ),
        "{job:?}"
    );
}

/// The unit's `ExecStart`, with `/etc/default/manager-lite`'s options, is a
/// command line the real `manager-lite serve` starts with (on a free loopback
/// port and a temp data dir instead of the real ones): the admin token handed
/// over as a credential file works, and node authentication is on.
#[test]
fn manager_unit_command_line_is_accepted_by_manager_lite() {
    let tmp = TempDir::new("pkg-manager-args");
    let exec = unit_settings(&packaging().join("systemd/manager-lite.service"))
        .into_iter()
        .find(|(k, _)| k == "ExecStart")
        .expect("ExecStart")
        .1;
    let creds = tmp.join("creds");
    let admin = "a".repeat(64);
    write(&creds.join("admin.token"), &admin);
    write(&creds.join("enroll.token"), &"e".repeat(64));
    let data = tmp.join("data");
    let default = read(&packaging().join("manager-lite.default"));
    let opts = default
        .lines()
        .find_map(|l| l.strip_prefix("MANAGER_LITE_OPTS="))
        .expect("MANAGER_LITE_OPTS in manager-lite.default")
        .trim_matches('"')
        .replace("127.0.0.1:38012", "127.0.0.1:0");
    let line = exec
        .replace("%d", &creds.display().to_string())
        .replace("/var/lib/manager-lite", &data.display().to_string())
        .replace("$MANAGER_LITE_OPTS", &opts);
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/manager-lite"));
    assert_eq!(words.next(), Some("serve"));
    let opts = ManagerOptions {
        args: words.map(str::to_owned).collect(),
        token: TokenSource::File {
            path: creds.join("admin.token"),
            token: admin,
        },
        ..ManagerOptions::default()
    };
    let m = Manager::start(&data, opts);
    m.admin_get("/api/v1/nodes").expect(200);
    let anonymous = m.keepalive("web-01", "x86_64", &[]);
    assert_eq!(anonymous.status, 401, "{anonymous}");
}

// ---------------------------------------------------------------------------
// Config skeleton

#[test]
fn the_config_skeleton_is_accepted_by_the_agent() {
    let skeleton = packaging().join("agent.json");
    binproxy::config::load(&skeleton).unwrap();
    // The real binary, with the state dir moved to a temp dir so a live
    // agent's state on this host is neither read nor created.
    let tmp = TempDir::new("pkg-skeleton");
    let mut value: serde_json::Value = serde_json::from_str(&read(&skeleton)).unwrap();
    value["state_dir"] = tmp.join("state").to_string_lossy().into();
    let copy = tmp.join("agent.json");
    write(&copy, &value.to_string());
    let out = run(Command::new(binproxy_bin())
        .args(["status", "--offline", "--config"])
        .arg(&copy));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("example"),
        "{}",
        text(&out.stdout)
    );
}

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

// ---------------------------------------------------------------------------
// Debian package

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let out = run(Command::new("dpkg-deb").args(args).arg(deb));
    assert!(
        out.status.success(),
        "dpkg-deb {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn build_deb(out_dir: &Path, extra: &[&str]) -> Output {
    run(Command::new(packaging().join("deb/build-deb.sh"))
        .arg("--binproxy")
        .arg(binproxy_bin())
        .args(["--version", "1.2.3", "--compress", "none", "--out"])
        .arg(out_dir)
        .args(extra))
}

/// `dpkg-deb -c` lines as (permissions owner, path).
fn deb_listing(deb: &Path) -> BTreeMap<String, String> {
    dpkg_deb(&["-c"], deb)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(5)?.to_string(), format!("{} {}", f[0], f[1])))
        })
        .collect()
}

#[test]
fn the_binproxy_deb_has_the_promised_layout() {
    require("dpkg-deb", "dpkg");
    let tmp = TempDir::new("pkg-deb");
    // The debug binary is dynamically linked: refused unless allowed.
    let refused = build_deb(tmp.path(), &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("dynamically linked"));
    let out = build_deb(tmp.path(), &["--allow-dynamic"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deb = tmp.join("binproxy_1.2.3_amd64.deb");

    let info = dpkg_deb(&["-I"], &deb);
    for field in ["Package: binproxy", "Version: 1.2.3", "Architecture: amd64"] {
        assert!(info.contains(field), "{info}");
    }
    let conffiles = run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(text(&conffiles.stdout).trim(), "/etc/binproxy/agent.json");

    let listing = deb_listing(&deb);
    let want = [
        ("./usr/bin/binproxy", "-rwxr-xr-x root/root"),
        (
            "./lib/systemd/system/binproxy.service",
            "-rw-r--r-- root/root",
        ),
        (
            "./lib/systemd/system/binproxy.timer",
            "-rw-r--r-- root/root",
        ),
        (
            "./lib/systemd/system/binproxy-daemon.service",
            "-rw-r--r-- root/root",
        ),
        ("./etc/binproxy/agent.json", "-rw-r--r-- root/root"),
        (
            "./usr/share/doc/binproxy/examples/cron.d-binproxy",
            "-rw-r--r-- root/root",
        ),
    ];
    for (path, perms) in want {
        assert_eq!(
            listing.get(path).map(String::as_str),
            Some(perms),
            "{path}: {listing:?}"
        );
    }
    assert!(
        !listing.keys().any(|p| p.starts_with("./etc/cron.d")),
        "{listing:?}"
    );
    check_deb_contents(&deb, &tmp.join("x"));
}

/// Unpacked: the same binary, units that run `/usr/bin/binproxy` and pass
/// verify, a config the agent accepts, maintainer scripts that parse.
fn check_deb_contents(deb: &Path, dir: &Path) {
    let out = run(Command::new("dpkg-deb").arg("-R").arg(deb).arg(dir));
    assert!(out.status.success(), "dpkg-deb -R: {}", text(&out.stderr));
    let packaged = std::fs::read(dir.join("usr/bin/binproxy")).unwrap();
    assert_eq!(packaged, std::fs::read(binproxy_bin()).unwrap());
    let units = dir.join("lib/systemd/system");
    for unit in ["binproxy.service", "binproxy-daemon.service"] {
        let exec = unit_settings(&units.join(unit))
            .into_iter()
            .find(|(k, _)| k == "ExecStart")
            .expect("ExecStart")
            .1;
        assert!(exec.starts_with("/usr/bin/binproxy "), "{unit}: {exec}");
    }
    verify_units(&units, &AGENT_UNITS, "/usr/bin/", &dir.join("verify")).unwrap();
    binproxy::config::load(&dir.join("etc/binproxy/agent.json")).unwrap();
    let cron = read(&dir.join("usr/share/doc/binproxy/examples/cron.d-binproxy"));
    assert!(
        cron.contains("* * * * * root /usr/bin/binproxy run --config /etc/binproxy/agent.json"),
        "{cron}"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = dir.join("DEBIAN").join(script);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{script}");
        let out = run(Command::new("sh").arg("-n").arg(&path));
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));
    }
}

#[test]
fn the_manager_lite_deb_has_its_unit_and_conffile() {
    require("dpkg-deb", "dpkg");
    let tmp = TempDir::new("pkg-deb-manager");
    let out = run(Command::new(packaging().join("deb/build-deb.sh"))
        .arg("--manager-lite")
        .arg(manager_bin())
        .args([
            "--version",
            "1.2.3",
            "--compress",
            "none",
            "--allow-dynamic",
            "--out",
        ])
        .arg(tmp.path()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let deb = tmp.join("manager-lite_1.2.3_amd64.deb");
    assert!(!tmp.join("binproxy_1.2.3_amd64.deb").exists());
    let listing = deb_listing(&deb);
    for (path, perms) in [
        ("./usr/bin/manager-lite", "-rwxr-xr-x root/root"),
        (
            "./lib/systemd/system/manager-lite.service",
            "-rw-r--r-- root/root",
        ),
        ("./etc/default/manager-lite", "-rw-r--r-- root/root"),
    ] {
        assert_eq!(
            listing.get(path).map(String::as_str),
            Some(perms),
            "{path}: {listing:?}"
        );
    }
    let dir = tmp.join("x");
    let out = run(Command::new("dpkg-deb").arg("-R").arg(&deb).arg(&dir));
    assert!(out.status.success(), "dpkg-deb -R: {}", text(&out.stderr));
    assert_eq!(
        read(&dir.join("DEBIAN/conffiles")).trim(),
        "/etc/default/manager-lite"
    );
    let units = dir.join("lib/systemd/system");
    verify_units(
        &units,
        &["manager-lite.service"],
        "/usr/bin/",
        &dir.join("verify"),
    )
    .unwrap();
}

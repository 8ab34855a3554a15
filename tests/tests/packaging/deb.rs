//! `deb/build-deb.sh`: the binproxy and manager-lite packages, read back by
//! `dpkg-deb` with the promised layout, unit and conffiles.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use binproxy_tests::packaging::{
    packaging, read, require, run, text, unit_settings, verify_units, AGENT_UNITS,
};
use binproxy_tests::{binproxy_bin, manager_bin, TempDir};

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

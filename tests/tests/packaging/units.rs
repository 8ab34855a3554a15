//! The systemd units pass `systemd-analyze verify` (and a misspelt key is
//! caught), say what the agent and the manager need, the cron file runs a
//! cycle every minute, the units' `manager-lite serve` line is accepted, and
//! the config skeleton is accepted by the agent.

use std::process::Command;

use binproxy_tests::packaging::{
    packaging, read, run, text, unit_settings, verify_units, write, AGENT_UNITS,
};
use binproxy_tests::{binproxy_bin, Manager, ManagerOptions, TempDir, TokenSource};

// ---------------------------------------------------------------------------
// systemd units

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

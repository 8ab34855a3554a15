//! The example configs in `manifests/` are valid for the agent that ships with
//! them: every `*.json` there (found by listing the directory, so a new file
//! is covered without touching this test) goes through binproxy's own config
//! parser, and the real binary reads the minimal one and refuses a misspelt
//! field with exit code 2. Every release plan under `manifests/releases/`
//! parses as the protocol's strict `NewRelease` and is accepted (201) by a
//! real manager.

#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use binproxy_protocol::window::Windows;
use binproxy_protocol::{NewRelease, Release};
use binproxy_tests::{binproxy_bin, output_within, Manager, TempDir};

const LIMIT: Duration = Duration::from_secs(60);

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("manifests")
}

/// Every `*.json` under `manifests/`, sorted.
fn manifests() -> Vec<PathBuf> {
    json_files(&manifests_dir())
}

/// Every `*.json` directly in `dir`, sorted; at least one.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|entry| entry.expect("read a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.json in {}", dir.display());
    files
}

#[test]
fn every_manifest_parses_with_the_agents_parser() {
    for path in manifests() {
        let config = binproxy::config::load(&path)
            .unwrap_or_else(|e| panic!("{} is not a valid config: {e}", path.display()));
        assert!(!config.bins.is_empty(), "{} has no bins", path.display());
        for bin in &config.bins {
            assert!(
                bin.path.is_absolute(),
                "{}: {} has a relative path",
                path.display(),
                bin.name
            );
        }
    }
}

#[test]
fn every_release_plan_is_accepted_by_a_real_manager() {
    let m = Manager::new();
    for path in json_files(&manifests_dir().join("releases")) {
        let shown = path.display();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {shown}: {e}"));
        let plan: NewRelease =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{shown}: {e}"));
        Windows::parse(&plan.windows).unwrap_or_else(|(i, e)| panic!("{shown}: windows[{i}]: {e}"));
        m.upload(
            &plan.bin_name,
            &plan.version,
            None,
            shown.to_string().as_bytes(),
        )
        .expect(201);
        let body: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let release: Release = m.admin_post("/api/v1/releases", &body).expect(201).parse();
        assert_eq!(release.windows, plan.windows, "{shown}");
        assert_eq!(release.selector, plan.selector, "{shown}");
    }
}

#[test]
fn the_example_is_the_one_of_the_issue() {
    let text = std::fs::read_to_string(manifests_dir().join("agent.example.json"))
        .expect("read agent.example.json");
    let got: serde_json::Value = serde_json::from_str(&text).expect("agent.example.json is JSON");
    let want = serde_json::json!({
        "manager_url": "http://127.0.0.1:38012", "node_id": "web-01", "labels": {"env": "prod"},
        "state_dir": "/var/lib/binproxy", "splay": "30s", "timeout": "30s",
        "bins": [{"name": "streamd", "path": "/usr/local/bin/streamd", "mode": "0755",
                  "preflight": ["{path}", "--version"],
                  "restart": ["systemctl", "restart", "streamd"],
                  "health": {"command": ["/usr/local/bin/streamd", "--check"],
                             "http": "http://127.0.0.1:8080/health",
                             "timeout": "5s", "retries": 10, "interval": "1s"},
                  "keep": 3}]
    });
    assert_eq!(got, want);
}

/// `status --offline` reads the config and the state and asks no one. When
/// this host has a real `/var/lib/binproxy`, a copy pointing at a temp dir is
/// used instead, so the test never reads (or depends on) a live agent's state.
#[test]
fn binproxy_status_offline_reads_the_minimal_manifest() {
    let tmp = TempDir::new("manifest-status");
    let minimal = manifests_dir().join("agent.minimal.json");
    let text = std::fs::read_to_string(&minimal).expect("read agent.minimal.json");
    let mut value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let state_dir = PathBuf::from(value["state_dir"].as_str().expect("state_dir"));
    let existed = state_dir.exists();
    let config = if existed {
        value["state_dir"] = tmp.join("state").to_string_lossy().into();
        let copy = tmp.join("agent.json");
        std::fs::write(&copy, value.to_string()).expect("write the copy");
        copy
    } else {
        minimal
    };
    let out = output_within(
        Command::new(binproxy_bin())
            .args(["status", "--offline", "--config"])
            .arg(&config),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("streamd"), "{stdout}");
    assert!(stdout.contains("--offline"), "{stdout}");
    if !existed {
        assert!(
            !state_dir.exists(),
            "status created {}",
            state_dir.display()
        );
    }
}

/// A misspelt field, at the top or in a bin, stops `run` before it touches
/// anything: exit 2, and the message names the field.
#[test]
fn an_unknown_field_is_refused_by_binproxy_run() {
    let text = std::fs::read_to_string(manifests_dir().join("agent.example.json"))
        .expect("read agent.example.json");
    for (where_, field) in [("top", "colour"), ("bin", "restart_command")] {
        let tmp = TempDir::new("manifest-unknown");
        let state = tmp.join("state");
        let mut value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        value["state_dir"] = state.to_string_lossy().into();
        let object = if where_ == "top" {
            &mut value
        } else {
            &mut value["bins"][0]
        };
        object
            .as_object_mut()
            .expect("an object")
            .insert(field.into(), "x".into());
        let config = tmp.join("agent.json");
        std::fs::write(&config, value.to_string()).expect("write the config");
        let out = output_within(
            Command::new(binproxy_bin())
                .args(["run", "--now", "--config"])
                .arg(&config),
            LIMIT,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{where_}: {stderr}");
        assert!(
            stderr.contains(&format!("unknown field `{field}`")),
            "{where_}: {stderr}"
        );
        assert!(!state.exists(), "{where_}: run created its state dir");
    }
}

//! A manager-lite with node authentication on (`--node-enroll-token-file`)
//! and agents that enroll with it: what the enrollment tests share
//! (`tests/tests/node_enrollment.rs`, `tests/tests/enrollment_faults.rs`).

use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};

use crate::agent::Agent;
use crate::{unique, Manager, ManagerOptions, TempDir};

/// The bin the enrollment tests' agents manage.
pub const BIN: &str = "svc";

/// A manager with node authentication on, and the token file it reads.
pub struct Secured {
    pub m: Manager,
    pub token: String,
    pub dir: TempDir,
}

pub fn secured() -> Secured {
    let dir = TempDir::new("enroll");
    let token = unique("enroll-token-0123456789");
    let path = dir.join("enroll.token");
    fs::write(&path, format!("{token}\n")).unwrap();
    let m = Manager::new_with(
        ManagerOptions::default()
            .arg("--node-enroll-token-file")
            .arg(path.to_str().unwrap()),
    );
    Secured { m, token, dir }
}

impl Secured {
    /// A token file for an agent holding `token`.
    pub fn token_file(&self, tag: &str, token: &str) -> PathBuf {
        let path = self.dir.join(&format!("{tag}.token"));
        fs::write(&path, format!("  {token}\n")).unwrap();
        path
    }

    /// An agent configured with an enrollment token file.
    pub fn agent(&self, token_file: &Path) -> Agent {
        let a = Agent::new(BIN);
        configure(&a, &self.m, Some(token_file));
        a
    }
}

pub fn configure(a: &Agent, m: &Manager, token_file: Option<&Path>) {
    let mut config = a.config_json(&m.url, &json!({}));
    if let Some(path) = token_file {
        config["enroll_token_file"] = json!(path);
    }
    a.write_config(&config);
}

pub fn secret_path(a: &Agent) -> PathBuf {
    a.state_dir.join("node.secret")
}

pub fn secret_of(a: &Agent) -> String {
    let path = secret_path(a);
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned();
    assert_eq!(text.len(), 64, "a 64 hex secret");
    assert!(text.bytes().all(|b| b.is_ascii_hexdigit()), "a hex secret");
    text
}

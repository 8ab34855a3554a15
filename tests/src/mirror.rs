//! What the agent's mirror tests (`tests/agent_mirrors.rs`) share: a static
//! mirror tree written by the test itself with the protocol's own types, laid
//! out as `manager-lite mirror sync` lays it out (`bins/<bin>.json`,
//! `artifacts/<sha256>`, `artifacts/<sha256>.minisig`, `index.json`), under
//! a directory a real nginx serves; a node's config listing mirrors; and what
//! `binproxy status` says about where the version on disk came from.

use binproxy_protocol::mirror::{
    artifact_file, bin_file, signature_file, MirrorBin, MirrorIndex, ANY_ARCH, INDEX_FILE,
};
use binproxy_protocol::Target;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::agent::Agent;
use crate::metrics::metric;
use crate::minisign::Minisign;
use crate::nginx::Nginx;
use crate::{manager_bin, sha256_hex, Manager};

/// `manager-lite mirror sync --to DIR ARGS` against `server` with the token
/// in `token`, nothing taken from the environment.
pub fn sync_command(server: &str, token: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(manager_bin());
    cmd.args(["mirror", "sync", "--to"])
        .arg(dir)
        .args(args)
        .arg("--server")
        .arg(server)
        .arg("--token-file")
        .arg(token)
        .env_remove("MANAGER_ADMIN_TOKEN")
        .env_remove("MANAGER_URL");
    cmd
}

/// One mirror tree: `DIR/<name>/` of an nginx's files, at `URL/<name>/`.
pub struct MirrorTree {
    pub root: PathBuf,
    /// The base URL agents list in `mirrors`, ending in `/`.
    pub url: String,
}

impl MirrorTree {
    /// An empty tree called `name` on `nginx` (see [`Nginx::files`]).
    pub fn on(nginx: &Nginx, name: &str) -> MirrorTree {
        let root = nginx.files_dir().join(name);
        fs::create_dir_all(root.join("bins")).unwrap();
        fs::create_dir_all(root.join("artifacts")).unwrap();
        MirrorTree {
            root,
            url: format!("{}/{name}/", nginx.url),
        }
    }

    /// Writes `bytes` at `rel` (a path relative to the tree).
    pub fn put(&self, rel: &str, bytes: &[u8]) {
        let path = self.root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
    }

    /// `artifacts/<sha256>` (and its `.minisig` when signed), then
    /// `bins/<bin>.json` naming that target for every arch, then `index.json`:
    /// what a sync writes for a release. Returns the target.
    pub fn release(&self, bin: &str, version: &str, bytes: &[u8], sig: Option<&str>) -> Target {
        let t = target(bin, version, bytes, sig);
        self.put(&artifact_file(&t.sha256sum), bytes);
        if let Some(sig) = sig {
            self.put(&signature_file(&t.sha256sum), sig.as_bytes());
        }
        self.put_bin(bin, version, &[(ANY_ARCH, t.clone())]);
        t
    }

    /// `bins/<bin>.json` with these targets (arch → target), and `index.json`.
    pub fn put_bin(&self, bin: &str, version: &str, targets: &[(&str, Target)]) {
        let doc = MirrorBin {
            bin_name: bin.to_owned(),
            release_id: 1,
            version: version.to_owned(),
            generated_at: "2026-12-03T00:00:00Z".into(),
            targets: targets
                .iter()
                .map(|(arch, t)| ((*arch).to_owned(), t.clone()))
                .collect::<BTreeMap<_, _>>(),
        };
        self.put(&bin_file(bin), &serde_json::to_vec_pretty(&doc).unwrap());
        let index = MirrorIndex {
            generation: 1,
            generated_at: "2026-12-03T00:00:00Z".into(),
            bins: vec![bin.to_owned()],
        };
        self.put(INDEX_FILE, &serde_json::to_vec_pretty(&index).unwrap());
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// The target a mirror names for `bytes`: its sha256 and size, the URL
/// `artifacts/<sha256>` relative to the mirror, and `sig` as it is.
pub fn target(bin: &str, version: &str, bytes: &[u8], sig: Option<&str>) -> Target {
    let sha = sha256_hex(bytes);
    Target {
        bin_name: bin.to_owned(),
        version: version.to_owned(),
        url: artifact_file(&sha),
        sha256sum: sha,
        size: bytes.len() as u64,
        signature: sig.map(str::to_owned),
        ..Target::default()
    }
}

/// Writes the node's config: the manager at `manager_url`, `trusted_keys`
/// (none: the field is left out) and `mirrors`, in that order.
pub fn configure(a: &Agent, manager_url: &str, keys: &[&Minisign], mirrors: &[&str]) {
    let mut c: Value = a.config_json(manager_url, &json!({}));
    if !keys.is_empty() {
        c["trusted_keys"] = json!(keys.iter().map(|k| k.public.as_str()).collect::<Vec<_>>());
    }
    c["mirrors"] = json!(mirrors);
    a.write_config(&c);
}

/// What `binproxy status --json` says the version on disk came from:
/// (`target_from`, `artifact_from`).
pub fn came_from(a: &Agent) -> (Option<String>, Option<String>) {
    let s = a.status_json();
    let bin = &s["bins"][0];
    let text = |k: &str| bin[k].as_str().map(str::to_owned);
    (text("target_from"), text("artifact_from"))
}

/// Downloads the manager answered (any status), from its own `/metrics`.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub fn downloads_served(m: &Manager) -> u64 {
    // A counter: a whole number, well inside f64's exact range.
    metric(m, "manager_http_requests_total", &[("route", "Download")]) as u64
}

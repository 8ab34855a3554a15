//! The agent's config file (JSON). Parsed strictly: an unknown field or a bad
//! value is an error naming the field, because a typo in a hook or a path on
//! every host of a fleet is worse than a refusal to start.
//!
//! Hooks (`preflight`, `restart`, `health.command`) are argv arrays run without
//! a shell, and they come from this file only: nothing the manager sends can
//! make the agent run a command.

use binproxy_protocol::window::Windows;
use binproxy_protocol::{check_bin_name, check_node_id};
use rustls_pki_types::CertificateDer;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// A validated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Without a trailing slash.
    pub manager_url: String,
    pub node_id: String,
    pub labels: BTreeMap<String, String>,
    pub state_dir: PathBuf,
    pub splay: Duration,
    /// The limit of each whole JSON request (connect, send, answer, body),
    /// and of a download's connect, answer head and any one read.
    pub timeout: Duration,
    /// A download slower than this many bytes per second over a window of
    /// `download_min_rate_window` is cut (it resumes next run).
    pub download_min_rate: u64,
    pub download_min_rate_window: Duration,
    /// The limit of a cycle after the splay delay (see [`crate::bounds`]).
    pub cycle_timeout: Duration,
    pub bins: Vec<BinConfig>,
    /// minisign public keys (`RW...`); when any is set, nothing unsigned or
    /// signed by another key is installed. Several allow key rotation.
    pub trusted_keys: Vec<String>,
    /// Accept a signed timestamp older than the newest one installed.
    pub allow_downgrade: bool,
    /// The fleet's enrollment token (absolute path), read when the node has
    /// no secret of its own yet; see [`crate::credential`].
    pub enroll_token_file: Option<PathBuf>,
    /// PEM roots trusted for HTTPS instead of the webpki ones (absolute path).
    pub ca_file: Option<PathBuf>,
    /// The certificates of `ca_file`, read by [`load`]. [`parse`] alone leaves
    /// them empty, and an empty list with `ca_file` set trusts nothing.
    pub ca_roots: Vec<CertificateDer<'static>>,
    /// Maintenance windows: outside every one, nothing new is installed.
    /// Empty: always open.
    pub windows: Windows,
    /// Outside the windows, download and verify the next version ahead.
    pub prestage: bool,
    /// Static mirrors (`manager-lite mirror sync` trees), each an http(s)
    /// base URL ending in `/`: artifacts are fetched from them first, and
    /// with `trusted_keys` their signed targets install while the manager is
    /// unreachable (see [`crate::mirror`]). They never get a credential.
    pub mirrors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinConfig {
    pub name: String,
    pub path: PathBuf,
    /// Permission bits for the new file; `None`: the old file's, else 0755.
    pub mode: Option<u32>,
    /// Run on the staged file before the swap; `{path}` is its path.
    pub preflight: Option<Vec<String>>,
    pub restart: Option<Vec<String>>,
    pub health: Option<HealthConfig>,
    /// Previous versions kept for rollback.
    pub keep: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub command: Option<Vec<String>>,
    pub http: Option<String>,
    /// Limit of one attempt.
    pub timeout: Duration,
    /// Attempts before the version is declared unhealthy.
    pub retries: u32,
    /// Pause between attempts.
    pub interval: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    manager_url: String,
    node_id: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    state_dir: String,
    splay: Option<String>,
    timeout: Option<String>,
    download_min_rate: Option<String>,
    download_min_rate_window: Option<String>,
    cycle_timeout: Option<String>,
    bins: Vec<RawBin>,
    #[serde(default)]
    trusted_keys: Vec<String>,
    #[serde(default)]
    allow_downgrade: bool,
    enroll_token_file: Option<String>,
    ca_file: Option<String>,
    #[serde(default)]
    windows: Vec<String>,
    #[serde(default)]
    prestage: bool,
    #[serde(default)]
    mirrors: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBin {
    name: String,
    path: String,
    mode: Option<String>,
    preflight: Option<Vec<String>>,
    restart: Option<Vec<String>>,
    health: Option<RawHealth>,
    keep: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    command: Option<Vec<String>>,
    http: Option<String>,
    timeout: Option<String>,
    retries: Option<u32>,
    interval: Option<String>,
}

const DEFAULT_SPLAY: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MIN_RATE: u64 = 16 << 10;
const DEFAULT_MIN_RATE_WINDOW: Duration = Duration::from_secs(30);
const DEFAULT_CYCLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const DEFAULT_KEEP: usize = 3;
const MAX_KEEP: usize = 100;
/// Most mirrors a config lists: each is tried in turn, and every try may
/// take the request `timeout`.
pub const MAX_MIRRORS: usize = 16;

impl Config {
    /// Whether targets may come from the mirrors while the manager cannot
    /// be used: mirrors listed, and `trusted_keys` to check what they say.
    pub fn mirrors_alone(&self) -> bool {
        !self.mirrors.is_empty() && !self.trusted_keys.is_empty()
    }
}

/// Reads and validates the config at `path`, and the `ca_file` it names.
pub fn load(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        message: format!("cannot read: {e}"),
    })?;
    let mut config = parse(&text, path)?;
    if let Some(ca_file) = &config.ca_file {
        config.ca_roots = crate::tls::read_roots(ca_file).map_err(|message| Error::Config {
            path: path.to_path_buf(),
            message: format!("ca_file {}: {message}", ca_file.display()),
        })?;
    }
    Ok(config)
}

/// Validates config text; `origin` names it in errors.
pub fn parse(text: &str, origin: &Path) -> Result<Config> {
    let err = |message: String| Error::Config {
        path: origin.to_path_buf(),
        message,
    };
    let raw: RawConfig = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
    validate(raw).map_err(err)
}

fn validate(raw: RawConfig) -> Result<Config, String> {
    let manager_url = raw.manager_url.trim_end_matches('/').to_owned();
    check_url("manager_url", &manager_url)?;
    let node_id = match raw.node_id {
        Some(id) => id,
        None => default_node_id()?,
    };
    check_node_id(&node_id).map_err(|e| format!("node_id: {e}"))?;
    for (key, value) in &raw.labels {
        check_bin_name(key)
            .map_err(|_| format!("labels: invalid key {key:?}: 1 to 64 of A-Z a-z 0-9 . _ -"))?;
        if value.len() > 1024 || value.chars().any(char::is_control) {
            return Err(format!(
                "labels.{key}: at most 1024 bytes, no control characters"
            ));
        }
    }
    let state_dir = absolute("state_dir", &raw.state_dir)?;
    if raw.bins.is_empty() {
        return Err("bins: list at least one bin".into());
    }
    let mut names = HashSet::new();
    let mut paths = HashSet::new();
    let mut bins = Vec::new();
    for (i, b) in raw.bins.into_iter().enumerate() {
        let bin = validate_bin(i, b)?;
        if !names.insert(bin.name.clone()) {
            return Err(format!("bins[{i}].name: {:?} is listed twice", bin.name));
        }
        if !paths.insert(bin.path.clone()) {
            return Err(format!(
                "bins[{i}].path: {} is listed twice",
                bin.path.display()
            ));
        }
        bins.push(bin);
    }
    Ok(Config {
        manager_url,
        node_id,
        labels: raw.labels,
        state_dir,
        splay: duration("splay", raw.splay.as_deref(), DEFAULT_SPLAY, true)?,
        timeout: duration("timeout", raw.timeout.as_deref(), DEFAULT_TIMEOUT, false)?,
        download_min_rate: rate("download_min_rate", raw.download_min_rate.as_deref())?,
        download_min_rate_window: duration(
            "download_min_rate_window",
            raw.download_min_rate_window.as_deref(),
            DEFAULT_MIN_RATE_WINDOW,
            false,
        )?,
        cycle_timeout: duration(
            "cycle_timeout",
            raw.cycle_timeout.as_deref(),
            DEFAULT_CYCLE_TIMEOUT,
            false,
        )?,
        bins,
        trusted_keys: check_keys(raw.trusted_keys)?,
        allow_downgrade: raw.allow_downgrade,
        enroll_token_file: raw
            .enroll_token_file
            .map(|p| absolute("enroll_token_file", &p))
            .transpose()?,
        ca_file: raw.ca_file.map(|p| absolute("ca_file", &p)).transpose()?,
        ca_roots: Vec::new(),
        windows: Windows::parse(&raw.windows).map_err(|(i, e)| format!("windows[{i}]: {e}"))?,
        prestage: raw.prestage,
        mirrors: check_mirrors(raw.mirrors)?,
    })
}

fn validate_bin(i: usize, b: RawBin) -> Result<BinConfig, String> {
    let field = |name: &str| format!("bins[{i}].{name}");
    check_bin_name(&b.name).map_err(|e| format!("{}: {e}", field("name")))?;
    let path = absolute(&field("path"), &b.path)?;
    if path.file_name().is_none() {
        return Err(format!("{}: must name a file", field("path")));
    }
    let mode = b
        .mode
        .map(|m| match u32::from_str_radix(&m, 8) {
            Ok(v) if v <= 0o7777 && !m.is_empty() => Ok(v),
            _ => Err(format!(
                "{}: {m:?} is not an octal mode like \"0755\"",
                field("mode")
            )),
        })
        .transpose()?;
    for (name, argv) in [("preflight", &b.preflight), ("restart", &b.restart)] {
        if let Some(argv) = argv {
            check_argv(&field(name), argv)?;
        }
    }
    let health = b
        .health
        .map(|h| validate_health(&field("health"), h))
        .transpose()?;
    let keep = b.keep.unwrap_or(DEFAULT_KEEP);
    if !(1..=MAX_KEEP).contains(&keep) {
        return Err(format!(
            "{}: {keep} is not between 1 and {MAX_KEEP}",
            field("keep")
        ));
    }
    Ok(BinConfig {
        name: b.name,
        path,
        mode,
        preflight: b.preflight,
        restart: b.restart,
        health,
        keep,
    })
}

fn validate_health(field: &str, h: RawHealth) -> Result<HealthConfig, String> {
    if h.command.is_none() && h.http.is_none() {
        return Err(format!("{field}: give a command, an http URL, or both"));
    }
    if let Some(argv) = &h.command {
        check_argv(&format!("{field}.command"), argv)?;
    }
    if let Some(url) = &h.http {
        check_url(&format!("{field}.http"), url)?;
    }
    let retries = h.retries.unwrap_or(10);
    if retries == 0 {
        return Err(format!("{field}.retries: must be at least 1"));
    }
    Ok(HealthConfig {
        command: h.command,
        http: h.http,
        timeout: duration(
            &format!("{field}.timeout"),
            h.timeout.as_deref(),
            Duration::from_secs(5),
            false,
        )?,
        retries,
        interval: duration(
            &format!("{field}.interval"),
            h.interval.as_deref(),
            Duration::from_secs(1),
            true,
        )?,
    })
}

/// Each key must be a minisign public key: the base64 line of a `.pub` file.
fn check_keys(keys: Vec<String>) -> Result<Vec<String>, String> {
    for (i, k) in keys.iter().enumerate() {
        minisign_verify::PublicKey::from_base64(k.trim())
            .map_err(|e| format!("trusted_keys[{i}]: not a minisign public key ({e})"))?;
    }
    Ok(keys.into_iter().map(|k| k.trim().to_owned()).collect())
}

/// Each mirror must be a plain http(s) base URL: a host, no credentials
/// (a mirror never gets one), no query or fragment (file names are appended
/// to it); a missing trailing `/` is added. At most [`MAX_MIRRORS`], none twice.
fn check_mirrors(mirrors: Vec<String>) -> Result<Vec<String>, String> {
    if mirrors.len() > MAX_MIRRORS {
        return Err(format!(
            "mirrors: {} listed, at most {MAX_MIRRORS}",
            mirrors.len()
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(mirrors.len());
    for (i, url) in mirrors.into_iter().enumerate() {
        let url = check_mirror(&url).map_err(|why| format!("mirrors[{i}]: {url:?} {why}"))?;
        if out.contains(&url) {
            return Err(format!("mirrors[{i}]: {url:?} is listed twice"));
        }
        out.push(url);
    }
    Ok(out)
}

/// One mirror URL, with its trailing `/`; or what is wrong with it.
fn check_mirror(url: &str) -> Result<String, &'static str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("has a space or a control character");
    }
    if url.contains(['?', '#']) {
        return Err("must have no query (?) or fragment (#): file names are appended to it");
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Err("must carry no user name or password: a mirror never gets a credential");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => return Err("has an unclosed [ in its host"),
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err("has a port that is not a number from 0 to 65535");
    }
    Ok(if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    })
}

fn check_argv(field: &str, argv: &[String]) -> Result<(), String> {
    match argv.first() {
        None => Err(format!("{field}: an empty command; give an argv array like [\"systemctl\", \"restart\", \"x\"]")),
        Some(p) if p.is_empty() => Err(format!("{field}[0]: the program is empty")),
        Some(_) if argv.iter().any(|a| a.contains('\0')) => Err(format!("{field}: NUL in an argument")),
        Some(_) => Ok(()),
    }
}

fn check_url(field: &str, url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{field}: {url:?} must start with http:// or https://"))?;
    if rest.is_empty()
        || rest.starts_with('/')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("{field}: {url:?} is not a valid URL"));
    }
    Ok(())
}

fn absolute(field: &str, path: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(path);
    if !p.is_absolute() {
        return Err(format!(
            "{field}: {path:?} must be an absolute path (cron runs from an arbitrary directory)"
        ));
    }
    Ok(p)
}

fn duration(
    field: &str,
    value: Option<&str>,
    default: Duration,
    zero_ok: bool,
) -> Result<Duration, String> {
    let Some(v) = value else { return Ok(default) };
    match humantime::parse_duration(v) {
        Ok(d) if d.is_zero() && !zero_ok => Err(format!("{field}: must be more than zero")),
        Ok(d) => Ok(d),
        Err(e) => Err(format!(
            "{field}: {v:?} is not a duration ({e}); write e.g. \"30s\" or \"5m\""
        )),
    }
}

/// Bytes per second: `"0"` (no minimum), `"500"`, `"16KiB"`, `"1MiB/s"`.
fn rate(field: &str, value: Option<&str>) -> Result<u64, String> {
    let Some(v) = value else {
        return Ok(DEFAULT_MIN_RATE);
    };
    let text = v.trim();
    let text = text.strip_suffix("/s").unwrap_or(text);
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        _ => 0,
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| scale > 0)
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| {
            format!("{field}: {v:?} is not a rate; write bytes per second, e.g. \"16KiB\" or \"1MiB/s\"")
        })
}

/// `/etc/machine-id`, else the hostname: stable across reboots, unlike an IP.
fn default_node_id() -> Result<String, String> {
    for file in ["/etc/machine-id", "/proc/sys/kernel/hostname"] {
        if let Ok(text) = std::fs::read_to_string(file) {
            let id = text.trim();
            if !id.is_empty() {
                return Ok(id.to_owned());
            }
        }
    }
    Err("node_id: not set, and neither /etc/machine-id nor the hostname could be read".into())
}

#[cfg(test)]
mod tests;

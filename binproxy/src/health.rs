//! Step 10 of an update: restart the service and prove it healthy.
//!
//! A restart hook that fails counts as unhealthy (the old agent piped
//! `supervisorctl restart` through `tee` and never saw a failure). The health
//! check passes when, within `retries` attempts `interval` apart, one attempt
//! has every configured check pass: the command exits 0 and/or the URL
//! answers 2xx, each within `timeout`.

use std::path::Path;
use std::time::Duration;

use crate::config::{BinConfig, HealthConfig};
use crate::hooks;

/// How long a restart hook may take.
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the bin's restart hook, if it has one.
pub fn restart(bin: &BinConfig, log: &Path) -> Result<(), String> {
    match &bin.restart {
        Some(argv) => hooks::run(argv, &bin.path, RESTART_TIMEOUT, log)
            .map_err(|e| format!("restart failed: {e}")),
        None => Ok(()),
    }
}

/// Restarts, then checks health.
pub fn restart_and_check(bin: &BinConfig, log: &Path) -> Result<(), String> {
    restart(bin, log)?;
    check(bin, log)
}

/// Checks health with retries; `Ok` when the bin has no health check. A stop
/// signal does not shorten it: cutting the waits could fail a good version.
pub fn check(bin: &BinConfig, log: &Path) -> Result<(), String> {
    let Some(h) = &bin.health else { return Ok(()) };
    let mut last = String::new();
    for attempt in 1..=h.retries {
        match attempt_once(h, &bin.path, log) {
            Ok(()) => {
                log::debug!("{}: healthy at attempt {attempt}", bin.name);
                return Ok(());
            }
            Err(e) => last = e,
        }
        if attempt < h.retries {
            std::thread::sleep(h.interval);
        }
    }
    Err(format!("unhealthy after {} attempt(s): {last}", h.retries))
}

fn attempt_once(h: &HealthConfig, path: &Path, log: &Path) -> Result<(), String> {
    if let Some(argv) = &h.command {
        hooks::run(argv, path, h.timeout, log).map_err(|e| format!("health command {e}"))?;
    }
    if let Some(url) = &h.http {
        http_check(url, h.timeout)?;
    }
    Ok(())
}

fn http_check(url: &str, timeout: Duration) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .build()
        .into();
    let status = agent
        .get(url)
        .call()
        .map_err(|e| format!("health URL {url}: {e}"))?
        .status()
        .as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("health URL {url} answered {status}"))
    }
}

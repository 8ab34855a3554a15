//! A new release's plan, checked as the server will check it: who it is for
//! (`--arch`, `--node`, `--exclude-node`, `--os`, `--select`), how it rolls
//! out (`--waves`, `--success-threshold`, `--max-failures`) and when
//! (`--window`). Used by `release`, `publish --release` and, for its waves,
//! `rollback`; every error names the option.

use super::args::Plan;
use super::check::{checked_all, usage};
use super::ClientError;
use binproxy_protocol::names::normalize_arch;
use binproxy_protocol::window::Windows;
use binproxy_protocol::{
    check_arch, check_bin_name, check_node_id, NameError, NewRelease, Selector, Wave,
};
use std::collections::BTreeMap;

/// OS names (`linux`) follow the arch rule, as the server checks them.
fn check_os(os: &str) -> Result<(), NameError> {
    check_arch(os).map_err(|e| NameError { field: "os", ..e })
}

/// The release of `bin` `version` that the plan options describe; `arch`:
/// the `--arch` selector values of `release`.
pub(super) fn new_release(
    bin: String,
    version: String,
    arch: Vec<String>,
    plan: Plan,
) -> Result<NewRelease, ClientError> {
    let cpu_arch = checked_all("arch", arch, check_arch)?
        .iter()
        // Nodes report their arch in this spelling; a selector must match it.
        .map(|a| normalize_arch(a).to_owned())
        .collect();
    Ok(NewRelease {
        bin_name: bin,
        version,
        note: plan.note,
        selector: Selector {
            node_ids: checked_all("node", plan.node, check_node_id)?,
            exclude_node_ids: checked_all("exclude-node", plan.exclude_node, check_node_id)?,
            cpu_arch,
            os: checked_all("os", plan.os, check_os)?,
            labels: parse_labels(&plan.select)?,
        },
        waves: match &plan.waves {
            Some(text) => parse_waves(text)?,
            None => Vec::new(),
        },
        success_threshold: plan
            .success_threshold
            .map(|t| threshold("success-threshold", &t))
            .transpose()?,
        max_failures: plan
            .max_failures
            .map(|t| threshold("max-failures", &t))
            .transpose()?,
        require_approval: plan.require_approval,
        windows: check_windows(plan.window)?,
    })
}

/// `--window "Mon-Fri 01:00-05:00 +08:00"`, checked here as the server does.
fn check_windows(windows: Vec<String>) -> Result<Vec<String>, ClientError> {
    Windows::parse(&windows).map_err(|(_, e)| usage(&format!("--window {e}")))?;
    Ok(windows)
}

/// `--waves 1%:10m,10%:30m,100%`: percents from 1 to 100, each above the one
/// before, the last 100; a wait (humantime: `90s`, `1h 30m`) after any of them.
pub(super) fn parse_waves(text: &str) -> Result<Vec<Wave>, ClientError> {
    let bad = |why: &str| usage(&format!("--waves {text:?}: {why}"));
    let mut waves = Vec::new();
    let mut last = 0;
    for part in text.split(',').map(str::trim) {
        let (percent, wait) = match part.split_once(':') {
            Some((p, w)) => (p.trim(), Some(w.trim())),
            None => (part, None),
        };
        let digits = percent.strip_suffix('%').unwrap_or(percent).trim();
        let percent: u32 = digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())
            .flatten()
            .ok_or_else(|| bad(&format!("{part:?} is not PERCENT%[:WAIT]")))?;
        if !(1..=100).contains(&percent) {
            return Err(bad(&format!("{percent}% is not 1% to 100%")));
        }
        if percent <= last {
            return Err(bad(&format!(
                "{percent}% does not go above the wave before ({last}%)"
            )));
        }
        if let Some(w) = wait {
            humantime::parse_duration(w)
                .map_err(|e| bad(&format!("wait {w:?} after {percent}%: {e}")))?;
        }
        waves.push(Wave {
            percent,
            wait: wait.map(str::to_owned),
        });
        last = percent;
    }
    if last != 100 {
        return Err(bad("the last wave must be 100%"));
    }
    Ok(waves)
}

/// `--success-threshold 95%`, `--max-failures 5%`, or either as a count of
/// nodes (`3`): a share from 0% to 100% (decimals allowed), or a number.
fn threshold(option: &str, text: &str) -> Result<String, ClientError> {
    let t = text.trim();
    let share = t
        .strip_suffix('%')
        .and_then(|p| p.trim().parse::<f64>().ok())
        .is_some_and(|p| (0.0..=100.0).contains(&p));
    let number = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if share || number && t.parse::<u64>().is_ok() {
        return Ok(t.to_owned());
    }
    Err(usage(&format!(
        "--{option} {text:?}: must be a share like \"5%\" or a number of nodes like \"3\""
    )))
}

/// `--select KEY=V1,V2`, each into `labels[KEY]`; a key given again adds values.
fn parse_labels(select: &[String]) -> Result<BTreeMap<String, Vec<String>>, ClientError> {
    let mut labels: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for item in select {
        let bad = |why: &str| usage(&format!("--select {item:?}: {why}"));
        let (key, values) = item
            .split_once('=')
            .ok_or_else(|| bad("must be KEY=VALUE[,VALUE...]"))?;
        check_bin_name(key).map_err(|_| {
            bad("the label key must be 1 to 64 of A-Z a-z 0-9 . _ - and not . or ..")
        })?;
        let list = labels.entry(key.to_owned()).or_default();
        for value in values.split(',') {
            if value.is_empty() {
                return Err(bad("empty label value"));
            }
            if value.chars().any(char::is_control) {
                return Err(bad("control character in a label value"));
            }
            if !list.iter().any(|v| v == value) {
                list.push(value.to_owned());
            }
        }
    }
    Ok(labels)
}

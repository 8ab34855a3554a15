//! What the flags ask for: the `--host` list (DNS names and addresses,
//! the certificate's SANs) and `--days`.

use super::error::generate;
use super::{PkiError, MAX_DAYS, MAX_HOSTS};
use rcgen::SanType;
use rustls::pki_types::DnsName;
use std::fmt;
use std::net::IpAddr;

/// One host name or address of the server certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Host {
    Dns(String),
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Dns(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// `NAME[,IP...]`: DNS names and IPv4/IPv6 addresses, comma-separated.
pub(super) fn parse_hosts(list: &str) -> Result<Vec<Host>, PkiError> {
    let mut hosts: Vec<Host> = Vec::new();
    for item in list.split(',').map(str::trim) {
        let host = parse_host(item)?;
        if hosts.contains(&host) {
            return Err(PkiError::Usage(format!("--host: {item} is given twice")));
        }
        hosts.push(host);
    }
    if hosts.len() > MAX_HOSTS {
        return Err(PkiError::Usage(format!(
            "--host: {} names; at most {MAX_HOSTS}",
            hosts.len()
        )));
    }
    Ok(hosts)
}

pub(super) fn parse_host(item: &str) -> Result<Host, PkiError> {
    let bad = |why: &str| PkiError::Usage(format!("--host: {item:?} {why}"));
    if item.is_empty() {
        return Err(bad(
            "is empty: give NAME[,IP...], e.g. manager.example,10.0.0.5",
        ));
    }
    let bare = item
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(item);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    if item.contains('*') {
        return Err(bad(
            "is a wildcard: give each name the manager is reached by",
        ));
    }
    // All-digit labels would read as a mistyped IPv4 address to a client.
    if item
        .split('.')
        .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad("is neither an IP address nor a host name"));
    }
    match DnsName::try_from(item) {
        Ok(_) if !item.ends_with('.') => Ok(Host::Dns(item.to_ascii_lowercase())),
        _ => Err(bad(
            "is not a valid host name (letters, digits, - and dots) or IP address",
        )),
    }
}

pub(super) fn check_days(days: u32) -> Result<(), PkiError> {
    if (1..=MAX_DAYS).contains(&days) {
        Ok(())
    } else {
        Err(PkiError::Usage(format!(
            "--days {days}: give 1 to {MAX_DAYS}"
        )))
    }
}

pub(super) fn san(host: &Host) -> Result<SanType, PkiError> {
    Ok(match host {
        Host::Ip(ip) => SanType::IpAddress(*ip),
        Host::Dns(n) => SanType::DnsName(n.clone().try_into().map_err(generate)?),
    })
}

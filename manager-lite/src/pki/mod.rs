//! `manager-lite tls init` and `tls renew`: a private certificate authority
//! for one fleet and the manager's server certificate signed by it, so HTTPS
//! works without a PKI course.
//!
//! Agents verify the manager with rustls/webpki, which refuses a self-signed
//! certificate that says `CA:TRUE` (what `openssl req -x509` makes) as a
//! server certificate. So `init` makes two: a CA (`ca.pem`, `ca.key`), which
//! agents trust through `ca_file`, and a leaf (`server.pem`, `server.key`:
//! `CA:FALSE`, serverAuth, the host names and addresses as SANs), which
//! `serve --tls-cert/--tls-key` presents. `renew` signs a new leaf with the
//! same CA, so agents need nothing new. Keys are written 0600 from the first
//! byte, every file through a temp file, fsync, rename and a directory fsync;
//! `init` never replaces an existing file (a CA overwritten by mistake would
//! cut every agent off). Nothing here prints or logs a key.

//!
//! [`hosts`] checks the flags, [`ca`] makes or loads the CA, [`leaf`] issues
//! and verifies the server certificate, [`files`] writes them; this file
//! holds the two commands and the text they print.

mod ca;
mod error;
mod files;
mod hosts;
mod leaf;

pub use error::PkiError;

use ca::{ca_params, load_ca, Ca};
use error::generate;
use files::{absolute, make_dir, write_all_new, write_file};
use hosts::{check_days, parse_hosts, Host};
use leaf::{current_names, issue, Leaf};
use rcgen::KeyPair;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};
use time::OffsetDateTime;

/// Days a server certificate is valid unless `--days` says otherwise: a year
/// and a month, the longest browsers accept, so a yearly renewal has slack.
pub const DEFAULT_DAYS: u32 = 397;
/// Longest `--days` accepted for a server certificate.
pub const MAX_DAYS: u32 = 3650;
/// The CA's validity: ten years, so it outlives many server certificates.
pub(super) const CA_DAYS: u32 = 3650;
/// Most names in one `--host` list.
pub(super) const MAX_HOSTS: usize = 100;
/// Certificates start an hour back, so an agent whose clock is a little
/// behind the manager's does not refuse a fresh one as not yet valid.
pub(super) const BACKDATE: Duration = Duration::from_secs(3600);

pub(super) const CA_CERT: &str = "ca.pem";
pub(super) const CA_KEY: &str = "ca.key";
pub(super) const SERVER_CERT: &str = "server.pem";
pub(super) const SERVER_KEY: &str = "server.key";

/// `tls init`: a new private CA and a server certificate signed by it in
/// `dir`. Returns the text to print on stdout.
pub fn init(dir: &Path, hosts: &str, days: u32) -> Result<String, PkiError> {
    let names = parse_hosts(hosts)?;
    check_days(days)?;
    let files = Files::new(dir);
    // Checked before anything is made; the writes below refuse too, should a
    // file appear meanwhile.
    if let Some(p) = files.all().into_iter().find(|p| p.exists()) {
        return Err(PkiError::Exists(p.to_owned()));
    }
    let key = KeyPair::generate().map_err(generate)?;
    let cert = ca_params(&names[0])?.self_signed(&key).map_err(generate)?;
    let ca = Ca {
        der: cert.der().clone(),
        cert,
        key,
        path: files.ca_cert.clone(),
    };
    let leaf = issue(&names, days, &ca)?;
    make_dir(dir)?;
    write_all_new(&[
        (&files.ca_key, ca.key.serialize_pem().as_bytes(), 0o600),
        (&files.ca_cert, ca.cert.pem().as_bytes(), 0o644),
        (&files.server_key, leaf.key_pem.as_bytes(), 0o600),
        (&files.server_cert, leaf.cert_pem.as_bytes(), 0o644),
    ])?;
    Ok(init_text(&Files::new(&absolute(dir)?), &names, &leaf))
}

/// `tls renew`: a new server certificate (and key) from the CA in `dir`,
/// replacing `server.pem` and `server.key`. `hosts` None keeps the names of
/// the current `server.pem`. Returns the text to print on stdout.
pub fn renew(dir: &Path, hosts: Option<&str>, days: u32) -> Result<String, PkiError> {
    check_days(days)?;
    let files = Files::new(dir);
    let names = match hosts {
        Some(h) => parse_hosts(h)?,
        None => current_names(&files.server_cert)?,
    };
    let ca = load_ca(&files)?;
    let leaf = issue(&names, days, &ca)?;
    if leaf.not_after > ca.cert.params().not_after {
        return Err(PkiError::BadCa {
            path: files.ca_cert,
            why: format!(
                "the CA expires on {}, before the new certificate would: \
                 ask for fewer --days, or make a new CA with `tls init` in another --dir",
                date(ca.cert.params().not_after)
            ),
        });
    }
    // Key first: a crash between the two renames leaves a pair `serve`
    // refuses naming both files, and running renew again mends it.
    write_file(&files.server_key, leaf.key_pem.as_bytes(), 0o600, true)?;
    write_file(&files.server_cert, leaf.cert_pem.as_bytes(), 0o644, true)?;
    Ok(renew_text(&Files::new(&absolute(dir)?), &names, &leaf))
}

/// The four files of a directory.
struct Files {
    ca_cert: PathBuf,
    ca_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl Files {
    fn new(dir: &Path) -> Files {
        Files {
            ca_cert: dir.join(CA_CERT),
            ca_key: dir.join(CA_KEY),
            server_cert: dir.join(SERVER_CERT),
            server_key: dir.join(SERVER_KEY),
        }
    }

    fn all(&self) -> [&Path; 4] {
        [
            &self.ca_cert,
            &self.ca_key,
            &self.server_cert,
            &self.server_key,
        ]
    }
}

/// `2026-12-03` of a certificate date.
fn date(t: OffsetDateTime) -> String {
    let secs = u64::try_from(t.unix_timestamp()).unwrap_or(0);
    let rfc = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs));
    rfc.to_string().chars().take(10).collect()
}

fn host_list(names: &[Host]) -> String {
    names
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `serve` flags and the agent's `ca_file` line, shared by both texts.
fn usage_text(files: &Files, names: &[Host]) -> String {
    let url_host = match &names[0] {
        Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        host => host.to_string(),
    };
    format!(
        "Serve HTTPS with:\n    manager-lite serve --tls-cert {cert} --tls-key {key} ...\n\
         Agents: copy {ca} to each host and set in its config (JSON):\n    \
         \"manager_url\": \"https://{url_host}:38012\",\n    \"ca_file\": \"{ca}\"\n\
         Admin CLI: --server https://{url_host}:38012 --ca-file {ca}\n",
        cert = files.server_cert.display(),
        key = files.server_key.display(),
        ca = files.ca_cert.display(),
    )
}

fn init_text(files: &Files, names: &[Host], leaf: &Leaf) -> String {
    format!(
        "Made a private CA and a server certificate for {hosts}:\n  \
         {ca}  the CA certificate: agents trust it (public, copy it to every host)\n  \
         {ca_key}  the CA's private key (0600): keep it here, `tls renew` signs with it\n  \
         {cert}  the server certificate, valid until {until}\n  \
         {key}  its private key (0600)\n\n{usage}\
         Before {until}: manager-lite tls renew --dir {dir}, then restart serve.\n",
        hosts = host_list(names),
        ca = files.ca_cert.display(),
        ca_key = files.ca_key.display(),
        cert = files.server_cert.display(),
        key = files.server_key.display(),
        until = date(leaf.not_after),
        usage = usage_text(files, names),
        dir = files.ca_cert.parent().unwrap_or(Path::new(".")).display(),
    )
}

fn renew_text(files: &Files, names: &[Host], leaf: &Leaf) -> String {
    format!(
        "Renewed the server certificate for {hosts}, valid until {until}:\n  \
         {cert}\n  {key} (0600)\n\
         Restart manager-lite serve to use it: serve reads its certificate once, at start.\n\
         Agents need nothing new: the CA ({ca}) is unchanged.\n\n{usage}",
        hosts = host_list(names),
        until = date(leaf.not_after),
        cert = files.server_cert.display(),
        key = files.server_key.display(),
        ca = files.ca_cert.display(),
        usage = usage_text(files, names),
    )
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

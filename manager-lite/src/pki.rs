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

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName, ServerName, UnixTime};
use time::OffsetDateTime;

/// Days a server certificate is valid unless `--days` says otherwise: a year
/// and a month, the longest browsers accept, so a yearly renewal has slack.
pub const DEFAULT_DAYS: u32 = 397;
/// Longest `--days` accepted for a server certificate.
pub const MAX_DAYS: u32 = 3650;
/// The CA's validity: ten years, so it outlives many server certificates.
const CA_DAYS: u32 = 3650;
/// Most names in one `--host` list.
const MAX_HOSTS: usize = 100;
/// Certificates start an hour back, so an agent whose clock is a little
/// behind the manager's does not refuse a fresh one as not yet valid.
const BACKDATE: Duration = Duration::from_secs(3600);

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server.key";

/// Why `tls init` or `tls renew` did nothing (or, for I/O, stopped).
#[derive(Debug)]
pub enum PkiError {
    /// A bad host list, day count or argument (exit 2).
    Usage(String),
    /// `init` found this file already there and changed nothing.
    Exists(PathBuf),
    /// Reading or writing this path failed.
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// The CA (or the current server certificate) in the directory cannot
    /// be used: unreadable, not a CA, expired, key not matching.
    BadCa { path: PathBuf, why: String },
    /// rcgen could not make a certificate.
    Generate(String),
}

impl PkiError {
    /// 2 for usage errors, 1 for everything refused or failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            PkiError::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for PkiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PkiError::Usage(m) => write!(f, "{m}"),
            PkiError::Exists(p) => write!(
                f,
                "{} already exists: tls init never replaces a CA or a key \
                 (use `tls renew` for a new server certificate, or another --dir)",
                p.display()
            ),
            PkiError::Io {
                path,
                action,
                source,
            } => write!(f, "{action} {}: {source}", path.display()),
            PkiError::BadCa { path, why } => write!(f, "{}: {why}", path.display()),
            PkiError::Generate(m) => write!(f, "making the certificate: {m}"),
        }
    }
}

impl std::error::Error for PkiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PkiError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_error<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> PkiError + 'a {
    move |source| PkiError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

#[allow(clippy::needless_pass_by_value)] // the shape map_err passes
fn generate(e: rcgen::Error) -> PkiError {
    PkiError::Generate(e.to_string())
}

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

/// One host name or address of the server certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
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
fn parse_hosts(list: &str) -> Result<Vec<Host>, PkiError> {
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

fn parse_host(item: &str) -> Result<Host, PkiError> {
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

fn check_days(days: u32) -> Result<(), PkiError> {
    if (1..=MAX_DAYS).contains(&days) {
        Ok(())
    } else {
        Err(PkiError::Usage(format!(
            "--days {days}: give 1 to {MAX_DAYS}"
        )))
    }
}

fn san(host: &Host) -> Result<SanType, PkiError> {
    Ok(match host {
        Host::Ip(ip) => SanType::IpAddress(*ip),
        Host::Dns(n) => SanType::DnsName(n.clone().try_into().map_err(generate)?),
    })
}

/// `now` moved by whole seconds (back for a negative `secs`).
fn now_plus(secs: i64) -> Result<OffsetDateTime, PkiError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    OffsetDateTime::from_unix_timestamp(now.saturating_add(secs))
        .map_err(|e| PkiError::Generate(format!("certificate dates: {e}")))
}

fn validity(params: &mut CertificateParams, days: u32) -> Result<(), PkiError> {
    let backdate = i64::try_from(BACKDATE.as_secs()).unwrap_or(0);
    params.not_before = now_plus(-backdate)?;
    params.not_after = now_plus(i64::from(days) * 86_400)?;
    Ok(())
}

fn ca_params(first: &Host) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    validity(&mut params, CA_DAYS)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("manager-lite CA for {first} {}", date(params.not_before)),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// The CA that signs: rcgen's view of it, its key, and the certificate
/// agents trust (`ca.pem`, which new certificates are verified against).
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    der: CertificateDer<'static>,
    path: PathBuf,
}

/// A server certificate made by [`issue`]: PEM texts and its end date.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    not_after: OffsetDateTime,
}

/// A new key and a server certificate for `names` signed by the CA, checked
/// the way an agent will check it before anything is written.
fn issue(names: &[Host], days: u32, ca: &Ca) -> Result<Leaf, PkiError> {
    let mut params = CertificateParams::default();
    validity(&mut params, days)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].to_string());
    params.subject_alt_names = names.iter().map(san).collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let not_after = params.not_after;
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params
        .signed_by(&key, &ca.cert, &ca.key)
        .map_err(generate)?;
    verify(&ca.der, cert.der(), names, &ca.path)?;
    Ok(Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after,
    })
}

/// Verifies `leaf` for every name with rustls, trusting `ca` only: a CA
/// whose key does not match its certificate fails here, not on the agents.
fn verify(
    ca: &CertificateDer<'_>,
    leaf: &CertificateDer<'_>,
    names: &[Host],
    ca_path: &Path,
) -> Result<(), PkiError> {
    let failed = |why: String| PkiError::BadCa {
        path: ca_path.to_owned(),
        why,
    };
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.clone().into_owned())
        .map_err(|e| failed(format!("not a usable CA certificate ({e})")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| failed(e.to_string()))?;
    for host in names {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| PkiError::Usage(format!("--host {host}: {e}")))?;
        verifier
            .verify_server_cert(&leaf.clone().into_owned(), &[], &name, &[], UnixTime::now())
            .map_err(|e| {
                failed(format!(
                    "a certificate it signed does not verify for {host} ({e}); \
                     does ca.key belong to ca.pem?"
                ))
            })?;
    }
    Ok(())
}

/// Reads a PEM file of at most 1 MiB (certificates and keys are small).
fn read_pem(path: &Path) -> Result<String, PkiError> {
    let meta = fs::metadata(path).map_err(io_error(path, "reading"))?;
    if meta.len() > 1 << 20 {
        return Err(PkiError::BadCa {
            path: path.to_owned(),
            why: "larger than 1 MiB: not a PEM certificate or key".into(),
        });
    }
    fs::read_to_string(path).map_err(io_error(path, "reading"))
}

/// The CA of `dir` as rcgen needs it to sign: its parameters read back from
/// `ca.pem` (subject, key identifier) and its key. That the key matches is
/// checked when the new certificate is verified.
fn load_ca(files: &Files) -> Result<Ca, PkiError> {
    let bad = |path: &Path, why: String| PkiError::BadCa {
        path: path.to_owned(),
        why,
    };
    let cert_pem = read_pem(&files.ca_cert)?;
    let key_pem = read_pem(&files.ca_key)?;
    let params = CertificateParams::from_ca_cert_pem(&cert_pem)
        .map_err(|e| bad(&files.ca_cert, format!("not a PEM certificate ({e})")))?;
    if !matches!(params.is_ca, IsCa::Ca(_)) {
        return Err(bad(&files.ca_cert, "not a CA certificate (CA:TRUE)".into()));
    }
    if params.not_after < now_plus(0)? {
        return Err(bad(
            &files.ca_cert,
            format!(
                "the CA expired on {}: make a new one with `tls init` in another --dir \
                 and give agents its ca.pem",
                date(params.not_after)
            ),
        ));
    }
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| bad(&files.ca_key, format!("not a PEM private key ({e})")))?;
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| bad(&files.ca_cert, format!("not a PEM certificate ({e})")))?;
    // Re-signing only rebuilds rcgen's view of the CA (subject, key
    // identifier) for `signed_by`; ca.pem itself is left as it is, and new
    // certificates are verified against it, so a key that is not the CA's
    // is caught.
    let cert = params
        .self_signed(&key)
        .map_err(|e| bad(&files.ca_cert, format!("cannot sign with it ({e})")))?;
    Ok(Ca {
        cert,
        key,
        der,
        path: files.ca_cert.clone(),
    })
}

/// The names of the current server certificate, for `renew` without --host.
fn current_names(server_cert: &Path) -> Result<Vec<Host>, PkiError> {
    let pem = read_pem(server_cert)?;
    let params = CertificateParams::from_ca_cert_pem(&pem).map_err(|e| PkiError::BadCa {
        path: server_cert.to_owned(),
        why: format!("not a PEM certificate ({e}); give the names with --host"),
    })?;
    let names: Vec<Host> = params
        .subject_alt_names
        .iter()
        .filter_map(|san| match san {
            SanType::DnsName(n) => Some(Host::Dns(n.as_str().to_owned())),
            SanType::IpAddress(ip) => Some(Host::Ip(*ip)),
            _ => None,
        })
        .collect();
    if names.is_empty() {
        return Err(PkiError::BadCa {
            path: server_cert.to_owned(),
            why: "names no host (no DNS or IP subjectAltName); give them with --host".into(),
        });
    }
    Ok(names)
}

/// Creates `dir` 0700 if missing (its parents with the usual mode).
fn make_dir(dir: &Path) -> Result<(), PkiError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_error(parent, "creating directory"))?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            Err(io_error(dir, "creating directory")(e))
        }
        _ => Ok(()),
    }
}

fn absolute(dir: &Path) -> Result<PathBuf, PkiError> {
    fs::canonicalize(dir).map_err(io_error(dir, "resolving"))
}

/// Writes `path` crash-safely: a temp file in the same directory created
/// with `mode` (so a key is never readable by others, even for a moment),
/// fsync, then rename over `path` (`replace`) or hard-link to it, which
/// fails if `path` exists, and fsync of the directory.
fn write_file(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> Result<(), PkiError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    // A temp file of a killed earlier run with our pid: ours to replace.
    let _ = fs::remove_file(&tmp);
    let result = write_tmp(&tmp, bytes, mode).and_then(|()| {
        if replace {
            fs::rename(&tmp, path).map_err(io_error(path, "renaming a temp file to"))
        } else {
            link_new(&tmp, path)
        }
    });
    let _ = fs::remove_file(&tmp);
    result?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir, "syncing directory"))
}

fn write_tmp(tmp: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(io_error(tmp, "creating"))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io_error(tmp, "writing"))
}

/// Writes each new file (path, contents, mode), none replacing a file. All
/// or nothing: on a failure the files written so far are removed again, so
/// a rerun of `init` is not refused because of them.
fn write_all_new(files: &[(&PathBuf, &[u8], u32)]) -> Result<(), PkiError> {
    for (i, (path, bytes, mode)) in files.iter().enumerate() {
        if let Err(e) = write_file(path, bytes, *mode, false) {
            for (written, _, _) in &files[..i] {
                let _ = fs::remove_file(written);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Gives `tmp` the name `path` unless `path` exists (never replaces).
fn link_new(tmp: &Path, path: &Path) -> Result<(), PkiError> {
    match fs::hard_link(tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(PkiError::Exists(path.to_owned()))
        }
        Err(e) => Err(io_error(path, "creating")(e)),
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
mod tests {
    use super::*;

    #[test]
    fn host_lists_take_names_and_addresses() {
        let hosts = parse_hosts("Manager.example, 10.0.0.5,::1,[fe80::1],localhost").unwrap();
        assert_eq!(
            hosts,
            vec![
                Host::Dns("manager.example".into()),
                Host::Ip("10.0.0.5".parse().unwrap()),
                Host::Ip("::1".parse().unwrap()),
                Host::Ip("fe80::1".parse().unwrap()),
                Host::Dns("localhost".into()),
            ]
        );
    }

    #[test]
    fn bad_host_lists_are_usage_errors() {
        for bad in [
            "",
            "a,,b",
            "a,a",
            "bad name",
            "300.1.1.1",
            "1.2.3",
            "*.example",
            "a.",
            "-a.example",
            "a/b",
        ] {
            let e = parse_hosts(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
        let many = (0..=MAX_HOSTS).map(|i| format!("h{i}")).collect::<Vec<_>>();
        assert_eq!(parse_hosts(&many.join(",")).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn days_out_of_range_are_usage_errors() {
        assert!(check_days(1).is_ok() && check_days(MAX_DAYS).is_ok());
        for bad in [0, MAX_DAYS + 1] {
            assert_eq!(check_days(bad).unwrap_err().exit_code(), 2);
        }
    }

    #[test]
    fn a_refused_write_removes_the_files_written_before_it() {
        let dir = std::env::temp_dir().join(format!("pki-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (first, second, taken) = (dir.join("a"), dir.join("b"), dir.join("c"));
        fs::write(&taken, b"already here").unwrap();
        let err = write_all_new(&[
            (&first, b"1", 0o600),
            (&second, b"2", 0o644),
            (&taken, b"3", 0o600),
        ])
        .unwrap_err();
        assert!(matches!(&err, PkiError::Exists(p) if *p == taken), "{err}");
        assert!(!first.exists() && !second.exists(), "written files removed");
        assert_eq!(fs::read(&taken).unwrap(), b"already here");
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left: {leftovers:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! HTTPS trust for the agent: which root certificates it accepts for the
//! manager and for the download URLs the manager gives it.
//!
//! Without `ca_file` the agent trusts the webpki (Mozilla) roots compiled in,
//! so a static binary needs no CA bundle on the host. With `ca_file` it trusts
//! exactly the certificates in that PEM file and nothing else: a private CA
//! for a fleet's own manager. The file is read and checked when the config is
//! loaded, so a bad one stops the agent before it talks to anyone.

use rustls::CertificateError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::Path;
use std::sync::Arc;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// Largest `ca_file` read: a bundle of a few hundred certificates fits.
const MAX_CA_FILE: u64 = 4 << 20;

/// Reads the PEM certificates of `ca_file`. An error (a message, without the
/// path: the caller names the file) when it cannot be read, holds no
/// certificate, or holds one that cannot serve as a root.
pub fn read_roots(ca_file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let meta = std::fs::metadata(ca_file).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_CA_FILE {
        return Err(format!("larger than {MAX_CA_FILE} bytes"));
    }
    let pem = std::fs::read(ca_file).map_err(|e| format!("cannot read: {e}"))?;
    parse_roots(&pem)
}

/// The certificates of a PEM text, each checked to be usable as a root.
pub fn parse_roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    for (i, item) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = item.map_err(|e| format!("certificate {}: not valid PEM ({e})", i + 1))?;
        let mut store = rustls::RootCertStore::empty();
        store
            .add(cert.clone())
            .map_err(|e| format!("certificate {}: not a usable CA certificate ({e})", i + 1))?;
        certs.push(cert);
    }
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    Ok(certs)
}

/// The TLS settings of the agent's HTTP client: `roots` when `ca_file` is
/// set (an empty list trusts nothing), else the webpki roots.
pub fn client_config(ca_file: Option<&Path>, roots: &[CertificateDer<'static>]) -> TlsConfig {
    let root_certs = if ca_file.is_some() {
        let certs: Vec<Certificate<'static>> = roots
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        RootCerts::Specific(Arc::new(certs))
    } else {
        RootCerts::WebPki
    };
    TlsConfig::builder().root_certs(root_certs).build()
}

/// A plain explanation when `e` is a refused server certificate: what is
/// wrong, in words, and what to do. It becomes the cycle's error, so it is on
/// stderr, in the back-off line and record, and in `binproxy status`.
pub fn certificate_problem(e: &ureq::Error) -> Option<String> {
    let tls = match e {
        ureq::Error::Rustls(t) => t,
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>()?,
        _ => return None,
    };
    match tls {
        rustls::Error::InvalidCertificate(why) => Some(format!(
            "TLS: the server's certificate is not trusted ({}): {}",
            short_name(why),
            advice(why)
        )),
        other => Some(format!("TLS handshake failed: {other}")),
    }
}

/// The variant's name without its details (`NotValidForName`, not the
/// whole context): the words of [`advice`] carry those.
fn short_name(why: &CertificateError) -> String {
    let debug = match why {
        CertificateError::Other(other) => other.0.to_string(),
        _ => format!("{why:?}"),
    };
    let end = debug.find([' ', '{', '(']).unwrap_or(debug.len());
    debug[..end].trim_end_matches("Context").to_owned()
}

/// What is wrong with the certificate and what the operator can do.
fn advice(why: &CertificateError) -> String {
    use CertificateError as C;
    match why {
        C::Other(other) if other.0.to_string() == "CaUsedAsEndEntity" => CA_AS_SERVER.into(),
        C::UnknownIssuer => UNKNOWN_ISSUER.into(),
        C::NotValidForNameContext {
            expected,
            presented,
        } => not_for_name(&expected.to_str(), &presented_names(presented)),
        C::NotValidForName => not_for_name("the host of manager_url", "other names"),
        C::ExpiredContext { not_after, .. } => expired(&format!(" on {}", date(*not_after))),
        C::Expired => expired(""),
        C::NotValidYet | C::NotValidYetContext { .. } => NOT_YET_VALID.into(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => NOT_FOR_SERVERS.into(),
        _ => "check ca_file, or the certificate the server presents (see README \"HTTPS\")".into(),
    }
}

const CA_AS_SERVER: &str = "the manager's certificate is a CA certificate (CA:TRUE), \
    which TLS clients refuse as a server certificate (what `openssl req -x509` makes by \
    default); make a CA and a server certificate signed by it with \
    `manager-lite tls init --dir DIR --host NAME`, serve with DIR/server.pem and \
    DIR/server.key, and set ca_file to DIR/ca.pem (see README \"HTTPS\")";

const UNKNOWN_ISSUER: &str = "the manager's certificate is not signed by a CA this \
    agent trusts (ca_file, or without it the public web roots only): set ca_file to the \
    CA certificate that signed it (DIR/ca.pem from `manager-lite tls init`); a \
    self-signed server certificate cannot be trusted this way (see README \"HTTPS\")";

const NOT_YET_VALID: &str = "the manager's certificate is not valid yet: check the \
    clock of this host (and of the manager's)";

const NOT_FOR_SERVERS: &str = "the manager's certificate is not for TLS servers (no \
    serverAuth extended key usage): make one with `manager-lite tls init` or \
    `tls renew` (see README \"HTTPS\")";

fn not_for_name(expected: &str, presented: &str) -> String {
    format!(
        "the manager's certificate names {presented}, not {expected} (the host of \
         manager_url): use a manager_url the certificate names, or make a certificate \
         for that name with `manager-lite tls renew --dir DIR --host NAME[,IP...]`"
    )
}

/// webpki's `DnsName("a")`, `IpAddress(10.0.0.1)` as `a, 10.0.0.1`.
fn presented_names(presented: &[String]) -> String {
    if presented.is_empty() {
        return "no host (no subjectAltName)".into();
    }
    let plain = |p: &String| {
        let inner = p
            .strip_prefix("DnsName(")
            .or_else(|| p.strip_prefix("IpAddress("))
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or(p);
        inner.trim_matches('"').to_owned()
    };
    presented.iter().map(plain).collect::<Vec<_>>().join(", ")
}

fn expired(when: &str) -> String {
    format!(
        "the manager's certificate expired{when}: make a new one with \
         `manager-lite tls renew --dir DIR` and restart the manager (or, if it has not \
         expired, check the clock of this host)"
    )
}

/// `2027-01-02` of a certificate time.
fn date(t: rustls_pki_types::UnixTime) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.as_secs());
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .take(10)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_empty_files_are_refused() {
        for bad in [
            &b""[..],
            b"hello",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let e = parse_roots(bad).unwrap_err();
            assert!(e.contains("no PEM certificate"), "{e}");
        }
    }

    #[test]
    fn a_certificate_that_is_not_der_is_refused() {
        let pem = b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        let e = parse_roots(pem).unwrap_err();
        assert!(e.contains("certificate 1"), "{e}");
    }

    #[test]
    fn without_a_ca_file_the_webpki_roots_are_used() {
        let c = client_config(None, &[]);
        assert!(matches!(c.root_certs(), RootCerts::WebPki));
        let c = client_config(Some(Path::new("/ca.pem")), &[]);
        assert!(matches!(c.root_certs(), RootCerts::Specific(v) if v.is_empty()));
    }

    #[test]
    fn refused_certificates_are_explained_in_words() {
        use rustls::pki_types::ServerName;
        let wrong_name = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("manager.example").unwrap(),
            presented: vec![
                r#"DnsName("other.example")"#.into(),
                "IpAddress(10.0.0.1)".into(),
            ],
        };
        assert_eq!(short_name(&wrong_name), "NotValidForName");
        let text = advice(&wrong_name);
        assert!(
            text.contains("names other.example, 10.0.0.1, not manager.example"),
            "{text}"
        );
        assert_eq!(
            short_name(&CertificateError::UnknownIssuer),
            "UnknownIssuer"
        );
        assert!(advice(&CertificateError::UnknownIssuer).contains("set ca_file to the CA"));
        let expired = CertificateError::ExpiredContext {
            time: rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                1_800_000_000,
            )),
            not_after: rustls_pki_types::UnixTime::since_unix_epoch(
                std::time::Duration::from_secs(1_700_000_000),
            ),
        };
        assert!(
            advice(&expired).contains("expired on 2023-11-14"),
            "{}",
            advice(&expired)
        );
    }
}

//! HTTPS trust for the agent: which root certificates it accepts for the
//! manager and for the download URLs the manager gives it.
//!
//! Without `ca_file` the agent trusts the webpki (Mozilla) roots compiled in,
//! so a static binary needs no CA bundle on the host. With `ca_file` it trusts
//! exactly the certificates in that PEM file and nothing else: a private CA
//! for a fleet's own manager. The file is read and checked when the config is
//! loaded, so a bad one stops the agent before it talks to anyone.

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

/// A plain explanation when `e` is a refused server certificate.
pub fn certificate_problem(e: &ureq::Error) -> Option<String> {
    let tls = match e {
        ureq::Error::Rustls(t) => t,
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>()?,
        _ => return None,
    };
    match tls {
        rustls::Error::InvalidCertificate(why) => Some(format!(
            "TLS: the server's certificate is not trusted ({why:?}); \
             check ca_file, or the certificate the server presents"
        )),
        other => Some(format!("TLS handshake failed: {other}")),
    }
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
}

//! The server certificate: a new key and a leaf signed by the CA, verified
//! with rustls the way an agent will verify it before anything is written;
//! and the names of the current one, which `renew` keeps by default.

use super::ca::{read_pem, validity, Ca};
use super::error::generate;
use super::hosts::{san, Host};
use super::PkiError;
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::path::Path;
use std::sync::Arc;
use time::OffsetDateTime;

/// A server certificate made by [`issue`]: PEM texts and its end date.
pub(super) struct Leaf {
    pub(super) cert_pem: String,
    pub(super) key_pem: String,
    pub(super) not_after: OffsetDateTime,
}

/// A new key and a server certificate for `names` signed by the CA, checked
/// the way an agent will check it before anything is written.
pub(super) fn issue(names: &[Host], days: u32, ca: &Ca) -> Result<Leaf, PkiError> {
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
pub(super) fn verify(
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

/// The names of the current server certificate, for `renew` without --host.
pub(super) fn current_names(server_cert: &Path) -> Result<Vec<Host>, PkiError> {
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

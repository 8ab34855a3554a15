//! The private CA: its parameters and validity dates for `init`, and the
//! CA of a directory loaded back (`ca.pem`, `ca.key`) for `renew` to sign
//! with.

use super::error::io_error;
use super::hosts::Host;
use super::{date, Files, PkiError, BACKDATE, CA_DAYS};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;

/// `now` moved by whole seconds (back for a negative `secs`).
pub(super) fn now_plus(secs: i64) -> Result<OffsetDateTime, PkiError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    OffsetDateTime::from_unix_timestamp(now.saturating_add(secs)).map_err(PkiError::Dates)
}

pub(super) fn validity(params: &mut CertificateParams, days: u32) -> Result<(), PkiError> {
    let backdate = i64::try_from(BACKDATE.as_secs()).unwrap_or(0);
    params.not_before = now_plus(-backdate)?;
    params.not_after = now_plus(i64::from(days) * 86_400)?;
    Ok(())
}

pub(super) fn ca_params(first: &Host) -> Result<CertificateParams, PkiError> {
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
pub(super) struct Ca {
    pub(super) cert: rcgen::Certificate,
    pub(super) key: KeyPair,
    pub(super) der: CertificateDer<'static>,
    pub(super) path: PathBuf,
}

/// Reads a PEM file of at most 1 MiB (certificates and keys are small).
pub(super) fn read_pem(path: &Path) -> Result<String, PkiError> {
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
pub(super) fn load_ca(files: &Files) -> Result<Ca, PkiError> {
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

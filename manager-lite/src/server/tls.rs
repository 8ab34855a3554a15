//! The TLS side of the server: a rustls `ServerConfig` (ring, TLS 1.2 and
//! 1.3, no client certificates) from a PEM certificate chain and a PEM
//! private key. Every error names the file it is about.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// Builds the server's TLS configuration from `cert` (the chain, leaf
/// first) and `key` (PKCS#8, PKCS#1 or SEC1), both PEM.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let key_der = private_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|source| TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let what = |why| TlsError::Certificate {
        path: path.to_owned(),
        why,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| what(PemProblem::of(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| what(PemProblem::of(e)))?;
    if chain.is_empty() {
        return Err(what(PemProblem::NoCertificate));
    }
    Ok(chain)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.to_owned(),
        // The key's bytes never go into a message.
        why: match e {
            pem::Error::NoItemsFound => PemProblem::NoKey,
            other => PemProblem::of(other),
        },
    })
}

/// Why the certificate chain and key do not make a TLS configuration; each
/// names the file it is about.
#[derive(Debug)]
pub enum TlsError {
    /// rustls refused its own default protocol versions.
    Setup(rustls::Error),
    /// The key does not go with the certificate (or either is unusable).
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    Certificate {
        path: PathBuf,
        why: PemProblem,
    },
    Key {
        path: PathBuf,
        why: PemProblem,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Setup(e) => write!(f, "TLS setup: {e}"),
            Self::Mismatch { cert, key, source } => write!(
                f,
                "TLS certificate {} and key {} cannot be used together: {source}",
                cert.display(),
                key.display()
            ),
            Self::Certificate { path, why } => {
                write!(f, "TLS certificate file {}: {why}", path.display())
            }
            Self::Key { path, why } => write!(f, "TLS key file {}: {why}", path.display()),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Setup(e) | Self::Mismatch { source: e, .. } => Some(e),
            Self::Certificate { why, .. } | Self::Key { why, .. } => why.source(),
        }
    }
}

/// What was wrong with a PEM file.
#[derive(Debug)]
pub enum PemProblem {
    Io(std::io::Error),
    Nothing,
    NotPem,
    NoCertificate,
    NoKey,
}

impl PemProblem {
    fn of(e: pem::Error) -> PemProblem {
        match e {
            pem::Error::Io(io) => PemProblem::Io(io),
            pem::Error::NoItemsFound => PemProblem::Nothing,
            _ => PemProblem::NotPem,
        }
    }
}

impl fmt::Display for PemProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => e.fmt(f),
            Self::Nothing => f.write_str("nothing found in it"),
            Self::NotPem => f.write_str("not valid PEM"),
            Self::NoCertificate => f.write_str("no PEM certificate in it"),
            Self::NoKey => f.write_str("no PEM private key in it"),
        }
    }
}

impl std::error::Error for PemProblem {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn errors_name_the_file() {
        let missing = Path::new("/nonexistent/cert.pem");
        let err = server_config(missing, missing).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/cert.pem"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = temp(&dir, "empty.pem", "");
        let err = server_config(&empty, &empty).unwrap_err().to_string();
        assert!(
            err.contains("empty.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
        let garbage = temp(
            &dir,
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        );
        let err = server_config(&garbage, &garbage).unwrap_err().to_string();
        assert!(err.contains("garbage.pem"), "{err}");
    }
}

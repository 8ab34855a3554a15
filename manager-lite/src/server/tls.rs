//! The TLS side of the server: a rustls `ServerConfig` (ring, TLS 1.2 and
//! 1.3, no client certificates) from a PEM certificate chain and a PEM
//! private key. Every error names the file it is about.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// Builds the server's TLS configuration from `cert` (the chain, leaf
/// first) and `key` (PKCS#8, PKCS#1 or SEC1), both PEM.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = certificates(cert)?;
    let key_der = private_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            format!(
                "TLS certificate {} and key {} cannot be used together: {e}",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = |e: &dyn std::fmt::Display| format!("TLS certificate file {}: {e}", path.display());
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| what(&pem_error(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| what(&pem_error(&e)))?;
    if chain.is_empty() {
        return Err(what(&"no PEM certificate in it"));
    }
    Ok(chain)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PEM private key in it".to_owned(),
            other => pem_error(&other),
        };
        // The key's bytes never go into a message.
        format!("TLS key file {}: {why}", path.display())
    })
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "nothing found in it".to_owned(),
        _ => "not valid PEM".to_owned(),
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
        let err = server_config(missing, missing).unwrap_err();
        assert!(err.contains("/nonexistent/cert.pem"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = temp(&dir, "empty.pem", "");
        let err = server_config(&empty, &empty).unwrap_err();
        assert!(
            err.contains("empty.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
        let garbage = temp(
            &dir,
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        );
        let err = server_config(&garbage, &garbage).unwrap_err();
        assert!(err.contains("garbage.pem"), "{err}");
    }
}

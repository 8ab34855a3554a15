//! Certificates the tests make for themselves: a throwaway certificate
//! authority and server certificates it signs, written as PEM files into a
//! [`TempDir`]. Nothing here is trusted outside the test that made it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::TempDir;

/// A test certificate authority; its files live as long as the value.
pub struct TestCa {
    dir: TempDir,
    cert: rcgen::Certificate,
    key: KeyPair,
    /// `ca.pem`: the CA certificate, what a client is told to trust.
    pub ca_file: PathBuf,
}

/// A server certificate and key signed by a [`TestCa`].
pub struct ServerCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    /// A new CA named `name` (the name shows up in certificate errors).
    pub fn new(name: &str) -> TestCa {
        let dir = TempDir::new("test-ca");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).expect("writing ca.pem");
        TestCa {
            dir,
            cert,
            key,
            ca_file,
        }
    }

    /// A server certificate for `127.0.0.1` and `localhost`, as PEM files
    /// named after `tag`.
    pub fn server_cert(&self, tag: &str) -> ServerCert {
        self.server_cert_for(tag, &["127.0.0.1", "localhost"])
    }

    /// A server certificate for the given names (DNS names or IP addresses).
    pub fn server_cert_for(&self, tag: &str, names: &[&str]) -> ServerCert {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        params.distinguished_name.push(DnType::CommonName, tag);
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signing the server certificate");
        let cert_file = self.dir.join(&format!("{tag}.crt"));
        let key_file = self.dir.join(&format!("{tag}.key"));
        std::fs::write(&cert_file, cert.pem()).expect("writing the certificate");
        std::fs::write(&key_file, key.serialize_pem()).expect("writing the key");
        ServerCert {
            cert_file,
            key_file,
        }
    }
}

/// A rustls client configuration trusting only the certificates of `ca_file`.
pub fn client_config(ca_file: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        rustls::pki_types::CertificateDer::pem_file_iter(ca_file).expect("reading a CA file")
    {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a usable CA certificate");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_pem_files_a_client_can_parse() {
        let ca = TestCa::new("sanity CA");
        let server = ca.server_cert("sanity");
        let ca_pem = std::fs::read_to_string(&ca.ca_file).unwrap();
        assert!(ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let key_pem = std::fs::read_to_string(&server.key_file).unwrap();
        assert!(key_pem.contains("PRIVATE KEY"));
        let cert_pem = std::fs::read_to_string(&server.cert_file).unwrap();
        assert_ne!(cert_pem, ca_pem);
    }
}

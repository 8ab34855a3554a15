//! STUB, to be replaced at merge by the real `pki.rs` (written in parallel):
//! only the interface `tls init` / `tls renew` call, refusing every call.

use std::fmt;
use std::path::Path;

/// Days a server certificate is valid for unless `--days` says otherwise.
pub const DEFAULT_DAYS: u32 = 365;

/// Writes a CA and a server certificate into `dir`; the text to print.
pub fn init(dir: &Path, hosts: &str, days: u32) -> Result<String, PkiError> {
    let _ = (dir, hosts, days);
    Err(PkiError::NotBuilt)
}

/// Issues a new server certificate from the CA in `dir`; the text to print.
pub fn renew(dir: &Path, hosts: Option<&str>, days: u32) -> Result<String, PkiError> {
    let _ = (dir, hosts, days);
    Err(PkiError::NotBuilt)
}

#[derive(Debug)]
pub enum PkiError {
    /// This stub: the real module is not merged yet.
    NotBuilt,
}

impl PkiError {
    pub fn exit_code(&self) -> u8 {
        1
    }
}

impl fmt::Display for PkiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tls is not built in yet (stub)")
    }
}

impl std::error::Error for PkiError {}

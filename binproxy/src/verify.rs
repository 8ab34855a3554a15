//! Checking what was downloaded against what the manager announced: the
//! bytes are hashed and counted as they stream in (no second pass over the
//! file), more bytes than announced are refused at once, and the finished
//! file must match both size and sha256 exactly.

use sha2::{Digest, Sha256};

use binproxy_protocol::hex;

use crate::hashcache::short;

/// Hashes and counts a download against its expected size and sha256.
pub struct Verifier {
    hasher: Sha256,
    seen: u64,
    size: u64,
    sha256: String,
}

impl Verifier {
    pub fn new(size: u64, sha256: &str) -> Verifier {
        Verifier {
            hasher: Sha256::new(),
            seen: 0,
            size,
            sha256: sha256.to_owned(),
        }
    }

    /// How many bytes are still expected.
    pub fn remaining(&self) -> u64 {
        self.size.saturating_sub(self.seen)
    }

    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Takes the next bytes; refuses more than announced.
    pub fn update(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.seen += bytes.len() as u64;
        if self.seen > self.size {
            return Err(format!("more bytes than the announced {}", self.size));
        }
        self.hasher.update(bytes);
        Ok(())
    }

    /// The whole file arrived: size and hash must match.
    pub fn finish(self) -> Result<(), String> {
        if self.seen != self.size {
            return Err(format!("got {} of {} bytes", self.seen, self.size));
        }
        let got = hex(&self.hasher.finalize());
        if got != self.sha256 {
            return Err(format!(
                "sha256 {} does not match the target {}",
                short(&got),
                short(&self.sha256)
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(b: &[u8]) -> String {
        hex(&Sha256::digest(b))
    }

    #[test]
    fn exact_bytes_pass() {
        let mut v = Verifier::new(5, &sha(b"hello"));
        v.update(b"he").unwrap();
        v.update(b"llo").unwrap();
        assert_eq!(v.remaining(), 0);
        v.finish().unwrap();
    }

    #[test]
    fn wrong_short_and_long_fail() {
        let mut v = Verifier::new(5, &sha(b"hello"));
        v.update(b"hellO").unwrap();
        assert!(v.finish().unwrap_err().contains("does not match"));
        let mut v = Verifier::new(5, &sha(b"hello"));
        v.update(b"hell").unwrap();
        assert!(v.finish().unwrap_err().contains("got 4 of 5"));
        let mut v = Verifier::new(5, &sha(b"hello"));
        assert!(v.update(b"hello!").unwrap_err().contains("more bytes"));
    }
}

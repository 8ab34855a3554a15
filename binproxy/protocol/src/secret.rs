//! The secret a node makes for itself and proposes when it enrolls, as it
//! travels in a keepalive's `proposed_secret`. It is serialized as the plain
//! string (TLS protects it on the wire) but never shown by `Debug`, so a
//! logged request body cannot leak it; [`Secret::well_formed`] is the one
//! rule for its shape, which the agent makes and the manager checks.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A secret on the wire: serialized as the plain string, but never shown by
/// `Debug`, so logging a request body cannot leak it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// Whether `secret` has the shape of a node-made secret: 64 lowercase
    /// hex digits (32 random bytes), the only shape `proposed_secret` takes.
    pub fn well_formed(secret: &str) -> bool {
        secret.len() == 64
            && secret
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_it_and_the_shape_is_64_lowercase_hex() {
        let s = Secret("ab".repeat(32));
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert!(Secret::well_formed(&s.0));
        for bad in [
            "",
            "ab",
            &"AB".repeat(32),
            &"ab".repeat(33),
            &"gg".repeat(32),
        ] {
            assert!(!Secret::well_formed(bad), "{bad}");
        }
    }
}

//! Rules for names that end up in paths, keys and URLs.
//!
//! Every name from the network or a config file passes one of these checks
//! before it touches anything else. The allowed alphabets contain no `/`, no
//! NUL, no whitespace and no `%`, and `.` and `..` are refused, so a checked
//! name can never climb out of a directory it is joined to.

use std::fmt;

/// A name or hash that breaks its rule. The message names the field, quotes
/// the value (escaped, shortened) and states the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    pub field: &'static str,
    pub value: String,
    pub rule: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {}: {}", self.field, self.value, self.rule)
    }
}

impl std::error::Error for NameError {}

fn error(field: &'static str, value: &str, rule: &'static str) -> NameError {
    // Quote with escapes so NUL, newlines and the like stay visible and cannot
    // forge log lines; cut long values so an error stays one short line.
    let shown: String = value.chars().take(80).collect();
    let mut quoted = format!("{shown:?}");
    if value.chars().count() > 80 {
        quoted.push('…');
    }
    NameError {
        field,
        value: quoted,
        rule,
    }
}

fn check(
    field: &'static str,
    value: &str,
    max: usize,
    extra: &[u8],
    rule: &'static str,
) -> Result<(), NameError> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b) || extra.contains(&b);
    let ok = !value.is_empty()
        && value.len() <= max
        && value != "."
        && value != ".."
        && value.bytes().all(ok_char);
    if ok {
        Ok(())
    } else {
        Err(error(field, value, rule))
    }
}

/// Bin names: `[A-Za-z0-9._-]{1,64}`, not `.` or `..`.
pub fn check_bin_name(name: &str) -> Result<(), NameError> {
    check(
        "bin name",
        name,
        64,
        b"",
        "must be 1 to 64 of A-Z a-z 0-9 . _ - and not . or ..",
    )
}

/// Versions: `[A-Za-z0-9._-]{1,128}`, not `.` or `..`.
pub fn check_version(version: &str) -> Result<(), NameError> {
    check(
        "version",
        version,
        128,
        b"",
        "must be 1 to 128 of A-Z a-z 0-9 . _ - and not . or ..",
    )
}

/// CPU arch names follow the bin name rule (`x86_64`, `aarch64`).
pub fn check_arch(arch: &str) -> Result<(), NameError> {
    check(
        "arch",
        arch,
        64,
        b"",
        "must be 1 to 64 of A-Z a-z 0-9 . _ - and not . or ..",
    )
}

/// Node ids: `[A-Za-z0-9._:-]{1,128}`, not `.` or `..`.
pub fn check_node_id(id: &str) -> Result<(), NameError> {
    check(
        "node_id",
        id,
        128,
        b":",
        "must be 1 to 128 of A-Z a-z 0-9 . _ : - and not . or ..",
    )
}

/// A sha256 in hex. Returns it in lower case, the one form stored and compared.
pub fn check_sha256(field: &'static str, hex: &str) -> Result<String, NameError> {
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(error(field, hex, "must be a sha256: 64 hex digits"))
    }
}

/// Lower-case hex, the one spelling of a hash on the wire and on disk.
/// (By table: `write!` per byte was 2% of the manager's CPU on manifest
/// polls, which hash their answer for the ETag.)
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// The one spelling of an arch: Debian's and Go's names map to Rust's, so an
/// artifact uploaded as `amd64` serves a node that reports `x86_64`.
pub fn normalize_arch(arch: &str) -> &str {
    match arch {
        "amd64" | "x64" => "x86_64",
        "arm64" => "aarch64",
        "i386" | "i686" => "x86",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_names() {
        for ok in ["streamd", "a", "a.b-c_d", "A9", &"x".repeat(64)] {
            assert!(check_bin_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\0b",
            "a b",
            "%2e",
            "ü",
            &"x".repeat(65),
        ] {
            assert!(check_bin_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions_and_node_ids() {
        assert!(check_version(&"1".repeat(128)).is_ok());
        assert!(check_version(&"1".repeat(129)).is_err());
        assert!(check_version("1.2.3-rc.1").is_ok());
        assert!(check_node_id("10.0.0.1:web").is_ok());
        assert!(check_bin_name("a:b").is_err());
        assert!(check_node_id("..").is_err());
        assert!(check_node_id(&"n".repeat(129)).is_err());
    }

    #[test]
    fn error_names_field_and_escapes_value() {
        let e = check_bin_name("a\nb").unwrap_err().to_string();
        assert!(e.starts_with("invalid bin name \"a\\nb\""), "{e}");
        let long = check_version(&"v/".repeat(100)).unwrap_err().to_string();
        assert!(long.len() < 250, "{long}");
    }

    #[test]
    fn sha256_lowercased() {
        let upper = "AB".repeat(32);
        assert_eq!(check_sha256("sha256sum", &upper).unwrap(), "ab".repeat(32));
        assert!(check_sha256("sha256sum", "abc").is_err());
        assert!(check_sha256("sha256sum", &"g".repeat(64)).is_err());
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }

    #[test]
    fn arch_aliases() {
        assert_eq!(normalize_arch("amd64"), "x86_64");
        assert_eq!(normalize_arch("arm64"), "aarch64");
        assert_eq!(normalize_arch("riscv64"), "riscv64");
    }
}

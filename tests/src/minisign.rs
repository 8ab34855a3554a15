//! The real `minisign` CLI, for the signature tests (agent and manager side):
//! a key pair without a password made by `minisign -G -W` in a temp dir of
//! its own, signatures made with `minisign -S` (prehashed, or legacy with
//! `-l`) and checked with `minisign -V`; and [`WELL_FORMED`], a signature
//! of the right shape that nobody signed. The CLI must be installed
//! (`tests/run.sh` installs it): without it the tests fail saying how to
//! install it; they are not skipped.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::{output_within, unique, TempDir};

/// A signature well-formed (base64 of the right lengths, algorithm "ED") but
/// signed by nobody, for the manager's tests: the manager checks a
/// signature's shape only.
pub const WELL_FORMED: &str = "untrusted comment: signature from minisign secret key\n\
    RUS/6ARklDCuZucTpt+RnHwxPQQVoBhvNhJaitDn16AWO1o+21elY7nnfC3f6X79V2U4x7EHazg3tTD9MXtJYSzHFiD37mRcnQw=\n\
    trusted comment: bin=tool version=1.0 arch=x86_64 timestamp=1700000000\n\
    NJa3FKs9y0AKjHaxW9fhpycmdS1ManTIIEgQXEXPXKQ7VH0nr3kLP/PUQTUdxU1IohV89S60PCSyKZRt8TuhDQ==\n";

/// How long one `minisign` command may run.
const LIMIT: Duration = Duration::from_secs(60);

/// A key pair: `DIR/key.pub` and `DIR/key.sec`; the files signed and their
/// signatures go into `DIR` too, which lives as long as the value.
pub struct Minisign {
    pub dir: TempDir,
    /// The base64 line of the `.pub` file (`RW...`), as `trusted_keys` takes it.
    pub public: String,
    pub public_file: PathBuf,
    pub secret: PathBuf,
}

impl Minisign {
    /// A new key pair. Panics, saying how to install it, when `minisign` is
    /// not on the PATH: a skipped test would pass without testing anything.
    pub fn generate() -> Minisign {
        let found = Command::new("minisign")
            .arg("-v")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "the `minisign` CLI is not installed (not found on PATH): these tests sign real \
             artifacts with it and are not skipped without it. Install it (Debian/Ubuntu: \
             `apt-get install minisign`; others: https://github.com/jedisct1/minisign); \
             tests/run.sh installs it"
        );
        let dir = TempDir::new("minisign");
        let public_file = dir.join("key.pub");
        let secret = dir.join("key.sec");
        run_ok(&[
            "-G".as_ref(),
            "-W".as_ref(),
            "-p".as_ref(),
            public_file.as_os_str(),
            "-s".as_ref(),
            secret.as_os_str(),
        ]);
        let text = fs::read_to_string(&public_file).unwrap();
        let public = text
            .lines()
            .find(|l| l.starts_with("RW"))
            .unwrap_or_else(|| panic!("no RW... line in {}:\n{text}", public_file.display()))
            .to_owned();
        Minisign {
            dir,
            public,
            public_file,
            secret,
        }
    }

    /// `minisign -S` of `file` with this trusted comment, `flags` (e.g. `-l`,
    /// the legacy kind) before the other arguments; returns the path of the
    /// `.minisig` written (in the key's dir).
    pub fn sign_file(&self, flags: &[&str], file: &Path, trusted_comment: &str) -> PathBuf {
        let sig = self.dir.join(&format!("{}.minisig", unique("signature")));
        let mut args: Vec<&OsStr> = flags.iter().map(OsStr::new).collect();
        args.extend([
            "-S".as_ref(),
            "-s".as_ref(),
            self.secret.as_os_str(),
            "-m".as_ref(),
            file.as_os_str(),
            "-x".as_ref(),
            sig.as_os_str(),
            "-t".as_ref(),
            trusted_comment.as_ref(),
        ]);
        run_ok(&args);
        sig
    }

    /// [`Minisign::sign_file`] of `bytes`; the `.minisig` text.
    pub fn sign_with(&self, flags: &[&str], bytes: &[u8], trusted_comment: &str) -> String {
        let file = self.dir.join(&unique("artifact"));
        fs::write(&file, bytes).unwrap();
        fs::read_to_string(self.sign_file(flags, &file, trusted_comment)).unwrap()
    }

    /// A prehashed signature of `bytes`; the `.minisig` text.
    pub fn sign(&self, bytes: &[u8], trusted_comment: &str) -> String {
        self.sign_with(&[], bytes, trusted_comment)
    }

    /// Whether `minisign -V` accepts `signature` for `bytes` with this key.
    pub fn verifies(&self, bytes: &[u8], signature: &str) -> bool {
        let name = unique("checked");
        let (file, sig) = (
            self.dir.join(&name),
            self.dir.join(&format!("{name}.minisig")),
        );
        fs::write(&file, bytes).unwrap();
        fs::write(&sig, signature).unwrap();
        run(&[
            "-V".as_ref(),
            "-q".as_ref(),
            "-p".as_ref(),
            self.public_file.as_os_str(),
            "-x".as_ref(),
            sig.as_os_str(),
            "-m".as_ref(),
            file.as_os_str(),
        ])
        .status
        .success()
    }
}

/// Runs `minisign ARGS`, stdin closed (it never prompts: the key has no
/// password), bounded in time.
fn run(args: &[&OsStr]) -> Output {
    let mut cmd = Command::new("minisign");
    cmd.args(args);
    output_within(&mut cmd, LIMIT)
}

/// [`run`], panicking with its output when it fails.
fn run_ok(args: &[&OsStr]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "minisign {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

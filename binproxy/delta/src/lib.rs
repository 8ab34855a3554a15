//! Binary patches between two builds of a program, and the zstd form of a
//! whole artifact: what lets a host that already runs version N fetch only
//! what changed in N+1.
//!
//! manager-lite makes the patches (feature `build`: a suffix sort of the old
//! build and a zstd encoder); binproxy only applies them (`apply`, `zst`),
//! with a pure-Rust zstd decoder so the static agent stays small and carries
//! no C. Nothing here is trusted: the agent checks the patch's sha256 before
//! applying it and the result's size, sha256 and signature after, exactly as
//! for a full download. What this crate guarantees is that a malformed or
//! hostile patch ends in an error, never a panic, and never costs more than
//! bounded memory ([`MAX_WINDOW`] per zstd stream) or more output than the
//! size the caller expects.
//!
//! # The patch format
//!
//! The method is bsdiff's (Colin Percival, 2003): match the new build
//! against a suffix array of the old one, extend each match while at least
//! half its bytes agree, and store the bytewise difference of the matched
//! stretches (mostly zeros: the code moved, its pointers changed a little)
//! apart from the bytes that are new. Three streams, each one zstd frame:
//!
//! ```text
//! header   48 bytes: magic "BPDELTA\x01", then u64 LE: old size, new size,
//!          and the compressed lengths of the three streams below
//! control  per entry, LEB128 varints: seek (zigzag), add, extra
//!          (move the old position by seek; add `add` bytes of old + diff;
//!           copy `extra` bytes of extra)
//! diff     the bytes to add (wrapping) to the old bytes, as zero runs:
//!          pairs (n, b) = n zeros then b; 255 alone = 255 zeros
//! extra    the bytes with no counterpart in the old build
//! ```
//!
//! Where bsdiff compresses with bzip2, this uses zstd at a high level with an
//! 8 MiB window, which is smaller and decodes several times faster (README,
//! "Delta updates", has the figures beside bsdiff and `zstd --patch-from`).

#![cfg(unix)]

mod apply;
#[cfg(feature = "build")]
mod build;
mod error;
mod format;
mod runs;
pub mod zst;

pub use apply::apply;
#[cfg(feature = "build")]
pub use build::{build, BuildOptions, BuildStats};
pub use error::DeltaError;
pub use format::{Header, HEADER_LEN, MAGIC};

/// Largest zstd window a stream of a patch or a `.zst` artifact may ask of
/// the decoder; what the manager's encoder uses (2^23). It bounds the
/// agent's memory whatever the size of the binary.
pub const MAX_WINDOW: u64 = 8 * 1024 * 1024;

#[cfg(test)]
mod tests;

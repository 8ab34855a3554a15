//! The zstd form of a whole artifact (`<sha256>.zst`, the target's `zst`),
//! and the window-bounded decoder the patch streams share.

use std::io::{Read, Write};

use ruzstd::decoding::{FrameDecoder, StreamingDecoder};

use crate::{DeltaError, MAX_WINDOW};

/// Level of the manager's encoder: high, because a build is compressed once
/// and downloaded by every host; the window stays at [`MAX_WINDOW`].
pub const LEVEL: i32 = 19;

/// A decoder of one zstd frame that refuses a window above [`MAX_WINDOW`].
pub fn decoder<R: Read>(src: R) -> Result<StreamingDecoder<R, FrameDecoder>, DeltaError> {
    StreamingDecoder::new_with_max_window_size(src, MAX_WINDOW)
        .map_err(|e| DeltaError::corrupt(format!("zstd frame header: {e}")))
}

/// Decodes `src` into `out`, which must come to exactly `expected` bytes.
/// Returns the bytes written.
pub fn decompress(src: impl Read, out: &mut impl Write, expected: u64) -> Result<u64, DeltaError> {
    let mut dec = decoder(src)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        let n = dec
            .read(&mut buf)
            .map_err(|e| DeltaError::corrupt(format!("zstd stream: {e}")))?;
        if n == 0 {
            break;
        }
        written += n as u64;
        if written > expected {
            return Err(DeltaError::WrongSize {
                expected,
                actual: written,
            });
        }
        out.write_all(&buf[..n])
            .map_err(DeltaError::io("writing the decompressed artifact"))?;
    }
    if written != expected {
        return Err(DeltaError::WrongSize {
            expected,
            actual: written,
        });
    }
    Ok(written)
}

/// Compresses `src` into `dst` as one zstd frame at `level` with the
/// bounded window; returns the compressed length.
#[cfg(feature = "build")]
pub fn compress(mut src: impl Read, dst: impl Write, level: i32) -> std::io::Result<u64> {
    let mut counted = Counted { inner: dst, n: 0 };
    let mut enc = zstd::stream::Encoder::new(&mut counted, level)?;
    enc.set_parameter(zstd::stream::raw::CParameter::WindowLog(window_log()))?;
    enc.include_checksum(true)?;
    std::io::copy(&mut src, &mut enc)?;
    enc.finish()?;
    Ok(counted.n)
}

#[cfg(feature = "build")]
fn window_log() -> u32 {
    MAX_WINDOW.trailing_zeros()
}

/// A writer that counts what passes through it.
#[cfg(feature = "build")]
pub(crate) struct Counted<W> {
    pub inner: W,
    pub n: u64,
}

#[cfg(feature = "build")]
impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks_the_size() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut z = Vec::new();
        let n = compress(data.as_slice(), &mut z, 3).unwrap();
        assert_eq!(n, z.len() as u64);
        assert!(z.len() < data.len() / 10);
        let mut out = Vec::new();
        decompress(z.as_slice(), &mut out, data.len() as u64).unwrap();
        assert_eq!(out, data);
        let short = decompress(z.as_slice(), &mut Vec::new(), 10);
        assert!(
            matches!(short, Err(DeltaError::WrongSize { .. })),
            "{short:?}"
        );
        let long = decompress(z.as_slice(), &mut Vec::new(), 300_001);
        assert!(
            matches!(long, Err(DeltaError::WrongSize { .. })),
            "{long:?}"
        );
    }

    #[test]
    fn refuses_a_window_above_the_bound() {
        let data = vec![7u8; 1 << 20];
        let mut z = Vec::new();
        let mut enc = zstd::stream::Encoder::new(&mut z, 1).unwrap();
        enc.set_parameter(zstd::stream::raw::CParameter::WindowLog(27))
            .unwrap();
        enc.write_all(&data).unwrap();
        enc.finish().unwrap();
        let err = decompress(z.as_slice(), &mut Vec::new(), 1 << 20).unwrap_err();
        assert!(matches!(err, DeltaError::Corrupt(_)), "{err}");
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        for junk in [&b""[..], b"\x28\xb5\x2f\xfd", b"hello world, not zstd"] {
            assert!(decompress(junk, &mut Vec::new(), 5).is_err());
        }
    }
}

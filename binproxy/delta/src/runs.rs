//! The diff stream's zero runs, spelled out before zstd sees them.
//!
//! Where an old and a new build agree, the diff is zero; where code moved,
//! a pointer's low byte or two differ. So the stream is long runs of zeros
//! with a byte here and there, which zstd alone codes poorly (each lone
//! byte costs it a literal and a match). As pairs `(run, byte)` — `run`
//! zeros, then `byte` — with `255` alone meaning 255 zeros and no byte, the
//! same stream compresses ~16% smaller (README, "Delta updates").

use std::io::{self, Read};

/// A code byte that means "255 zeros, no byte after".
const LONG: u8 = 255;

/// Encodes into pairs as bytes are written; [`RunWriter::finish`] ends it.
#[cfg(feature = "build")]
pub struct RunWriter<W: io::Write> {
    inner: W,
    run: u8,
}

#[cfg(feature = "build")]
impl<W: io::Write> RunWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, run: 0 }
    }

    pub fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(bytes.len() / 8 + 2);
        for &b in bytes {
            if b == 0 {
                self.run += 1;
                if self.run == LONG {
                    out.push(LONG);
                    self.run = 0;
                }
            } else {
                out.extend_from_slice(&[self.run, b]);
                self.run = 0;
            }
        }
        self.inner.write_all(&out)
    }

    /// Writes the last run (as `run - 1` zeros and a zero byte).
    pub fn finish(mut self) -> io::Result<W> {
        if self.run > 0 {
            self.inner.write_all(&[self.run - 1, 0])?;
        }
        Ok(self.inner)
    }
}

/// Decodes pairs back into the bytes they stand for.
pub struct RunReader<R: Read> {
    inner: R,
    /// Zeros owed, then the byte after them, if any.
    zeros: usize,
    byte: Option<u8>,
}

impl<R: Read> RunReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            zeros: 0,
            byte: None,
        }
    }

    /// Reads the next code; `false` at the end of the stream.
    fn refill(&mut self) -> io::Result<bool> {
        let mut code = [0u8];
        if self.inner.read(&mut code)? == 0 {
            return Ok(false);
        }
        if code[0] == LONG {
            self.zeros = usize::from(LONG);
            return Ok(true);
        }
        let mut byte = [0u8];
        self.inner.read_exact(&mut byte)?;
        self.zeros = usize::from(code[0]);
        self.byte = Some(byte[0]);
        Ok(true)
    }
}

impl<R: Read> Read for RunReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            if self.zeros == 0 && self.byte.is_none() && !self.refill()? {
                break;
            }
            let z = self.zeros.min(buf.len() - n);
            buf[n..n + z].fill(0);
            self.zeros -= z;
            n += z;
            if self.zeros == 0 && n < buf.len() {
                if let Some(b) = self.byte.take() {
                    buf[n] = b;
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(data: &[u8]) {
        let mut w = RunWriter::new(Vec::new());
        for part in data.chunks(7) {
            w.push(part).unwrap();
        }
        let encoded = w.finish().unwrap();
        let mut back = Vec::new();
        RunReader::new(encoded.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn runs_round_trip() {
        round_trip(b"");
        round_trip(&[0]);
        round_trip(&[1]);
        round_trip(&[0; 254]);
        round_trip(&[0; 255]);
        round_trip(&[0; 256]);
        round_trip(&[0; 1000]);
        let mut mixed = vec![0u8; 5000];
        for i in (0..5000).step_by(97) {
            mixed[i] = u8::try_from(i % 251).unwrap();
        }
        round_trip(&mixed);
        let every: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        round_trip(&every);
    }

    #[test]
    fn a_cut_pair_is_an_error() {
        let mut back = Vec::new();
        let err = RunReader::new(&[3u8][..])
            .read_to_end(&mut back)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}

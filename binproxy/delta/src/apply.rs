//! Applying a patch: the old build and the patch in, the new build out, in
//! one pass with fixed buffers, whatever the size of either.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;

use crate::format::{corrupt_stream, Header, Step};
use crate::runs::RunReader;
use crate::{zst, DeltaError};

const BUF: usize = 64 * 1024;

/// Writes the build that `patch` makes from `old` into `out`, which must
/// come to `expected` bytes (the target's size). Returns the bytes written.
///
/// The result is not checked here beyond its size: the caller hashes what
/// `out` receives and trusts only that.
pub fn apply(
    old: &File,
    patch: &File,
    out: &mut impl Write,
    expected: u64,
) -> Result<u64, DeltaError> {
    let patch_len = patch
        .metadata()
        .map_err(DeltaError::io("reading the patch"))?
        .len();
    let mut head = [0u8; 48];
    patch
        .read_exact_at(&mut head, 0)
        .map_err(|_| DeltaError::corrupt("shorter than its header"))?;
    let header = Header::parse(&head, patch_len)?;
    let old_len = old
        .metadata()
        .map_err(DeltaError::io("reading the base"))?
        .len();
    if header.old_size != old_len {
        return Err(DeltaError::WrongBase {
            expected: header.old_size,
            actual: old_len,
        });
    }
    if header.new_size != expected {
        return Err(DeltaError::WrongSize {
            expected,
            actual: header.new_size,
        });
    }
    let [c, d, e] = header.sections().map(|(pos, len)| Section {
        file: patch,
        pos,
        end: pos + len,
    });
    let mut streams = Streams {
        control: BufReader::new(zst::decoder(c)?),
        diff: RunReader::new(BufReader::new(zst::decoder(BufReader::new(d))?)),
        extra: zst::decoder(BufReader::new(e))?,
    };
    let mut old = BufReader::with_capacity(BUF, old);
    let written = run(&mut streams, &mut old, old_len, out, expected)?;
    streams.expect_end()?;
    Ok(written)
}

struct Streams<C, D, E> {
    control: C,
    diff: D,
    extra: E,
}

impl<C: Read, D: Read, E: Read> Streams<C, D, E> {
    /// Nothing may follow the last step: a patch is all used or refused.
    fn expect_end(&mut self) -> Result<(), DeltaError> {
        if Step::read(&mut self.control)?.is_some() {
            return Err(DeltaError::corrupt(
                "control stream goes on past the result's size",
            ));
        }
        for (name, r) in [
            ("diff", &mut self.diff as &mut dyn Read),
            ("extra", &mut self.extra),
        ] {
            let mut one = [0u8];
            if r.read(&mut one).map_err(|e| corrupt_stream(name, &e))? != 0 {
                return Err(DeltaError::corrupt(format!(
                    "{name} stream has bytes left over"
                )));
            }
        }
        Ok(())
    }
}

/// The steps of the control stream, until the result has its size.
fn run<C: Read, D: Read, E: Read>(
    s: &mut Streams<C, D, E>,
    old: &mut BufReader<&File>,
    old_len: u64,
    out: &mut impl Write,
    expected: u64,
) -> Result<u64, DeltaError> {
    let mut a = vec![0u8; BUF];
    let mut b = vec![0u8; BUF];
    let (mut old_pos, mut written) = (0u64, 0u64);
    while written < expected {
        let step = Step::read(&mut s.control)?
            .ok_or_else(|| DeltaError::corrupt("control stream ends before the result does"))?;
        let start = old_pos
            .checked_add_signed(step.seek)
            .filter(|p| *p <= old_len)
            .ok_or_else(|| DeltaError::corrupt("a seek leaves the base"))?;
        let fits = start
            .checked_add(step.add)
            .is_some_and(|end| end <= old_len);
        let room = written
            .checked_add(step.add)
            .and_then(|w| w.checked_add(step.extra))
            .is_some_and(|w| w <= expected);
        if !fits || !room {
            return Err(DeltaError::corrupt(
                "a step reaches past the base or the result",
            ));
        }
        #[allow(clippy::cast_possible_wrap)] // both within the base's size
        old.seek_relative(start as i64 - old_pos as i64)
            .map_err(DeltaError::io("reading the base"))?;
        add(old, &mut s.diff, out, step.add, (&mut a, &mut b))?;
        copy(&mut s.extra, out, step.extra, &mut a)?;
        old_pos = start + step.add;
        written += step.add + step.extra;
    }
    Ok(written)
}

/// `len` bytes of the base plus the diff stream, bytewise.
fn add(
    old: &mut impl Read,
    diff: &mut impl Read,
    out: &mut impl Write,
    len: u64,
    (a, b): (&mut [u8], &mut [u8]),
) -> Result<(), DeltaError> {
    let mut left = len;
    while left > 0 {
        let n = chunk(left, a.len());
        old.read_exact(&mut a[..n])
            .map_err(DeltaError::io("reading the base"))?;
        diff.read_exact(&mut b[..n])
            .map_err(|e| corrupt_stream("diff", &e))?;
        for (x, y) in a[..n].iter_mut().zip(&b[..n]) {
            *x = x.wrapping_add(*y);
        }
        out.write_all(&a[..n])
            .map_err(DeltaError::io("writing the result"))?;
        left -= n as u64;
    }
    Ok(())
}

/// `len` bytes of the extra stream, as they are.
fn copy(
    extra: &mut impl Read,
    out: &mut impl Write,
    len: u64,
    buf: &mut [u8],
) -> Result<(), DeltaError> {
    let mut left = len;
    while left > 0 {
        let n = chunk(left, buf.len());
        extra
            .read_exact(&mut buf[..n])
            .map_err(|e| corrupt_stream("extra", &e))?;
        out.write_all(&buf[..n])
            .map_err(DeltaError::io("writing the result"))?;
        left -= n as u64;
    }
    Ok(())
}

fn chunk(left: u64, cap: usize) -> usize {
    usize::try_from(left).map_or(cap, |l| l.min(cap))
}

/// One stream of the patch file, read by position so the three can be read
/// side by side from one open file.
struct Section<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Section<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = chunk(self.end - self.pos, buf.len());
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

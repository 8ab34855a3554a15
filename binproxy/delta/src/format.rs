//! The patch header and the control stream's varints.

use std::io::{self, Read};

use crate::DeltaError;

/// The first eight bytes of every patch.
pub const MAGIC: [u8; 8] = *b"BPDELTA\x01";

/// Bytes before the first stream.
pub const HEADER_LEN: u64 = 48;

/// What a patch says of itself: the sizes of the base and the result, and
/// where its three streams lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub old_size: u64,
    pub new_size: u64,
    pub control_len: u64,
    pub diff_len: u64,
    pub extra_len: u64,
}

impl Header {
    pub fn to_bytes(self) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..8].copy_from_slice(&MAGIC);
        let fields = [
            self.old_size,
            self.new_size,
            self.control_len,
            self.diff_len,
            self.extra_len,
        ];
        for (i, v) in fields.iter().enumerate() {
            out[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Parses the header of a patch of `patch_len` bytes; the streams must
    /// fill the rest of it exactly.
    pub fn parse(bytes: &[u8; 48], patch_len: u64) -> Result<Self, DeltaError> {
        if bytes[..8] != MAGIC {
            return Err(DeltaError::corrupt("not a binproxy delta (bad magic)"));
        }
        let field = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[8 + i * 8..16 + i * 8]);
            u64::from_le_bytes(b)
        };
        let header = Self {
            old_size: field(0),
            new_size: field(1),
            control_len: field(2),
            diff_len: field(3),
            extra_len: field(4),
        };
        let total = [header.control_len, header.diff_len, header.extra_len]
            .iter()
            .try_fold(HEADER_LEN, |acc, n| acc.checked_add(*n));
        if total != Some(patch_len) {
            return Err(DeltaError::corrupt(format!(
                "stream lengths do not add up to the patch's {patch_len} bytes"
            )));
        }
        Ok(header)
    }

    /// Offsets of the control, diff and extra streams.
    pub fn sections(&self) -> [(u64, u64); 3] {
        let control = HEADER_LEN;
        let diff = control + self.control_len;
        let extra = diff + self.diff_len;
        [
            (control, self.control_len),
            (diff, self.diff_len),
            (extra, self.extra_len),
        ]
    }
}

/// One step of the control stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Moves the position in the old build before `add`.
    pub seek: i64,
    /// Bytes of old + diff.
    pub add: u64,
    /// Bytes copied from the extra stream.
    pub extra: u64,
}

impl Step {
    #[cfg(any(feature = "build", test))]
    pub fn write(self, out: &mut impl io::Write) -> io::Result<()> {
        let zigzag = (self.seek << 1) ^ (self.seek >> 63);
        #[allow(clippy::cast_sign_loss)] // zigzag: the sign is in bit 0
        write_varint(out, zigzag as u64)?;
        write_varint(out, self.add)?;
        write_varint(out, self.extra)
    }

    /// The next step, or `None` at the end of the stream.
    pub fn read(input: &mut impl Read) -> Result<Option<Self>, DeltaError> {
        let Some(zigzag) = read_varint(input, true)? else {
            return Ok(None);
        };
        #[allow(clippy::cast_possible_wrap)] // undoes the zigzag above
        let seek = ((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64);
        let add = read_varint(input, false)?.unwrap_or_default();
        let extra = read_varint(input, false)?.unwrap_or_default();
        Ok(Some(Self { seek, add, extra }))
    }
}

#[cfg(any(feature = "build", test))]
fn write_varint(out: &mut impl io::Write, mut v: u64) -> io::Result<()> {
    let mut buf = [0u8; 10];
    let mut n = 0;
    loop {
        #[allow(clippy::cast_possible_truncation)] // the low 7 bits
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[n] = byte;
            n += 1;
            break;
        }
        buf[n] = byte | 0x80;
        n += 1;
    }
    out.write_all(&buf[..n])
}

/// A LEB128 varint; `None` when the stream ends before its first byte and
/// `at_boundary` allows that.
fn read_varint(input: &mut impl Read, at_boundary: bool) -> Result<Option<u64>, DeltaError> {
    let mut v = 0u64;
    for i in 0..10 {
        let mut byte = [0u8];
        if let Err(e) = input.read_exact(&mut byte) {
            if e.kind() == io::ErrorKind::UnexpectedEof && i == 0 && at_boundary {
                return Ok(None);
            }
            return Err(corrupt_stream("control", &e));
        }
        let bits = u64::from(byte[0] & 0x7f);
        if i == 9 && bits > 1 {
            break;
        }
        v |= bits << (7 * i);
        if byte[0] & 0x80 == 0 {
            return Ok(Some(v));
        }
    }
    Err(DeltaError::corrupt("control stream: varint too long"))
}

/// A zstd stream that does not decode is the patch's fault, not the disk's,
/// unless the error came from reading the file itself.
pub fn corrupt_stream(stream: &str, e: &io::Error) -> DeltaError {
    DeltaError::corrupt(format!("{stream} stream: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_through_varints() {
        let steps = [
            Step {
                seek: 0,
                add: 0,
                extra: 0,
            },
            Step {
                seek: -1,
                add: 127,
                extra: 128,
            },
            Step {
                seek: i64::MIN,
                add: u64::MAX,
                extra: 1 << 40,
            },
            Step {
                seek: i64::MAX,
                add: 3,
                extra: 0,
            },
        ];
        let mut buf = Vec::new();
        for s in steps {
            s.write(&mut buf).unwrap();
        }
        let mut r = buf.as_slice();
        for s in steps {
            assert_eq!(Step::read(&mut r).unwrap(), Some(s));
        }
        assert_eq!(Step::read(&mut r).unwrap(), None);
    }

    #[test]
    fn a_cut_or_overlong_varint_is_corrupt() {
        let mut buf = Vec::new();
        Step {
            seek: 5,
            add: 300,
            extra: 0,
        }
        .write(&mut buf)
        .unwrap();
        buf.truncate(2);
        assert!(matches!(
            Step::read(&mut buf.as_slice()),
            Err(DeltaError::Corrupt(_))
        ));
        let long = [0xffu8; 11];
        assert!(matches!(
            Step::read(&mut &long[..]),
            Err(DeltaError::Corrupt(_))
        ));
    }

    #[test]
    fn header_checks_magic_and_lengths() {
        let h = Header {
            old_size: 1,
            new_size: 2,
            control_len: 3,
            diff_len: 4,
            extra_len: 5,
        };
        let bytes = h.to_bytes();
        assert_eq!(Header::parse(&bytes, 48 + 12).unwrap(), h);
        assert!(Header::parse(&bytes, 48 + 11).is_err());
        let mut bad = bytes;
        bad[0] = b'X';
        assert!(Header::parse(&bad, 60).is_err());
        let huge = Header {
            control_len: u64::MAX,
            ..h
        }
        .to_bytes();
        assert!(Header::parse(&huge, 60).is_err(), "no overflow");
    }
}

//! Making a patch (manager-lite only): bsdiff's matching over a suffix array
//! of the old build, in windows so the memory stays bounded whatever the size.
//!
//! The new build is taken in chunks of [`NEW_CHUNK`]; each is matched
//! against the part of the old build at the same relative place, widened by
//! [`MARGIN`] on each side (code grows and shrinks between builds, but it
//! does not move across the whole file). A build of up to 32 MiB is one
//! chunk matched against all of the old one. The three raw streams are
//! spooled to unnamed temp files and compressed one after the other, so at
//! most one zstd encoder is alive at a time.
//!
//! Peak memory: the old window (≤ [`MAX_OLD_WINDOW`]) and its suffix array
//! (4 bytes a byte), the new chunk, and one level-19 encoder; about 6× the
//! old build for small builds, and ~400 MiB at most (README, "Delta updates").

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

use crate::format::{Header, Step, HEADER_LEN};
use crate::runs::RunWriter;
use crate::{zst, DeltaError};

/// Bytes of the new build matched in one pass.
pub const NEW_CHUNK: u64 = 32 * 1024 * 1024;
/// How far beyond the proportional place in the old build a chunk looks.
pub const MARGIN: u64 = 8 * 1024 * 1024;
/// The largest stretch of the old build sorted at once.
pub const MAX_OLD_WINDOW: u64 = 64 * 1024 * 1024;

/// How to make a patch.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// zstd level of the three streams.
    pub level: i32,
    /// Give up (`DeltaError::TooSlow`) past this instant.
    pub deadline: Option<Instant>,
    /// Where the raw streams are spooled while the patch is made.
    pub tmp_dir: PathBuf,
}

/// What a patch came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildStats {
    pub old_len: u64,
    pub new_len: u64,
    pub patch_len: u64,
}

/// Writes into `patch` (empty, at its start) the patch from `old` to `new`.
pub fn build(
    old: &File,
    new: &File,
    patch: &mut File,
    opts: &BuildOptions,
) -> Result<BuildStats, DeltaError> {
    let old_len = old
        .metadata()
        .map_err(DeltaError::io("reading the old build"))?
        .len();
    let new_len = new
        .metadata()
        .map_err(DeltaError::io("reading the new build"))?
        .len();
    let mut spool = Spool::new(opts)?;
    let mut start = 0;
    while start < new_len {
        let end = (start + NEW_CHUNK).min(new_len);
        let (ws, we) = old_window(start, end, old_len, new_len);
        let old_w = read_range(old, ws, we).map_err(DeltaError::io("reading the old build"))?;
        let new_c = read_range(new, start, end).map_err(DeltaError::io("reading the new build"))?;
        let mut sa = vec![0i32; old_w.len()];
        if !old_w.is_empty() {
            divsufsort::sort_in_place(&old_w, &mut sa);
        }
        let mut window = Window {
            old: &old_w,
            base: ws,
            sa: &sa,
            new: &new_c,
        };
        window.diff(&mut spool, opts.deadline)?;
        start = end;
    }
    let patch_len = spool.finish(patch, old_len, new_len, opts.level)?;
    Ok(BuildStats {
        old_len,
        new_len,
        patch_len,
    })
}

/// The stretch of the old build `[start, end)` of the new one is matched
/// against.
fn old_window(start: u64, end: u64, old_len: u64, new_len: u64) -> (u64, u64) {
    let scale = |x: u64| {
        let v = u128::from(x) * u128::from(old_len) / u128::from(new_len.max(1));
        u64::try_from(v).unwrap_or(old_len)
    };
    let (mut ws, mut we) = (
        scale(start).saturating_sub(MARGIN),
        (scale(end) + MARGIN).min(old_len),
    );
    if we - ws > MAX_OLD_WINDOW {
        let mid = ws + (we - ws) / 2;
        ws = mid - MAX_OLD_WINDOW / 2;
        we = ws + MAX_OLD_WINDOW;
    }
    (ws, we)
}

fn read_range(f: &File, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let len = usize::try_from(end - start).map_err(|_| io::Error::other("window too large"))?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, start)?;
    Ok(buf)
}

/// The raw control, diff and extra streams while they are made.
struct Spool {
    control: BufWriter<File>,
    diff: RunWriter<BufWriter<File>>,
    extra: BufWriter<File>,
    /// Where in the old build the last step left off.
    old_pos: u64,
}

impl Spool {
    fn new(opts: &BuildOptions) -> Result<Self, DeltaError> {
        let temp = || {
            tempfile::tempfile_in(&opts.tmp_dir)
                .map(|f| BufWriter::with_capacity(256 * 1024, f))
                .map_err(DeltaError::io("creating a temp file for the patch"))
        };
        Ok(Self {
            control: temp()?,
            diff: RunWriter::new(temp()?),
            extra: temp()?,
            old_pos: 0,
        })
    }

    /// One step: `add` bytes from `old[old_start..]` against `new_add`, then
    /// `new_extra` as it is.
    fn step(
        &mut self,
        old_abs: u64,
        old_add: &[u8],
        new_add: &[u8],
        new_extra: &[u8],
    ) -> io::Result<()> {
        if new_add.is_empty() && new_extra.is_empty() {
            return Ok(());
        }
        #[allow(clippy::cast_possible_wrap)] // positions within one build
        let seek = old_abs as i64 - self.old_pos as i64;
        Step {
            seek,
            add: new_add.len() as u64,
            extra: new_extra.len() as u64,
        }
        .write(&mut self.control)?;
        let mut buf = [0u8; 4096];
        for (o, n) in old_add.chunks(buf.len()).zip(new_add.chunks(buf.len())) {
            for ((d, x), y) in buf.iter_mut().zip(n).zip(o) {
                *d = x.wrapping_sub(*y);
            }
            self.diff.push(&buf[..n.len()])?;
        }
        self.extra.write_all(new_extra)?;
        self.old_pos = old_abs + new_add.len() as u64;
        Ok(())
    }

    /// Compresses the three streams into `patch` behind its header.
    fn finish(
        self,
        patch: &mut File,
        old_size: u64,
        new_size: u64,
        level: i32,
    ) -> Result<u64, DeltaError> {
        let io = DeltaError::io("writing the patch");
        let mut lens = [0u64; 3];
        patch
            .seek(SeekFrom::Start(HEADER_LEN))
            .map_err(DeltaError::io("writing the patch"))?;
        let diff = self
            .diff
            .finish()
            .map_err(DeltaError::io("spooling the patch"))?;
        for (len, stream) in lens.iter_mut().zip([self.control, diff, self.extra]) {
            let mut raw = stream
                .into_inner()
                .map_err(io::IntoInnerError::into_error)
                .map_err(DeltaError::io("spooling the patch"))?;
            raw.seek(SeekFrom::Start(0))
                .map_err(DeltaError::io("spooling the patch"))?;
            *len = zst::compress(&mut raw, &mut *patch, level)
                .map_err(DeltaError::io("compressing the patch"))?;
        }
        let header = Header {
            old_size,
            new_size,
            control_len: lens[0],
            diff_len: lens[1],
            extra_len: lens[2],
        };
        patch.write_all_at(&header.to_bytes(), 0).map_err(io)?;
        Ok(HEADER_LEN + lens.iter().sum::<u64>())
    }
}

/// One chunk of the new build and the stretch of the old one it is matched
/// against.
struct Window<'a> {
    old: &'a [u8],
    /// Where `old` starts in the old build.
    base: u64,
    sa: &'a [i32],
    new: &'a [u8],
}

impl Window<'_> {
    /// The longest match of `new[scan..]` in the old window: (length, position).
    fn search(&self, scan: usize) -> (usize, usize) {
        let (old, new) = (self.old, &self.new[scan..]);
        if old.is_empty() {
            return (0, 0);
        }
        let (mut st, mut en) = (0, self.sa.len() - 1);
        while en - st >= 2 {
            let x = st + (en - st) / 2;
            let p = idx(self.sa[x]);
            let n = (old.len() - p).min(new.len());
            if old[p..p + n] < new[..n] {
                st = x;
            } else {
                en = x;
            }
        }
        let (a, b) = (idx(self.sa[st]), idx(self.sa[en]));
        let (x, y) = (match_len(&old[a..], new), match_len(&old[b..], new));
        if x > y {
            (x, a)
        } else {
            (y, b)
        }
    }

    /// Agreement of old and new at `o` and `n`, when `o` is inside the window.
    fn same(&self, o: isize, n: isize) -> bool {
        usize::try_from(o).ok().and_then(|o| self.old.get(o))
            == usize::try_from(n).ok().and_then(|n| self.new.get(n))
    }

    /// bsdiff's scan (bsdiff.c, 4.3), step for step, with its names.
    #[allow(
        clippy::cast_possible_wrap,
        clippy::cast_sign_loss,
        clippy::similar_names
    )]
    fn diff(&mut self, spool: &mut Spool, deadline: Option<Instant>) -> Result<(), DeltaError> {
        let (oldsize, newsize) = (self.old.len() as isize, self.new.len() as isize);
        let (mut scan, mut len, mut pos) = (0isize, 0isize, 0isize);
        let (mut lastscan, mut lastpos, mut lastoffset) = (0isize, 0isize, 0isize);
        let mut ticks = 0u32;
        while scan < newsize {
            let mut oldscore = 0isize;
            scan += len;
            let mut scsc = scan;
            while scan < newsize {
                ticks = ticks.wrapping_add(1);
                if ticks % 4096 == 1 && deadline.is_some_and(|d| Instant::now() > d) {
                    return Err(DeltaError::TooSlow);
                }
                let (l, p) = self.search(scan as usize);
                (len, pos) = (l as isize, p as isize);
                while scsc < scan + len {
                    if self.same(scsc + lastoffset, scsc) && scsc + lastoffset < oldsize {
                        oldscore += 1;
                    }
                    scsc += 1;
                }
                if (len == oldscore && len != 0) || len > oldscore + 8 {
                    break;
                }
                if self.same(scan + lastoffset, scan) && scan + lastoffset < oldsize {
                    oldscore -= 1;
                }
                scan += 1;
            }
            if len != oldscore || scan == newsize {
                let (lenf, lenb) = self.extend(lastscan, lastpos, scan, pos);
                let old_add = &self.old[lastpos as usize..(lastpos + lenf) as usize];
                let new_add = &self.new[lastscan as usize..(lastscan + lenf) as usize];
                let new_extra = &self.new[(lastscan + lenf) as usize..(scan - lenb) as usize];
                spool
                    .step(self.base + lastpos as u64, old_add, new_add, new_extra)
                    .map_err(DeltaError::io("spooling the patch"))?;
                lastscan = scan - lenb;
                lastpos = pos - lenb;
                lastoffset = pos - scan;
            }
        }
        Ok(())
    }

    /// How far the last match extends forward (`lenf`) and the next one
    /// backward (`lenb`) while at least half the bytes agree, without
    /// overlapping.
    #[allow(
        clippy::cast_possible_wrap,
        clippy::cast_sign_loss,
        clippy::similar_names
    )]
    fn extend(&self, lastscan: isize, lastpos: isize, scan: isize, pos: isize) -> (isize, isize) {
        let (oldsize, newsize) = (self.old.len() as isize, self.new.len() as isize);
        let (mut s, mut sf, mut lenf, mut i) = (0isize, 0isize, 0isize, 0isize);
        while lastscan + i < scan && lastpos + i < oldsize {
            if self.old[(lastpos + i) as usize] == self.new[(lastscan + i) as usize] {
                s += 1;
            }
            i += 1;
            if s * 2 - i > sf * 2 - lenf {
                (sf, lenf) = (s, i);
            }
        }
        let mut lenb = 0isize;
        if scan < newsize {
            let (mut s, mut sb, mut i) = (0isize, 0isize, 1isize);
            while scan >= lastscan + i && pos >= i {
                if self.old[(pos - i) as usize] == self.new[(scan - i) as usize] {
                    s += 1;
                }
                if s * 2 - i > sb * 2 - lenb {
                    (sb, lenb) = (s, i);
                }
                i += 1;
            }
        }
        if lastscan + lenf > scan - lenb {
            let overlap = (lastscan + lenf) - (scan - lenb);
            let (mut s, mut ss, mut lens) = (0isize, 0isize, 0isize);
            for i in 0..overlap {
                if self.new[(lastscan + lenf - overlap + i) as usize]
                    == self.old[(lastpos + lenf - overlap + i) as usize]
                {
                    s += 1;
                }
                if self.new[(scan - lenb + i) as usize] == self.old[(pos - lenb + i) as usize] {
                    s -= 1;
                }
                if s > ss {
                    (ss, lens) = (s, i + 1);
                }
            }
            lenf += lens - overlap;
            lenb -= lens;
        }
        (lenf, lenb)
    }
}

#[allow(clippy::cast_sign_loss)] // suffix array entries are positions
fn idx(i: i32) -> usize {
    i as usize
}

fn match_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

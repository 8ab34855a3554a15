//! The data path of a download: this thread reads the body and writes it to
//! the `.part` file while a second thread hashes (sha256, and the minisign
//! stream when signed) the chunks already written, so hashing costs no time
//! of its own on a host with a spare core. The two threads pass a fixed set
//! of reusable buffers through bounded channels: memory stays at
//! `BUFFERS × CHUNK` whatever the artifact's size, and a slow hasher holds
//! the reader back instead of queueing bytes.
//!
//! The reader never asks for more than is still expected (plus one byte, to
//! notice excess): bytes past the announced size are refused before they are
//! written. Every read is bounded by the client's per-read timeout, and the
//! transfer as a whole by a [`MinRate`].

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use crate::bounds::MinRate;
use crate::error::{Cut, Error, Result};
use crate::verify::Verifier;

/// Bytes per read and per write.
pub const CHUNK: usize = 256 * 1024;
/// Buffers in flight between the reader and the hasher.
const BUFFERS: usize = 4;

/// A buffer and the length of the data in it.
type Chunk = (Vec<u8>, usize);

/// Where the bytes come from, for messages.
pub struct Source<'a> {
    pub bin: &'a str,
    pub url: &'a str,
}

/// Streams `body` into `file` (at its current position), hashing it in
/// `verifier` on a second thread. On a wrong byte count or a write error
/// the `.part` file is removed; on a cut or a stop it stays for a resume.
pub fn copy(
    body: &mut dyn Read,
    file: &mut File,
    verifier: &mut Verifier,
    part: &Path,
    from: &Source,
    stop: &AtomicBool,
    rate: &mut MinRate,
) -> Result<()> {
    let expected = verifier.remaining();
    // One channel type both ways (a buffer and how much of it is data), so
    // the static binary carries one channel's code, not two.
    let (to_hash, hash_rx) = mpsc::sync_channel::<Chunk>(BUFFERS);
    let (to_fill, free) = mpsc::sync_channel::<Chunk>(BUFFERS);
    for _ in 0..BUFFERS {
        // Cannot fail: the channel holds BUFFERS and the receiver is alive.
        let _ = to_fill.send((vec![0u8; CHUNK], 0));
    }
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || -> Result<(), String> {
            for (buf, n) in hash_rx {
                verifier.update(&buf[..n])?;
                // The reader may have stopped already; then the buffer goes.
                let _ = to_fill.send((buf, 0));
            }
            Ok(())
        });
        let read = fill(
            body, file, part, from, stop, rate, expected, &free, &to_hash,
        );
        drop(to_hash);
        let verdict = hasher
            .join()
            .unwrap_or_else(|_| Err("the hashing thread panicked".into()));
        if let Err(message) = verdict {
            let _ = fs::remove_file(part);
            return Err(Error::Verify {
                bin: from.bin.to_owned(),
                url: from.url.to_owned(),
                message,
            });
        }
        read
    })
}

/// The reader's side: read, write, hand over to the hasher.
#[allow(clippy::too_many_arguments)]
fn fill(
    body: &mut dyn Read,
    file: &mut File,
    part: &Path,
    from: &Source,
    stop: &AtomicBool,
    rate: &mut MinRate,
    expected: u64,
    free: &mpsc::Receiver<Chunk>,
    to_hash: &mpsc::SyncSender<Chunk>,
) -> Result<()> {
    let mut received: u64 = 0;
    let cut = |received, cause| Error::Transfer {
        bin: from.bin.to_owned(),
        url: from.url.to_owned(),
        received,
        cause,
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Stopped {
                bin: from.bin.to_owned(),
                url: from.url.to_owned(),
            });
        }
        // The hasher gave up (a wrong byte): its error is the one reported.
        let Ok((mut buf, _)) = free.recv() else {
            return Ok(());
        };
        let want = usize::try_from((expected - received).saturating_add(1))
            .unwrap_or(CHUNK)
            .min(CHUNK);
        let n = match body.read(&mut buf[..want]) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                let _ = to_hash.send((buf, 0));
                continue;
            }
            Err(e) => return Err(cut(received, Cut::Read(e))),
        };
        received += n as u64;
        if received > expected {
            let _ = fs::remove_file(part);
            return Err(Error::Verify {
                bin: from.bin.to_owned(),
                url: from.url.to_owned(),
                message: format!("more bytes than announced ({expected} were left to come)"),
            });
        }
        if let Err(e) = file.write_all(&buf[..n]) {
            // Disk full, read-only, permission: nothing of ours may stay behind.
            let _ = fs::remove_file(part);
            return Err(Error::io(part, "write")(e));
        }
        if to_hash.send((buf, n)).is_err() {
            return Ok(());
        }
        rate.moved(n)
            .map_err(|why| cut(received, Cut::TooSlow(why)))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use binproxy_protocol::hex;
    use sha2::{Digest, Sha256};
    use std::time::Duration;

    /// Hands out `data` in pieces of odd sizes, with an EINTR between.
    struct Jagged {
        data: Vec<u8>,
        at: usize,
        step: usize,
        interrupted: bool,
    }

    impl Read for Jagged {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupted = !self.interrupted;
            if self.interrupted {
                return Err(io::ErrorKind::Interrupted.into());
            }
            self.step = self.step * 7 % 100_003 + 1;
            let n = self.step.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn copy_into(data: &[u8], announced: &[u8], stop: bool) -> (Result<()>, Vec<u8>) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("bp-pipe-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let part = dir.join(".svc.binproxy-x.part");
        let mut file = File::create(&part).unwrap();
        let sha = hex(&Sha256::digest(announced));
        let mut verifier = Verifier::new(announced.len() as u64, &sha, None);
        let mut body = Jagged {
            data: data.to_vec(),
            at: 0,
            step: 1,
            interrupted: false,
        };
        let from = Source {
            bin: "svc",
            url: "http://m/dl",
        };
        let mut rate = MinRate::new(0, Duration::from_secs(1));
        let stop = AtomicBool::new(stop);
        let r = copy(
            &mut body,
            &mut file,
            &mut verifier,
            &part,
            &from,
            &stop,
            &mut rate,
        )
        .and_then(|()| {
            verifier.finish().map_err(|message| Error::Verify {
                bin: "svc".into(),
                url: "http://m/dl".into(),
                message,
            })
        });
        let written = fs::read(&part).unwrap_or_default();
        fs::remove_dir_all(&dir).unwrap();
        (r, written)
    }

    #[test]
    fn every_byte_is_written_and_hashed_in_order() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let (r, written) = copy_into(&data, &data, false);
        r.unwrap();
        assert!(written == data, "the file differs from the body");
    }

    #[test]
    fn excess_or_wrong_bytes_are_refused_and_the_part_removed() {
        let data = vec![5u8; 600_000];
        let (r, written) = copy_into(&data, &data[..500_000], false);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("more bytes than announced"), "{e}");
        assert!(written.is_empty(), "the part file stayed");
        let mut other = data.clone();
        other[123_456] = 6;
        let (r, _) = copy_into(&other, &data, false);
        assert!(r.unwrap_err().to_string().contains("does not match"));
    }

    #[test]
    fn a_stop_keeps_the_part_for_a_resume() {
        let data = vec![1u8; 100_000];
        let (r, _) = copy_into(&data, &data, true);
        assert!(matches!(r, Err(Error::Stopped { .. })), "{r:?}");
    }
}

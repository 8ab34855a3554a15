//! The progress bar of `publish`: bytes sent, rate and time left, drawn on
//! stderr while a large artifact uploads, and only when stderr is a terminal
//! (a CI log or a pipe gets no bar and no escape codes).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{self, IsTerminal, Read, Write};

/// Uploads smaller than this finish before a bar says anything useful.
const MIN_SIZE: u64 = 4 << 20;

const TEMPLATE: &str = "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}";

/// A reader that moves a bar by every byte read from it.
pub struct Progress<R> {
    inner: R,
    bar: Option<ProgressBar>,
}

impl<R: Read> Progress<R> {
    /// `inner` (of `size` bytes), with a bar when stderr is a terminal and
    /// the upload is large.
    pub fn new(inner: R, size: u64) -> Self {
        let wanted = size >= MIN_SIZE && io::stderr().is_terminal();
        Self {
            inner,
            bar: wanted.then(|| bar(size)),
        }
    }

    /// Leaves the bar at its last state, with the rate it ended at, on a
    /// line of its own: what the command prints next starts below it.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
            // The bar leaves the cursor at its end. Nothing sensible is left
            // to do if stderr is gone.
            let _ = writeln!(io::stderr());
        }
    }

    /// Removes the bar after a failure: the error line says what happened.
    pub fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn bar(size: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
    // The template is a constant: a bad one is a bug found by the tests, and
    // the default style would still show the bytes.
    if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(bar) = &self.bar {
            bar.inc(n as u64);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_valid() {
        assert!(ProgressStyle::with_template(TEMPLATE).is_ok());
    }

    #[test]
    fn bytes_pass_through_unchanged_without_a_terminal() {
        let data = vec![7u8; 100];
        let mut reader = Progress::new(&data[..], MIN_SIZE + 1);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        reader.finish();
    }
}

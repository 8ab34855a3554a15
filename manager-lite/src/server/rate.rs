//! The minimum transfer rate, and the meter that holds one transfer to it.
//!
//! A per-read or per-write timeout lets a client that sends one byte just
//! before each timeout hold a connection forever. Here a transfer (a request
//! body, or an answer the client is reading) must move at least
//! `bytes_per_sec × window` bytes in every window, counted from its start:
//! the first window is the grace period, and a client that is merely slow
//! for a moment is judged on a whole window, not on one read.

use std::time::{Duration, Instant};

/// How fast a transfer must move, measured over `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_sec: u64,
    pub window: Duration,
}

impl MinRate {
    /// Bytes that must move in one window.
    pub fn floor(&self) -> u64 {
        let ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        self.bytes_per_sec.saturating_mul(ms) / 1000
    }
}

/// Bytes moved in the current window of one transfer.
#[derive(Debug, Clone)]
pub struct Meter {
    rate: MinRate,
    window_start: Instant,
    bytes: u64,
}

impl Meter {
    pub fn new(rate: MinRate, now: Instant) -> Meter {
        Meter {
            rate,
            window_start: now,
            bytes: 0,
        }
    }

    pub fn record(&mut self, n: usize) {
        self.bytes = self.bytes.saturating_add(n as u64);
    }

    /// When the current window ends and the transfer is next judged.
    pub fn window_end(&self) -> Instant {
        self.window_start + self.rate.window
    }

    /// Judges the window if it has ended: `false` when the transfer was
    /// `behind` (still had bytes to move) and moved less than the floor.
    /// An ended window starts the next one at `now`.
    pub fn check(&mut self, now: Instant, behind: bool) -> bool {
        if now < self.window_end() {
            return true;
        }
        let fast_enough = !behind || self.bytes >= self.rate.floor();
        self.window_start = now;
        self.bytes = 0;
        fast_enough
    }

    /// Leaves time out of the window that was spent waiting on our side
    /// (a full disk queue, say), not on the client.
    pub fn pause(&mut self, waited: Duration) {
        self.window_start += waited;
    }
}

/// Parses a rate: `500`, `16KiB`, `1MiB/s`, `2MB` (bytes per second).
pub fn parse(text: &str) -> Result<u64, RateError> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t).trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let unit_size: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(RateError::UnknownUnit(other.to_owned())),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_size))
        .filter(|&n| n > 0)
        .ok_or(RateError::NotPositive)
}

/// Why a rate did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateError {
    /// A unit after the number that is none of B, KiB, MiB, GiB, KB, MB, GB.
    UnknownUnit(String),
    /// No number, zero, or more than fits.
    NotPositive,
}

impl std::fmt::Display for RateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownUnit(unit) => write!(f, "unknown unit {unit:?} (use B, KiB, MiB, GiB)"),
            Self::NotPositive => {
                f.write_str("expected a positive whole number of bytes per second")
            }
        }
    }
}

impl std::error::Error for RateError {}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: MinRate = MinRate {
        bytes_per_sec: 1000,
        window: Duration::from_secs(2),
    };

    #[test]
    fn floor_is_rate_times_window() {
        assert_eq!(RATE.floor(), 2000);
    }

    #[test]
    fn judged_only_at_the_end_of_a_window_and_only_when_behind() {
        let t0 = Instant::now();
        let mut m = Meter::new(RATE, t0);
        m.record(10);
        assert!(m.check(t0 + Duration::from_secs(1), true), "grace");
        assert!(!m.check(t0 + Duration::from_secs(2), true), "10 B in 2 s");
        // The next window starts at the check.
        m.record(1999);
        assert!(m.check(t0 + Duration::from_secs(4), false), "not behind");
        m.record(2000);
        assert!(m.check(t0 + Duration::from_secs(6), true), "fast enough");
    }

    #[test]
    fn waiting_on_our_side_is_not_held_against_the_client() {
        let t0 = Instant::now();
        let mut m = Meter::new(RATE, t0);
        m.pause(Duration::from_secs(5));
        assert!(m.check(t0 + Duration::from_secs(6), true));
        assert!(!m.check(t0 + Duration::from_secs(7), true));
    }

    #[test]
    fn rates_parse() {
        assert_eq!(parse("500"), Ok(500));
        assert_eq!(parse("16KiB"), Ok(16 << 10));
        assert_eq!(parse("16KiB/s"), Ok(16 << 10));
        assert_eq!(parse("1MiB"), Ok(1 << 20));
        assert_eq!(parse("2MB"), Ok(2_000_000));
        assert!(parse("0").is_err());
        assert!(parse("fast").is_err());
        assert!(parse("12 parsecs").is_err());
        assert!(parse("99999999999999999999GiB").is_err());
    }
}

//! Back-off between contacts with the manager, across separate runs.
//!
//! When the manager answers 429 or 5xx with `Retry-After` (seconds or an
//! HTTP-date), or the agent fails on its own account (manager unreachable,
//! 5xx, a download cut or refused by the server), the next contact is put off
//! and the time is kept in `state_dir/backoff.json` (written crash-safe through
//! [`fsutil::write_json`]). A cron run started earlier exits at once without a
//! request; the daemon sleeps until then. A successful cycle removes the file.
//! Which failures count is decided by the error's variant ([`Cycle::of`],
//! through [`Error::is_transient`]), never by its text.
//!
//! Waits: the manager's `Retry-After`, capped at [`MAX_RETRY_AFTER`] so a bad
//! manager cannot silence a fleet for a year; otherwise exponential from
//! [`BASE`] doubling to [`CAP`], with equal jitter (half fixed, half random)
//! so a fleet that failed together does not come back together.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::state::now_unix;
use crate::{fsutil, journal};

/// The first wait after a failure (before jitter).
pub const BASE: Duration = Duration::from_secs(60);
/// The longest wait after repeated failures.
pub const CAP: Duration = Duration::from_secs(3600);
/// The longest `Retry-After` honoured; longer asks are cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What `backoff.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Unix seconds before which no run contacts the manager.
    pub not_before: u64,
    /// Cycles in a row that failed or were told to wait.
    pub failures: u32,
    /// The manager's `Retry-After`, when it sent one.
    #[serde(default)]
    pub retry_after: Option<RetryAfter>,
    /// The last failure, one line.
    pub error: String,
    /// Unix seconds when this was recorded.
    pub at: u64,
}

/// A `Retry-After` the manager sent, as asked (before the cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryAfter {
    /// The HTTP status it came with (429, 503...).
    pub status: u16,
    /// Seconds from when it was received.
    pub seconds: u64,
}

/// How one cycle went, for the back-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cycle {
    /// The manager answered and nothing failed on its account: clear.
    Ok,
    /// The manager could not be used; `retry_after` when it said how long.
    Failed {
        error: String,
        retry_after: Option<RetryAfter>,
    },
    /// Failed for a local reason: say nothing about the manager.
    Unknown,
}

impl Cycle {
    /// What a cycle that ended with `outcome` means for the back-off. An
    /// error backs off when it is on the manager's or the network's account
    /// ([`Error::is_transient`]) and says nothing otherwise. A cycle that went
    /// through backs off when a download met such `trouble` or the manager
    /// asked to wait (`retry_after`), and clears the back-off otherwise.
    pub fn of<T>(
        outcome: &Result<T>,
        trouble: Option<&str>,
        retry_after: Option<RetryAfter>,
    ) -> Cycle {
        let error = match outcome {
            Err(e) if e.is_transient() => Some(e.to_string()),
            Err(_) => return Cycle::Unknown,
            Ok(_) => trouble.map(str::to_owned).or_else(|| {
                retry_after.map(|r| format!("the manager answered {} with Retry-After", r.status))
            }),
        };
        match error {
            Some(error) => Cycle::Failed { error, retry_after },
            None => Cycle::Ok,
        }
    }
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("backoff.json")
}

/// The recorded back-off, if any (expired or not).
pub fn load(state_dir: &Path) -> Result<Option<Backoff>> {
    fsutil::read_json(&path(state_dir))
}

/// The back-off still in force at `now`, if any. A record further out than
/// any wait this module sets (the clock went back, or the file was edited)
/// is ignored, so it cannot silence the agent for longer than that.
pub fn active(state_dir: &Path, now: u64) -> Result<Option<Backoff>> {
    let longest = CAP.max(MAX_RETRY_AFTER).as_secs();
    Ok(load(state_dir)?.filter(|b| match b.left(now) {
        Some(left) if left > longest => {
            log::warn!(
                "{}: next contact {left}s away is beyond any back-off (clock changed?); ignored",
                path(state_dir).display()
            );
            false
        }
        left => left.is_some(),
    }))
}

/// The back-off that keeps a cycle from starting at `now`, if any. An update
/// an earlier cycle left half-done is finished regardless.
pub fn in_force(state_dir: &Path, now: u64) -> Result<Option<Backoff>> {
    let Some(b) = active(state_dir, now)? else {
        return Ok(None);
    };
    if !journal::pending(state_dir)?.is_empty() {
        log::warn!("backing off, but an interrupted update must be finished: running");
        return Ok(None);
    }
    Ok(Some(b))
}

/// Records a cycle's outcome: a failure moves the next contact out (and
/// returns the new record), success removes the file. A cycle with no
/// back-off before or after writes nothing.
pub fn after_cycle(state_dir: &Path, cycle: Cycle) -> Result<Option<Backoff>> {
    match cycle {
        Cycle::Unknown => Ok(None),
        Cycle::Ok => {
            clear(state_dir)?;
            Ok(None)
        }
        Cycle::Failed { error, retry_after } => {
            let previous = load(state_dir)?;
            let now = now_unix();
            let next = next(previous.as_ref(), now, &error, retry_after, random_below);
            fsutil::write_json(&path(state_dir), &next)?;
            log::warn!(
                "backing off: no contact with the manager before {} ({})",
                until(&next, now),
                next.reason()
            );
            Ok(Some(next))
        }
    }
}

/// Removes the record (durably), if there is one.
pub fn clear(state_dir: &Path) -> Result<()> {
    let p = path(state_dir);
    match std::fs::remove_file(&p) {
        Ok(()) => {
            log::info!("back-off cleared: the manager answered");
            fsutil::sync_dir(state_dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(p, "remove back-off record")(e)),
    }
}

/// The record after one more failure at `now`. `random(n)` picks the jitter
/// in `0..n`.
pub fn next(
    previous: Option<&Backoff>,
    now: u64,
    error: &str,
    retry_after: Option<RetryAfter>,
    random: impl FnOnce(u64) -> u64,
) -> Backoff {
    let failures = previous.map_or(0, |b| b.failures).saturating_add(1);
    let wait = if let Some(r) = retry_after {
        r.seconds.min(MAX_RETRY_AFTER.as_secs())
    } else {
        let ceiling = ceiling(failures).as_secs();
        let half = ceiling / 2;
        half + random(ceiling - half + 1).min(ceiling - half)
    };
    Backoff {
        not_before: now.saturating_add(wait),
        failures,
        retry_after,
        error: error.to_owned(),
        at: now,
    }
}

/// The exponential wait before jitter after `failures` failures in a row.
pub fn ceiling(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (BASE * (1u32 << doublings)).min(CAP)
}

impl Backoff {
    /// Seconds left at `now`, if any.
    pub fn left(&self, now: u64) -> Option<u64> {
        self.not_before.checked_sub(now).filter(|s| *s > 0)
    }

    /// Why, in words: "manager asked to retry after 120s (503)" or
    /// "backing off after 3 failures: ...".
    pub fn reason(&self) -> String {
        match self.retry_after {
            Some(r) if r.seconds > MAX_RETRY_AFTER.as_secs() => format!(
                "manager asked to retry after {}s ({}), capped at {}",
                r.seconds,
                r.status,
                humantime::format_duration(MAX_RETRY_AFTER)
            ),
            Some(r) => format!("manager asked to retry after {}s ({})", r.seconds, r.status),
            None => format!(
                "backing off after {} failure{}: {}",
                self.failures,
                if self.failures == 1 { "" } else { "s" },
                self.error
            ),
        }
    }
}

/// `not_before` as RFC 3339 with the seconds left: `2024-01-02T03:04:05Z (in 118s)`.
pub fn until(b: &Backoff, now: u64) -> String {
    let at = humantime::format_rfc3339_seconds(
        SystemTime::UNIX_EPOCH + Duration::from_secs(b.not_before),
    );
    format!("{at} (in {}s)", b.left(now).unwrap_or(0))
}

/// A `Retry-After` value: delay-seconds or an HTTP-date (IMF-fixdate, RFC 850
/// or asctime), as seconds from `now` (0 for a date in the past). `None` for
/// anything else. Not capped here (see [`MAX_RETRY_AFTER`]).
pub fn parse_retry_after(value: &str, now: u64) -> Option<u64> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // All digits but too large: as long as possible (the cap applies).
        return Some(v.parse().unwrap_or(u64::MAX));
    }
    parse_http_date(v).map(|at| at.saturating_sub(now))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An HTTP-date as unix seconds.
fn parse_http_date(text: &str) -> Option<u64> {
    let words: Vec<&str> = text
        .split([' ', ',', '-'])
        .filter(|w| !w.is_empty())
        .collect();
    let (day, month, year, time) = match words.as_slice() {
        // IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 850
        // `Sunday, 06-Nov-94 08:49:37 GMT`, asctime `Sun Nov  6 08:49:37 1994`.
        [_, day, month, year, time, "GMT"] | [_, month, day, time, year] => {
            (*day, *month, *year, *time)
        }
        _ => return None,
    };
    let month = MONTHS.iter().position(|m| *m == month)?;
    let day: u32 = number(day, 2)?;
    let mut year: i64 = i64::from(number::<u32>(year, 4)?);
    if year < 100 {
        // RFC 850's two-digit year.
        year += if year < 70 { 2000 } else { 1900 };
    }
    let mut hms = time.split(':').map(|p| number::<u32>(p, 2));
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, u32::try_from(month).ok()? + 1, day);
    let secs = days * 86_400 + i64::from(h * 3600 + m * 60 + sec);
    u64::try_from(secs).ok()
}

/// A decimal of at most `digits` digits.
fn number<T: std::str::FromStr>(s: &str, digits: usize) -> Option<T> {
    (!s.is_empty() && s.len() <= digits && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A number in `0..n` (0 when `n` is 0), from the per-process random keys of
/// std's hasher mixed with the clock: enough to spread a fleet.
fn random_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    if n == 0 {
        return 0;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish() % n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_dates() {
        let now = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(120));
        assert_eq!(parse_retry_after(" 0 ", now), Some(0));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(u64::MAX)
        );
        for date in [
            "Sun, 06 Nov 1994 08:51:37 GMT",
            "Sunday, 06-Nov-94 08:51:37 GMT",
            "Sun Nov  6 08:51:37 1994",
        ] {
            assert_eq!(parse_retry_after(date, now), Some(120), "{date}");
        }
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(0),
            "a date in the past means now"
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", 0),
            Some(0)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 23:59:60 GMT"),
            Some(1_835_481_600)
        );
        for bad in [
            "",
            "-1",
            "1.5",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08:49:37:01 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn failures_double_up_to_the_cap_with_equal_jitter() {
        assert_eq!(ceiling(1), BASE);
        assert_eq!(ceiling(2), BASE * 2);
        assert_eq!(ceiling(7), CAP);
        assert_eq!(ceiling(u32::MAX), CAP);
        let mut b: Option<Backoff> = None;
        for n in 1..=10u32 {
            let ceil = ceiling(n).as_secs();
            let low = next(b.as_ref(), 1000, "down", None, |_| 0);
            let high = next(b.as_ref(), 1000, "down", None, |k| k - 1);
            assert_eq!(low.failures, n);
            assert_eq!(low.not_before, 1000 + ceil / 2, "n={n}");
            assert_eq!(high.not_before, 1000 + ceil, "n={n}");
            let real = next(b.as_ref(), 1000, "down", None, random_below);
            assert!((low.not_before..=high.not_before).contains(&real.not_before));
            b = Some(real);
        }
    }

    #[test]
    fn retry_after_wins_and_is_capped() {
        let asked = |seconds| {
            Some(RetryAfter {
                status: 503,
                seconds,
            })
        };
        let b = next(None, 1000, "busy", asked(120), |_| unreachable!());
        assert_eq!(b.not_before, 1120);
        assert_eq!(b.reason(), "manager asked to retry after 120s (503)");
        let b = next(Some(&b), 1000, "busy", asked(10_000_000), |_| 0);
        assert_eq!(b.not_before, 1000 + MAX_RETRY_AFTER.as_secs());
        assert_eq!(b.failures, 2);
        assert!(b.reason().contains("capped at 1h"), "{}", b.reason());
        let b = next(Some(&b), 1000, "refused", None, |_| 0);
        assert_eq!(b.reason(), "backing off after 3 failures: refused");
        assert_eq!(b.left(1000), Some(b.not_before - 1000));
        assert_eq!(b.left(b.not_before), None);
    }

    #[test]
    fn the_record_survives_runs_and_success_removes_it() {
        let dir = std::env::temp_dir().join(format!("bp-backoff-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        fsutil::ensure_dir(&dir).unwrap();
        assert_eq!(after_cycle(&dir, Cycle::Ok).unwrap(), None);
        assert!(!path(&dir).exists(), "nothing to clear writes nothing");
        let failed = || Cycle::Failed {
            error: "down".into(),
            retry_after: None,
        };
        let first = after_cycle(&dir, failed()).unwrap().unwrap();
        let second = after_cycle(&dir, failed()).unwrap().unwrap();
        assert_eq!((first.failures, second.failures), (1, 2));
        assert_eq!(load(&dir).unwrap(), Some(second.clone()));
        assert_eq!(active(&dir, second.not_before).unwrap(), None);
        assert!(active(&dir, second.at).unwrap().is_some());
        let far = second.not_before - CAP.as_secs() - 1;
        assert_eq!(active(&dir, far).unwrap(), None, "clock went back: ignored");
        assert_eq!(after_cycle(&dir, Cycle::Unknown).unwrap(), None);
        assert!(path(&dir).exists(), "a local failure says nothing");
        after_cycle(&dir, Cycle::Ok).unwrap();
        assert_eq!(load(&dir).unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Maintenance windows relative to the real clock, for the window tests: one
//! that is open now (two hours either side) and one that opens three hours
//! from now, both daily, in a fixed offset that is not UTC so the offset
//! arithmetic is exercised too. No clock override exists or is needed: a test
//! finishes well inside two hours.

use std::time::{SystemTime, UNIX_EPOCH};

/// Minutes east of UTC used by these windows (+05:30).
pub const OFFSET_MINUTES: i64 = 5 * 60 + 30;

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `HH:MM` of a minute of the day (taken mod 1440).
fn hhmm(minute: i64) -> String {
    let m = minute.rem_euclid(1440);
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn offset_text() -> String {
    let sign = if OFFSET_MINUTES < 0 { '-' } else { '+' };
    let m = OFFSET_MINUTES.abs();
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

/// The local minute of the day now, at [`OFFSET_MINUTES`].
fn local_minute(unix: i64) -> i64 {
    (unix / 60 + OFFSET_MINUTES).rem_euclid(1440)
}

/// A daily window from two hours ago to two hours ahead (it may cross midnight).
pub fn open_now() -> String {
    let m = local_minute(now_unix());
    format!(
        "Daily {}-{} {}",
        hhmm(m - 120),
        hhmm(m + 120),
        offset_text()
    )
}

/// A daily window that opens three hours from now (to the minute) and lasts
/// two hours, and that opening as RFC 3339 UTC.
pub fn opens_later() -> (String, String) {
    let now = now_unix();
    let m = local_minute(now);
    let window = format!("* {}-{} {}", hhmm(m + 180), hhmm(m + 300), offset_text());
    (window, rfc3339(now / 60 * 60 + 3 * 3600))
}

/// `unix` (at or after the epoch) as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(unix: i64) -> String {
    let secs = u64::try_from(unix).unwrap_or(0);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_704_067_200 + 3661), "2024-01-01T01:01:01Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}

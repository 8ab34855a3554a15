//! Maintenance windows: when an agent may install, and when a release may
//! hand out its new version. Shared by both sides so that an agent's config
//! and a release plan read the same text the same way.
//!
//! One window is `DAYS START-END OFFSET`:
//!
//! - `DAYS`: `*` or `Daily` (every day), a day (`Mon` … `Sun`), a range
//!   (`Mon-Fri`; `Fri-Mon` wraps over the weekend), or a comma list of those
//!   (`Sat,Sun`, `Mon-Wed,Fri`). Day names are case-insensitive.
//! - `START-END`: `HH:MM-HH:MM`, 24-hour; `END` may be `24:00`. When `END` is
//!   before `START` (`22:00-02:00`) the window belongs to its start day and
//!   runs into the next day (`Fri 22:00-02:00` is Friday night into Saturday).
//!   `START` equal to `END` is refused: write `00:00-24:00` for a whole day.
//! - `OFFSET`: a fixed UTC offset, `+HH:MM` or `-HH:MM` (at most 14:00). There
//!   is no time-zone database — that keeps the static agent small and makes
//!   the same text mean the same instant on every host — so a window does not
//!   follow daylight saving time: write the offset in force, or use UTC.
//!
//! A list of windows is open when any of them is; an empty list is always
//! open. Times are unix seconds; formatting them is the caller's business.

use std::fmt;

const MINUTE: i64 = 60;
const DAY: i64 = 24 * 60 * MINUTE;
const WEEK: i64 = 7 * DAY;
/// 1970-01-01 was a Thursday: days since the epoch plus this is a Monday-based weekday.
const EPOCH_WEEKDAY: i64 = 3;
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
/// Largest UTC offset in use on Earth (Kiribati, +14:00).
const MAX_OFFSET_MINUTES: i64 = 14 * 60;

/// One parsed window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Bit `d` set: the window starts on weekday `d` (0 = Monday).
    days: u8,
    /// Minutes after local midnight, 0 to 1439.
    start: i64,
    /// Minutes after local midnight, 1 to 1440; before `start` = next day.
    end: i64,
    /// Local time minus UTC, in minutes.
    offset: i64,
}

/// Every window of a config or a release; empty means always open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Windows(Vec<Window>);

/// A window that does not parse: the entry and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowError {
    pub entry: String,
    pub why: String,
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: {} (write e.g. \"Mon-Fri 01:00-05:00 +08:00\")",
            self.entry, self.why
        )
    }
}

impl std::error::Error for WindowError {}

impl Window {
    /// Parses one window, e.g. `Mon-Fri 01:00-05:00 +08:00`.
    pub fn parse(text: &str) -> Result<Window, WindowError> {
        parse_window(text).map_err(|why| WindowError {
            entry: text.to_owned(),
            why,
        })
    }

    /// Its occurrences in a week as `[start, end)` seconds after Monday
    /// 00:00 local time; an end past the week's end wraps into the next.
    fn spans(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        (0..7i64).filter(|d| self.days & (1 << d) != 0).map(|d| {
            let start = d * DAY + self.start * MINUTE;
            let end = if self.end > self.start {
                d * DAY + self.end * MINUTE
            } else {
                (d + 1) * DAY + self.end * MINUTE
            };
            (start, end)
        })
    }

    /// Seconds since Monday 00:00 of the local week that holds `unix`.
    fn week_second(&self, unix: i64) -> i64 {
        (unix + self.offset * MINUTE + EPOCH_WEEKDAY * DAY).rem_euclid(WEEK)
    }

    /// Whether the instant `unix` is inside this window.
    pub fn contains(&self, unix: i64) -> bool {
        let w = self.week_second(unix);
        self.spans()
            .any(|(s, e)| (s..e).contains(&w) || (s..e).contains(&(w + WEEK)))
    }

    /// The first instant at or after `unix` at which an occurrence starts.
    pub fn next_start(&self, unix: i64) -> i64 {
        let w = self.week_second(unix);
        let wait = self
            .spans()
            .map(|(s, _)| (s - w).rem_euclid(WEEK))
            .min()
            .unwrap_or(0);
        unix + wait
    }
}

impl Windows {
    /// Parses every entry; the error names the first bad one by its index.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Windows, (usize, WindowError)> {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| Window::parse(e.as_ref()).map_err(|err| (i, err)))
            .collect::<Result<Vec<_>, _>>()
            .map(Windows)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether installing is allowed at `unix`: inside a window, or no windows.
    pub fn is_open(&self, unix: i64) -> bool {
        self.0.is_empty() || self.0.iter().any(|w| w.contains(unix))
    }

    /// `None` when open at `unix`; else when the next window opens.
    pub fn closed_until(&self, unix: i64) -> Option<i64> {
        if self.is_open(unix) {
            return None;
        }
        self.0.iter().map(|w| w.next_start(unix)).min()
    }
}

fn parse_window(text: &str) -> Result<Window, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let [days @ .., times, offset] = words.as_slice() else {
        return Err("expected DAYS HH:MM-HH:MM +HH:MM".into());
    };
    if days.is_empty() {
        return Err("expected DAYS HH:MM-HH:MM +HH:MM".into());
    }
    let offset = parse_offset(offset)?;
    let (start, end) = times
        .split_once('-')
        .ok_or_else(|| format!("{times:?} is not a time range HH:MM-HH:MM"))?;
    let start = parse_time(start, false)?;
    let end = parse_time(end, true)?;
    if start == end {
        return Err(format!(
            "{times:?} is empty; write 00:00-24:00 for a whole day"
        ));
    }
    Ok(Window {
        days: parse_days(&days.concat())?,
        start,
        end,
        offset,
    })
}

/// `*`, `Daily`, or a comma list of days and day ranges → a weekday bit set.
fn parse_days(text: &str) -> Result<u8, String> {
    if text == "*" || text.eq_ignore_ascii_case("daily") {
        return Ok(0x7f);
    }
    let mut days = 0u8;
    for item in text.split(',') {
        let (from, to) = match item.split_once('-') {
            Some((a, b)) => (weekday(a)?, weekday(b)?),
            None => (weekday(item)?, weekday(item)?),
        };
        let mut d = from;
        loop {
            days |= 1 << d;
            if d == to {
                break;
            }
            d = (d + 1) % 7;
        }
    }
    Ok(days)
}

fn weekday(name: &str) -> Result<u8, String> {
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(name))
        .and_then(|i| u8::try_from(i).ok())
        .ok_or_else(|| {
            format!(
                "{name:?} is not a day: use {}, a range like Mon-Fri, a list, * or Daily",
                DAY_NAMES.join(" ")
            )
        })
}

/// `HH:MM` → minutes after midnight; `24:00` only as an end.
fn parse_time(text: &str, is_end: bool) -> Result<i64, String> {
    let minutes = two_numbers(text).filter(|&(h, m)| h <= 24 && m < 60);
    match minutes {
        Some((24, 0)) if is_end => Ok(24 * 60),
        Some((h, m)) if h < 24 => Ok(h * 60 + m),
        _ => Err(format!(
            "{text:?} is not a time 00:00 to 23:59{}",
            if is_end { " or 24:00" } else { "" }
        )),
    }
}

/// `+HH:MM` / `-HH:MM` → minutes east of UTC.
fn parse_offset(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a UTC offset like +08:00 or -05:00");
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = two_numbers(rest).filter(|&(_, m)| m < 60).ok_or_else(bad)?;
    let minutes = h * 60 + m;
    if minutes > MAX_OFFSET_MINUTES {
        return Err(format!("{text:?}: an offset is at most 14:00"));
    }
    Ok(sign * minutes)
}

/// Exactly `DD:DD`.
fn two_numbers(text: &str) -> Option<(i64, i64)> {
    let b = text.as_bytes();
    if b.len() != 5 || b[2] != b':' {
        return None;
    }
    let digits = |s: &[u8]| -> Option<i64> {
        s.iter().try_fold(0i64, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    Some((digits(&b[..2])?, digits(&b[3..])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01 00:00:00 UTC, a Monday.
    const MON: i64 = 1_704_067_200;
    const H: i64 = 3600;

    fn w(text: &str) -> Window {
        Window::parse(text).unwrap()
    }

    fn ws(list: &[&str]) -> Windows {
        Windows::parse(list).unwrap()
    }

    #[test]
    fn the_reference_monday_is_a_monday() {
        // Thu 1970-01-01 is weekday 3 in a Monday-based week.
        assert_eq!(w("Thu 00:00-01:00 +00:00").week_second(0), 3 * DAY);
        assert_eq!(w("Mon 00:00-01:00 +00:00").week_second(MON), 0);
        assert!(w("Mon 00:00-01:00 +00:00").contains(MON));
    }

    #[test]
    fn inside_and_outside_a_simple_window() {
        let win = w("Mon-Fri 01:00-05:00 +00:00");
        assert!(!win.contains(MON));
        assert!(win.contains(MON + H));
        assert!(win.contains(MON + 5 * H - 1));
        assert!(!win.contains(MON + 5 * H), "the end is exclusive");
        assert!(win.contains(MON + 4 * DAY + 2 * H), "Friday");
        assert!(!win.contains(MON + 5 * DAY + 2 * H), "Saturday");
    }

    #[test]
    fn offsets_shift_the_window() {
        // 01:00-05:00 at +08:00 is 17:00-21:00 UTC the day before.
        let win = w("Tue 01:00-05:00 +08:00");
        assert!(win.contains(MON + 17 * H));
        assert!(
            !win.contains(MON + DAY + 2 * H),
            "02:00 UTC Tuesday is 10:00 local"
        );
        let west = w("Mon 22:00-23:00 -05:00");
        assert!(
            west.contains(MON + DAY + 3 * H + 30 * MINUTE),
            "03:30 UTC Tue"
        );
        // Offsets near the date line still land on the right local weekday.
        // Sunday 23:30 at +14:00 is Sunday 09:30 UTC.
        let east = w("Sun 23:00-24:00 +14:00");
        assert!(east.contains(MON - 14 * H - 30 * MINUTE));
        assert!(!east.contains(MON + 9 * H + 30 * MINUTE), "Monday local");
    }

    #[test]
    fn crossing_midnight_belongs_to_the_start_day() {
        let win = w("Fri 22:00-02:00 +00:00");
        let fri = MON + 4 * DAY;
        assert!(win.contains(fri + 23 * H));
        assert!(
            win.contains(fri + DAY + H),
            "Saturday 01:00 continues Friday's window"
        );
        assert!(!win.contains(fri + DAY + 2 * H));
        assert!(
            !win.contains(fri + H),
            "Friday 01:00 belongs to Thursday, not listed"
        );
        assert!(
            !win.contains(fri + DAY + 23 * H),
            "Saturday night is not listed"
        );
    }

    #[test]
    fn week_wraps_from_sunday_into_monday() {
        let win = w("Sun 23:00-01:00 +00:00");
        assert!(win.contains(MON + 6 * DAY + 23 * H + 30 * MINUTE));
        assert!(
            win.contains(MON + 7 * DAY + 30 * MINUTE),
            "next Monday 00:30"
        );
        assert!(
            win.contains(MON + 30 * MINUTE),
            "this Monday 00:30, from last Sunday"
        );
        assert!(!win.contains(MON + H));
        let range = w("Fri-Mon 00:00-24:00 +00:00");
        for (day, open) in [(0, true), (1, false), (3, false), (4, true), (6, true)] {
            assert_eq!(range.contains(MON + day * DAY + H), open, "day {day}");
        }
    }

    #[test]
    fn end_24_00_and_whole_days() {
        let sat = w("Sat 00:00-24:00 +00:00");
        let s = MON + 5 * DAY;
        assert!(!sat.contains(s - 1));
        assert!(sat.contains(s));
        assert!(sat.contains(s + DAY - 1));
        assert!(!sat.contains(s + DAY));
        let every = ws(&["* 00:00-24:00 +05:30"]);
        for t in (0..WEEK).step_by(3571) {
            assert!(every.is_open(MON + t));
        }
        assert_eq!(w("Daily 00:00-24:00 +00:00"), w("* 00:00-24:00 +00:00"));
    }

    #[test]
    fn next_opening() {
        let list = ws(&["Mon-Fri 01:00-05:00 +00:00", "Sat 10:00-11:00 +00:00"]);
        assert_eq!(list.closed_until(MON), Some(MON + H));
        assert_eq!(list.closed_until(MON + 2 * H), None);
        assert_eq!(list.closed_until(MON + 5 * H), Some(MON + DAY + H));
        // Friday after the window: Saturday's window is next.
        assert_eq!(
            list.closed_until(MON + 4 * DAY + 6 * H),
            Some(MON + 5 * DAY + 10 * H)
        );
        // Saturday after: wraps to next Monday.
        assert_eq!(
            list.closed_until(MON + 5 * DAY + 12 * H),
            Some(MON + 7 * DAY + H)
        );
        let late = ws(&["Sun 23:00-01:00 +00:00"]);
        assert_eq!(late.closed_until(MON + 2 * H), Some(MON + 6 * DAY + 23 * H));
        assert!(Windows::default().is_open(MON));
        assert_eq!(Windows::default().closed_until(MON), None);
    }

    #[test]
    fn next_opening_is_open_and_strictly_later() {
        let list = ws(&["Tue,Thu 22:00-02:00 +08:00", "Sun 12:00-12:01 -03:00"]);
        for t in (0..2 * WEEK).step_by(997) {
            let now = MON + t;
            match list.closed_until(now) {
                None => assert!(list.is_open(now)),
                Some(at) => {
                    assert!(at > now && at - now <= WEEK, "{now} -> {at}");
                    assert!(list.is_open(at));
                    assert!(!list.is_open(at - 1), "opens exactly at {at}");
                }
            }
        }
    }

    #[test]
    fn day_lists_and_case() {
        assert_eq!(parse_days("Sat,Sun").unwrap(), 0b110_0000);
        assert_eq!(parse_days("mon-wed,FRI").unwrap(), 0b001_0111);
        assert_eq!(parse_days("Sun-Sun").unwrap(), 0b100_0000);
        assert_eq!(w("Sat, Sun 00:00-01:00 +00:00").days, 0b110_0000);
    }

    #[test]
    fn errors_name_the_entry_and_why() {
        for (text, why) in [
            ("", "expected DAYS"),
            ("Mon 01:00-02:00", "expected DAYS"),
            ("Mon 01:00-02:00 +08:00 extra", "not a UTC offset"),
            ("Mox 01:00-02:00 +00:00", "\"Mox\" is not a day"),
            ("Mon-Fry 01:00-02:00 +00:00", "\"Fry\" is not a day"),
            ("Mon 25:00-02:00 +00:00", "\"25:00\" is not a time"),
            (
                "Mon 24:00-02:00 +00:00",
                "\"24:00\" is not a time 00:00 to 23:59",
            ),
            ("Mon 01:60-02:00 +00:00", "\"01:60\""),
            ("Mon 1:00-02:00 +00:00", "\"1:00\""),
            ("Mon 24:01 +00:00", "not a time range"),
            ("Mon 03:00-03:00 +00:00", "is empty"),
            ("Mon 00:00-00:00 +00:00", "is empty"),
            ("Mon 01:00-02:00 08:00", "not a UTC offset"),
            ("Mon 01:00-02:00 +15:00", "at most 14:00"),
            ("Mon 01:00-02:00 UTC", "not a UTC offset"),
        ] {
            let err = Window::parse(text).unwrap_err();
            assert_eq!(err.entry, text);
            let shown = err.to_string();
            assert!(shown.contains(why), "{text:?}: {shown}");
            assert!(shown.contains(&format!("{text:?}")), "{shown}");
        }
        let (index, err) = Windows::parse(&["* 00:00-24:00 +00:00", "Mon"]).unwrap_err();
        assert_eq!((index, err.entry.as_str()), (1, "Mon"));
    }
}

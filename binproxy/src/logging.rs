//! Log lines on stderr, set up once by `main`. `RUST_LOG` filters (default
//! `info`).
//!
//! When stderr is the journal — systemd sets `JOURNAL_STREAM=<dev>:<inode>`
//! and stderr is that very stream — each line starts with its syslog priority
//! the sd-daemon way (`<3>` error, `<4>` warn, `<6>` info, `<7>` debug) so
//! `journalctl -p` filters on it, and carries no timestamp (the journal has
//! its own). Anywhere else a line starts with an RFC 3339 UTC timestamp and
//! the level. The variable alone is not trusted: a child of a unit inherits
//! it with its stderr sent elsewhere.
//!
//! Each action on a bin ends in one [`Action`] line of `key=value` fields:
//! `bin=api action=update from=1a2b3c4d5e6f to=9f8e7d6c5b4a outcome=ok took=1.2s`.

use std::fmt;
use std::io::Write as _;
use std::time::{Duration, SystemTime};

use crate::delivery::Delivery;
use crate::hashcache::short;

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `<6>message`: stderr is the journal.
    Journal,
    /// `2024-01-02T03:04:05Z INFO  message`.
    Plain,
}

/// Installs the logger; call once, first thing.
pub fn init() {
    let style = detect();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(move |buf, record| {
            let text = line(style, record.level(), SystemTime::now(), &record.args());
            writeln!(buf, "{text}")
        })
        .init();
}

/// The style for this process: [`Style::Journal`] when `JOURNAL_STREAM`
/// names the file stderr is.
pub fn detect() -> Style {
    let stream = std::env::var("JOURNAL_STREAM").ok();
    let stderr = std::fs::metadata("/proc/self/fd/2").ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    });
    style_for(stream.as_deref(), stderr)
}

/// [`Style::Journal`] when `journal_stream` (`dev:inode`, decimal) is `stderr`.
pub fn style_for(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> Style {
    let named = journal_stream.and_then(|v| {
        let (dev, ino) = v.trim().split_once(':')?;
        Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?))
    });
    match (named, stderr) {
        (Some(n), Some(s)) if n == s => Style::Journal,
        _ => Style::Plain,
    }
}

/// The sd-daemon priority of a level.
pub fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// One formatted record (without the final newline). Under the journal every
/// line of a multi-line message gets the priority, so none lands as info.
pub fn line(
    style: Style,
    level: log::Level,
    now: SystemTime,
    message: &dyn fmt::Display,
) -> String {
    let text = message.to_string();
    match style {
        Style::Journal => {
            let p = priority(level);
            text.split('\n')
                .map(|l| format!("<{p}>{l}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Style::Plain => format!(
            "{} {level:<5} {text}",
            humantime::format_rfc3339_seconds(now)
        ),
    }
}

/// The one line that ends an action on a bin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action<'a> {
    pub bin: &'a str,
    /// `update`, `check`, `recover`, `rollback`.
    pub action: &'a str,
    /// The sha256 before (`none`: no file).
    pub from: Option<&'a str>,
    /// The sha256 aimed at (`none`: no target).
    pub to: Option<&'a str>,
    /// `ok`, `on_target`, `no_target`, `skipped`, `failed`, `rolled_back`.
    pub outcome: &'a str,
    pub took: Duration,
    /// How an update's bytes came, said when it was not simply the
    /// artifact: `method=delta downloaded="412 KB of 5.2 MB"`, and what
    /// failed before (`fallback="delta failed (…)"`).
    pub delivery: Option<&'a Delivery>,
    /// Why, for anything but success; quoted and escaped, so text from the
    /// manager or a hook cannot forge a line.
    pub reason: Option<&'a str>,
}

impl fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bin={} action={} from={} to={} outcome={} took={:.1}s",
            self.bin,
            self.action,
            self.from.map_or("none", short),
            self.to.map_or("none", short),
            self.outcome,
            self.took.as_secs_f64()
        )?;
        if let Some(d) = self.delivery.filter(|d| d.worth_saying()) {
            write!(
                f,
                " method={} downloaded={:?}",
                d.method.as_str(),
                d.downloaded()
            )?;
            if !d.fallbacks.is_empty() {
                write!(f, " fallback={:?}", d.fallbacks.join("; "))?;
            }
        }
        if let Some(r) = self.reason {
            write!(f, " reason={r:?}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_only_when_stderr_is_the_named_stream() {
        assert_eq!(style_for(Some("8:1234"), Some((8, 1234))), Style::Journal);
        assert_eq!(style_for(Some("8:1234"), Some((8, 99))), Style::Plain);
        assert_eq!(style_for(None, Some((8, 1234))), Style::Plain);
        assert_eq!(style_for(Some("8:1234"), None), Style::Plain);
        assert_eq!(style_for(Some("garbage"), Some((8, 1234))), Style::Plain);
    }

    #[test]
    fn lines_carry_priority_or_timestamp() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            line(Style::Journal, log::Level::Warn, t, &"a\nb"),
            "<4>a\n<4>b"
        );
        assert_eq!(line(Style::Journal, log::Level::Error, t, &"x"), "<3>x");
        assert_eq!(line(Style::Journal, log::Level::Debug, t, &"x"), "<7>x");
        assert_eq!(
            line(Style::Plain, log::Level::Info, t, &"hello"),
            "2023-11-14T22:13:20Z INFO  hello"
        );
    }

    #[test]
    fn action_lines() {
        let from = "1a2b3c4d5e6f".repeat(5) + "abcd";
        let to = "9f8e7d6c5b4a".repeat(5) + "abcd";
        let a = Action {
            bin: "api",
            action: "update",
            from: Some(&from),
            to: Some(&to),
            outcome: "ok",
            took: Duration::from_millis(1234),
            delivery: None,
            reason: None,
        };
        assert_eq!(
            a.to_string(),
            "bin=api action=update from=1a2b3c4d5e6f to=9f8e7d6c5b4a outcome=ok took=1.2s"
        );
        let a = Action {
            from: None,
            outcome: "failed",
            reason: Some("bad \"x\"\nbin=evil outcome=ok"),
            ..a
        };
        assert_eq!(
            a.to_string(),
            "bin=api action=update from=none to=9f8e7d6c5b4a outcome=failed took=1.2s \
             reason=\"bad \\\"x\\\"\\nbin=evil outcome=ok\""
        );
    }

    #[test]
    fn action_lines_say_how_the_bytes_came_unless_plainly() {
        use binproxy_protocol::Method;
        let to = "9f8e7d6c5b4a".repeat(5) + "abcd";
        let mut d = Delivery {
            method: Method::Delta,
            bytes: 412_345,
            size: 5_200_000,
            fallbacks: Vec::new(),
        };
        let line = |d: &Delivery| {
            Action {
                bin: "api",
                action: "update",
                from: None,
                to: Some(&to),
                outcome: "ok",
                took: Duration::from_millis(300),
                delivery: Some(d),
                reason: None,
            }
            .to_string()
        };
        assert_eq!(
            line(&d),
            "bin=api action=update from=none to=9f8e7d6c5b4a outcome=ok took=0.3s \
             method=delta downloaded=\"412 KB of 5.2 MB\""
        );
        d.method = Method::Zst;
        d.fallbacks = vec!["delta failed (corrupt patch: \"x\")".into()];
        assert!(
            line(&d).ends_with(
                " method=zst downloaded=\"412 KB of 5.2 MB\" \
                 fallback=\"delta failed (corrupt patch: \\\"x\\\")\""
            ),
            "{}",
            line(&d)
        );
        d.method = Method::Full;
        d.fallbacks.clear();
        assert!(
            line(&d).ends_with("took=0.3s"),
            "a plain download says nothing more"
        );
    }
}

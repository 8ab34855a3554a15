//! Timestamps as the API shows them: RFC 3339, UTC, whole seconds.

use std::time::SystemTime;

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// With milliseconds, for instants that time short waits (a wave's start).
pub fn rfc3339_millis(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s).ok()
}

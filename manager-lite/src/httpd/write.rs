//! Writing a [`Reply`] on the wire: status line, the handler's headers,
//! framing headers the server owns (`Content-Length`, `Connection`, `Date`),
//! and the body: bytes, or a file streamed with its length up front (no
//! chunked encoding, a downloader wants the size). HEAD gets the headers only.

use std::io::{self, Read, Write};
use std::time::SystemTime;

use super::conn::Conn;
use crate::http::{Body, Reply};

/// Copy buffer for file bodies.
const FILE_CHUNK: usize = 64 * 1024;

/// Writes `reply`. `Ok(true)`: all of it went out and the connection may
/// carry another request.
pub fn write_reply(
    conn: &mut Conn,
    reply: Reply,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<bool> {
    let asks_close = reply.headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("connection") && v.to_ascii_lowercase().contains("close")
    });
    let keep_alive = keep_alive && !asks_close;
    let length = match &reply.body {
        Body::Bytes(b) => b.len() as u64,
        Body::File(_, len) => *len,
        Body::Empty => 0,
    };
    let mut out = head(&reply, length, keep_alive);
    match reply.body {
        Body::Bytes(bytes) if !head_only => {
            out.extend_from_slice(&bytes);
            conn.write_all(&out)?;
        }
        Body::File(file, len) if !head_only => {
            conn.write_all(&out)?;
            copy_file(file, len, conn)?;
        }
        _ => conn.write_all(&out)?,
    }
    conn.flush()?;
    Ok(keep_alive)
}

/// Status line and headers, ending with the blank line.
fn head(reply: &Reply, length: u64, keep_alive: bool) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut h = String::with_capacity(256);
    let _ = write!(
        h,
        "HTTP/1.1 {} {}\r\nDate: {}\r\n",
        reply.status,
        reason(reply.status),
        http_date(SystemTime::now())
    );
    for (k, v) in &reply.headers {
        let owned = ["connection", "content-length", "transfer-encoding", "date"];
        // A value with a line break would split the answer: dropped.
        if owned.iter().any(|o| k.eq_ignore_ascii_case(o)) || v.contains(['\r', '\n']) {
            continue;
        }
        let _ = write!(h, "{k}: {v}\r\n");
    }
    if !(reply.status == 204 || reply.status == 304 || reply.status < 200) {
        let _ = write!(h, "Content-Length: {length}\r\n");
    }
    if !keep_alive {
        h.push_str("Connection: close\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// Streams `len` bytes of `file`; a file shorter than announced is an error
/// (the connection must then close: its framing is broken).
fn copy_file(mut file: std::fs::File, len: u64, conn: &mut Conn) -> io::Result<()> {
    let mut buf = vec![0u8; FILE_CHUNK];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(FILE_CHUNK).min(FILE_CHUNK);
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("file ended {left} bytes early"),
            ));
        }
        conn.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// The reason phrase of a status.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// IMF-fixdate (RFC 9110, 5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[usize::try_from(days % 7).unwrap_or(0)],
        MONTHS[usize::try_from(m - 1).unwrap_or(0)],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month (1-12), day of a count of days since 1970-01-01 (Howard
/// Hinnant's algorithm, for dates after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        let at = |s| http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(1_735_689_599), "Tue, 31 Dec 2024 23:59:59 GMT");
    }
}

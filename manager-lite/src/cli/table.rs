//! Aligned plain-text tables for the admin command line.
//!
//! The client shows what the server knows (releases, nodes, progress reports)
//! as a header line and one line per record, each column padded to its widest
//! cell and separated by two spaces, so the output reads well in a terminal and
//! still splits on whitespace in a shell pipeline. Cells come from the network
//! (a node's labels, an agent's error message), so they are cleaned to one line
//! of printable text before they are measured. A single record (one release)
//! shows as aligned `key:  value` lines instead ([`fields`]).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Space between two columns.
const GAP: &str = "  ";

/// Renders `header` and `rows` as aligned lines, each ending in `\n`.
///
/// An empty cell shows as `-`, so every line has the same number of words up
/// to the last column. The last column is not padded: no trailing spaces.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let lines: Vec<Vec<Cow<str>>> = std::iter::once(header.iter().map(|h| clean(h)).collect())
        .chain(rows.iter().map(|row| row.iter().map(|c| cell(c)).collect()))
        .collect();
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for line in &lines {
        for (width, text) in widths.iter_mut().zip(line) {
            *width = (*width).max(text.chars().count());
        }
    }
    let mut out = String::new();
    for line in &lines {
        for (i, text) in line.iter().enumerate() {
            if i + 1 == line.len() {
                out.push_str(text);
            } else {
                // Writing into a String cannot fail.
                let _ = write!(out, "{text:<width$}{GAP}", width = widths[i]);
            }
        }
        out.push('\n');
    }
    out
}

/// Renders `fields` as `key:  value` lines, the values aligned, each ending
/// in `\n`. Values are cleaned like cells, and an empty one shows as `-`.
pub fn fields(fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .map(|(key, _)| key.chars().count() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in fields {
        // Writing into a String cannot fail.
        let _ = writeln!(
            out,
            "{:<width$}{GAP}{}",
            format!("{}:", clean(key)),
            cell(value)
        );
    }
    out
}

/// One table cell: cleaned, and `-` when empty.
fn cell(text: &str) -> Cow<'_, str> {
    if text.is_empty() {
        Cow::Borrowed("-")
    } else {
        clean(text)
    }
}

/// `text` as one line without control characters: they are shown escaped
/// (`\n`, `\u{1b}`), so a message from a node can neither break the table nor
/// send escape sequences to the terminal.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_string()).collect()
    }

    #[test]
    fn pads_columns_to_the_widest_cell() {
        let out = render(
            &["ID", "BIN", "NOTE"],
            &[row(&["1", "agent", "first one"]), row(&["120", "x", "b"])],
        );
        assert_eq!(
            out,
            "ID   BIN    NOTE\n\
             1    agent  first one\n\
             120  x      b\n"
        );
    }

    #[test]
    fn empty_cells_show_as_dash_and_lines_have_no_trailing_space() {
        let out = render(&["A", "B"], &[row(&["", ""])]);
        assert_eq!(out, "A  B\n-  -\n");
        assert!(out.lines().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn header_alone_when_there_are_no_rows() {
        assert_eq!(render(&["NODE", "ONLINE"], &[]), "NODE  ONLINE\n");
    }

    #[test]
    fn width_counts_characters_not_bytes() {
        let out = render(&["N", "X"], &[row(&["été", "1"]), row(&["abcd", "2"])]);
        assert_eq!(out, "N     X\nété   1\nabcd  2\n");
    }

    #[test]
    fn fields_align_values_and_clean_them() {
        let out = fields(&[
            ("status", "paused".into()),
            ("baseline", String::new()),
            ("note", "a\nb".into()),
        ]);
        assert_eq!(
            out,
            "status:    paused\n\
             baseline:  -\n\
             note:      a\\nb\n"
        );
        assert_eq!(fields(&[]), "");
    }

    #[test]
    fn control_characters_are_escaped() {
        let out = render(&["MESSAGE"], &[row(&["line1\nline2\u{1b}[31m"])]);
        assert_eq!(out, "MESSAGE\nline1\\nline2\\u{1b}[31m\n");
        assert_eq!(clean("plain"), Cow::Borrowed("plain"));
    }
}

//! Running the local config's commands (preflight, restart, health): argv
//! arrays, no shell, with a time limit.
//!
//! Output goes to a file, not a pipe: a restart hook that leaves a daemon
//! behind would otherwise hold the pipe open and hang the agent. The tail of
//! that file goes into the error message when a hook fails.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bytes of a failed hook's output quoted in the error.
const TAIL: u64 = 400;

/// Runs `argv` (with `{path}` replaced by `path`), waiting at most `timeout`.
/// `log` receives its output.
pub fn run(argv: &[String], path: &Path, timeout: Duration, log: &Path) -> Result<(), String> {
    let Some((program, rest)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let subst = |a: &String| a.replace("{path}", &path.to_string_lossy());
    let out = File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("creating {}: {e}", log.display()))?;
    let shown = std::iter::once(program)
        .chain(rest)
        .map(subst)
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(subst(program))
        .args(rest.iter().map(subst))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {shown:?}: {e}"))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{shown:?} timed out after {}{}",
                    humantime::format_duration(timeout),
                    tail(log)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for {shown:?}: {e}")),
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown:?} failed ({status}){}", tail(log)))
    }
}

/// The end of a hook's output, on one line, for an error message.
fn tail(log: &Path) -> String {
    let Ok(mut f) = File::open(log) else {
        return String::new();
    };
    let len = fs::metadata(log).map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
    let mut buf = Vec::new();
    let _ = f.take(TAIL).read_to_end(&mut buf);
    let text: String = String::from_utf8_lossy(&buf)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    fn log() -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "bp-hook-{}-{:?}.log",
            std::process::id(),
            std::thread::current().id()
        ))
    }

    #[test]
    fn success_failure_and_substitution() {
        let l = log();
        run(
            &argv(&["true"]),
            Path::new("/x"),
            Duration::from_secs(5),
            &l,
        )
        .unwrap();
        let e = run(
            &argv(&["sh", "-c", "echo boom >&2; exit 3"]),
            Path::new("/x"),
            Duration::from_secs(5),
            &l,
        )
        .unwrap_err();
        assert!(e.contains("exit status: 3") && e.contains("boom"), "{e}");
        let e = run(
            &argv(&["sh", "-c", "echo got:$0; exit 1", "{path}"]),
            Path::new("/opt/a b"),
            Duration::from_secs(5),
            &l,
        )
        .unwrap_err();
        assert!(e.contains("got:/opt/a b"), "{e}");
        let e = run(
            &argv(&["/nonexistent/prog"]),
            Path::new("/x"),
            Duration::from_secs(5),
            &l,
        )
        .unwrap_err();
        assert!(e.contains("cannot start"), "{e}");
        let _ = fs::remove_file(&l);
    }

    #[test]
    fn timeout_kills_and_background_children_do_not_hang() {
        let l = log();
        let e = run(
            &argv(&["sleep", "5"]),
            Path::new("/x"),
            Duration::from_millis(200),
            &l,
        )
        .unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        // A hook that leaves a child holding its stdout returns at once.
        run(
            &argv(&["sh", "-c", "sleep 3 & echo started"]),
            Path::new("/x"),
            Duration::from_secs(2),
            &l,
        )
        .unwrap();
        let _ = fs::remove_file(&l);
    }
}

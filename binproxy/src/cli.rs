//! The command line: `run`, `daemon`, `status`, `rollback`, `unquarantine`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, Config};
use crate::cycle::{self, Agent};
use crate::error::Error;
use crate::outcome::{BinResult, Exit};
use crate::{daemon, lock, status};

pub const USAGE: &str = "\
binproxy: keeps managed binaries at the version manager-lite targets

USAGE:
    binproxy run --config FILE [--now] [--ignore-backoff]
                                                 one cycle, then exit (for cron)
    binproxy daemon --config FILE [--interval D] cycle every D (default 60s) plus splay
    binproxy status --config FILE [--json] [--offline]
    binproxy rollback --config FILE BIN [--to SHA256]
    binproxy unquarantine --config FILE BIN [--sha SHA256]
    binproxy --version | --help

    --now        skip this node's splay delay
    --ignore-backoff
                 lift every back-off: contact the manager and retry a
                 failed download now
    --offline    do not ask the manager for targets

EXIT CODES:
    0   all bins on target or nothing to do (also: another run holds the lock)
    1   a bin failed or was rolled back
    2   usage or config error
    69  manager unreachable, or backing off from it (nothing changed on disk
        but the back-off record; with mirrors and trusted_keys, a newer
        signed release from a mirror may have been installed)
";

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run {
        config: PathBuf,
        now: bool,
        ignore_backoff: bool,
    },
    Daemon {
        config: PathBuf,
        interval: Duration,
    },
    Status {
        config: PathBuf,
        json: bool,
        offline: bool,
    },
    Rollback {
        config: PathBuf,
        bin: String,
        to: Option<String>,
    },
    Unquarantine {
        config: PathBuf,
        bin: String,
        sha: Option<String>,
    },
    Help,
    Version,
}

/// Parses the arguments after the program name.
pub fn parse(args: Vec<OsString>) -> Result<Command, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let sub = match p.next().map_err(|e| e.to_string())? {
        Some(Long("help") | Short('h')) => return Ok(Command::Help),
        Some(Long("version") | Short('V')) => return Ok(Command::Version),
        Some(Value(v)) => v
            .into_string()
            .map_err(|_| "the command is not UTF-8".to_owned())?,
        Some(other) => return Err(other.unexpected().to_string()),
        None => return Err("no command given".into()),
    };
    let (mut config, mut now, mut json, mut offline) = (None, false, false, false);
    let mut ignore_backoff = false;
    let (mut interval, mut to, mut sha, mut bin) = (Duration::from_secs(60), None, None, None);
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("config") => config = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?)),
            Long("now") if sub == "run" => now = true,
            Long("ignore-backoff") if sub == "run" => ignore_backoff = true,
            Long("json") if sub == "status" => json = true,
            Long("offline") if sub == "status" => offline = true,
            Long("interval") if sub == "daemon" => {
                let v = text(&mut p)?;
                interval = humantime::parse_duration(&v)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        format!("--interval {v:?}: expected a duration like 60s or 5m")
                    })?;
            }
            Long("to") if sub == "rollback" => to = Some(sha256_arg("--to", &text(&mut p)?)?),
            Long("sha") if sub == "unquarantine" => {
                sha = Some(sha256_arg("--sha", &text(&mut p)?)?);
            }
            Value(v) if bin.is_none() && (sub == "rollback" || sub == "unquarantine") => {
                let name = v.into_string().map_err(|_| "BIN is not UTF-8".to_owned())?;
                binproxy_protocol::check_bin_name(&name).map_err(|e| e.to_string())?;
                bin = Some(name);
            }
            other => return Err(format!("{sub}: {}", other.unexpected())),
        }
    }
    let config = config.ok_or_else(|| format!("{sub}: --config FILE is required"))?;
    let need_bin = |bin: Option<String>| bin.ok_or_else(|| format!("{sub}: name the BIN"));
    Ok(match sub.as_str() {
        "run" => Command::Run {
            config,
            now,
            ignore_backoff,
        },
        "daemon" => Command::Daemon { config, interval },
        "status" => Command::Status {
            config,
            json,
            offline,
        },
        "rollback" => Command::Rollback {
            config,
            bin: need_bin(bin)?,
            to,
        },
        "unquarantine" => Command::Unquarantine {
            config,
            bin: need_bin(bin)?,
            sha,
        },
        other => return Err(format!("unknown command {other:?}")),
    })
}

fn text(p: &mut lexopt::Parser) -> Result<String, String> {
    p.value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| "option value is not UTF-8".to_owned())
}

fn sha256_arg(flag: &'static str, v: &str) -> Result<String, String> {
    binproxy_protocol::check_sha256(flag, v).map_err(|e| e.to_string())
}

/// Runs a parsed command; returns the exit code.
pub fn execute(cmd: Command) -> Exit {
    match cmd {
        Command::Help => {
            print!("{USAGE}");
            Exit::Done
        }
        Command::Version => {
            println!("binproxy {}", env!("CARGO_PKG_VERSION"));
            Exit::Done
        }
        Command::Run {
            config,
            now,
            ignore_backoff,
        } => with_config(&config, |c, stop| cycle::run(c, stop, !now, ignore_backoff)),
        Command::Daemon { config, interval } => with_config(&config, |c, stop| {
            Ok(daemon::run(&config, c.clone(), interval, stop))
        }),
        Command::Status {
            config,
            json,
            offline,
        } => with_config(&config, |c, _| show_status(c, json, offline)),
        Command::Rollback { config, bin, to } => {
            with_config(&config, |c, stop| rollback(c, stop, &bin, to.as_deref()))
        }
        Command::Unquarantine { config, bin, sha } => {
            with_config(&config, |c, _| unquarantine(c, &bin, sha.as_deref()))
        }
    }
}

/// Loads the config, installs the stop signals, runs `f`, maps errors.
fn with_config(
    path: &std::path::Path,
    f: impl FnOnce(&Config, &Arc<AtomicBool>) -> Result<Exit, Error>,
) -> Exit {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            return Exit::Usage;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&stop)) {
            log::error!("installing a signal handler: {e}");
            return Exit::Failed;
        }
    }
    match f(&config, &stop) {
        Ok(exit) => exit,
        Err(e) => {
            log::error!("{e}");
            e.exit()
        }
    }
}

fn find_bin<'c>(config: &'c Config, bin: &str) -> Result<&'c config::BinConfig, Error> {
    config
        .bins
        .iter()
        .find(|b| b.name == bin)
        .ok_or_else(|| Error::Config {
            path: PathBuf::from("(config)"),
            message: format!("no bin named {bin:?} in bins"),
        })
}

fn show_status(config: &Config, json: bool, offline: bool) -> Result<Exit, Error> {
    let s = status::gather(config, offline)?;
    if json {
        let text = serde_json::to_string_pretty(&s).map_err(|source| Error::Encode {
            what: "the status".into(),
            source,
        })?;
        println!("{text}");
    } else {
        print!("{}", status::render(&s));
    }
    Ok(Exit::Done)
}

fn rollback(
    config: &Config,
    stop: &AtomicBool,
    bin: &str,
    to: Option<&str>,
) -> Result<Exit, Error> {
    let bin = find_bin(config, bin)?;
    crate::fsutil::ensure_dir(&config.state_dir)?;
    let Some(_lock) = lock::try_lock(&config.state_dir)? else {
        return Err(Error::Locked);
    };
    let mut agent = Agent::new(config, stop)?;
    agent.recover()?;
    agent.state.save(&config.state_dir)?;
    let result = agent.manual_rollback(bin, to)?;
    agent.state.save(&config.state_dir)?;
    match result {
        BinResult::Updated => {
            log::info!(
                "{}: rolled back; the version left is quarantined here",
                bin.name
            );
            Ok(Exit::Done)
        }
        other => {
            log::error!("{}: rollback did not complete: {other:?}", bin.name);
            Ok(Exit::Failed)
        }
    }
}

fn unquarantine(config: &Config, bin: &str, sha: Option<&str>) -> Result<Exit, Error> {
    find_bin(config, bin)?;
    let Some(_lock) = lock::try_lock(&config.state_dir)? else {
        return Err(Error::Locked);
    };
    let mut state = crate::state::State::load(&config.state_dir)?;
    let st = state.bin(bin);
    let before = st.quarantined.len();
    st.quarantined
        .retain(|q| sha.is_some_and(|s| s != q.sha256));
    st.backoff = None;
    let cleared = before - st.quarantined.len();
    state.save(&config.state_dir)?;
    log::info!("{bin}: {cleared} quarantined hash(es) cleared; the next run may try them again");
    Ok(Exit::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_commands() {
        assert_eq!(
            parse(args(&["run", "--config", "/c.json", "--now"])).unwrap(),
            Command::Run {
                config: "/c.json".into(),
                now: true,
                ignore_backoff: false
            }
        );
        assert_eq!(
            parse(args(&["run", "--ignore-backoff", "--config", "/c"])).unwrap(),
            Command::Run {
                config: "/c".into(),
                now: false,
                ignore_backoff: true
            }
        );
        assert_eq!(
            parse(args(&["daemon", "--config=/c", "--interval", "5m"])).unwrap(),
            Command::Daemon {
                config: "/c".into(),
                interval: Duration::from_secs(300)
            }
        );
        let sha = "a".repeat(64);
        assert_eq!(
            parse(args(&[
                "rollback", "--config", "/c", "streamd", "--to", &sha
            ]))
            .unwrap(),
            Command::Rollback {
                config: "/c".into(),
                bin: "streamd".into(),
                to: Some(sha)
            }
        );
        assert_eq!(parse(args(&["--version"])).unwrap(), Command::Version);
    }

    #[test]
    fn refuses_bad_usage() {
        for (a, want) in [
            (vec![], "no command"),
            (vec!["run"], "--config"),
            (vec!["run", "--config", "/c", "--json"], "run:"),
            (
                vec!["daemon", "--config", "/c", "--ignore-backoff"],
                "daemon:",
            ),
            (vec!["fly", "--config", "/c"], "unknown command"),
            (vec!["rollback", "--config", "/c"], "name the BIN"),
            (vec!["rollback", "--config", "/c", "../x"], "bin name"),
            (
                vec!["rollback", "--config", "/c", "x", "--to", "abc"],
                "sha256",
            ),
            (
                vec!["daemon", "--config", "/c", "--interval", "0s"],
                "--interval",
            ),
        ] {
            let e = parse(args(&a)).unwrap_err();
            assert!(e.contains(want), "{a:?}: {e}");
        }
    }
}

//! `binproxy daemon`: a cycle, then a sleep of the interval plus this node's
//! splay, forever; while a [`backoff`] is in force it sleeps until it ends
//! (unless the config reads the mirrors alone: its cycles then go on, and
//! read only the mirrors). SIGTERM or SIGINT ends it after the current step (a swap
//! always runs on to its recorded outcome); SIGHUP reloads the config before
//! the next cycle, keeping the old one if the new one is wrong.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backoff;
use crate::config::{self, Config};
use crate::cycle;
use crate::outcome::Exit;
use crate::splay;

pub fn run(
    config_path: &Path,
    mut config: Config,
    interval: Duration,
    stop: &Arc<AtomicBool>,
) -> Exit {
    let hup = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup)) {
        log::error!("installing the SIGHUP handler: {e}");
        return Exit::Failed;
    }
    log::info!(
        "daemon started: every {} plus splay",
        humantime::format_duration(interval)
    );
    while !stop.load(Ordering::Relaxed) {
        if hup.swap(false, Ordering::Relaxed) {
            match config::load(config_path) {
                Ok(c) => {
                    log::info!("config reloaded from {}", config_path.display());
                    config = c;
                }
                Err(e) => log::error!("{e}; keeping the previous config"),
            }
        }
        if !config.mirrors_alone() {
            if let Some(deadline) = backoff_deadline(&config) {
                sleep_until(deadline, stop, &hup);
                continue;
            }
        }
        match cycle::run(&config, stop, false, false) {
            Ok(exit) => log::debug!("cycle ended: {exit:?}"),
            Err(e) => log::error!("cycle failed: {e}"),
        }
        let pause = interval + splay::offset(&config.node_id, config.splay);
        sleep_until(Instant::now() + pause, stop, &hup);
    }
    log::info!("daemon stopped");
    Exit::Done
}

/// When the back-off in force ends (logged), if one is.
fn backoff_deadline(config: &Config) -> Option<Instant> {
    let now = crate::state::now_unix();
    match backoff::in_force(&config.state_dir, now) {
        Ok(Some(b)) => {
            log::warn!(
                "backing off until {}: {}; sleeping",
                backoff::until(&b, now),
                b.reason()
            );
            Some(Instant::now() + Duration::from_secs(b.left(now).unwrap_or(0)))
        }
        Ok(None) => None,
        Err(e) => {
            // The cycle meets the same error and reports it.
            log::debug!("reading the back-off: {e}");
            None
        }
    }
}

/// Sleeps until `deadline`, a stop or a SIGHUP.
fn sleep_until(deadline: Instant, stop: &AtomicBool, hup: &AtomicBool) {
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) && !hup.load(Ordering::Relaxed)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
}

//! Time bounds, so that an agent run from cron always ends. A JSON request to
//! the manager is bounded as a whole by `timeout` (set on each request in
//! [`crate::manager`]); a download may take long, but not crawl: [`MinRate`]
//! cuts one that moves fewer than `download_min_rate` bytes per second over a
//! `download_min_rate_window` (each read stays bounded by `timeout`). A whole
//! cycle after the splay is bounded by `cycle_timeout`: [`watch`] runs it
//! with a stop flag that a watchdog thread raises when the time is up (or a
//! signal came), and the cycle stops at its next safe point exactly as for
//! SIGTERM — between bins or between two chunks of a download, never between
//! the journal and the swap, never inside a health check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The minimum rate of a download, judged at the end of each window from the
/// start of the transfer (the first window is its grace period).
pub struct MinRate {
    bytes_per_sec: u64,
    window: Duration,
    started: Instant,
    moved: u64,
}

impl MinRate {
    pub fn new(bytes_per_sec: u64, window: Duration) -> MinRate {
        MinRate {
            bytes_per_sec,
            window,
            started: Instant::now(),
            moved: 0,
        }
    }

    /// Counts `n` more bytes; the complaint when the window that just ended
    /// moved too few.
    pub fn moved(&mut self, n: usize) -> Result<(), String> {
        self.moved = self.moved.saturating_add(n as u64);
        let elapsed = self.started.elapsed();
        if elapsed < self.window {
            return Ok(());
        }
        let want = u128::from(self.bytes_per_sec) * elapsed.as_millis() / 1000;
        if u128::from(self.moved) < want {
            return Err(format!(
                "{} bytes in {}, below download_min_rate ({} bytes/s)",
                self.moved,
                humantime::format_duration(Duration::from_secs(elapsed.as_secs())),
                self.bytes_per_sec
            ));
        }
        self.started = Instant::now();
        self.moved = 0;
        Ok(())
    }
}

/// The deadline of one cycle and the stop flag its steps look at.
pub struct CycleBound {
    limit: Duration,
    stop: AtomicBool,
    clock: Mutex<Clock>,
    /// Wakes the watchdog when the cycle ends.
    ended: Condvar,
    timed_out: AtomicBool,
}

#[derive(Default)]
struct Clock {
    deadline: Option<Instant>,
    ended: bool,
}

impl CycleBound {
    pub fn new(limit: Duration) -> CycleBound {
        CycleBound {
            limit,
            stop: AtomicBool::new(false),
            clock: Mutex::new(Clock::default()),
            ended: Condvar::new(),
            timed_out: AtomicBool::new(false),
        }
    }

    /// The flag the cycle's steps check: set by a signal or the deadline.
    pub fn stop(&self) -> &AtomicBool {
        &self.stop
    }

    /// Starts the clock (after the splay delay).
    pub fn start(&self) {
        self.clock().deadline = Some(Instant::now() + self.limit);
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Whether the deadline passed and stopped the cycle.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }

    fn clock(&self) -> std::sync::MutexGuard<'_, Clock> {
        self.clock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The watchdog: until the cycle ends, passes a signal on to the stop
    /// flag and raises it at the deadline.
    fn guard(&self, signal: &AtomicBool) {
        let mut clock = self.clock();
        while !clock.ended {
            if signal.load(Ordering::Relaxed) {
                self.stop.store(true, Ordering::Relaxed);
            }
            let mut wait = POLL;
            if let Some(deadline) = clock.deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    self.timed_out.store(true, Ordering::Relaxed);
                    self.stop.store(true, Ordering::Relaxed);
                    return;
                }
                wait = wait.min(left);
            }
            clock = self
                .ended
                .wait_timeout(clock, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// How often the watchdog looks at the signal flag.
const POLL: Duration = Duration::from_millis(50);

/// Runs `f` while a watchdog raises `bound`'s stop flag when `signal` is set
/// or the deadline passes. The watchdog ends as soon as `f` returns.
pub fn watch<T>(signal: &AtomicBool, bound: &CycleBound, f: impl FnOnce() -> T) -> T {
    std::thread::scope(|scope| {
        let watchdog = std::thread::Builder::new()
            .name("cycle-watchdog".into())
            .spawn_scoped(scope, || bound.guard(signal));
        if let Err(e) = watchdog {
            log::warn!("cannot start the cycle watchdog ({e}): cycle_timeout is not enforced");
        }
        let out = f();
        bound.clock().ended = true;
        bound.ended.notify_all();
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crawling_download_is_cut_a_moving_one_is_not() {
        let mut r = MinRate::new(1000, Duration::from_millis(50));
        r.moved(10).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let e = r.moved(10).unwrap_err();
        assert!(
            e.contains("20 bytes") && e.contains("download_min_rate"),
            "{e}"
        );
        let mut r = MinRate::new(1000, Duration::from_millis(50));
        r.moved(100).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        r.moved(100).unwrap();
        let mut off = MinRate::new(0, Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        off.moved(0).unwrap();
    }

    #[test]
    fn the_watchdog_stops_at_the_deadline_or_on_a_signal() {
        let signal = AtomicBool::new(false);
        let bound = CycleBound::new(Duration::from_millis(100));
        let quick = watch(&signal, &bound, || 7);
        assert_eq!(quick, 7);
        assert!(!bound.timed_out() && !bound.stop().load(Ordering::Relaxed));

        let bound = CycleBound::new(Duration::from_millis(100));
        let started = Instant::now();
        watch(&signal, &bound, || {
            bound.start();
            while !bound.stop().load(Ordering::Relaxed) {
                assert!(started.elapsed() < Duration::from_secs(10));
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        assert!(bound.timed_out());

        let signal = AtomicBool::new(true);
        let bound = CycleBound::new(Duration::from_secs(3600));
        watch(&signal, &bound, || {
            while !bound.stop().load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        assert!(!bound.timed_out());
    }
}

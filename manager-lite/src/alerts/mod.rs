//! Alerts: webhooks told about what an operator should know without watching.
//!
//! Four events: a release paused by the rollout policy, a release completed,
//! a node that rolled an update back, a node gone offline. Each `--webhook`
//! URL has its own delivery thread and bounded queue: a request never waits
//! for a webhook; when a queue is full its oldest alert is dropped (and
//! counted). A delivery is retried with exponential back-off (1 s, 2 s, 4 s,
//! 8 s: five attempts), each attempt with a timeout. Bodies are JSON in one of
//! three shapes ([`Format`]). A URL may carry a secret (Slack's are tokens):
//! only its scheme and host are ever logged.
//!
//! [`event`] makes the bodies, [`webhook`] checks the URLs and delivers,
//! [`watch`] notices nodes going offline; this file holds the queues'
//! owner, [`Alerts`], which the handlers and the rollout loop call.

mod event;
mod watch;
mod webhook;

pub use event::{Event, Format, FormatError};
pub use webhook::{Webhook, WebhookError};

use binproxy_protocol::{Progress, ProgressStatus, Release, ReleaseStatus};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use webhook::{Delivery, Queue, Worker};

/// Alerts waiting per webhook before the oldest is dropped.
pub const QUEUE_MAX: usize = 1000;
/// Attempts per alert, back-off doubling from [`FIRST_RETRY`].
pub const ATTEMPTS: u32 = 5;
pub(crate) const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Connect + send + answer, per attempt.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Delivery counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub sent: AtomicU64,
    /// Given up after every attempt failed.
    pub failed: AtomicU64,
    /// Pushed out of a full queue, or still queued at shutdown.
    pub dropped: AtomicU64,
}

struct Sink {
    hook: Webhook,
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
}

/// The webhooks, their queues, and what the node watch saw last.
#[derive(Default)]
pub struct Alerts {
    sinks: Vec<Sink>,
    format: Format,
    stats: Arc<Stats>,
    /// Nodes seen online, each with the number of the last watch that saw
    /// it so: the next watch that finds one offline alerts once. Kept
    /// between watches, so a watch allocates only for a node newly online.
    online: Mutex<(u64, HashMap<String, u64>)>,
}

impl Alerts {
    /// Starts one delivery thread per webhook (none: alerts are off).
    pub fn start(hooks: &[Webhook], format: Format) -> Result<Alerts, StartError> {
        let stats = Arc::new(Stats::default());
        let mut sinks = Vec::new();
        for hook in hooks {
            let queue = Arc::new(Queue {
                items: Mutex::new(VecDeque::new()),
                wake: Condvar::new(),
                stop: AtomicBool::new(false),
            });
            let worker = Worker {
                hook: hook.clone(),
                queue: Arc::clone(&queue),
                stats: Arc::clone(&stats),
            };
            let thread = std::thread::Builder::new()
                .name("alerts".into())
                .spawn(move || worker.run())
                .map_err(|source| StartError {
                    webhook: hook.shown().to_owned(),
                    source,
                })?;
            log::info!("alerts go to {} ({format:?})", hook.shown());
            sinks.push(Sink {
                hook: hook.clone(),
                queue,
                thread: Some(thread),
            });
        }
        Ok(Alerts {
            sinks,
            format,
            stats,
            online: Mutex::default(),
        })
    }

    pub fn enabled(&self) -> bool {
        !self.sinks.is_empty()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Queues `event` for every webhook; never blocks on delivery.
    pub fn send(&self, event: &Event) {
        if !self.enabled() {
            return;
        }
        let body = event
            .body(self.format, &crate::time::now_rfc3339())
            .to_string()
            .into_bytes();
        for sink in &self.sinks {
            let mut items = sink.queue.lock();
            if items.len() >= QUEUE_MAX {
                items.pop_front();
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "alert queue for {} full: dropped the oldest alert",
                    sink.hook.shown()
                );
            }
            items.push_back(Delivery {
                event: event.name(),
                body: body.clone(),
            });
            sink.queue.wake.notify_all();
        }
    }

    /// Alerts for the releases a rollout evaluation paused or completed.
    pub fn releases(&self, changed: &[Release]) {
        for r in changed {
            let (release, bin, version) = (r.id, r.bin_name.clone(), r.version.clone());
            match r.status {
                ReleaseStatus::Paused => self.send(&Event::ReleasePaused {
                    release,
                    bin,
                    version,
                    reason: r.paused_reason.clone().unwrap_or_default(),
                }),
                ReleaseStatus::Completed => self.send(&Event::ReleaseCompleted {
                    release,
                    bin,
                    version,
                }),
                _ => {}
            }
        }
    }

    /// Alerts for a stored progress report that says the node rolled back.
    pub fn progress(&self, bin: &str, p: &Progress) {
        if p.status == ProgressStatus::RolledBack {
            self.send(&Event::NodeRolledBack {
                node: p.node_id.clone(),
                bin: bin.to_owned(),
                target_hash: p.target_hash.clone(),
                from_hash: p.from_hash.clone(),
                reason: p.message.clone(),
            });
        }
    }

    /// Stops the delivery threads after the attempt in hand; what is still
    /// queued is counted as dropped.
    pub fn shutdown(&mut self) {
        for sink in &self.sinks {
            sink.queue.stop.store(true, Ordering::Relaxed);
            sink.queue.wake.notify_all();
        }
        for sink in &mut self.sinks {
            if let Some(t) = sink.thread.take() {
                if t.join().is_err() {
                    log::error!("the alert thread for {} panicked", sink.hook.shown());
                }
            }
            let left = {
                let mut items = sink.queue.lock();
                let n = items.len();
                items.clear();
                n
            };
            if left > 0 {
                self.stats.dropped.fetch_add(left as u64, Ordering::Relaxed);
                log::warn!(
                    "{left} alert(s) for {} not delivered at shutdown",
                    sink.hook.shown()
                );
            }
        }
    }
}

impl Drop for Alerts {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The delivery thread of a webhook could not be started.
#[derive(Debug)]
pub struct StartError {
    /// The webhook, as logs may show it.
    pub webhook: String,
    pub source: std::io::Error,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "starting the alert thread for {}: {}",
            self.webhook, self.source
        )
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

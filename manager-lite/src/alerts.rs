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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use binproxy_protocol::{Progress, ProgressStatus, Release, ReleaseStatus};

use crate::store::Seen;
use crate::time::rfc3339;
use serde_json::{json, Value};

/// Alerts waiting per webhook before the oldest is dropped.
pub const QUEUE_MAX: usize = 1000;
/// Attempts per alert, back-off doubling from [`FIRST_RETRY`].
pub const ATTEMPTS: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Connect + send + answer, per attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The body shape webhooks receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `{"event": "release_paused", "release": 7, "bin": …, "time": …}`.
    #[default]
    Json,
    /// Slack incoming webhook: `{"text": "…"}`.
    Slack,
    /// DingTalk robot: `{"msgtype": "text", "text": {"content": "…"}}`.
    Dingtalk,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "json" => Ok(Format::Json),
            "slack" => Ok(Format::Slack),
            "dingtalk" => Ok(Format::Dingtalk),
            other => Err(format!(
                "--webhook-format {other:?}: expected json, slack or dingtalk"
            )),
        }
    }
}

/// A webhook URL, checked: `http://` or `https://` with a host.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    url: String,
    /// `scheme://host[:port]`: all of the URL that may be logged.
    shown: String,
}

impl Webhook {
    /// Checks a `--webhook` value; the error never repeats the URL.
    pub fn parse(url: &str) -> Result<Webhook, String> {
        let rest = url
            .strip_prefix("http://")
            .map(|r| ("http", r))
            .or_else(|| url.strip_prefix("https://").map(|r| ("https", r)));
        let Some((scheme, rest)) = rest else {
            return Err("--webhook: expected an http:// or https:// URL".into());
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        // user:password@host: the credentials are not shown either.
        let host = host.rsplit('@').next().unwrap_or_default();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("--webhook {scheme}://…: no valid host"));
        }
        Ok(Webhook {
            url: url.to_owned(),
            shown: format!("{scheme}://{host}"),
        })
    }

    /// What logs may say about this webhook.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Webhook({}/…)", self.shown)
    }
}

/// Delivery counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub sent: AtomicU64,
    /// Given up after every attempt failed.
    pub failed: AtomicU64,
    /// Pushed out of a full queue, or still queued at shutdown.
    pub dropped: AtomicU64,
}

/// Something to tell the webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    ReleasePaused {
        release: u64,
        bin: String,
        version: String,
        reason: String,
    },
    ReleaseCompleted {
        release: u64,
        bin: String,
        version: String,
    },
    NodeRolledBack {
        node: String,
        bin: String,
        target_hash: String,
        from_hash: Option<String>,
        reason: Option<String>,
    },
    NodeOffline {
        node: String,
        last_seen: String,
    },
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::ReleasePaused { .. } => "release_paused",
            Event::ReleaseCompleted { .. } => "release_completed",
            Event::NodeRolledBack { .. } => "node_rolled_back",
            Event::NodeOffline { .. } => "node_offline",
        }
    }

    /// One line for people (Slack, DingTalk, the JSON's `summary`).
    pub fn text(&self) -> String {
        match self {
            Event::ReleasePaused {
                release,
                bin,
                version,
                reason,
            } => format!("binproxy: release {release} ({bin} {version}) paused: {reason}"),
            Event::ReleaseCompleted {
                release,
                bin,
                version,
            } => format!("binproxy: release {release} ({bin} {version}) completed"),
            Event::NodeRolledBack {
                node,
                bin,
                target_hash,
                reason,
                ..
            } => format!(
                "binproxy: node {node} rolled back {bin} (target {}): {}",
                target_hash.get(..12).unwrap_or(target_hash),
                reason.as_deref().unwrap_or("no reason given")
            ),
            Event::NodeOffline { node, last_seen } => {
                format!("binproxy: node {node} offline (last seen {last_seen})")
            }
        }
    }

    fn fields(&self) -> Value {
        match self {
            Event::ReleasePaused {
                release,
                bin,
                version,
                reason,
            } => json!({"release": release, "bin": bin, "version": version, "reason": reason}),
            Event::ReleaseCompleted {
                release,
                bin,
                version,
            } => json!({"release": release, "bin": bin, "version": version}),
            Event::NodeRolledBack {
                node,
                bin,
                target_hash,
                from_hash,
                reason,
            } => json!({"node": node, "bin": bin, "target_hash": target_hash,
                        "from_hash": from_hash, "reason": reason}),
            Event::NodeOffline { node, last_seen } => {
                json!({"node": node, "last_seen": last_seen})
            }
        }
    }

    /// The body a webhook of `format` receives; `time` is RFC 3339.
    pub fn body(&self, format: Format, time: &str) -> Value {
        match format {
            Format::Json => {
                let mut v = self.fields();
                if let Some(map) = v.as_object_mut() {
                    map.insert("event".into(), self.name().into());
                    map.insert("time".into(), time.into());
                    map.insert("summary".into(), self.text().into());
                }
                v
            }
            Format::Slack => json!({"text": slack_escape(&self.text())}),
            Format::Dingtalk => json!({"msgtype": "text", "text": {"content": self.text()}}),
        }
    }
}

/// Slack reads `<…>` as links and mentions: a node's message must not ping
/// a channel.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One alert on its way to one webhook.
struct Delivery {
    event: &'static str,
    body: Vec<u8>,
}

/// A webhook's queue, shared with its delivery thread.
struct Queue {
    items: Mutex<VecDeque<Delivery>>,
    wake: Condvar,
    stop: AtomicBool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Delivery>> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next alert, or None once stopping.
    fn next(&self) -> Option<Delivery> {
        let mut items = self.lock();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(d) = items.pop_front() {
                return Some(d);
            }
            items = self
                .wake
                .wait_timeout(items, Duration::from_secs(1))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Sleeps `d` unless stopped first; false when stopping.
    fn pause(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut items = self.lock();
        while !self.stop.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            items = self
                .wake
                .wait_timeout(items, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        false
    }
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
    pub fn start(hooks: &[Webhook], format: Format) -> Result<Alerts, String> {
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
                .map_err(|e| format!("starting the alert thread for {}: {e}", hook.shown()))?;
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

    /// Alerts once for each node that was online at the last watch and is
    /// offline now. Nodes offline at the first watch (after a restart) were
    /// not seen to go: no alert.
    ///
    /// `scan` calls its argument for every node (`Store::scan_nodes`): the
    /// fleet is walked, not copied.
    pub fn watch_nodes(&self, scan: impl FnOnce(&mut dyn FnMut(&Seen))) {
        if !self.enabled() {
            return;
        }
        let mut guard = self.online.lock().unwrap_or_else(PoisonError::into_inner);
        let (watch, online) = &mut *guard;
        *watch += 1;
        let mut gone = Vec::new();
        scan(&mut |n: &Seen| {
            let id = n.node.id;
            if n.online {
                match online.get_mut(id) {
                    Some(last) => *last = *watch,
                    None => {
                        online.insert(id.to_owned(), *watch);
                    }
                }
            } else if online.remove(id).is_some() {
                gone.push((id.to_owned(), rfc3339(n.last_seen)));
            }
        });
        // Deleted nodes were not seen: forget them.
        online.retain(|_, last| *last == *watch);
        drop(guard);
        for (node, last_seen) in gone {
            self.send(&Event::NodeOffline { node, last_seen });
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

/// The delivery thread of one webhook.
struct Worker {
    hook: Webhook,
    queue: Arc<Queue>,
    stats: Arc<Stats>,
}

impl Worker {
    fn run(self) {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(ATTEMPT_TIMEOUT))
            .max_redirects(0)
            .user_agent(concat!("manager-lite/", env!("CARGO_PKG_VERSION")))
            .build();
        let agent = ureq::Agent::new_with_config(config);
        while let Some(d) = self.queue.next() {
            self.deliver(&agent, &d);
        }
    }

    /// Up to [`ATTEMPTS`] tries with doubling pauses; stops early on shutdown.
    fn deliver(&self, agent: &ureq::Agent, d: &Delivery) {
        let mut wait = FIRST_RETRY;
        for attempt in 1..=ATTEMPTS {
            match self.attempt(agent, &d.body) {
                Ok(()) => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    log::debug!("alert {} sent to {}", d.event, self.hook.shown());
                    return;
                }
                Err(why) => log::warn!(
                    "alert {} to {}: attempt {attempt} of {ATTEMPTS} failed: {why}",
                    d.event,
                    self.hook.shown()
                ),
            }
            if attempt == ATTEMPTS || !self.queue.pause(wait) {
                break;
            }
            wait *= 2;
        }
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        log::error!("alert {} to {}: given up", d.event, self.hook.shown());
    }

    /// One POST; the error text never holds the URL's path or query.
    fn attempt(&self, agent: &ureq::Agent, body: &[u8]) -> Result<(), String> {
        let answer = agent
            .post(&self.hook.url)
            .header("Content-Type", "application/json")
            .send(body)
            .map_err(|e| self.redact(&e.to_string()))?;
        let status = answer.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }

    fn redact(&self, text: &str) -> String {
        text.replace(&self.hook.url, &format!("{}/…", self.hook.shown()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_checked_and_shown_without_secrets() {
        let w = Webhook::parse("https://hooks.slack.com/services/T0/B0/SECRET?x=1").unwrap();
        assert_eq!(w.shown(), "https://hooks.slack.com");
        assert!(!format!("{w:?}").contains("SECRET"));
        let w = Webhook::parse("http://user:pw@127.0.0.1:9/x").unwrap();
        assert_eq!(w.shown(), "http://127.0.0.1:9");
        for bad in ["ftp://x/SECRET", "http:///SECRET", "hooks.slack.com/SECRET"] {
            let e = Webhook::parse(bad).unwrap_err();
            assert!(!e.contains("SECRET"), "{e}");
        }
    }

    #[test]
    fn bodies_per_format() {
        let e = Event::NodeRolledBack {
            node: "n1".into(),
            bin: "b".into(),
            target_hash: "ab".repeat(32),
            from_hash: None,
            reason: Some("<!channel> health & check".into()),
        };
        let j = e.body(Format::Json, "2024-01-01T00:00:00Z");
        assert_eq!(j["event"], "node_rolled_back");
        assert_eq!(j["node"], "n1");
        assert_eq!(j["time"], "2024-01-01T00:00:00Z");
        let s = e.body(Format::Slack, "t");
        let text = s["text"].as_str().unwrap();
        assert!(
            text.contains("&lt;!channel&gt; health &amp; check"),
            "{text}"
        );
        let d = e.body(Format::Dingtalk, "t");
        assert_eq!(d["msgtype"], "text");
        assert!(d["text"]["content"].as_str().unwrap().contains("n1"));
    }

    #[test]
    fn offline_is_alerted_once_per_transition() {
        // A webhook nobody listens on: the queue is what is looked at.
        let hook = Webhook::parse("http://127.0.0.1:9/x").unwrap();
        let mut alerts = Alerts::start(&[hook], Format::Json).unwrap();
        let n1 = crate::store::NodeRecord::new(
            &binproxy_protocol::Node::default(),
            &crate::store::Interner::default(),
        );
        let node = |online| {
            let n1 = &n1;
            move |f: &mut dyn FnMut(&Seen)| {
                f(&Seen {
                    node: crate::store::NodeRef {
                        id: "n1",
                        record: n1,
                    },
                    last_seen: std::time::SystemTime::UNIX_EPOCH,
                    online,
                });
            }
        };
        let queued = |a: &Alerts| a.sinks[0].queue.lock().len() as u64;
        // Stop the thread first, so the queue only grows.
        alerts.sinks[0].queue.stop.store(true, Ordering::Relaxed);
        alerts.sinks[0].queue.wake.notify_all();
        alerts.watch_nodes(node(false));
        assert_eq!(queued(&alerts), 0, "offline at the first look: no alert");
        alerts.watch_nodes(node(true));
        alerts.watch_nodes(node(false));
        alerts.watch_nodes(node(false));
        assert_eq!(queued(&alerts), 1, "one alert per online→offline");
        alerts.watch_nodes(node(true));
        alerts.watch_nodes(node(false));
        assert_eq!(queued(&alerts), 2);
        alerts.shutdown();
    }
}

//! Where alerts go: a checked webhook URL ([`Webhook`], which never shows
//! more than its scheme and host), the bounded queue each one has, and the
//! delivery thread that empties it with retries and doubling back-off.

use super::{Stats, ATTEMPTS, ATTEMPT_TIMEOUT, FIRST_RETRY};
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A webhook URL, checked: `http://` or `https://` with a host.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub(super) url: String,
    /// `scheme://host[:port]`: all of the URL that may be logged.
    shown: String,
}

impl Webhook {
    /// Checks a `--webhook` value; the error never repeats the URL.
    pub fn parse(url: &str) -> Result<Webhook, WebhookError> {
        let rest = url
            .strip_prefix("http://")
            .map(|r| ("http", r))
            .or_else(|| url.strip_prefix("https://").map(|r| ("https", r)));
        let Some((scheme, rest)) = rest else {
            return Err(WebhookError::NotHttp);
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        // user:password@host: the credentials are not shown either.
        let host = host.rsplit('@').next().unwrap_or_default();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(WebhookError::NoHost { scheme });
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

/// Why a `--webhook` value was refused; it never repeats the URL, which may
/// hold a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookError {
    /// Not `http://` or `https://`.
    NotHttp,
    /// Nothing usable between the scheme and the path.
    NoHost { scheme: &'static str },
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotHttp => f.write_str("--webhook: expected an http:// or https:// URL"),
            Self::NoHost { scheme } => write!(f, "--webhook {scheme}://…: no valid host"),
        }
    }
}

impl std::error::Error for WebhookError {}

/// One alert on its way to one webhook.
pub(super) struct Delivery {
    pub(super) event: &'static str,
    pub(super) body: Vec<u8>,
}

/// A webhook's queue, shared with its delivery thread.
pub(super) struct Queue {
    pub(super) items: Mutex<VecDeque<Delivery>>,
    pub(super) wake: Condvar,
    pub(super) stop: AtomicBool,
}

impl Queue {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Delivery>> {
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

/// The delivery thread of one webhook.
pub(super) struct Worker {
    pub(super) hook: Webhook,
    pub(super) queue: Arc<Queue>,
    pub(super) stats: Arc<Stats>,
}

impl Worker {
    pub(super) fn run(self) {
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
    fn attempt(&self, agent: &ureq::Agent, body: &[u8]) -> Result<(), AttemptError> {
        let answer = agent
            .post(&self.hook.url)
            .header("Content-Type", "application/json")
            .send(body)
            .map_err(|e| AttemptError::Unanswered(self.redact(&e.to_string())))?;
        let status = answer.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(AttemptError::Status(status))
        }
    }

    fn redact(&self, text: &str) -> String {
        text.replace(&self.hook.url, &format!("{}/…", self.hook.shown()))
    }
}

/// Why one delivery attempt failed; never holds the URL's path or query.
#[derive(Debug)]
enum AttemptError {
    /// No answer: the transport's error, the URL redacted.
    Unanswered(String),
    /// An answer outside 2xx.
    Status(u16),
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unanswered(why) => f.write_str(why),
            Self::Status(status) => write!(f, "HTTP {status}"),
        }
    }
}

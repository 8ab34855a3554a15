//! The agent's side of the wire protocol: one small client for every call it
//! makes to manager-lite. Timeouts come from the config; a status error keeps
//! the manager's `{"error"}` text; a connection failure is [`Error::Unreachable`],
//! a 5xx or 429 [`Error::Unavailable`], an answer off the protocol [`Error::BadAnswer`].
//!
//! Every request to the manager carries `Authorization: Bearer <node secret>`
//! once the node has one; before that, the keepalive (only) carries the
//! enrollment token (and the secret the node proposes, in its body). Nothing
//! is sent to URLs outside the manager (a target's absolute `url` elsewhere
//! gets no credential), and nothing at all to a [`Peer::Mirror`]: requests to
//! the config's `mirrors` ([`Manager::mirror_get`], and downloads from them)
//! never go through the code that adds a credential, whatever their URL. They
//! use the same client (TLS roots, timeouts, no redirects), and their answers
//! say nothing about the manager: no `Retry-After` is taken from them and
//! their errors are [`Error::Mirror`].

use binproxy_protocol::{
    check_sha256, ErrorBody, Installed, Keepalive, KeepaliveReply, Progress, Target,
};
use serde::{de::DeserializeOwned, Serialize};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use ureq::tls::TlsConfig;
use ureq::Agent;

use crate::backoff::{self, RetryAfter};
use crate::bounds::MinRate;
use crate::config::Config;
use crate::credential::Credentials;
use crate::error::{Error, Malformed, MirrorProblem, Result};
use crate::tls;

/// Largest JSON answer the agent reads.
const MAX_JSON_ANSWER: u64 = 4 << 20;

pub struct Manager {
    agent: Agent,
    /// The limit of each whole JSON request (see [`crate::bounds`]).
    timeout: Duration,
    /// A download's minimum rate: bytes per second over a window.
    min_rate: (u64, Duration),
    base: String,
    credentials: Credentials,
    /// The longest `Retry-After` a 429 or 5xx answer carried (see [`backoff`]).
    retry_after: Mutex<Option<RetryAfter>>,
    /// Bytes of download bodies received so far, from any server: what an
    /// update's reports say it cost (see [`Manager::received`]).
    received: Arc<AtomicU64>,
}

/// A download body that adds what it reads to its client's count.
struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Who a download is asked of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The target's own URL: the node's credential goes with it when it is
    /// on the manager, and a 429 or 5xx backs the manager off.
    Manager,
    /// A mirror of the config: no credential, ever, and its answers say
    /// nothing about the manager.
    Mirror,
}

/// An open download: the body from `offset` on.
pub struct Download {
    /// Where the body starts: 0, or the resume offset the server accepted.
    pub offset: u64,
    pub body: Box<dyn Read + Send>,
    /// The minimum rate the body must keep up.
    pub rate: MinRate,
}

impl Manager {
    pub fn new(config: &Config, credentials: Credentials) -> Manager {
        let tls = tls::client_config(config.ca_file.as_deref(), &config.ca_roots);
        let mut m = Manager::with_tls(&config.manager_url, config.timeout, tls);
        m.credentials = credentials;
        m.min_rate = (config.download_min_rate, config.download_min_rate_window);
        m
    }

    /// Uses `secret` from now on (after an enrollment); the enrollment token
    /// is not sent any more.
    pub fn set_node_secret(&mut self, secret: String) {
        self.credentials.node_secret = Some(secret);
        self.credentials.enroll_token = None;
    }

    /// Whether the next keepalive enrolls (see [`Credentials::enrolling`]).
    pub fn enrolling(&self) -> bool {
        self.credentials.enrolling()
    }

    /// Whether the node has a secret of its own.
    pub fn has_node_secret(&self) -> bool {
        self.credentials.node_secret.is_some()
    }

    /// A client trusting the webpki roots for HTTPS.
    pub fn with_timeout(base: &str, timeout: Duration) -> Manager {
        Manager::with_tls(base, timeout, tls::client_config(None, &[]))
    }

    fn with_tls(base: &str, timeout: Duration, tls: TlsConfig) -> Manager {
        let agent: Agent = Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_connect(Some(timeout))
            .timeout_send_request(Some(timeout))
            .timeout_recv_response(Some(timeout))
            // Bodies (downloads) may take long; each read may not. JSON
            // requests are bounded as a whole (`bounded`); downloads by
            // their minimum rate (`bounds::MinRate`).
            .timeout_per_read(Some(timeout))
            .timeout_per_write(Some(timeout))
            .max_redirects(0)
            .user_agent(concat!("binproxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Manager {
            agent,
            timeout,
            min_rate: (0, timeout),
            base: base.trim_end_matches('/').to_owned(),
            credentials: Credentials::default(),
            retry_after: Mutex::new(None),
            received: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Bytes of download bodies this client has received, whatever became
    /// of them (a cut transfer and wrong bytes count too: they crossed the
    /// wire).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// The longest `Retry-After` the manager asked for so far, if any.
    pub fn retry_after(&self) -> Option<RetryAfter> {
        *self
            .retry_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers a 429 or 5xx answer's `Retry-After`.
    fn note_retry_after(&self, url: &str, status: u16, headers: &ureq::http::HeaderMap) {
        if status != 429 && status < 500 {
            return;
        }
        let Some(value) = headers.get("retry-after").map(|v| v.to_str().unwrap_or("")) else {
            return;
        };
        let Some(seconds) = backoff::parse_retry_after(value, crate::state::now_unix()) else {
            log::warn!(
                "{url}: {status} with a Retry-After that does not parse ({value:?}); ignored"
            );
            return;
        };
        let mut slot = self
            .retry_after
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_none_or(|r| r.seconds < seconds) {
            *slot = Some(RetryAfter { status, seconds });
        }
    }

    /// The bearer to send to `url`: none outside the manager.
    fn bearer(&self, url: &str, keepalive: bool) -> Option<&str> {
        let on_manager = url
            .strip_prefix(self.base.as_str())
            .is_some_and(|rest| rest.starts_with('/'));
        self.credentials.bearer(keepalive).filter(|_| on_manager)
    }

    fn authorized<B>(
        &self,
        req: ureq::RequestBuilder<B>,
        url: &str,
        keepalive: bool,
    ) -> ureq::RequestBuilder<B> {
        match self.bearer(url, keepalive) {
            Some(secret) => req.header("Authorization", format!("Bearer {secret}")),
            None => req,
        }
    }

    /// A JSON request, bounded as a whole by `timeout`: connect, send, the
    /// answer and its body (a dripped answer is cut).
    fn bounded<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        req.config().timeout_global(Some(self.timeout)).build()
    }

    /// An absolute URL for an API path or a target's `url`.
    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    /// The keepalive; its targets are checked (see [`checked_target`]).
    pub fn keepalive(&self, body: &Keepalive) -> Result<KeepaliveReply> {
        let mut reply: KeepaliveReply = self.post_json("/api/v1/keepalive", body, true)?;
        let url = self.url("/api/v1/keepalive");
        for target in reply.targets.values_mut().flatten() {
            checked_target(&url, target)?;
        }
        Ok(reply)
    }

    /// The node's target for one bin, or the manager's reason for none (404).
    pub fn target(&self, bin: &str, node_id: &str) -> Result<Result<Target, String>> {
        let url = self.url(&format!("/api/v1/bins/{bin}?node_id={node_id}"));
        let mut resp = self
            .authorized(self.bounded(self.agent.get(&url)), &url, false)
            .call()
            .map_err(|e| unreachable(&url, e))?;
        self.note_retry_after(&url, resp.status().as_u16(), resp.headers());
        match resp.status().as_u16() {
            200 => {
                let mut target: Target = read_json(&url, resp.body_mut())?;
                checked_target(&url, &mut target)?;
                Ok(Ok(target))
            }
            404 => match refused(&url, 404, resp.body_mut()) {
                Error::Refused { message, .. } => Ok(Err(message)),
                other => Err(other),
            },
            status => Err(refused(&url, status, resp.body_mut())),
        }
    }

    pub fn progress(&self, bin: &str, body: &Progress) -> Result<()> {
        self.post_json::<_, serde_json::Value>(&format!("/api/v1/bins/{bin}/progress"), body, false)
            .map(drop)
    }

    pub fn installed(&self, bin: &str, body: &Installed) -> Result<()> {
        self.post_json::<_, serde_json::Value>(&format!("/api/v1/bins/{bin}"), body, false)
            .map(drop)
    }

    /// Starts a download at `offset` (a `Range` request when non-zero) from
    /// `peer`. The answer's offset is 0 when the server sent the whole file
    /// instead.
    pub fn download(&self, url: &str, offset: u64, peer: Peer) -> Result<Download> {
        let mut req = match peer {
            Peer::Manager => self.authorized(self.agent.get(url), url, false),
            Peer::Mirror => self.agent.get(url),
        };
        if offset > 0 {
            req = req.header("Range", format!("bytes={offset}-"));
        }
        let mut resp = req.call().map_err(|e| match peer {
            Peer::Manager => unreachable(url, e),
            Peer::Mirror => mirror_unreachable(url, e),
        })?;
        let status = resp.status().as_u16();
        if peer == Peer::Manager {
            self.note_retry_after(url, status, resp.headers());
        }
        let start = match status {
            200 => 0,
            206 => content_range_start(
                resp.headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok()),
            )
            .filter(|s| *s == offset)
            .ok_or_else(|| match peer {
                Peer::Manager => Error::BadAnswer {
                    url: url.to_owned(),
                    what: Malformed::ContentRange { offset },
                },
                Peer::Mirror => Error::Mirror {
                    url: url.to_owned(),
                    problem: MirrorProblem::ContentRange { offset },
                },
            })?,
            _ if peer == Peer::Mirror => {
                return Err(Error::Mirror {
                    url: url.to_owned(),
                    problem: MirrorProblem::Status(status),
                })
            }
            _ => return Err(refused(url, status, resp.body_mut())),
        };
        Ok(Download {
            offset: start,
            body: Box::new(Counted {
                inner: resp.into_body().into_reader(),
                count: Arc::clone(&self.received),
            }),
            rate: MinRate::new(self.min_rate.0, self.min_rate.1),
        })
    }

    /// A small file off a mirror (`bins/<bin>.json`): one GET with no
    /// credential, bounded as a whole by `timeout` like a JSON request to
    /// the manager, and refused past `limit` bytes.
    pub fn mirror_get(&self, url: &str, limit: u64) -> Result<Vec<u8>> {
        let mut resp = self
            .bounded(self.agent.get(url))
            .call()
            .map_err(|e| mirror_unreachable(url, e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(Error::Mirror {
                url: url.to_owned(),
                problem: MirrorProblem::Status(status),
            });
        }
        resp.body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => Error::Mirror {
                    url: url.to_owned(),
                    problem: MirrorProblem::TooLarge { limit },
                },
                e => mirror_unreachable(url, e),
            })
    }

    fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        keepalive: bool,
    ) -> Result<T> {
        let url = self.url(path);
        let bytes = serde_json::to_vec(body).map_err(|source| Error::Encode {
            what: format!("a request to {url}"),
            source,
        })?;
        let mut resp = self
            .authorized(self.bounded(self.agent.post(&url)), &url, keepalive)
            .header("Content-Type", "application/json")
            .send(&bytes[..])
            .map_err(|e| unreachable(&url, e))?;
        let status = resp.status().as_u16();
        self.note_retry_after(&url, status, resp.headers());
        if (200..300).contains(&status) {
            read_json(&url, resp.body_mut())
        } else {
            Err(refused(&url, status, resp.body_mut()))
        }
    }
}

/// What went wrong with a request that got no usable answer, with advice
/// where there is some.
fn transport_message(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => {
            format!("{e}: no complete answer within the config's `timeout`")
        }
        _ => tls::certificate_problem(e).unwrap_or_else(|| e.to_string()),
    }
}

fn unreachable(url: &str, e: ureq::Error) -> Error {
    let message = transport_message(&e);
    Error::Unreachable {
        url: url.to_owned(),
        message,
        source: Box::new(e),
    }
}

fn mirror_unreachable(url: &str, e: ureq::Error) -> Error {
    let message = transport_message(&e);
    Error::Mirror {
        url: url.to_owned(),
        problem: MirrorProblem::Unreachable {
            message,
            source: Box::new(e),
        },
    }
}

/// A target's sha256 names files and is compared with local hashes: one
/// that is not 64 hex digits makes the answer garbage; upper case is
/// lowered (the one spelling compared). Malformed patches and zst forms are
/// dropped ([`crate::delivery::check_offers`]): the artifact is still there.
fn checked_target(url: &str, target: &mut Target) -> Result<()> {
    crate::delivery::check_offers(target);
    target.sha256sum =
        check_sha256("sha256sum", &target.sha256sum).map_err(|source| Error::BadAnswer {
            url: url.to_owned(),
            what: Malformed::Target {
                bin: target.bin_name.clone(),
                source,
            },
        })?;
    Ok(())
}

fn read_json<T: DeserializeOwned>(url: &str, body: &mut ureq::Body) -> Result<T> {
    let bytes = body
        .with_config()
        .limit(MAX_JSON_ANSWER)
        .read_to_vec()
        .map_err(|e| unreachable(url, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::BadAnswer {
        url: url.to_owned(),
        what: Malformed::NotJson(e),
    })
}

/// A status error, with the manager's own words when it sent `{"error"}`.
/// 5xx means the manager is there but not working, and 429 that it is too
/// busy: both are treated as unreachable (exit 69, and a back-off).
fn refused(url: &str, status: u16, body: &mut ureq::Body) -> Error {
    let text = body
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let message = serde_json::from_str::<ErrorBody>(&text)
        .map_or_else(|_| text.chars().take(200).collect(), |e| e.error);
    if status >= 500 || status == 429 {
        return Error::Unavailable {
            url: url.to_owned(),
            status,
            message,
        };
    }
    Error::Refused {
        url: url.to_owned(),
        status,
        message,
    }
}

fn content_range_start(value: Option<&str>) -> Option<u64> {
    let range = value?.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve_against_the_manager() {
        let m = Manager::with_timeout("http://127.0.0.1:1/", Duration::from_secs(1));
        assert_eq!(
            m.url("/api/v1/download/ab"),
            "http://127.0.0.1:1/api/v1/download/ab"
        );
        assert_eq!(m.url("https://mirror/x"), "https://mirror/x");
    }

    #[test]
    fn credentials_go_to_the_manager_only() {
        let mut m = Manager::with_timeout("http://127.0.0.1:1/", Duration::from_secs(1));
        let on = "http://127.0.0.1:1/api/v1/keepalive";
        assert_eq!(m.bearer(on, true), None);
        m.credentials.enroll_token = Some("tok".into());
        assert_eq!(m.bearer(on, true), Some("tok"));
        assert_eq!(m.bearer("http://127.0.0.1:1/api/v1/bins/a", false), None);
        m.set_node_secret("s3cret".into());
        assert!(m.has_node_secret());
        assert_eq!(m.bearer(on, true), Some("s3cret"));
        assert_eq!(
            m.bearer("http://127.0.0.1:1/api/v1/download/ab", false),
            Some("s3cret")
        );
        for elsewhere in [
            "https://mirror/x",
            "http://127.0.0.1:10/api/v1/download/ab",
            "http://127.0.0.1:1.evil/x",
        ] {
            assert_eq!(m.bearer(elsewhere, false), None, "{elsewhere}");
        }
    }

    /// A manager that sends a malformed sha256 (found by the property tests
    /// of `fetch::part_path`) is answered as garbage, before any file name
    /// is made from it.
    #[test]
    fn targets_with_a_malformed_sha256_are_refused() {
        let mut t = Target {
            bin_name: "svc".into(),
            version: "1".into(),
            sha256sum: "AB".repeat(32),
            size: 1,
            url: "/x".into(),
            reason: None,
            signature: None,
            ..Target::default()
        };
        checked_target("http://m/api", &mut t).unwrap();
        assert_eq!(t.sha256sum, "ab".repeat(32));
        for bad in [
            "",
            "/../../etc/passwd",
            "Ѩ🕴",
            &"g".repeat(64),
            &"a".repeat(65),
        ] {
            t.sha256sum = bad.into();
            let e = checked_target("http://m/api", &mut t)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("http://m/api") && e.contains("sha256"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn content_range() {
        assert_eq!(content_range_start(Some("bytes 100-199/200")), Some(100));
        assert_eq!(content_range_start(Some("bytes */200")), None);
        assert_eq!(content_range_start(None), None);
    }
}

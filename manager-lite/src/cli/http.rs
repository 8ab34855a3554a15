//! The HTTP side of the admin commands: one ureq agent with the token,
//! timeouts and trusted roots; each answer read into JSON, or into the error
//! to report (an error status with the server's `{"error"}` text is a
//! refusal, exit 1). Uploads stream the file from disk, through the progress
//! bar of [`super::progress`] on a terminal: an artifact can be as large as the
//! server allows (1 GiB by default) and is never held in memory.

use super::settings::Settings;
use super::ClientError;
use crate::cli::table;
use binproxy_protocol::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;
use std::io::Read;
use std::time::Duration;
use ureq::http::Response;
use ureq::tls::{RootCerts, TlsConfig};
use ureq::typestate::WithBody;
use ureq::{Agent, Body, RequestBuilder, SendBody};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Per read and per write, never for a whole request: an upload of a large
/// artifact over a slow link may rightly take many minutes, but a link that
/// stalls for this long is dead.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer read; ureq's default of 10 MB is small for the node list of
/// a big fleet.
const MAX_ANSWER: u64 = 64 << 20;

/// Sends admin requests to one server.
pub struct Client {
    agent: Agent,
    server: String,
    authorization: String,
}

/// A successful answer: its status (an upload tells 201 from 200) and body.
pub struct Answer {
    pub status: u16,
    pub body: Json,
    /// `X-Next-After`: where the next page of a paged listing starts.
    pub next_after: Option<String>,
}

impl Answer {
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        T::deserialize(&self.body)
            .map_err(|e| ClientError::Failed(format!("unexpected answer from the server: {e}")))
    }
}

impl Client {
    pub fn new(settings: Settings) -> Self {
        let config = Agent::config_builder()
            // Error statuses are answers too: their {"error"} text is the message.
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(IO_TIMEOUT))
            .timeout_per_write(Some(IO_TIMEOUT))
            .user_agent(concat!("manager-lite/", env!("CARGO_PKG_VERSION")))
            .tls_config(
                TlsConfig::builder()
                    .root_certs(settings.roots.map_or(RootCerts::WebPki, RootCerts::from))
                    .build(),
            )
            .build();
        Self {
            agent: Agent::new_with_config(config),
            server: settings.server,
            authorization: format!("Bearer {}", settings.token),
        }
    }

    /// `path` under the server URL, for requests and messages.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    /// `path` under the server URL, and a request to it with the token and
    /// the (percent-encoded) query.
    fn start<B>(
        &self,
        method: fn(&Agent, String) -> RequestBuilder<B>,
        path: &str,
        query: &[(&str, &str)],
    ) -> (String, RequestBuilder<B>) {
        let url = self.url(path);
        let request = method(&self.agent, url.clone())
            .header("Authorization", &self.authorization)
            .query_pairs(query.iter().copied());
        (url, request)
    }

    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Answer, ClientError> {
        let (url, request) = self.start(Agent::get, path, query);
        read_answer("GET", &url, request.call())
    }

    pub fn post_json(&self, path: &str, body: &impl Serialize) -> Result<Answer, ClientError> {
        self.send_json("POST", Agent::post, path, body)
    }

    pub fn put_json(&self, path: &str, body: &impl Serialize) -> Result<Answer, ClientError> {
        self.send_json("PUT", Agent::put, path, body)
    }

    fn send_json(
        &self,
        verb: &str,
        method: fn(&Agent, String) -> RequestBuilder<WithBody>,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Answer, ClientError> {
        let json = serde_json::to_string(body)
            .map_err(|e| ClientError::Failed(format!("cannot encode the request: {e}")))?;
        let (url, request) = self.start(method, path, &[]);
        let sent = request.content_type("application/json").send(json);
        read_answer(verb, &url, sent)
    }

    /// A POST without a body (`Content-Length: 0`).
    pub fn post_empty(&self, path: &str) -> Result<Answer, ClientError> {
        let (url, request) = self.start(Agent::post, path, &[]);
        read_answer("POST", &url, request.send_empty())
    }

    pub fn delete(&self, path: &str) -> Result<Answer, ClientError> {
        let (url, request) = self.start(Agent::delete, path, &[]);
        read_answer("DELETE", &url, request.call())
    }

    pub fn put_text(
        &self,
        path: &str,
        query: &[(&str, &str)],
        text: &str,
    ) -> Result<Answer, ClientError> {
        let (url, request) = self.start(Agent::put, path, query);
        let sent = request.content_type("text/plain; charset=utf-8").send(text);
        read_answer("PUT", &url, sent)
    }

    /// A GET whose answer is streamed (a backup, a mirrored artifact): its
    /// body as a reader, with no size cap (the caller bounds what it reads)
    /// and the per-read timeout of every request, and its length when
    /// announced. An error status is a refusal, as ever.
    pub fn download(&self, path: &str) -> Result<(impl Read + use<>, Option<u64>), ClientError> {
        let (url, request) = self.start(Agent::get, path, &[]);
        let mut response = request
            .call()
            .map_err(|e| ClientError::Failed(format!("GET {url} failed: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let text = response
                .body_mut()
                .with_config()
                .limit(MAX_ANSWER)
                .read_to_string();
            return Err(refused(status, &text.unwrap_or_default()));
        }
        let length = response.body().content_length();
        Ok((response.into_body().into_reader(), length))
    }

    /// Streams `body` (`size` bytes, e.g. a file) as the body.
    pub fn upload(
        &self,
        path: &str,
        query: &[(&str, &str)],
        mut body: impl Read,
        size: u64,
    ) -> Result<Answer, ClientError> {
        let (url, request) = self.start(Agent::post, path, query);
        let sent = request
            .content_type("application/octet-stream")
            // Set here: a reader has no length ureq could send by itself.
            .header("Content-Length", size)
            // No `Expect: 100-continue`: some servers send a 100 answer with
            // headers, which ureq takes for a final answer.
            .send(SendBody::from_reader(&mut body));
        read_answer("POST", &url, sent)
    }
}

/// Turns what came back into an [`Answer`], or the error to report.
fn read_answer(
    method: &str,
    url: &str,
    sent: Result<Response<Body>, ureq::Error>,
) -> Result<Answer, ClientError> {
    let mut response =
        sent.map_err(|e| ClientError::Failed(format!("{method} {url} failed: {e}")))?;
    let status = response.status();
    let next_after = response
        .headers()
        .get("x-next-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string();
    if !status.is_success() {
        return Err(refused(status, &text.unwrap_or_default()));
    }
    let text = text.map_err(|e| {
        ClientError::Failed(format!("reading the answer to {method} {url} failed: {e}"))
    })?;
    // A success without a body (a DELETE, say) is fine: it reads as null.
    let body = if text.trim().is_empty() {
        Json::Null
    } else {
        serde_json::from_str(&text).map_err(|e| {
            ClientError::Failed(format!("the answer to {method} {url} is not JSON: {e}"))
        })?
    };
    Ok(Answer {
        status: status.as_u16(),
        body,
        next_after,
    })
}

/// An error answer: its status and what it says.
fn refused(status: ureq::http::StatusCode, body: &str) -> ClientError {
    ClientError::Refused {
        status: status.as_u16(),
        error: error_text(body, status.canonical_reason()),
    }
}

/// The `{"error"}` text of an error answer; else its first line (a proxy's
/// HTML page, say); else the status' reason phrase.
fn error_text(body: &str, reason: Option<&str>) -> String {
    if let Ok(ErrorBody { error }) = serde_json::from_str(body) {
        return table::clean(&error).into_owned();
    }
    let first = body.lines().map(str::trim).find(|l| !l.is_empty());
    let text: String = first.or(reason).unwrap_or("").chars().take(200).collect();
    table::clean(&text).into_owned()
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;

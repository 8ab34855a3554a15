//! A misbehaving manager for the agent's fault tests: [`FakeManager`] plays
//! manager-lite for one bin on a [`StubServer`]. A keepalive gets a target
//! pointing at its own download path; the download is answered as
//! [`Download`] says (exact, other bytes, cut, overlong or paced); progress
//! and installed reports are recorded, or refused with 503.

use binproxy_protocol::{Installed, Keepalive, KeepaliveReply, Node, Progress, Target};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use crate::sha256_hex;
use crate::stub::{Exchange, Request, StubServer};

/// How the fake manager answers a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Download {
    /// The artifact, honouring `Range: bytes=N-`.
    Exact,
    /// As many bytes as the artifact, but other ones (the hash will not match).
    WrongBytes,
    /// `Content-Length` of the whole artifact, half of it, then the
    /// connection closes.
    Truncated,
    /// The artifact followed by extra bytes, all announced in `Content-Length`.
    Excess,
    /// The artifact (from a `Range` start too), `bytes` at a time with a
    /// pause of `pause_ms` after each: dripped or slow but moving.
    Paced { bytes: usize, pause_ms: u64 },
}

/// What the fake manager serves; the test may change the last two.
struct Settings {
    bin: String,
    target: Target,
    artifact: Vec<u8>,
    download: Download,
    refuse_reports: bool,
}

/// A manager for one bin on `127.0.0.1:<ephemeral>`; it stops on drop.
pub struct FakeManager {
    pub addr: std::net::SocketAddr,
    pub url: String,
    pub target: Target,
    settings: Arc<Mutex<Settings>>,
    server: StubServer,
}

impl FakeManager {
    pub fn start(bin: &str, version: &str, artifact: Vec<u8>, download: Download) -> FakeManager {
        let sha = sha256_hex(&artifact);
        let target = Target {
            bin_name: bin.to_owned(),
            version: version.to_owned(),
            url: format!("/dl/{sha}"),
            sha256sum: sha,
            size: artifact.len() as u64,
            ..Target::default()
        };
        let settings = Arc::new(Mutex::new(Settings {
            bin: bin.to_owned(),
            target: target.clone(),
            artifact,
            download,
            refuse_reports: false,
        }));
        let server = {
            let settings = Arc::clone(&settings);
            StubServer::start(move |x| answer(x, &settings))
        };
        FakeManager {
            addr: server.addr,
            url: server.url.clone(),
            target,
            settings,
            server,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_download(&self, d: Download) {
        self.lock().download = d;
    }

    /// Answer progress and installed reports with 503 (or accept them again).
    pub fn set_refuse_reports(&self, refuse: bool) {
        self.lock().refuse_reports = refuse;
    }

    pub fn seen(&self) -> Vec<Request> {
        self.server.seen()
    }

    /// The downloads asked for, with their `Range` header.
    pub fn downloads(&self) -> Vec<Option<String>> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "GET" && s.path.starts_with("/dl/"))
            .map(|s| s.header("range").map(str::to_owned))
            .collect()
    }

    /// The progress reports received (and accepted or not), in order.
    pub fn progress(&self) -> Vec<Progress> {
        let path = format!("/api/v1/bins/{}/progress", self.lock().bin);
        self.posted(&path)
    }

    /// The installed reports received.
    pub fn installed(&self) -> Vec<Installed> {
        let path = format!("/api/v1/bins/{}", self.lock().bin);
        self.posted(&path)
    }

    /// The JSON bodies POSTed to `path`, in order.
    fn posted<T: serde::de::DeserializeOwned>(&self, path: &str) -> Vec<T> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "POST" && s.path == path)
            .map(|s| {
                serde_json::from_slice(&s.body)
                    .unwrap_or_else(|e| panic!("POST {path}: not the report expected ({e})"))
            })
            .collect()
    }
}

fn answer(x: &mut Exchange, settings: &Mutex<Settings>) {
    let (bin, target, artifact, download, refuse) = {
        let s = settings.lock().unwrap_or_else(PoisonError::into_inner);
        (
            s.bin.clone(),
            s.target.clone(),
            s.artifact.clone(),
            s.download,
            s.refuse_reports,
        )
    };
    let reports = [
        format!("/api/v1/bins/{bin}/progress"),
        format!("/api/v1/bins/{bin}"),
    ];
    let rq = x.request;
    match (rq.method.as_str(), rq.path.as_str()) {
        ("POST", "/api/v1/keepalive") => {
            let Ok(k) = serde_json::from_slice::<Keepalive>(&rq.body) else {
                return;
            };
            let when = "2024-01-02T03:04:05Z".to_owned();
            let reply = KeepaliveReply {
                node: Node {
                    node_id: k.node_id,
                    registered_at: when.clone(),
                    last_seen: when.clone(),
                    online: true,
                    ..Node::default()
                },
                server_time: when,
                reasons: BTreeMap::new(),
                node_secret: None,
                enrolled: false,
                targets: [(bin, Some(target))].into_iter().collect(),
            };
            x.json(200, &serde_json::to_value(reply).unwrap());
        }
        ("POST", p) if reports.iter().any(|r| r == p) => {
            if refuse {
                x.json(503, &json!({"error": "fake manager: down"}));
            } else {
                x.json(201, &json!({}));
            }
        }
        ("GET", p) if p == target.url => serve_download(x, &artifact, download),
        _ => x.json(404, &json!({"error": "fake manager: no route"})),
    }
}

/// The start of a `Range: bytes=N-` request inside the artifact.
fn range_start(rq: &Request, len: usize) -> Option<usize> {
    rq.header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n < len)
}

fn serve_download(x: &mut Exchange, artifact: &[u8], download: Download) {
    let len = artifact.len();
    let octets = ("Content-Type", "application/octet-stream".to_owned());
    match download {
        Download::Exact => match range_start(x.request, len) {
            Some(n) => x.respond(
                206,
                &[
                    octets,
                    ("Content-Range", format!("bytes {n}-{}/{len}", len - 1)),
                ],
                &artifact[n..],
            ),
            None => x.respond(200, &[octets], artifact),
        },
        Download::WrongBytes => {
            let wrong: Vec<u8> = artifact.iter().map(|b| b ^ 0x20).collect();
            x.respond(200, &[octets], &wrong);
        }
        Download::Truncated => {
            let _ = x
                .head(200, &[octets], len)
                .and_then(|()| x.write(&artifact[..len / 2]));
        }
        Download::Paced { bytes, pause_ms } => {
            let from = range_start(x.request, len).unwrap_or(0);
            let (status, mut headers) = (if from > 0 { 206 } else { 200 }, vec![octets]);
            if from > 0 {
                headers.push(("Content-Range", format!("bytes {from}-{}/{len}", len - 1)));
            }
            if x.head(status, &headers, len - from).is_err() {
                return;
            }
            for chunk in artifact[from..].chunks(bytes.max(1)) {
                // The agent hung up (cut the download): stop serving it.
                if x.stopped() || x.write(chunk).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(pause_ms));
            }
        }
        Download::Excess => {
            let mut more = artifact.to_vec();
            more.extend_from_slice(&[b'#'; 4096]);
            x.respond(200, &[octets], &more);
        }
    }
}

//! Part file names, and a download's sources against a small HTTP server on
//! loopback: a cut transfer is resumed by the next source, wrong bytes are
//! thrown away and the next source starts from 0, every failure names its
//! URL, and only the manager's own URLs get the node's credential.

use super::*;
use crate::manager::Peer;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Found by the property tests: a sha cut at byte 16 inside a UTF-8
/// character panicked, and a `/` in it left the directory.
#[test]
fn part_paths_of_malformed_hashes_stay_beside_the_live_file() {
    let live = Path::new("/srv/bin/streamd");
    for sha in [
        "NѨ\"&'鬝&Y🕴\t𳋄*qEU:&=",
        "/../../../../etc/passwd",
        "",
        &"ab".repeat(32),
    ] {
        let part = part_path(live, sha);
        assert_eq!(part.parent(), Some(Path::new("/srv/bin")), "{sha:?}");
    }
    assert_eq!(
        part_path(live, &"ab".repeat(32)),
        Path::new("/srv/bin/.streamd.binproxy-abababababababab.part")
    );
}

/// How a test server answers one request: the path and the `Range` offset
/// asked for give the raw response (head and body, maybe cut short).
type Answer = dyn Fn(&str, u64) -> Vec<u8> + Send + Sync;

/// One request the test server read.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub path: String,
    pub range: Option<u64>,
    pub authorization: Option<String>,
}

/// A loopback HTTP/1.1 server, one request per connection; it stops
/// accepting after a minute.
pub(crate) struct Server {
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    pub(crate) fn start(answer: impl Fn(&str, u64) -> Vec<u8> + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let answer: Box<Answer> = Box::new(answer);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = handle(stream, &*answer, &log);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server { base, seen }
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn handle(mut stream: TcpStream, answer: &Answer, log: &Mutex<Vec<Seen>>) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        if stream.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let range = header("range").and_then(|r| {
        r.strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse().ok())
    });
    log.lock().unwrap().push(Seen {
        path: path.clone(),
        range,
        authorization: header("authorization"),
    });
    stream.write_all(&answer(&path, range.unwrap_or(0)))?;
    stream.flush()
}

pub(crate) fn respond(status: &str, headers: &str, len: usize, body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("HTTP/1.1 {status}\r\nConnection: close\r\n{headers}Content-Length: {len}\r\n\r\n")
            .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The whole file, or its rest from `offset` (206).
pub(crate) fn serve_from(data: &[u8], offset: u64) -> Vec<u8> {
    let at = usize::try_from(offset).unwrap();
    if at == 0 {
        return respond("200 OK", "", data.len(), data);
    }
    let range = format!(
        "Content-Range: bytes {at}-{}/{}\r\n",
        data.len() - 1,
        data.len()
    );
    respond("206 Partial", &range, data.len() - at, &data[at..])
}

fn data() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn target_of(data: &[u8]) -> Target {
    use sha2::{Digest, Sha256};
    let sha = binproxy_protocol::hex(&Sha256::digest(data));
    Target {
        bin_name: "svc".into(),
        version: "2".into(),
        url: format!("/api/v1/download/{sha}"),
        sha256sum: sha,
        size: data.len() as u64,
        reason: None,
        signature: None,
        ..Target::default()
    }
}

fn source(server: &Server, path: &str, peer: Peer) -> Source {
    Source {
        url: format!("{}{path}", server.base),
        peer,
        shown: path.to_owned(),
    }
}

/// A directory for the live file, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("bp-fetch-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn live(&self) -> PathBuf {
        self.0.join("svc")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn client(server: &Server) -> Manager {
    let mut m = Manager::with_timeout(&server.base, Duration::from_secs(5));
    m.set_node_secret("s3cret".into());
    m
}

#[test]
fn a_cut_download_is_resumed_by_the_next_source() {
    let bytes = data();
    let file = bytes.clone();
    let server = Server::start(move |path, offset| match path {
        // All of it announced, a third sent, then the connection closes.
        "/m1/f" => respond("200 OK", "", file.len(), &file[..100_000]),
        _ => serve_from(&file, offset),
    });
    let dir = Dir::new("resume");
    let t = target_of(&bytes);
    let sources = [
        source(&server, "/m1/f", Peer::Mirror),
        source(&server, "/m2/f", Peer::Mirror),
    ];
    let stop = AtomicBool::new(false);
    let got = fetch(
        &client(&server),
        &Wanted::artifact(&t, None),
        &sources,
        &dir.live(),
        &stop,
    )
    .unwrap();
    assert_eq!(got.from.as_deref(), Some("/m2/f"));
    assert!(fs::read(&got.path).unwrap() == bytes, "other bytes");
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!((seen[0].path.as_str(), seen[0].range), ("/m1/f", None));
    assert_eq!(seen[1].path, "/m2/f");
    assert!(
        seen[1].range.is_some_and(|r| r > 0),
        "the second source did not resume: {seen:?}"
    );
    assert!(seen.iter().all(|s| s.authorization.is_none()), "{seen:?}");
}

#[test]
fn wrong_bytes_are_thrown_away_and_the_next_source_starts_from_zero() {
    let bytes = data();
    let file = bytes.clone();
    let server = Server::start(move |path, offset| {
        let mut wrong = file.clone();
        wrong[200_000] ^= 1;
        match path {
            "/m1/f" => serve_from(&wrong, offset),
            _ => serve_from(&file, offset),
        }
    });
    let dir = Dir::new("wrong");
    let t = target_of(&bytes);
    // An earlier run left the first KiB: the first source resumes it.
    fs::write(part_path(&dir.live(), &t.sha256sum), &bytes[..1024]).unwrap();
    let sources = [
        source(&server, "/m1/f", Peer::Mirror),
        source(&server, "/api/v1/download/x", Peer::Manager),
    ];
    let stop = AtomicBool::new(false);
    let got = fetch(
        &client(&server),
        &Wanted::artifact(&t, None),
        &sources,
        &dir.live(),
        &stop,
    )
    .unwrap();
    assert_eq!(got.from.as_deref(), Some("/api/v1/download/x"));
    assert!(fs::read(&got.path).unwrap() == bytes, "other bytes");
    let seen = server.seen();
    let asked: Vec<(&str, Option<u64>)> = seen.iter().map(|s| (s.path.as_str(), s.range)).collect();
    assert_eq!(asked, [("/m1/f", Some(1024)), ("/api/v1/download/x", None)]);
    // The mirror got nothing of the node's; the manager its secret.
    assert_eq!(seen[0].authorization, None);
    assert_eq!(seen[1].authorization.as_deref(), Some("Bearer s3cret"));
}

#[test]
fn when_every_source_fails_each_is_named_and_the_last_decides_the_blame() {
    let bytes = data();
    let server = Server::start(|path, _| match path {
        "/m1/f" => respond("404 Not Found", "", 0, b""),
        "/m2/f" => respond("503 Busy", "", 0, b""),
        _ => respond("503 Busy", "Retry-After: 30\r\n", 0, b""),
    });
    let dir = Dir::new("fail");
    let t = target_of(&bytes);
    let mirrors = [
        source(&server, "/m1/f", Peer::Mirror),
        source(&server, "/m2/f", Peer::Mirror),
    ];
    let stop = AtomicBool::new(false);
    let m = client(&server);
    let e = fetch(
        &m,
        &Wanted::artifact(&t, None),
        &mirrors,
        &dir.live(),
        &stop,
    )
    .unwrap_err();
    assert!(
        !e.is_transient(),
        "a mirror's 503 backs the manager off: {e}"
    );
    assert_eq!(m.retry_after(), None);
    let text = e.to_string();
    for want in [
        "every source failed",
        &format!("mirror {}/m1/f: answered 404", server.base),
        &format!("mirror {}/m2/f: answered 503", server.base),
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let all = [&mirrors[..], &[source(&server, "/dl", Peer::Manager)]].concat();
    let e = fetch(&m, &Wanted::artifact(&t, None), &all, &dir.live(), &stop).unwrap_err();
    assert!(e.is_transient(), "the manager's 503 backs it off: {e}");
    assert!(m.retry_after().is_some());
    assert!(!part_path(&dir.live(), &t.sha256sum).exists());
}

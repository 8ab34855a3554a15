//! A TCP relay in front of the real manager, for stopping an agent at a
//! chosen moment of a request: [`Mode::Forward`] passes bytes both ways,
//! [`Mode::Hold`] takes the request and never passes it on (the manager
//! never sees it), and [`Mode::DropAnswers`] passes the request and swallows
//! the answer (the manager has done its work; the client never hears of
//! it). Every byte each side sent is recorded for assertions. The mode is
//! read when a connection is accepted.
//!
//! Every loop is bounded: the relay and its connections stop when it is
//! dropped, or after [`MAX_LIFETIME`].

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Longest a relay (or one of its connections) runs.
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(20);

/// What the relay does with the connections it accepts from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Forward = 0,
    Hold = 1,
    DropAnswers = 2,
}

#[derive(Default)]
struct Seen {
    connections: Mutex<u64>,
    /// Bytes clients sent (whether or not they were passed on).
    from_clients: Mutex<Vec<u8>>,
    /// Bytes the backend sent (whether or not they were passed on).
    from_backend: Mutex<Vec<u8>>,
}

/// A running relay; dropping it stops it.
pub struct Relay {
    pub addr: SocketAddr,
    pub url: String,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
}

impl Relay {
    pub fn start(backend: SocketAddr, mode: Mode) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("relay address");
        let relay = Relay {
            addr,
            url: format!("http://{addr}"),
            mode: Arc::new(AtomicU8::new(mode as u8)),
            stop: Arc::new(AtomicBool::new(false)),
            seen: Arc::new(Seen::default()),
        };
        let (mode, stop, seen) = (relay.mode.clone(), relay.stop.clone(), relay.seen.clone());
        thread::spawn(move || {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_LIFETIME {
                match listener.accept() {
                    Ok((client, _)) => {
                        *lock(&seen.connections) += 1;
                        let mode = match mode.load(Ordering::Relaxed) {
                            0 => Mode::Forward,
                            1 => Mode::Hold,
                            _ => Mode::DropAnswers,
                        };
                        let (stop, seen) = (stop.clone(), seen.clone());
                        thread::spawn(move || connection(&client, backend, mode, &stop, &seen));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(POLL),
                    Err(_) => thread::sleep(POLL),
                }
            }
        });
        relay
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        *lock(&self.seen.connections)
    }

    /// Everything clients sent, as text (lossy).
    pub fn from_clients(&self) -> String {
        String::from_utf8_lossy(&lock(&self.seen.from_clients)).into_owned()
    }

    /// Everything the backend answered, as text (lossy).
    pub fn from_backend(&self) -> String {
        String::from_utf8_lossy(&lock(&self.seen.from_backend)).into_owned()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn connection(client: &TcpStream, backend: SocketAddr, mode: Mode, stop: &AtomicBool, seen: &Seen) {
    let _ = client.set_nonblocking(false);
    let backend = match mode {
        Mode::Hold => None,
        _ => TcpStream::connect(backend).ok(),
    };
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        // Client → backend (or nowhere, when holding).
        s.spawn(|| {
            let _ = copy(
                client,
                backend.as_ref(),
                &seen.from_clients,
                stop,
                &done,
                true,
            );
        });
        // Backend → client (or nowhere, when dropping answers).
        if let Some(b) = &backend {
            // A dropped answer leaves the client waiting, even once the
            // backend closes: only the client (or the relay's end) ends it.
            let forward = mode == Mode::Forward;
            let (to, done) = (forward.then_some(client), &done);
            s.spawn(move || {
                let _ = copy(b, to, &seen.from_backend, stop, done, forward);
            });
        }
    });
}

/// Copies `from` into `to` (if any), recording every byte, until `from`
/// ends, the other direction ended the connection (`done`), the relay
/// stops, or the lifetime runs out; its own end sets `done` when `ends`.
/// Holding and dropping keep the client's connection open: the client
/// waits, as it would for a server that never answers.
fn copy(
    mut from: &TcpStream,
    to: Option<&TcpStream>,
    record: &Mutex<Vec<u8>>,
    stop: &AtomicBool,
    done: &AtomicBool,
    ends: bool,
) -> std::io::Result<()> {
    from.set_read_timeout(Some(POLL))?;
    let started = Instant::now();
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed)
        && !done.load(Ordering::Relaxed)
        && started.elapsed() < MAX_LIFETIME
    {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                lock(record).extend_from_slice(&buf[..n]);
                if let Some(mut to) = to {
                    to.write_all(&buf[..n])?;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(to) = to {
        let _ = to.shutdown(Shutdown::Write);
    }
    if ends {
        done.store(true, Ordering::Relaxed);
    }
    Ok(())
}

//! A TLS front for a plain-HTTP server, written for the tests: it accepts TLS
//! on `127.0.0.1:<ephemeral>` with a certificate from a [`TestCa`], and
//! forwards the decrypted bytes both ways to a backend address (the real
//! `manager-lite`). It lets the agent's HTTPS be tested end to end against
//! the real manager without the manager speaking TLS itself.
//!
//! Every loop is bounded: the accept loop and each connection stop when the
//! forwarder is dropped or after [`MAX_LIFETIME`].
//!
//! [`TestCa`]: crate::tls::TestCa

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

use crate::tls::ServerCert;

/// Longest a forwarder (or one of its connections) runs.
pub const MAX_LIFETIME: Duration = Duration::from_secs(600);
/// How long one poll of a socket waits for bytes.
const POLL: Duration = Duration::from_millis(5);

/// What the forwarder saw, for assertions.
#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    handshakes_failed: AtomicU64,
    /// Plaintext bytes sent from the backend to TLS clients.
    to_clients: AtomicU64,
}

/// A running forwarder; dropping it stops it.
pub struct TlsForwarder {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    accept: Option<JoinHandle<()>>,
}

impl TlsForwarder {
    /// Serves `cert` and forwards to `backend`.
    pub fn start(cert: &ServerCert, backend: SocketAddr) -> TlsForwarder {
        let config = Arc::new(server_config(cert));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the TLS forwarder");
        let addr = listener.local_addr().expect("forwarder address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let accept = {
            let (stop, counters) = (Arc::clone(&stop), Arc::clone(&counters));
            thread::spawn(move || accept_loop(&listener, &config, backend, &stop, &counters))
        };
        TlsForwarder {
            url: format!("https://{addr}"),
            stop,
            counters,
            accept: Some(accept),
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Connections whose TLS handshake or session failed (e.g. the client
    /// refused the certificate).
    pub fn handshakes_failed(&self) -> u64 {
        self.counters.handshakes_failed.load(Ordering::SeqCst)
    }

    /// Plaintext bytes forwarded from the backend to TLS clients.
    pub fn bytes_to_clients(&self) -> u64 {
        self.counters.to_clients.load(Ordering::SeqCst)
    }
}

impl Drop for TlsForwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn server_config(cert: &ServerCert) -> ServerConfig {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert.cert_file)
        .expect("open the server certificate")
        .collect::<Result<_, _>>()
        .expect("parse the server certificate");
    let key = PrivateKeyDer::from_pem_file(&cert.key_file).expect("parse the server key");
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate and key")
}

fn accept_loop(
    listener: &TcpListener,
    config: &Arc<ServerConfig>,
    backend: SocketAddr,
    stop: &Arc<AtomicBool>,
    counters: &Arc<Counters>,
) {
    let deadline = Instant::now() + MAX_LIFETIME;
    let mut workers = Vec::new();
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match listener.accept() {
            Ok((client, _)) => {
                counters.connections.fetch_add(1, Ordering::SeqCst);
                let (config, stop, counters) =
                    (Arc::clone(config), Arc::clone(stop), Arc::clone(counters));
                workers.push(thread::spawn(move || {
                    if forward(client, config, backend, &stop, &counters).is_err() {
                        counters.handshakes_failed.fetch_add(1, Ordering::SeqCst);
                    }
                }));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(_) => thread::sleep(POLL),
        }
    }
    for w in workers {
        let _ = w.join();
    }
}

fn idle(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// One connection: TLS on `client`, plain bytes to and from `backend`, until
/// either side closes. `Err` when the TLS session failed or the connection
/// ended before its handshake was done (a client that refuses the
/// certificate may just close, or reset, after its alert).
fn forward(
    mut client: TcpStream,
    config: Arc<ServerConfig>,
    backend: SocketAddr,
    stop: &AtomicBool,
    counters: &Counters,
) -> Result<(), rustls::Error> {
    let Ok(mut back) = TcpStream::connect(backend) else {
        return Ok(());
    };
    let mut tls = ServerConnection::new(config)?;
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(POLL));
    let _ = back.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + MAX_LIFETIME;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        // Client -> TLS state machine.
        match tls.read_tls(&mut client) {
            Ok(0) => break,
            Ok(_) => {
                if let Err(e) = tls.process_new_packets() {
                    let _ = tls.write_tls(&mut client);
                    return Err(e);
                }
            }
            Err(e) if idle(&e) => {}
            Err(_) => break,
        }
        // Decrypted client bytes -> backend.
        loop {
            match tls.reader().read(&mut buf) {
                Ok(0) => {
                    let _ = back.shutdown(Shutdown::Write);
                    break;
                }
                Ok(n) => {
                    if back.write_all(&buf[..n]).is_err() {
                        return Ok(());
                    }
                }
                Err(_) => break,
            }
        }
        // Backend -> client, encrypted.
        match back.read(&mut buf) {
            Ok(0) => {
                tls.send_close_notify();
                flush(&mut tls, &mut client);
                break;
            }
            Ok(n) => {
                counters.to_clients.fetch_add(n as u64, Ordering::SeqCst);
                if tls.writer().write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if idle(&e) => {}
            Err(_) => break,
        }
        if !flush(&mut tls, &mut client) {
            break;
        }
    }
    if tls.is_handshaking() {
        return Err(rustls::Error::General(
            "the connection ended during the handshake".into(),
        ));
    }
    Ok(())
}

/// Writes out the pending TLS records; false when the client is gone.
fn flush(tls: &mut ServerConnection, client: &mut TcpStream) -> bool {
    let deadline = Instant::now() + crate::IO_TIMEOUT;
    while tls.wants_write() {
        if Instant::now() > deadline {
            return false;
        }
        match tls.write_tls(client) {
            Ok(_) => {}
            Err(e) if idle(&e) => thread::sleep(POLL),
            Err(_) => return false,
        }
    }
    true
}

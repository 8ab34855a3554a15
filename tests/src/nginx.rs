//! A real nginx on a loopback port, for the tests of what sits in front of
//! or beside the manager: a cache (`manager_cache`), a static file server
//! for `--artifact-url-base`, a `mirror sync` tree. Its configuration, logs
//! and temp files live in a [`TempDir`]; it stops when dropped. nginx comes
//! from `tests/run.sh`, which installs it.

use crate::http::{request, Response};
use crate::tempdir::TempDir;
use crate::wait_until;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An nginx on a loopback port, stopped when dropped.
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    /// Its configuration, logs, cache and temp files; `files/` for [`Nginx::files`].
    pub dir: TempDir,
}

impl Nginx {
    /// Plain files: `DIR/files/...` at `/...` (see [`Nginx::files_dir`]).
    pub fn files() -> Nginx {
        Nginx::start(|dir, addr| {
            format!("server {{ listen {addr}; root {}files; }}", dir.display())
        })
    }

    /// nginx with the `server` block `block(dir, addr)` returns (`dir` ends
    /// in `/`) inside the few lines a main configuration needs.
    pub fn start(block: impl FnOnce(&Path, SocketAddr) -> String) -> Nginx {
        let dir = TempDir::new("nginx");
        for sub in ["cache", "tmp", "files"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let conf = dir.join("nginx.conf");
        let base = dir.join("");
        fs::write(&conf, config(&base, &block(&base, addr))).unwrap();
        let log = dir.join("error.log");
        let child = Command::new("nginx")
            .arg("-e")
            .arg(&log)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting nginx (tests/run.sh installs it): {e}"));
        let mut nginx = Nginx {
            child,
            addr,
            url: format!("http://{addr}"),
            dir,
        };
        wait_until("nginx listening", Duration::from_secs(20), || {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}): {}", nginx.log());
            }
            TcpStream::connect(addr).is_ok()
        });
        nginx
    }

    /// Static files from `root` (a directory that outlives this nginx).
    pub fn serve(root: &Path) -> Nginx {
        let root = root.display().to_string();
        Nginx::start(|_, addr| format!("server {{ listen {addr}; root {root}; }}"))
    }

    /// The directory [`Nginx::files`] serves.
    pub fn files_dir(&self) -> PathBuf {
        self.dir.join("files")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.addr, "GET", path, headers, b"")
    }
}

impl Drop for Nginx {
    /// SIGTERM first: the master stops its workers (and cache processes)
    /// before it exits; a SIGKILL'd master would leave them running.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A main configuration around `block`, everything under `dir`.
fn config(dir: &Path, block: &str) -> String {
    let dir = dir.display();
    // Root's temp dirs are 0700: the worker must run as root to use them.
    let user = if is_root() { "user root;" } else { "" };
    format!(
        "{user}
worker_processes 1;
daemon off;
pid {dir}nginx.pid;
error_log {dir}error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}tmp/body;
    proxy_temp_path {dir}tmp/proxy;
    fastcgi_temp_path {dir}tmp/fastcgi;
    uwsgi_temp_path {dir}tmp/uwsgi;
    scgi_temp_path {dir}tmp/scgi;
{block}
}}
"
    )
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

//! `manager-lite serve`: the process around the handlers.
//!
//! Startup opens the data directory (artifacts, redb file, admin token),
//! removes what a crash left half-done, loads the TLS certificate if given,
//! and binds. [`crate::server`] answers requests on a tokio runtime; two
//! threads beside it evaluate releases and flush batched `last_seen`
//! updates. On SIGTERM or SIGINT the server stops accepting, the requests in
//! hand finish (within `--shutdown-timeout`), the last `last_seen` values are
//! written, the database is closed, and the process exits 0.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::app::App;
use crate::api::auth::{Auth, TokenSource};
use crate::artifacts::Artifacts;
use crate::server::rate::MinRate;
use crate::server::{Limits, Server};
use crate::store::{Store, StoreError, StoreOptions};

/// Everything `serve` can be told (its flags and their defaults are in
/// [`crate::cli`]).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data: PathBuf,
    pub admin_token_file: Option<PathBuf>,
    pub offline_after: Duration,
    /// Nodes not seen for this long are deleted; `None`: never.
    pub forget_offline_after: Option<Duration>,
    /// Versions kept per bin and arch beyond those in use; `None`: all.
    pub keep_versions: Option<usize>,
    /// `--artifact-url-base`: targets point there instead of the download route.
    pub artifact_url_base: Option<String>,
    pub max_artifact_size: u64,
    /// `--delta-from`: patches to a new version from this many earlier ones.
    pub delta_from: usize,
    pub progress_keep: usize,
    /// Connections open at once (`--workers` is its old name).
    pub max_connections: usize,
    /// Connections open at once from one client address.
    pub max_connections_per_ip: usize,
    /// The whole request line and headers must arrive within it.
    pub header_timeout: Duration,
    /// The longest a body or an answer may stall with no byte moving.
    pub io_timeout: Duration,
    /// Idle time allowed between requests on a kept-alive connection.
    pub keepalive_timeout: Duration,
    /// Bodies and answers move at least this many bytes a second...
    pub min_rate: u64,
    /// ... over every window of this length.
    pub min_rate_window: Duration,
    /// A whole request with a small body, head to last byte.
    pub request_timeout: Duration,
    /// Threads for handlers that write or read files.
    pub blocking_threads: usize,
    /// How long a request may wait for one of them before 503.
    pub queue_timeout: Duration,
    /// How long requests in hand may take to finish on SIGTERM.
    pub shutdown_timeout: Duration,
    /// PEM certificate chain and key: serve HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub flush_interval: Duration,
    /// How often releases are recounted, advanced or paused.
    pub rollout_interval: Duration,
    /// Turns node authentication on: nodes enroll with this token.
    pub node_enroll_token_file: Option<PathBuf>,
    /// Serve nodes without authentication on a non-loopback address anyway.
    pub insecure_open_nodes: bool,
    /// `/metrics` without a token.
    pub metrics_public: bool,
    /// Where alerts go, and in which body shape.
    pub webhooks: Vec<crate::alerts::Webhook>,
    pub webhook_format: crate::alerts::Format,
}

/// Entry point of `manager-lite serve` once its flags are parsed
/// ([`crate::cli`]); returns the exit code.
pub fn main(config: &ServeConfig) -> u8 {
    init_logging();
    match run(config) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{e}");
            1
        }
    }
}

fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(config: &ServeConfig) -> Result<(), ServeError> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::server::tls::server_config(cert, key)?),
        _ => None,
    };
    let app = Arc::new(open(config)?);
    // What --keep-versions allows to go since the last run (a lowered N).
    crate::api::bins::prune_versions(&app);
    crate::deltas::start(&app).map_err(ServeError::Runtime)?;
    let limits = limits(config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("manager-http")
        // Handlers hold at most `blocking_threads`; the rest read file
        // chunks for downloads.
        .max_blocking_threads(limits.blocking_threads + 16)
        .build()
        .map_err(ServeError::Runtime)?;
    let server = {
        let _inside = runtime.enter();
        Server::bind(config.listen, tls, limits)?
    };
    log::info!(
        "listening on {}://{} ({} connections at most)",
        server.scheme(),
        server.local_addr(),
        limits.max_connections
    );
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(ServeError::Signal)?;
    }
    std::thread::scope(|scope| {
        scope.spawn(|| {
            every(config.rollout_interval, &stop, || {
                let now = std::time::SystemTime::now();
                let changed = crate::rollout::tick(&app.store, &app.counts, None, now)?;
                app.alerts.releases(&changed);
                app.alerts.watch_nodes(|f| app.store.scan_nodes(f));
                app.metrics
                    .rollout_evaluations
                    .fetch_add(1, Ordering::Relaxed);
                Ok(())
            });
        });
        scope.spawn(|| {
            every(config.flush_interval, &stop, || {
                crate::api::audit::summarize_refused(&app);
                if let Some(after) = config.forget_offline_after {
                    forget_silent_nodes(&app, after);
                }
                app.store.flush_last_seen().map(drop)
            });
        });
        runtime.block_on(server.run(Arc::clone(&app), Arc::clone(&stop)));
        // Whatever ended the server ends the process.
        stop.store(true, Ordering::Relaxed);
    });
    // Handlers still running past --shutdown-timeout are left to finish
    // their write; nothing new reaches them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    log::info!("stopping: requests in hand done");
    app.store.flush_last_seen()?;
    match Arc::try_unwrap(app) {
        Ok(mut app) => app.alerts.shutdown(),
        Err(_) => log::warn!("a handler still runs: alerts still queued are dropped"),
    }
    log::info!("stopped");
    Ok(())
}

/// `--forget-offline-after`: deletes the nodes not seen for `after` (a
/// decommissioned host), each with an audit record.
fn forget_silent_nodes(app: &App, after: Duration) {
    for node in app.store.silent_nodes(after, std::time::SystemTime::now()) {
        // The pass and the deletes take time: one that called meanwhile stays.
        if !app
            .store
            .still_silent(&node, after, std::time::SystemTime::now())
        {
            continue;
        }
        match app.store.delete_node(&node) {
            Ok(_) => log::info!(
                "node {node} deleted: not seen for {}",
                humantime::format_duration(after)
            ),
            Err(e) => {
                log::error!("deleting node {node}, not seen for long: {e}");
                return;
            }
        }
        crate::api::audit::by_manager(
            &app.store,
            "DELETE",
            format!(
                "/api/v1/nodes/{node}: not seen for {} (--forget-offline-after)",
                humantime::format_duration(after)
            ),
        );
    }
}

/// The server's bounds from the flags, with the connection cap lowered to
/// what the file descriptor limit allows.
fn limits(config: &ServeConfig) -> Limits {
    let max_connections = crate::server::fd_budget(config.max_connections);
    Limits {
        max_connections,
        max_connections_per_ip: config.max_connections_per_ip,
        header_timeout: config.header_timeout,
        keepalive_timeout: config.keepalive_timeout,
        io_timeout: config.io_timeout,
        min_rate: MinRate {
            bytes_per_sec: config.min_rate,
            window: config.min_rate_window,
        },
        request_timeout: config.request_timeout,
        blocking_threads: config.blocking_threads,
        queue_timeout: config.queue_timeout,
        shutdown_timeout: config.shutdown_timeout,
    }
}

/// Opens everything in the data directory and cleans what a crash left.
fn open(config: &ServeConfig) -> Result<App, ServeError> {
    let data = &config.data;
    std::fs::create_dir_all(data).map_err(ServeError::io("creating data directory", data))?;
    let leftovers = crate::backup::make::remove_leftovers(data)
        .map_err(ServeError::io("cleaning backup snapshots in", data))?;
    if leftovers > 0 {
        log::info!("removed {leftovers} backup snapshot(s) left by a crash");
    }
    let artifacts_dir = data.join("artifacts");
    let artifacts = Artifacts::open(&artifacts_dir)
        .map_err(ServeError::io("opening artifact directory", &artifacts_dir))?;
    let store = Store::open(
        &data.join("manager.redb"),
        StoreOptions {
            offline_after: config.offline_after,
            progress_keep: config.progress_keep,
        },
    )?;
    let referenced = store.artifact_hashes()?;
    let removed = artifacts
        .remove_unreferenced(&referenced)
        .map_err(ServeError::io("cleaning", &artifacts_dir))?;
    if removed > 0 {
        log::info!("removed {removed} artifact file(s) no version refers to (left by a crash)");
    }
    let (mut auth, source) = Auth::load(config.admin_token_file.as_deref(), data)
        .map_err(|e| ServeError::Auth(e.to_string()))?;
    if let Some(path) = &config.node_enroll_token_file {
        auth.require_nodes(path)
            .map_err(|e| ServeError::Auth(e.to_string()))?;
        log::info!(
            "node authentication on: enrollment token read from {}",
            path.display()
        );
    } else if config.insecure_open_nodes {
        log::warn!(
            "node authentication off on {}: nodes are not authenticated (--insecure-open-nodes)",
            config.listen
        );
    }
    log_token_source(&source);
    Ok(App {
        store,
        artifacts,
        auth,
        max_artifact_size: config.max_artifact_size,
        keep_versions: config.keep_versions,
        artifact_url_base: config.artifact_url_base.clone(),
        recounted: std::sync::Mutex::default(),
        counts: crate::rollout::Counts::default(),
        metrics: crate::metrics::Metrics::new(config.metrics_public),
        alerts: crate::alerts::Alerts::start(&config.webhooks, config.webhook_format)?,
        deltas: crate::deltas::Queue::new(config.delta_from),
        fleet: crate::api::app::Recent::default(),
    })
}

/// Why `serve` could not start (or, for the last flush, stop cleanly).
#[derive(Debug)]
pub enum ServeError {
    Tls(crate::server::tls::TlsError),
    Bind(crate::server::BindError),
    Runtime(io::Error),
    Signal(io::Error),
    /// A file or directory of the data directory: what was being done to it.
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    Store(StoreError),
    /// The admin or enrollment token (its message names the file).
    Auth(String),
    Alerts(crate::alerts::StartError),
}

impl ServeError {
    fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ServeError + 'a {
        move |source| ServeError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tls(e) => e.fmt(f),
            Self::Bind(e) => e.fmt(f),
            Self::Runtime(e) => write!(f, "starting the async runtime: {e}"),
            Self::Signal(e) => write!(f, "installing the signal handler: {e}"),
            Self::Io {
                action,
                path,
                source,
            } => write!(f, "{action} {}: {source}", path.display()),
            Self::Store(e) => e.fmt(f),
            Self::Auth(message) => f.write_str(message),
            Self::Alerts(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Tls(e) => Some(e),
            Self::Bind(e) => Some(e),
            Self::Runtime(e) | Self::Signal(e) | Self::Io { source: e, .. } => Some(e),
            Self::Store(e) => Some(e),
            Self::Auth(_) => None,
            Self::Alerts(e) => Some(e),
        }
    }
}

impl From<crate::server::tls::TlsError> for ServeError {
    fn from(e: crate::server::tls::TlsError) -> Self {
        Self::Tls(e)
    }
}

impl From<crate::server::BindError> for ServeError {
    fn from(e: crate::server::BindError) -> Self {
        Self::Bind(e)
    }
}

impl From<StoreError> for ServeError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<crate::alerts::StartError> for ServeError {
    fn from(e: crate::alerts::StartError) -> Self {
        Self::Alerts(e)
    }
}

fn log_token_source(source: &TokenSource) {
    match source {
        TokenSource::File(p) => log::info!("admin token read from {}", p.display()),
        TokenSource::Env => log::info!("admin token taken from ${}", crate::api::auth::TOKEN_ENV),
        TokenSource::Generated(p) => {
            log::info!("admin token generated into {} (mode 0600)", p.display());
        }
    }
}

/// Runs `task` every `period` until stopped, logging its errors.
fn every(
    period: Duration,
    stop: &AtomicBool,
    task: impl Fn() -> Result<(), crate::store::StoreError>,
) {
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50).min(period));
        if last.elapsed() >= period {
            match task() {
                Ok(()) => {}
                // Degraded storage is logged once, when it starts; the
                // refused writes it keeps (last_seen stays pending) are not.
                Err(e) if e.is_unavailable() => log::debug!("{e}"),
                Err(e) => log::error!("{e}"),
            }
            last = Instant::now();
        }
    }
}

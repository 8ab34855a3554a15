//! The other forms of an artifact, made in the background: its zst form and
//! patches to it from the newest `--delta-from` earlier builds of the same
//! bin and arch (binproxy-delta's format), so a node that has one of those
//! fetches a fraction of the bytes.
//!
//! Uploads and new releases ask for a version's forms through [`Queue`];
//! one worker thread makes them one version at a time ([`make`]), off the
//! request path, so the memory of one patch build (README, "Delta updates")
//! is the most this ever takes. At start the newest version of each bin and
//! arch without forms is queued, which also finishes work a restart cut.
//! Failures are logged and counted: an artifact without forms is still
//! served whole.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use binproxy_protocol::Version;

use crate::artifacts::Artifacts;
use crate::store::Store;

mod make;

pub use make::{FormError, Made, Skip};

/// What the worker needs of the server's state (the API's `App`).
pub trait Parts: Send + Sync + 'static {
    fn store(&self) -> &Store;
    fn artifacts(&self) -> &Artifacts;
    fn queue(&self) -> &Queue;
}

/// What the worker did since the start, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Patches kept, and made but dropped as not small enough.
    pub kept: AtomicU64,
    pub dropped: AtomicU64,
    /// Versions whose forms failed to be made.
    pub failed: AtomicU64,
    /// Versions whose forms were made (or found not worth making).
    pub versions: AtomicU64,
    /// Seconds spent making forms, in milliseconds.
    pub busy_ms: AtomicU64,
}

impl Counters {
    fn add(n: &AtomicU64, by: u64) {
        n.fetch_add(by, Ordering::Relaxed);
    }
}

/// Versions waiting for their forms; more are dropped (and made at the next
/// start, or the next upload of that bin).
const QUEUE: usize = 256;

/// One version whose forms are wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub bin: String,
    pub version: String,
    pub arch: Option<String>,
}

/// The worker's queue, and how many earlier builds to patch from.
pub struct Queue {
    tx: SyncSender<Job>,
    rx: Mutex<Option<Receiver<Job>>>,
    /// `serve --delta-from`: 0 makes no patches (the zst form still is).
    pub from: usize,
    pub counters: Counters,
}

impl Queue {
    pub fn new(from: usize) -> Self {
        let (tx, rx) = sync_channel(QUEUE);
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            from,
            counters: Counters::default(),
        }
    }

    /// Asks for the forms of `v` (nothing is made twice: the worker checks).
    pub fn request(&self, v: &Version) {
        let job = Job {
            bin: v.bin_name.clone(),
            version: v.version.clone(),
            arch: v.arch.clone(),
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => log::warn!(
                "forms of {} {}: the queue is full; they are made at the next start",
                job.bin,
                job.version
            ),
        }
    }
}

/// Starts the worker, after queueing the newest version of each bin and
/// arch that has no forms yet. It holds the app only while it works, so a
/// shutdown is not kept waiting by an idle worker.
pub fn start<P: Parts>(app: &Arc<P>) -> std::io::Result<()> {
    let rx = app
        .queue()
        .rx
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let Some(rx) = rx else {
        return Ok(());
    };
    match make::backlog(app.store()) {
        Ok(versions) => versions.iter().for_each(|v| app.queue().request(v)),
        Err(e) => log::error!("finding versions without forms: {e}"),
    }
    let weak = Arc::downgrade(app);
    std::thread::Builder::new()
        .name("deltas".into())
        .spawn(move || work(&weak, &rx))
        .map(|_| ())
}

fn work<P: Parts>(app: &Weak<P>, rx: &Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        let Some(app) = app.upgrade() else {
            return;
        };
        let started = std::time::Instant::now();
        let counters = &app.queue().counters;
        let from = app.queue().from;
        match make::make(app.store(), app.artifacts(), &job, from) {
            Ok(made) => {
                if made.skipped.is_none() {
                    Counters::add(&counters.versions, 1);
                }
                Counters::add(&counters.kept, made.kept());
                Counters::add(&counters.dropped, made.dropped);
                made.log(&job, started.elapsed());
            }
            Err(e) => {
                Counters::add(&counters.failed, 1);
                log::error!("making the forms of {} {}: {e}", job.bin, job.version);
            }
        }
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Counters::add(&counters.busy_ms, ms);
    }
}

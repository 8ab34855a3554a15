//! `GET /metrics`: the manager and its fleet in the Prometheus text format
//! (exposition format 0.0.4).
//!
//! Two kinds of numbers. Counters and histograms of what happened (requests
//! per route, progress reports, update durations) live in memory here, behind
//! one mutex, and start from zero when the process starts (Prometheus treats
//! a counter that goes down as a restart). Gauges of the fleet (nodes,
//! versions running, releases) are computed on each scrape from one read of
//! the store. Names: `binproxy_*` for the fleet, `manager_*` for the manager
//! process itself. Label values are bounded: routes are the route table's
//! names (never raw paths), and past [`MAX_BINS`] distinct bin names the
//! rest count as `_other`.

mod forms;
mod net;

pub use net::{Cut, Net, Refused, Summary};

use std::collections::{BTreeMap, HashSet};
use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use binproxy_protocol::{Progress, ProgressStatus, Release, ReleaseStatus};

use crate::alerts::Stats;
use crate::api::reply::{Body, Reply};
use crate::store::FleetSnapshot;

/// The exposition format's media type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Bin names counted under their own name; later ones count as `_other`.
pub const MAX_BINS: usize = 256;
/// Beyond the releases still in progress, the newest this many get per-release gauges.
pub const RECENT_RELEASES: usize = 20;
const OTHER: &str = "_other";

/// Request latency buckets, seconds.
const REQUEST_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Update duration buckets (a report's `processingTime`), seconds.
const UPDATE_BOUNDS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

#[derive(Clone)]
struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last is +Inf.
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    fn observe(&mut self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += v;
    }
}

#[derive(Default)]
struct Inner {
    /// (route, status class) → requests.
    requests: BTreeMap<(&'static str, &'static str), u64>,
    request_seconds: BTreeMap<&'static str, Histogram>,
    /// (bin, outcome) → reports.
    reports: BTreeMap<(String, &'static str), u64>,
    /// (bin, outcome) → durations of finished updates.
    update_seconds: BTreeMap<(String, &'static str), Histogram>,
    /// (bin, method) → bytes nodes downloaded for successful updates.
    update_bytes: BTreeMap<(String, &'static str), u64>,
    /// Bin names with their own label value.
    bins: HashSet<String>,
}

impl Inner {
    fn bin_label(&mut self, bin: &str) -> String {
        if self.bins.contains(bin) {
            return bin.to_owned();
        }
        if self.bins.len() < MAX_BINS {
            self.bins.insert(bin.to_owned());
            return bin.to_owned();
        }
        OTHER.to_owned()
    }
}

/// The in-memory counters, and whether scrapes need a token.
pub struct Metrics {
    inner: Mutex<Inner>,
    started: SystemTime,
    /// `serve --metrics-public`: `/metrics` answers without a token.
    pub public: bool,
    /// The network layer's counters, shared with the server.
    pub net: Arc<Net>,
    /// Rollout evaluation passes finished (`serve`'s `--rollout-interval` tick).
    pub rollout_evaluations: AtomicU64,
}

impl Metrics {
    pub fn new(public: bool) -> Self {
        Self {
            inner: Mutex::default(),
            started: SystemTime::now(),
            public,
            net: Arc::default(),
            rollout_evaluations: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one answered request of `route` (a route table name).
    pub fn request(&self, route: &'static str, status: u16, elapsed: Duration) {
        let class = match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        let mut inner = self.lock();
        *inner.requests.entry((route, class)).or_default() += 1;
        inner
            .request_seconds
            .entry(route)
            .or_insert_with(|| Histogram::new(REQUEST_BOUNDS))
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one stored progress report; a finished update (any outcome
    /// but `in_progress`) also adds its `processingTime` to the histogram.
    pub fn progress(&self, bin: &str, p: &Progress) {
        let outcome = p.status.as_str();
        let mut inner = self.lock();
        let bin = inner.bin_label(bin);
        if p.status != ProgressStatus::InProgress {
            #[allow(clippy::cast_precision_loss)] // ms fit an f64 for 285,000 years
            let seconds = p.processing_time_ms as f64 / 1000.0;
            inner
                .update_seconds
                .entry((bin.clone(), outcome))
                .or_insert_with(|| Histogram::new(UPDATE_BOUNDS))
                .observe(seconds);
        }
        if let (ProgressStatus::Success, Some(bytes), Some(method)) = (p.status, p.bytes, p.method)
        {
            *inner
                .update_bytes
                .entry((bin.clone(), method.as_str()))
                .or_default() += bytes;
        }
        *inner.reports.entry((bin, outcome)).or_default() += 1;
    }

    /// The whole exposition: fleet gauges, then the counters.
    pub fn render(
        &self,
        fleet: &FleetSnapshot,
        alerts: &Stats,
        storage: &Storage,
        forms: &crate::deltas::Counters,
    ) -> String {
        let mut out = Text::default();
        nodes(&mut out, fleet);
        releases(&mut out, &fleet.releases);
        self.counters(&mut out, alerts);
        forms::render(&mut out, &self.lock().update_bytes, forms);
        storage_metrics(&mut out, storage);
        out.0
    }

    /// The answer to `GET /metrics`.
    pub fn reply(text: String) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type", CONTENT_TYPE.into())],
            body: Body::Bytes(text.into_bytes()),
        }
    }

    fn counters(&self, out: &mut Text, alerts: &Stats) {
        let inner = self.lock();
        out.head(
            "binproxy_progress_reports_total",
            "counter",
            "Progress reports received since the manager started, by bin and outcome.",
        );
        for ((bin, outcome), n) in &inner.reports {
            out.sample(
                "binproxy_progress_reports_total",
                &[("bin", bin), ("outcome", outcome)],
                n,
            );
        }
        out.head(
            "binproxy_update_duration_seconds",
            "histogram",
            "Duration of finished updates (processingTime of reports other than in_progress).",
        );
        for ((bin, outcome), h) in &inner.update_seconds {
            out.histogram(
                "binproxy_update_duration_seconds",
                &[("bin", bin), ("outcome", outcome)],
                h,
            );
        }
        out.head(
            "manager_http_requests_total",
            "counter",
            "Requests answered, by route and status class.",
        );
        for ((route, class), n) in &inner.requests {
            out.sample(
                "manager_http_requests_total",
                &[("route", route), ("status_class", class)],
                n,
            );
        }
        out.head(
            "manager_http_request_duration_seconds",
            "histogram",
            "Time from reading a request to handing its answer over, by route.",
        );
        for (route, h) in &inner.request_seconds {
            out.histogram(
                "manager_http_request_duration_seconds",
                &[("route", route)],
                h,
            );
        }
        drop(inner);
        self.net.render(out);
        alert_counts(out, alerts);
        out.head(
            "manager_rollout_evaluations_total",
            "counter",
            "Rollout evaluation passes finished (one each --rollout-interval).",
        );
        let evaluations = self.rollout_evaluations.load(Ordering::Relaxed);
        out.sample("manager_rollout_evaluations_total", &[], evaluations);
        out.head(
            "manager_start_time_seconds",
            "gauge",
            "When the manager started (Unix time): counters count from here.",
        );
        let started = self
            .started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        out.sample("manager_start_time_seconds", &[], started);
    }
}

/// The state of the storage parts at a scrape.
pub struct Storage<'a> {
    pub parts: [&'a crate::degraded::Condition; 2],
    /// Reopens of the database after an I/O error.
    pub reopens: u64,
}

fn storage_metrics(out: &mut Text, storage: &Storage) {
    out.head(
        "manager_storage_degraded",
        "gauge",
        "1 while a storage part (database, artifacts) refuses writes after an I/O error.",
    );
    for c in storage.parts {
        let degraded = u8::from(c.problem().is_some());
        out.sample("manager_storage_degraded", &[("part", c.part)], degraded);
    }
    out.head(
        "manager_storage_write_failures_total",
        "counter",
        "Writes that failed on I/O (a full disk), by storage part.",
    );
    for c in storage.parts {
        out.sample(
            "manager_storage_write_failures_total",
            &[("part", c.part)],
            c.failures(),
        );
    }
    out.head(
        "manager_storage_reopens_total",
        "counter",
        "Times the database was closed and opened again after an I/O error.",
    );
    out.sample("manager_storage_reopens_total", &[], storage.reopens);
}

fn alert_counts(out: &mut Text, alerts: &Stats) {
    use std::sync::atomic::Ordering::Relaxed;
    out.head(
        "manager_alerts_total",
        "counter",
        "Webhook alerts: sent, failed (every attempt) or dropped (queue full, shutdown).",
    );
    for (result, n) in [
        ("sent", &alerts.sent),
        ("failed", &alerts.failed),
        ("dropped", &alerts.dropped),
    ] {
        out.sample(
            "manager_alerts_total",
            &[("result", result)],
            n.load(Relaxed),
        );
    }
}

fn nodes(out: &mut Text, fleet: &FleetSnapshot) {
    out.head(
        "binproxy_nodes",
        "gauge",
        "Registered nodes, by whether they were seen within --offline-after.",
    );
    out.sample("binproxy_nodes", &[("state", "online")], fleet.online);
    out.sample("binproxy_nodes", &[("state", "offline")], fleet.offline);
    // Past MAX_BINS bin names (in name order), the rest count as one.
    let mut running: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for (i, (bin, r)) in fleet.running.iter().enumerate() {
        let bin = if i < MAX_BINS { bin.as_str() } else { OTHER };
        let special = [("none", r.missing), ("unknown", r.unknown)];
        let named = r.versions.iter().map(|(v, n)| (v.as_str(), *n));
        for (version, n) in named.chain(special.into_iter().filter(|(_, n)| *n > 0)) {
            *running.entry((bin, version)).or_default() += n;
        }
    }
    out.head(
        "binproxy_bin_nodes",
        "gauge",
        "Registered nodes by bin and the version they last said they run \
         (unknown: a hash no upload has; none: the file is missing).",
    );
    for ((bin, version), n) in running {
        out.sample(
            "binproxy_bin_nodes",
            &[("bin", bin), ("version", version)],
            n,
        );
    }
}

fn releases(out: &mut Text, all: &[Release]) {
    out.head("binproxy_releases", "gauge", "Releases by status.");
    for status in ReleaseStatus::ALL {
        let n = all.iter().filter(|r| r.status == status).count();
        out.sample("binproxy_releases", &[("status", status.as_str())], n);
    }
    // Newest first: the recent ones, and any older one still in progress.
    let shown: Vec<&Release> = all
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            *i < RECENT_RELEASES
                || matches!(
                    r.status,
                    ReleaseStatus::PendingApproval
                        | ReleaseStatus::RollingOut
                        | ReleaseStatus::Paused
                )
        })
        .map(|(_, r)| r)
        .collect();
    let ids: Vec<String> = shown.iter().map(|r| r.id.to_string()).collect();
    let labels = |i: usize| {
        let r = shown[i];
        [
            ("release", ids[i].as_str()),
            ("bin", r.bin_name.as_str()),
            ("version", r.version.as_str()),
        ]
    };
    out.head(
        "binproxy_release_info",
        "gauge",
        "1 for each recent or unfinished release, with its status.",
    );
    for (i, r) in shown.iter().enumerate() {
        let [a, b, c] = labels(i);
        out.sample(
            "binproxy_release_info",
            &[a, b, c, ("status", r.status.as_str())],
            1,
        );
    }
    out.head(
        "binproxy_release_wave",
        "gauge",
        "The wave a release is in (1 = the first).",
    );
    for (i, r) in shown.iter().enumerate() {
        out.sample("binproxy_release_wave", &labels(i), r.wave + 1);
    }
    out.head(
        "binproxy_release_percent",
        "gauge",
        "Share of matching nodes a release reaches now, percent.",
    );
    for (i, r) in shown.iter().enumerate() {
        out.sample("binproxy_release_percent", &labels(i), r.percent);
    }
    out.head(
        "binproxy_release_nodes",
        "gauge",
        "Nodes a release reaches (targeted) and their outcomes, as last counted.",
    );
    for (i, r) in shown.iter().enumerate() {
        let c = &r.counts;
        for (outcome, n) in [
            ("targeted", c.targeted),
            ("success", c.success),
            ("in_progress", c.in_progress),
            ("failed", c.failed),
            ("rolled_back", c.rolled_back),
        ] {
            let [a, b, v] = labels(i);
            out.sample(
                "binproxy_release_nodes",
                &[a, b, v, ("outcome", outcome)],
                n,
            );
        }
    }
}

/// The text being written.
/// `manager_data_bytes`: what the data directory holds, by part, so a disk
/// filling with versions shows before it is full.
pub fn data_bytes(artifacts: u64, database: u64) -> String {
    let mut out = Text::default();
    out.head(
        "manager_data_bytes",
        "gauge",
        "Bytes in the data directory: artifact files, and the database file.",
    );
    out.sample("manager_data_bytes", &[("part", "artifacts")], artifacts);
    out.sample("manager_data_bytes", &[("part", "database")], database);
    out.0
}

#[derive(Default)]
struct Text(String);

impl Text {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, n) in h.counts.iter().enumerate() {
            cumulative += n;
            let le = h
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| le(*b));
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, cumulative);
    }
}

/// A bucket bound as Prometheus clients write it: `1.0`, `0.005`.
fn le(bound: f64) -> String {
    if bound.fract() == 0.0 {
        format!("{bound:.1}")
    } else {
        bound.to_string()
    }
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
pub fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut t = Text::default();
        t.sample("x", &[("l", "q\"")], 1);
        assert_eq!(t.0, "x{l=\"q\\\"\"} 1\n");
    }

    #[test]
    fn histograms_are_cumulative_and_end_in_inf() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.5, 1.7, 9.0] {
            h.observe(v);
        }
        let mut t = Text::default();
        t.histogram("d", &[("bin", "b")], &h);
        assert!(
            t.0.contains("d_bucket{bin=\"b\",le=\"1.0\"} 1\n"),
            "{}",
            t.0
        );
        assert!(
            t.0.contains("d_bucket{bin=\"b\",le=\"2.0\"} 3\n"),
            "{}",
            t.0
        );
        assert!(
            t.0.contains("d_bucket{bin=\"b\",le=\"+Inf\"} 4\n"),
            "{}",
            t.0
        );
        assert!(t.0.contains("d_count{bin=\"b\"} 4\n"), "{}", t.0);
    }

    #[test]
    fn bins_past_the_limit_count_as_other() {
        let m = Metrics::new(false);
        let p = |status| Progress {
            node_id: "n".into(),
            target_hash: String::new(),
            status,
            processing_time_ms: 1500,
            from_hash: None,
            message: None,
            bytes: None,
            method: None,
        };
        for i in 0..=MAX_BINS {
            m.progress(&format!("bin{i}"), &p(ProgressStatus::Success));
        }
        m.progress("bin0", &p(ProgressStatus::InProgress));
        let inner = m.lock();
        assert_eq!(inner.reports.get(&(OTHER.to_owned(), "success")), Some(&1));
        assert_eq!(
            inner.reports.get(&("bin0".to_owned(), "in_progress")),
            Some(&1)
        );
        assert!(!inner
            .update_seconds
            .contains_key(&("bin0".to_owned(), "in_progress")));
    }
}

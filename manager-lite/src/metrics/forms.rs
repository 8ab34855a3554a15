//! The delta-update part of `/metrics`: the bytes nodes downloaded for
//! their updates by method (from their success reports), and what the forms
//! worker ([`crate::deltas`]) made.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::Text;
use crate::deltas::Counters;

pub(super) fn render(out: &mut Text, bytes: &BTreeMap<(String, &'static str), u64>, c: &Counters) {
    out.head(
        "binproxy_update_bytes_total",
        "counter",
        "Bytes nodes downloaded for successful updates, by bin and method (delta, zst, full).",
    );
    for ((bin, method), n) in bytes {
        out.sample(
            "binproxy_update_bytes_total",
            &[("bin", bin), ("method", method)],
            n,
        );
    }
    out.head(
        "manager_delta_versions_total",
        "counter",
        "Versions whose zst form and patches the manager made (or found too small for any).",
    );
    out.sample(
        "manager_delta_versions_total",
        &[],
        c.versions.load(Ordering::Relaxed),
    );
    out.head(
        "manager_delta_patches_total",
        "counter",
        "Patches made, by result: kept, or dropped as not smaller than 70% of the zst form.",
    );
    for (result, n) in [("kept", &c.kept), ("dropped", &c.dropped)] {
        out.sample(
            "manager_delta_patches_total",
            &[("result", result)],
            n.load(Ordering::Relaxed),
        );
    }
    out.head(
        "manager_delta_failures_total",
        "counter",
        "Versions whose forms failed to be made (the log says why); they are served whole.",
    );
    out.sample(
        "manager_delta_failures_total",
        &[],
        c.failed.load(Ordering::Relaxed),
    );
    out.head(
        "manager_delta_busy_seconds_total",
        "counter",
        "Time the forms worker spent making zst forms and patches.",
    );
    #[allow(clippy::cast_precision_loss)] // milliseconds of work fit an f64
    let busy = c.busy_ms.load(Ordering::Relaxed) as f64 / 1000.0;
    out.sample("manager_delta_busy_seconds_total", &[], busy);
}

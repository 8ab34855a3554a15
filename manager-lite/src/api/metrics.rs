//! `GET /metrics`: the glue between the API and [`crate::metrics`], which
//! renders the Prometheus text.

use crate::api::app::App;
use crate::api::health;
use crate::api::reply::{Answer, ApiError};

/// `GET /metrics`: the Prometheus text exposition.
/// With the database unreadable (degraded, not reopened yet), the fleet
/// comes from memory: nodes and live releases.
pub fn answer(app: &App) -> Answer {
    let fleet = match app.store.fleet_snapshot() {
        Ok(fleet) => fleet,
        Err(e) if e.is_unavailable() => app.store.fleet_in_memory(),
        Err(e) => return Err(e.into()),
    };
    let storage = crate::metrics::Storage {
        parts: health::parts(&app.store, &app.artifacts),
        reopens: app.store.reopens(),
    };
    let mut text = app
        .metrics
        .render(&fleet, app.alerts.stats(), &storage, &app.deltas.counters);
    let artifacts = app
        .artifacts
        .bytes()
        .map_err(|e| ApiError::internal(format!("sizing the artifact files: {e}")))?;
    text.push_str(&crate::metrics::data_bytes(
        artifacts,
        app.store.file_bytes(),
    ));
    Ok(crate::metrics::Metrics::reply(text))
}

//! `GET /health`: `200 {"status":"ok"}`, or `503 {"status":"degraded",
//! "reason"}` while the database or the artifact directory is degraded
//! ([`crate::degraded`]: a write failed on I/O, a full disk most often, and
//! none has worked since). A load balancer or a monitor then sees what the
//! writes see: reads are still served, writes are refused with `503` and
//! `Retry-After` until the disk takes them again.

use crate::api::reply::{Reply, NO_STORE};
use crate::artifacts::Artifacts;
use crate::degraded::Condition;
use crate::store::Store;

/// The storage parts, in the order they are reported.
pub fn parts<'a>(store: &'a Store, artifacts: &'a Artifacts) -> [&'a Condition; 2] {
    [store.condition(), artifacts.condition()]
}

/// What is wrong with the storage, one part per sentence; `None` when
/// every part is healthy.
pub fn reason(store: &Store, artifacts: &Artifacts) -> Option<String> {
    let problems: Vec<String> = parts(store, artifacts)
        .iter()
        .filter_map(|c| {
            c.problem().map(|p| {
                format!(
                    "{} degraded since {}: {}",
                    c.part,
                    crate::time::rfc3339(p.since),
                    p.reason
                )
            })
        })
        .collect();
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// The answer to `GET /health`.
pub fn answer(store: &Store, artifacts: &Artifacts) -> Reply {
    let version = env!("CARGO_PKG_VERSION");
    match reason(store, artifacts) {
        None => Reply::json(
            200,
            &serde_json::json!({"status": "ok", "version": version}),
        ),
        Some(reason) => Reply::json(
            503,
            &serde_json::json!({"status": "degraded", "reason": reason, "version": version}),
        )
        .header(
            "Retry-After",
            crate::degraded::RETRY_EVERY.as_secs().max(1).to_string(),
        ),
    }
    .header("Cache-Control", NO_STORE)
}

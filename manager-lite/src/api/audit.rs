//! The audit records the API writes: one per authenticated admin write,
//! whatever its outcome ([`record`], called by the routes before the answer
//! goes out); one summing up the refused anonymous writes, at most every
//! minute ([`summarize_refused`]), so anonymous traffic cannot push real
//! admin actions out of the audit log; and those of what the manager does by
//! itself, a flag's policy rather than an admin's request ([`by_manager`]:
//! no actor, no remote address, the method and path of the equivalent
//! request with the reason).

use binproxy_protocol::AuditRecord;
use std::time::Duration;

use crate::api::app::App;
use crate::api::request::Request;
use crate::store::Store;

/// How often at most a summary of refused anonymous writes is audited.
const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Records an action the manager took on its own; a failure is only logged.
pub fn by_manager(store: &Store, method: &str, what: String) {
    let record = AuditRecord {
        id: 0,
        at: crate::time::now_rfc3339(),
        actor: None,
        method: method.to_owned(),
        path: what,
        status: 200,
        remote_addr: None,
    };
    if let Err(e) = store.add_audit(record) {
        log::error!("audit record of the manager's own action: {e}");
    }
}

/// Stores the audit record of an authenticated admin write before its
/// answer goes out.
pub fn record(app: &App, actor: &str, rq: &Request, status: u16) {
    let entry = AuditRecord {
        id: 0,
        at: crate::time::now_rfc3339(),
        actor: Some(actor.to_owned()),
        method: rq.method().to_string(),
        path: rq.path().chars().take(300).collect(),
        status,
        remote_addr: Some(rq.remote_addr().ip().to_string()),
    };
    if let Err(e) = app.store.add_audit(entry) {
        log::error!("audit record of {} {}: {e}", rq.method(), rq.path());
    }
}

/// Writes one audit record summing up the unauthenticated admin writes
/// refused since the last one, at most every [`SUMMARY_EVERY`]. Called
/// from the manager's periodic loop.
pub fn summarize_refused(app: &App) {
    let Some(summary) = app.metrics.net.take_unauthenticated(SUMMARY_EVERY) else {
        return;
    };
    let entry = AuditRecord {
        id: 0,
        at: crate::time::now_rfc3339(),
        actor: None,
        method: "*".into(),
        path: format!(
            "{} unauthenticated admin writes refused (401) since {}; most from {} ({})",
            summary.count, summary.since, summary.top_addr, summary.top_count
        ),
        status: 401,
        remote_addr: Some(summary.top_addr),
    };
    if let Err(e) = app.store.add_audit(entry) {
        log::error!("audit summary of refused writes: {e}");
    }
}

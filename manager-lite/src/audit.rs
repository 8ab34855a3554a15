//! Audit records of what the manager does by itself (a flag's policy, not
//! an admin's request): no actor, no remote address, the method and path
//! of the equivalent request with the reason.

use binproxy_protocol::AuditRecord;

use crate::store::Store;

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

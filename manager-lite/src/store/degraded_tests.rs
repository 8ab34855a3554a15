//! The store while its database is degraded (a write failed on I/O): what a
//! refused write leaves in memory. The I/O failure itself is made for real
//! in tests/manager_storage.rs (a full tmpfs); here the degraded state is
//! set directly, so the refusal path runs deterministically.

use super::test_support::{opts, TempDir};
use super::*;
use binproxy_protocol::Node;
use std::time::{Duration, SystemTime};

use crate::time::rfc3339;

fn node(id: &str, label: &str) -> Node {
    let mut n = Node {
        node_id: id.into(),
        ..Node::default()
    };
    n.labels.insert("l".into(), label.into());
    n
}

#[test]
fn a_refused_flush_keeps_last_seen_pending_and_a_refused_write_changes_nothing() {
    let dir = TempDir::new("flush");
    let db = dir.db();
    let store = Store::open(&db, opts(3)).unwrap();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    store.keepalive(node("n1", "a"), true, t0).unwrap();
    let t1 = t0 + Duration::from_secs(60);
    store.keepalive(node("n1", "a"), true, t1).unwrap();

    store.condition().failed("disk full (test)".into());
    let refused = store.flush_last_seen().unwrap_err();
    assert!(refused.is_unavailable(), "{refused}");
    assert!(
        refused.to_string().contains("disk full (test)"),
        "{refused}"
    );
    // A changed record is refused too, and memory keeps the committed one.
    let e = store.keepalive(node("n1", "b"), true, t1).unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert_eq!(store.node("n1").unwrap().labels["l"], "a");
    assert!(store.set_pin("n1", "app", Some("1.0")).is_err());
    assert_eq!(store.pin("n1", "app"), None);

    // Healthy again: the next flush writes what the refused one held.
    store.condition().worked();
    assert_eq!(store.flush_last_seen().unwrap(), 1);
    drop(store);
    let store = Store::open(&db, opts(3)).unwrap();
    assert_eq!(store.node("n1").unwrap().last_seen, rfc3339(t1));
}

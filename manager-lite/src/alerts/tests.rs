//! Unit tests of the alerts: URL checks, body shapes, the offline watch.

use super::*;
use crate::store::Seen;

#[test]
fn webhook_urls_are_checked_and_shown_without_secrets() {
    let w = Webhook::parse("https://hooks.slack.com/services/T0/B0/SECRET?x=1").unwrap();
    assert_eq!(w.shown(), "https://hooks.slack.com");
    assert!(!format!("{w:?}").contains("SECRET"));
    let w = Webhook::parse("http://user:pw@127.0.0.1:9/x").unwrap();
    assert_eq!(w.shown(), "http://127.0.0.1:9");
    for bad in ["ftp://x/SECRET", "http:///SECRET", "hooks.slack.com/SECRET"] {
        let e = Webhook::parse(bad).unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }
}

#[test]
fn bodies_per_format() {
    let e = Event::NodeRolledBack {
        node: "n1".into(),
        bin: "b".into(),
        target_hash: "ab".repeat(32),
        from_hash: None,
        reason: Some("<!channel> health & check".into()),
    };
    let j = e.body(Format::Json, "2024-01-01T00:00:00Z");
    assert_eq!(j["event"], "node_rolled_back");
    assert_eq!(j["node"], "n1");
    assert_eq!(j["time"], "2024-01-01T00:00:00Z");
    let s = e.body(Format::Slack, "t");
    let text = s["text"].as_str().unwrap();
    assert!(
        text.contains("&lt;!channel&gt; health &amp; check"),
        "{text}"
    );
    let d = e.body(Format::Dingtalk, "t");
    assert_eq!(d["msgtype"], "text");
    assert!(d["text"]["content"].as_str().unwrap().contains("n1"));
}

#[test]
fn offline_is_alerted_once_per_transition() {
    // A webhook nobody listens on: the queue is what is looked at.
    let hook = Webhook::parse("http://127.0.0.1:9/x").unwrap();
    let mut alerts = Alerts::start(&[hook], Format::Json).unwrap();
    let n1 = crate::store::NodeRecord::new(
        &binproxy_protocol::Node::default(),
        &crate::store::Interner::default(),
    );
    let node = |online| {
        let n1 = &n1;
        move |f: &mut dyn FnMut(&Seen)| {
            f(&Seen {
                node: crate::store::NodeRef {
                    id: "n1",
                    record: n1,
                },
                last_seen: std::time::SystemTime::UNIX_EPOCH,
                online,
            });
        }
    };
    let queued = |a: &Alerts| a.sinks[0].queue.lock().len() as u64;
    // Stop the thread first, so the queue only grows.
    alerts.sinks[0].queue.stop.store(true, Ordering::Relaxed);
    alerts.sinks[0].queue.wake.notify_all();
    alerts.watch_nodes(node(false));
    assert_eq!(queued(&alerts), 0, "offline at the first look: no alert");
    alerts.watch_nodes(node(true));
    alerts.watch_nodes(node(false));
    alerts.watch_nodes(node(false));
    assert_eq!(queued(&alerts), 1, "one alert per online→offline");
    alerts.watch_nodes(node(true));
    alerts.watch_nodes(node(false));
    assert_eq!(queued(&alerts), 2);
    alerts.shutdown();
}

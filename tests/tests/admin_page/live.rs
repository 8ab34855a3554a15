//! A rollout advancing under the open page: bars redrawn without a click,
//! an idle page's refreshes all 304, the Live toggle.

use super::*;

/// Nodes that report nothing in the first wave of a three-wave release.
const STALLED: usize = 3;

#[test]
fn rollout_advances_while_the_page_is_open() {
    let m = rollout_manager();
    let mut fleet = Fleet::new(&["svc", "web"], 30);
    fleet_on_first_versions(&m, &mut fleet);
    let r = create_release(
        &m,
        &json!({"bin_name": "svc", "version": "2.0.0", "note": "live page",
                "waves": [{"percent": 30, "wait": "1s"}, {"percent": 70, "wait": "1h"}, {"percent": 100}],
                "success_threshold": "50%", "max_failures": "10"}),
    );
    let b = Browser::start(1280, 1400);
    let loads = open(&b, &m, &m.token);
    assert_eq!(figure(&b, r.id, "success"), "0");

    // Wave 2's nodes: some never report, one fails; the rest update.
    let second: Vec<String> = fleet
        .nodes
        .iter()
        .filter(|n| in_percent(r.id, &n.id, 70) && !in_percent(r.id, &n.id, 30))
        .map(|n| n.id.clone())
        .collect();
    assert!(second.len() > STALLED + 2, "wave 2 reaches {second:?}");
    for id in &second[..STALLED] {
        fleet.node_mut(id).stalled = true;
    }
    fleet.node_mut(&second[STALLED]).fails_with = Some(ProgressStatus::Failed);
    drive(
        &m,
        &mut fleet,
        r.id,
        Mode::Update,
        "wave 2 reached and reporting",
        |r| r.wave == 1 && r.counts.failed == 1 && r.counts.success >= r.counts.targeted / 2,
    );

    // Without a click, the page redraws: wave 1 done, wave 2 current.
    b.poll("the page to show wave 2 as the API counts it", |b| {
        let shown = b.text_of(&format!("{} .wave", card(r.id)));
        let api = get_release(&m, r.id).counts;
        (shown == "wave 2 of 3" && figure(b, r.id, "success") == api.success.to_string())
            .then_some(())
    });
    let (_, after) = binproxy_tests::page::page_state(&b);
    assert!(after > loads, "the page refreshed itself");
    let row1 = format!("{} .wave-row[data-wave=\"1\"]", card(r.id));
    assert!(b.count(&format!("{row1}.current .seg[data-kind=\"silent\"]")) == 1);
    assert!(b.count(&format!("{row1} .seg[data-kind=\"failed\"]")) == 1);
    assert!(b.count(&format!("{} .wave-row[data-wave=\"0\"].past", card(r.id))) == 1);
    b.poll("the failure in the list", |b| {
        (b.count(&format!(
            "{} .failures tr[data-node-id=\"{}\"]",
            card(r.id),
            second[STALLED]
        )) == 1)
            .then_some(())
    });
    save_screenshot(&b, "admin-page-rollout.png");

    // Idle: each refresh is answered 304 and "updated N s ago" counts.
    let unchanged = data(&b, "unchanged");
    let loads = wait_loaded(&b, wait_loaded(&b, 0));
    assert!(
        data(&b, "unchanged") > unchanged,
        "an idle refresh got no 304"
    );
    let updated = b.text_of("#updated");
    assert!(
        updated.starts_with("updated ") && updated.ends_with(" s ago"),
        "{updated}"
    );

    // Paused, the page stops asking; live again, it refreshes at once.
    b.click_on("#live-toggle");
    assert_eq!(b.text_of("#live-toggle"), "Live: paused");
    let (_, paused_at) = binproxy_tests::page::page_state(&b);
    std::thread::sleep(Duration::from_secs(7));
    let (_, still) = binproxy_tests::page::page_state(&b);
    assert_eq!(still, paused_at, "a paused page refreshed");
    assert!(b.text_of("#updated").ends_with("· paused"));
    b.click_on("#live-toggle");
    wait_loaded(&b, still.max(loads));
    assert_eq!(b.text_of("#live-toggle"), "Live: on");
}

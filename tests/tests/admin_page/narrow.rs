//! A phone-wide window and the keyboard alone.

use super::*;

/// In a phone-wide window (500 px, the narrowest headless Chromium opens)
/// nothing overflows sideways, and a release is
/// paused with the keyboard alone: Enter on its button, the confirm step
/// takes the focus, Escape closes it, Enter on "yes" confirms.
#[test]
fn narrow_window_and_keyboard() {
    let m = rollout_manager();
    let mut fleet = Fleet::new(&["svc", "web"], 6);
    fleet_on_first_versions(&m, &mut fleet);
    let r = create_release(
        &m,
        &json!({"bin_name": "svc", "version": "2.0.0",
                "waves": [{"percent": 50, "wait": "1h"}, {"percent": 100}]}),
    );
    let b = Browser::start(400, 900);
    open(&b, &m, &m.token);
    // Headless Chromium opens windows no narrower than 500 px.
    let width = b.script("return window.innerWidth;", &[]).as_u64().unwrap();
    assert!(width <= 520, "the window is {width} px wide");
    let overflow = b.script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        &[],
    );
    assert_eq!(
        overflow,
        json!(0),
        "the page is wider than a {width} px window"
    );
    save_screenshot(&b, "admin-page-narrow.png");

    let pause = format!("{} button.op[data-op=\"pause\"]", card(r.id));
    let focused = |b: &Browser| {
        b.script(
            "const e = document.activeElement; return e ? e.className + ':' + (e.dataset.op || '') : '';",
            &[],
        )
    };
    // Keys go to the focused element, as a user's would.
    b.script(
        "document.querySelector(arguments[0]).focus(); return 0;",
        &[json!(pause)],
    );
    b.type_text(&b.find(&pause), "\u{E007}");
    assert_eq!(
        focused(&b),
        json!("confirm-op:pause"),
        "Enter did not open the confirm step"
    );
    b.type_text(&b.find(&format!("{} .confirm-op", card(r.id))), "\u{E00C}");
    assert_eq!(
        b.count(&format!("{} .confirm", card(r.id))),
        0,
        "Escape left it open"
    );
    assert_eq!(get_release(&m, r.id).status, ReleaseStatus::RollingOut);

    b.type_text(&b.find(&pause), "\u{E007}");
    b.type_text(&b.find(&format!("{} .confirm-op", card(r.id))), "\u{E007}");
    b.poll("the release paused from the keyboard", |_| {
        (get_release(&m, r.id).status == ReleaseStatus::Paused).then_some(())
    });
}

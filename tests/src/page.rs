//! The admin page as the browser tests and the page benchmark drive it:
//! opening it with a token, waiting for a refresh to finish (the page's
//! `data-state` and `data-loads`), reading the status line, registering a
//! large fleet fast, and saving screenshots (to `target/`, and to `docs/`
//! when `BINPROXY_UPDATE_SCREENSHOT` is set).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::browser::Browser;
use crate::Manager;

/// The page's `data-state` and `data-loads`.
pub fn page_state(b: &Browser) -> (String, u64) {
    let v = b.script(
        "return [document.body.dataset.state || '', Number(document.body.dataset.loads || 0)];",
        &[],
    );
    (
        v[0].as_str().unwrap_or_default().to_owned(),
        v[1].as_u64().unwrap_or(0),
    )
}

/// A number the page keeps in `document.body.dataset[key]` (0 when unset).
pub fn data(b: &Browser, key: &str) -> u64 {
    b.script(
        &format!("return Number(document.body.dataset.{key} || 0);"),
        &[],
    )
    .as_u64()
    .unwrap()
}

/// Waits until the page finished a refresh after the `before`th; fails
/// fast, with the status line, when it failed.
#[track_caller]
pub fn wait_loaded(b: &Browser, before: u64) -> u64 {
    b.poll("the page to load the fleet", |b| {
        let (state, loads) = page_state(b);
        assert_eq!(
            data(b, "jsErrors"),
            0,
            "the page's script failed: {}",
            b.text_of("#status")
        );
        assert_ne!(
            state,
            "error",
            "the page failed to load: {}",
            b.text_of("#status")
        );
        (state == "ready" && loads > before).then_some(loads)
    })
}

/// Waits until the status line shows an error containing `part`.
#[track_caller]
pub fn wait_error(b: &Browser, part: &str) -> String {
    b.poll(&format!("an error with {part:?} in the status line"), |b| {
        let v = b.script(
            "const s = document.getElementById('status'); return [s.className, s.textContent];",
            &[],
        );
        let text = v[1].as_str().unwrap_or_default().to_owned();
        (v[0] == "error" && text.contains(part)).then_some(text)
    })
}

/// Types `token` into the page (after forgetting the one it had).
pub fn enter_token(b: &Browser, token: &str) {
    b.click_on("#forget-token");
    let field = b.find("#token");
    b.type_text(&field, token);
    b.click_on("#use-token");
}

/// Opens the page in `b`, waits for its script, and loads it with `token`.
pub fn open(b: &Browser, m: &Manager, token: &str) -> u64 {
    b.goto(&format!("{}/", m.url));
    b.wait_for(
        "the page's script to run",
        "return ['no-token', 'ready', 'loading'].includes(document.body.dataset.state);",
    );
    enter_token(b, token);
    wait_loaded(b, 0)
}

/// Registers `ids` through the API, `threads` at a time: the `i`th as an
/// `x86_64` node, or `aarch64` (every fourth), labelled `env=prod`, or
/// `env=dev` (every third), named `host ID`, listing `bins(i)`.
pub fn register(
    m: &Manager,
    ids: &[String],
    bins: impl Fn(usize) -> serde_json::Value + Sync,
    threads: usize,
) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let arch = if i % 4 == 3 { "aarch64" } else { "x86_64" };
                let env = if i % 3 == 2 { "dev" } else { "prod" };
                m.post_json(
                    "/api/v1/keepalive",
                    &json!({"node_id": id, "node_name": format!("host {id}"),
                            "cpu_arch": arch, "labels": {"env": env}, "bins": bins(i)}),
                )
                .expect(200);
            });
        }
    });
}

/// The directory cargo builds into (the one holding `CACHEDIR.TAG`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .map_or_else(std::env::temp_dir, std::path::Path::to_path_buf)
}

/// Saves a screenshot as `target/NAME`, and as `docs/NAME` when
/// `BINPROXY_UPDATE_SCREENSHOT` is set.
pub fn save_screenshot(b: &Browser, name: &str) {
    let png = b.screenshot();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is not a PNG"
    );
    let path = target_dir().join(name);
    std::fs::write(&path, &png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    println!("screenshot: {} ({} bytes)", path.display(), png.len());
    if std::env::var_os("BINPROXY_UPDATE_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs");
        std::fs::create_dir_all(&docs).unwrap();
        let copy = docs.join(name);
        std::fs::write(&copy, &png).unwrap_or_else(|e| panic!("write {}: {e}", copy.display()));
        println!("copied to {}", copy.display());
    }
}

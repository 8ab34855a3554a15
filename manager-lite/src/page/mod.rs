//! The admin page: `GET /` serves one HTML document, `GET /ui/app.css` its
//! style sheet and `GET /ui/{name}.js` its script, an ES module
//! (`app.js`) and the modules it imports: `dom.js` (text-only rendering),
//! `api.js` (the API with conditional requests), `releases.js` (release
//! cards, wave bars, actions), `fleet.js` (summary, version bars) and
//! `nodes.js` (the paged node search, one node's view). All are compiled
//! into the binary (`include_str!`), so there is no build step and nothing
//! to install beside the binary. The page holds no data: its script reads
//! the JSON API with the admin token the user types, like the CLI does,
//! and refreshes itself every few seconds.
//!
//! Every answer carries a strict Content-Security-Policy (no inline script
//! or style, no other origin, no framing), `X-Content-Type-Options: nosniff`
//! and `Referrer-Policy: no-referrer`. The script renders API data with
//! `textContent` only, so a node name cannot inject markup.

use crate::api::reply::{ApiError, Body, Reply};

/// The policy of every page answer: only this origin's script, style and
/// API; no inline code, plugins, forms, base URL changes or framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("index.html");
const APP_CSS: &str = include_str!("app.css");
/// The script's modules, by the name they are served and imported as.
const SCRIPTS: [(&str, &str); 6] = [
    ("app.js", include_str!("app.js")),
    ("api.js", include_str!("api.js")),
    ("dom.js", include_str!("dom.js")),
    ("fleet.js", include_str!("fleet.js")),
    ("nodes.js", include_str!("nodes.js")),
    ("releases.js", include_str!("releases.js")),
];

/// The answer to `GET /` (`name` empty) or `GET /ui/{name}`; 404 for an
/// asset that does not exist.
pub fn asset(name: &str) -> Result<Reply, ApiError> {
    let script = SCRIPTS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
    let (body, content_type) = match (name, script) {
        ("", _) => (INDEX_HTML, "text/html; charset=utf-8"),
        ("app.css", _) => (APP_CSS, "text/css; charset=utf-8"),
        (_, Some(script)) => (script, "text/javascript; charset=utf-8"),
        _ => {
            let shown: String = name.chars().take(100).collect();
            return Err(ApiError::not_found(format!("no such page asset: {shown}")));
        }
    };
    Ok(Reply {
        status: 200,
        headers: vec![("Content-Type", content_type.to_owned())],
        body: Body::Bytes(body.as_bytes().to_vec()),
    }
    .header("Content-Security-Policy", CSP)
    .header("X-Content-Type-Options", "nosniff")
    .header("Referrer-Policy", "no-referrer")
    .header("X-Frame-Options", "DENY")
    .header("Cache-Control", "no-cache"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_have_types_and_policy() {
        let scripts = SCRIPTS.iter().map(|(n, _)| (*n, "text/javascript"));
        for (name, kind) in [("", "text/html"), ("app.css", "text/css")]
            .into_iter()
            .chain(scripts)
        {
            let reply = asset(name).unwrap_or_else(|e| panic!("{name}: {}", e.message));
            let get = |h: &str| {
                reply
                    .headers
                    .iter()
                    .find(|(k, _)| *k == h)
                    .map(|(_, v)| v.as_str())
            };
            assert!(
                get("Content-Type").is_some_and(|t| t.starts_with(kind)),
                "{name}"
            );
            assert_eq!(get("Content-Security-Policy"), Some(CSP));
            assert_eq!(get("X-Content-Type-Options"), Some("nosniff"));
        }
        assert_eq!(asset("../lib.rs").err().map(|e| e.status), Some(404));
        assert_eq!(asset("index.html").err().map(|e| e.status), Some(404));
    }

    #[test]
    fn html_has_no_inline_code() {
        // The CSP forbids inline script and style; the page must not need them.
        let lower = INDEX_HTML.to_ascii_lowercase();
        assert!(!lower.contains("<style"), "inline <style>");
        assert!(!lower.contains(" style="), "inline style attribute");
        for tag in lower.split('<').skip(1) {
            let attrs = tag.split('>').next().unwrap_or("");
            assert!(
                !attrs
                    .split_whitespace()
                    .any(|a| a.starts_with("on") && a.contains('=')),
                "inline event handler in <{attrs}>"
            );
        }
        assert_eq!(lower.matches("<script").count(), 1);
        assert!(lower.contains("<script type=\"module\" src=\"/ui/app.js\"></script>"));
    }

    #[test]
    fn every_import_is_served() {
        // A module the page imports but the binary does not serve would
        // leave the page blank; one served but never imported is dead.
        for (name, script) in SCRIPTS {
            for line in script.lines().filter(|l| l.starts_with("import ")) {
                let from = line.rsplit("from \"./").next().unwrap_or("");
                let imported = from.trim_end_matches("\";");
                assert!(
                    SCRIPTS.iter().any(|(n, _)| *n == imported),
                    "{name} imports {imported}, which is not served"
                );
            }
            let used = name == "app.js"
                || SCRIPTS
                    .iter()
                    .any(|(_, s)| s.contains(&format!("from \"./{name}\";")));
            assert!(used, "{name} is served but never imported");
        }
    }

    #[test]
    fn script_never_writes_markup() {
        for (name, script) in SCRIPTS {
            for bad in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "setAttribute(\"style",
            ] {
                assert!(!script.contains(bad), "{name} uses {bad}");
            }
        }
    }
}

//! The admin page: `GET /` serves one HTML document, `GET /ui/app.js` and
//! `GET /ui/app.css` its script and style sheet. All three are compiled into
//! the binary (`include_str!`), so there is no build step and nothing to
//! install beside the binary. The page holds no data: its script reads the
//! JSON API with the admin token the user types, like the CLI does.
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
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// The answer to `GET /` (`name` empty) or `GET /ui/{name}`; 404 for an
/// asset that does not exist.
pub fn asset(name: &str) -> Result<Reply, ApiError> {
    let (body, content_type) = match name {
        "" => (INDEX_HTML, "text/html; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
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
        for (name, kind) in [
            ("", "text/html"),
            ("app.js", "text/javascript"),
            ("app.css", "text/css"),
        ] {
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
        assert!(lower.contains("<script src=\"/ui/app.js\"></script>"));
    }

    #[test]
    fn script_never_writes_markup() {
        for bad in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!APP_JS.contains(bad), "app.js uses {bad}");
        }
    }
}

//! What the role and token tests (`tests/security_roles/`) share: requests
//! with a given token, creating and listing named tokens, the audit log, and
//! the 403 that names the role a call needs.

use crate::{Manager, Response};
use binproxy_protocol::Release;
use serde_json::{json, Value};
use std::collections::BTreeSet;

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// One request with an optional token and an optional JSON body.
pub fn send(
    m: &Manager,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let auth = token.map(bearer);
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let mut headers = Vec::new();
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    m.request(method, path, &headers, &bytes)
}

/// `POST /api/v1/tokens` with the bootstrap token.
pub fn create_token(m: &Manager, name: &str, role: &str) -> Response {
    let body = json!({"name": name, "role": role});
    send(m, "POST", "/api/v1/tokens", Some(&m.token), Some(&body))
}

/// Creates a named token with the bootstrap token; returns its secret.
pub fn new_token(m: &Manager, name: &str, role: &str) -> String {
    let r = create_token(m, name, role);
    r.expect(201);
    r.json()["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no \"token\" string: {r}"))
        .to_owned()
}

/// `GET /api/v1/tokens` as the bootstrap admin.
pub fn token_list(m: &Manager) -> Vec<Value> {
    admin_array(m, "/api/v1/tokens")
}

/// `GET path` as the bootstrap admin: a 200 with a JSON array, its items.
fn admin_array(m: &Manager, path: &str) -> Vec<Value> {
    let r = m.admin_get(path);
    r.expect(200);
    r.json()
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {r}"))
        .clone()
}

pub fn token_names(m: &Manager) -> BTreeSet<String> {
    token_list(m)
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `GET /api/v1/audit[?limit=N]` as the bootstrap admin.
pub fn audit(m: &Manager, limit: Option<usize>) -> Vec<Value> {
    let path = match limit {
        Some(n) => format!("/api/v1/audit?limit={n}"),
        None => "/api/v1/audit".to_owned(),
    };
    admin_array(m, &path)
}

pub fn release_of(m: &Manager, id: u64) -> Release {
    m.admin_get(&format!("/api/v1/releases/{id}"))
        .expect(200)
        .parse()
}

pub fn releases_of(m: &Manager, bin: &str) -> Vec<Release> {
    m.admin_get(&format!("/api/v1/releases?bin_name={bin}"))
        .expect(200)
        .parse()
}

/// Asserts a 403 whose error names the token and its role, as the contract's
/// `"... needs role X; token T is viewer"`.
#[track_caller]
pub fn expect_forbidden(r: &Response, name: &str, role: &str) {
    r.expect_error(403);
    let error = r.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("needs role") && error.contains(&format!("token {name} is {role}")),
        "403 should say what role is needed and that token {name} is {role}: {r}"
    );
}

/// The keys of a listed token: never the secret or its hash.
pub const LISTED_KEYS: [&str; 4] = ["created_at", "created_by", "name", "role"];

pub fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

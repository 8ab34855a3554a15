//! The commands about who may do what: named tokens (`token create`,
//! `list`, `revoke`) and the audit log of admin writes. The token is never
//! printed; the one exception is the secret of a new token, which `token
//! create` prints once on stdout because the server never shows it again.

use super::http::Client;
use super::render::{audit_table, emit, or, pretty, show, tokens_table};
use super::ClientError;
use crate::cli::table;
use binproxy_protocol::{AuditRecord, CreatedToken, NewToken, TokenInfo, API_PREFIX};
use serde_json::Value as Json;
use std::io::{self, Write};

/// Creates a named token and prints its secret, the one time it is shown.
pub fn token_create(client: &Client, json: bool, new: &NewToken) -> Result<(), ClientError> {
    let answer = client.post_json(&format!("{API_PREFIX}/tokens"), new)?;
    let created: CreatedToken = answer.parse()?;
    if json {
        emit(&pretty(&answer.body))?;
    } else {
        emit(&format!("{}\n", created.token))?;
    }
    // Nothing sensible is left to do if stderr itself is gone.
    let _ = writeln!(
        io::stderr(),
        "manager-lite token: created token {} with role {}; its secret{} will not be shown again: \
         keep it now",
        table::clean(or(&created.info.name, &new.name)),
        created.info.role.as_str(),
        if json { " (\"token\")" } else { " above" },
    );
    Ok(())
}

pub fn token_list(client: &Client, json: bool) -> Result<(), ClientError> {
    let answer = client.get(&format!("{API_PREFIX}/tokens"), &[])?;
    show(json, &answer, |t: Vec<TokenInfo>| tokens_table(&t))
}

pub fn token_revoke(client: &Client, json: bool, name: &str) -> Result<(), ClientError> {
    let answer = client.delete(&format!("{API_PREFIX}/tokens/{name}"))?;
    match (json, &answer.body) {
        (false, Json::Null) => emit(&format!(
            "revoked token {name}: it is refused from now on\n"
        )),
        (false, _) => {
            let t: TokenInfo = answer.parse()?;
            emit(&format!(
                "revoked token {} (role {}): it is refused from now on\n",
                table::clean(or(&t.name, name)),
                t.role.as_str()
            ))
        }
        (true, Json::Null) => emit(&pretty(
            &serde_json::json!({ "name": name, "revoked": true }),
        )),
        (true, body) => emit(&pretty(body)),
    }
}

/// The latest admin writes, newest first.
pub fn audit(client: &Client, json: bool, limit: Option<u32>) -> Result<(), ClientError> {
    let limit = limit.map(|n| n.to_string());
    let query: Vec<_> = limit.as_deref().map(|n| ("limit", n)).into_iter().collect();
    let answer = client.get(&format!("{API_PREFIX}/audit"), &query)?;
    show(json, &answer, |r: Vec<AuditRecord>| audit_table(&r))
}

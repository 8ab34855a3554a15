//! The commands about nodes: list them all (page by page), show one with
//! its targets, forget its secret or the node itself, and pin or unpin a
//! bin's version on it.

use super::http::{Answer, Client};
use super::render::{emit, node_view, nodes_table, or, pretty, show};
use super::ClientError;
use crate::cli::table;
use binproxy_protocol::{Node, NodeView, Pin, API_PREFIX};
use serde_json::Value as Json;

/// Every node, page by page (`X-Next-After` names the next page).
pub fn nodes(client: &Client, json: bool) -> Result<(), ClientError> {
    let mut all = Vec::new();
    let mut after = String::new();
    for _ in 0..MAX_PAGES {
        let query = [("limit", NODES_PAGE), ("after", after.as_str())];
        let answer = client.get(&format!("{API_PREFIX}/nodes"), &query)?;
        let Json::Array(page) = answer.body else {
            return Err(ClientError::Failed(
                "unexpected answer from the server: the node list is not an array".into(),
            ));
        };
        all.extend(page);
        match answer.next_after {
            // Ids grow page after page: a cursor that does not is a loop.
            Some(next) if next.as_str() > after.as_str() => after = next,
            Some(next) => {
                return Err(ClientError::Failed(format!(
                    "the server's next page starts at {next:?}, not after {after:?}"
                )))
            }
            None => {
                let answer = Answer {
                    status: 200,
                    body: Json::Array(all),
                    next_after: None,
                };
                return show(json, &answer, |n: Vec<Node>| nodes_table(&n));
            }
        }
    }
    Err(ClientError::Failed(format!(
        "the node list did not end within {MAX_PAGES} pages"
    )))
}

/// Nodes asked for per page, and the most pages followed (10 million nodes).
const NODES_PAGE: &str = "1000";
const MAX_PAGES: usize = 10_000;

/// One node, and for each of its bins the target and why.
pub fn node_details(client: &Client, json: bool, node: &str) -> Result<(), ClientError> {
    let answer = client.get(&format!("{API_PREFIX}/nodes/{node}"), &[])?;
    show(json, &answer, |v: NodeView| node_view(&v))
}

/// Forgets a node's secret: the node must enroll again.
pub fn node_revoke(client: &Client, json: bool, node: &str) -> Result<(), ClientError> {
    delete(
        client,
        json,
        &format!("{API_PREFIX}/nodes/{node}/secret"),
        &format!("revoked the secret of {node}: it must enroll again\n"),
    )
}

/// Deletes a node with its pins and secret.
pub fn node_delete(client: &Client, json: bool, node: &str) -> Result<(), ClientError> {
    delete(
        client,
        json,
        &format!("{API_PREFIX}/nodes/{node}"),
        &format!("deleted node {node} with its pins and secret (its progress reports stay)\n"),
    )
}

/// `DELETE path`: the server's answer with `--json`, else `done`.
fn delete(client: &Client, json: bool, path: &str, done: &str) -> Result<(), ClientError> {
    let answer = client.delete(path)?;
    if json {
        emit(&pretty(&answer.body))
    } else {
        emit(done)
    }
}

pub fn pin(
    client: &Client,
    json: bool,
    node: &str,
    bin: &str,
    version: &str,
) -> Result<(), ClientError> {
    let path = format!("{API_PREFIX}/nodes/{node}/pins/{bin}");
    let answer = client.put_json(&path, &serde_json::json!({ "version": version }))?;
    show(json, &answer, |p: Pin| {
        format!(
            "pinned {} on {} to {}\n",
            table::clean(or(&p.bin_name, bin)),
            table::clean(or(&p.node_id, node)),
            table::clean(&p.version)
        )
    })
}

pub fn unpin(client: &Client, json: bool, node: &str, bin: &str) -> Result<(), ClientError> {
    let answer = client.delete(&format!("{API_PREFIX}/nodes/{node}/pins/{bin}"))?;
    match (json, &answer.body) {
        (false, _) => emit(&format!(
            "unpinned {bin} on {node}: its releases decide its target again\n"
        )),
        // No body to show: say what was done, as JSON.
        (true, Json::Null) => emit(&pretty(
            &serde_json::json!({ "node_id": node, "bin_name": bin, "unpinned": true }),
        )),
        (true, body) => emit(&pretty(body)),
    }
}

//! Node enrollment: the keepalive that carries the enrollment token gives
//! the node its own secret, whose sha256 the store keeps.
//!
//! A current agent makes its secret itself and keeps it durably before it
//! asks (`proposed_secret`); the manager stores its hash, and accepts the
//! same secret again for a node already enrolled with it, so an agent killed
//! at any point of its enrollment enrolls again by itself on its next run.
//! A different secret for an enrolled node is refused (409) and changes
//! nothing: the enrollment token alone never replaces a finished enrollment.
//! An old agent that proposes nothing gets a secret made here, once, in the
//! answer's `node_secret` (and is locked out if it loses that answer, as
//! before). No secret is ever logged or put in an error message.

use binproxy_protocol::Secret;

use crate::api::app::App;
use crate::api::auth::{random_hex, secret_hash};
use crate::api::reply::ApiError;
use crate::store::Enrolling;

/// What an enrollment gave the node.
pub struct Enrolled {
    /// The secret made here for an old agent, to be sent once.
    pub node_secret: Option<String>,
}

/// Enrolls `node_id` with its proposed secret, or with a new one made here
/// when it proposed none.
pub fn enroll(app: &App, node_id: &str, proposed: Option<&Secret>) -> Result<Enrolled, ApiError> {
    let Some(Secret(secret)) = proposed else {
        let secret = random_hex(32)?;
        return match app.store.enroll_node(node_id, &secret_hash(&secret))? {
            Enrolling::Enrolled => {
                log::info!("node {node_id} enrolled (with a secret made by the manager)");
                Ok(Enrolled {
                    node_secret: Some(secret),
                })
            }
            _ => Err(already_enrolled(node_id)),
        };
    };
    check_proposal(secret)?;
    if app.auth.is_token(secret, &app.store) {
        return Err(ApiError::conflict(
            "proposed_secret: this value cannot be a node secret here; make another",
        ));
    }
    match app.store.enroll_node(node_id, &secret_hash(secret))? {
        Enrolling::Enrolled => log::info!("node {node_id} enrolled (with its own secret)"),
        Enrolling::Again => log::info!("node {node_id} enrolled again with the same secret"),
        Enrolling::OtherSecret => return Err(already_enrolled(node_id)),
        Enrolling::SecretTaken => {
            return Err(ApiError::conflict(
                "proposed_secret is already another node's (a copied state directory?): \
                 delete state_dir/node.secret.pending on this node so that it makes a new one",
            ))
        }
    }
    Ok(Enrolled { node_secret: None })
}

fn already_enrolled(node_id: &str) -> ApiError {
    ApiError::conflict(format!(
        "node {node_id} is already enrolled with another secret: if this is that node and \
         it lost its state_dir/node.secret, revoke it with manager-lite node revoke {node_id}"
    ))
}

/// A proposed secret is what the agent makes: 64 lowercase hex digits (32
/// random bytes). The message never quotes it.
fn check_proposal(secret: &str) -> Result<(), ApiError> {
    if Secret::well_formed(secret) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "proposed_secret: must be 64 lowercase hex digits (32 random bytes)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_are_64_lowercase_hex_and_errors_do_not_quote_them() {
        assert!(check_proposal(&"0a".repeat(32)).is_ok());
        assert!(check_proposal("").is_err());
        for bad in ["abc", &"A".repeat(64), &"g".repeat(64), &"a".repeat(65)] {
            let e = format!("{:?}", check_proposal(bad).unwrap_err());
            assert!(!e.contains(bad), "{e}");
        }
    }
}

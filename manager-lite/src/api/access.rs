//! Access: the named admin tokens (`GET`/`POST /api/v1/tokens`,
//! `DELETE /api/v1/tokens/{name}`) and the audit log (`GET /api/v1/audit`).
//! Who a request is, and what its role may do, is [`crate::api::auth`] and
//! the route table's; the records themselves are written by
//! [`crate::api::audit`].

use binproxy_protocol::{check_bin_name, CreatedToken, NewToken, Role, TokenInfo};

use crate::api::app::App;
use crate::api::auth::{random_hex, secret_hash, Actor, BOOTSTRAP_NAME};
use crate::api::reply::{Answer, ApiError, Reply};
use crate::api::request::{limit, read_json, Request, Url};
use crate::time::now_rfc3339;

pub fn list_tokens(app: &App) -> Answer {
    let bootstrap = TokenInfo {
        name: BOOTSTRAP_NAME.into(),
        role: Role::Admin,
        created_at: String::new(),
        created_by: "manager-lite serve (file, environment or generated)".into(),
    };
    let all: Vec<TokenInfo> = std::iter::once(bootstrap)
        .chain(app.store.tokens())
        .collect();
    Ok(Reply::json(200, &all))
}

/// Creates a named token; its secret is in this answer and nowhere else.
pub fn create_token(app: &App, actor: &Actor, rq: &mut Request) -> Answer {
    let new: NewToken = read_json(rq)?;
    check_token_name(&new.name)?;
    if new.name == BOOTSTRAP_NAME {
        return Err(ApiError::conflict(
            "the name admin belongs to the bootstrap token",
        ));
    }
    let secret = random_hex(32)?;
    let info = TokenInfo {
        name: new.name.clone(),
        role: new.role,
        created_at: now_rfc3339(),
        created_by: actor.name.clone(),
    };
    if !app.store.add_token(&info, &secret_hash(&secret))? {
        return Err(ApiError::conflict(format!(
            "a token named {} exists: revoke it first",
            new.name
        )));
    }
    log::info!(
        "token {} ({}) created by {}",
        info.name,
        info.role.as_str(),
        actor.name
    );
    Ok(Reply::json(
        201,
        &CreatedToken {
            info,
            token: secret,
        },
    ))
}

pub fn revoke_token(app: &App, name: &str) -> Answer {
    if name == BOOTSTRAP_NAME {
        return Err(ApiError::conflict(
            "the bootstrap admin token is revoked by replacing its file or environment variable and restarting",
        ));
    }
    check_token_name(name)?;
    let info = app
        .store
        .remove_token(name)?
        .ok_or_else(|| ApiError::not_found(format!("unknown token {name}")))?;
    log::info!("token {name} revoked");
    Ok(Reply::json(200, &info))
}

/// Token names follow the bin name rule, but the error must say "token".
fn check_token_name(name: &str) -> Result<(), ApiError> {
    check_bin_name(name).map_err(|_| {
        ApiError::bad_request(format!(
            "invalid token name {name:?}: 1 to 64 of A-Z a-z 0-9 . _ - and not . or .."
        ))
    })
}

pub fn list_audit(app: &App, url: &Url) -> Answer {
    Ok(Reply::json(200, &app.store.audit(limit(url)?)?))
}

//! The admin command's arguments, checked: every name, release id and
//! rollout plan (waves, thresholds, selector, windows) against the protocol's
//! rules before anything is sent, so a typo is a usage error naming the
//! option and not a round trip. clap ([`super::args`]) has already placed
//! the words and options; this turns them into a checked [`Command`].

pub use super::args::Common;
use super::args::{self, Admin, MirrorAction, NodeAction, Plan, TokenAction, VersionAction};
use super::plan::{new_release, parse_waves};
use super::ClientError;
use binproxy_protocol::ReleaseOp;
use binproxy_protocol::{
    check_arch, check_bin_name, check_node_id, check_version, NameError, NewRelease, NewToken,
    Role, Wave,
};
use std::path::PathBuf;
use std::time::Duration;

/// The roles a token may have, as the server spells them.
const ROLES: &[Role] = &[Role::Admin, Role::Publisher, Role::Approver, Role::Viewer];

/// Most audit records one request may ask for.
const MAX_AUDIT_LIMIT: u32 = 1000;

/// A command line, parsed and checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub command: Command,
    pub common: Common,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Publish(Publish),
    Signature(Signature),
    Release(NewRelease),
    Releases {
        bin: Option<String>,
    },
    Nodes,
    Node {
        node: String,
    },
    NodeRevoke {
        node: String,
    },
    NodeDelete {
        node: String,
    },
    Progress {
        bin: String,
        node: Option<String>,
        limit: Option<u32>,
    },
    /// `approve`, `pause`, `resume`, `promote` or `cancel` on release `id`:
    /// `POST /api/v1/releases/{id}/{op}`.
    Operate {
        op: &'static str,
        id: u64,
    },
    /// No waves: the server's default plan (100% at once).
    Rollback {
        id: u64,
        waves: Vec<Wave>,
    },
    Pin {
        node: String,
        bin: String,
        version: String,
    },
    Unpin {
        node: String,
        bin: String,
    },
    /// `token create NAME ROLE`.
    TokenCreate(NewToken),
    TokenList,
    TokenRevoke {
        name: String,
    },
    VersionDelete {
        bin: String,
        version: String,
        arch: Option<String>,
    },
    /// `backup --to FILE`.
    Backup {
        to: PathBuf,
    },
    Audit {
        limit: Option<u32>,
    },
    /// `mirror sync --to DIR [--grace DURATION]`.
    MirrorSync {
        to: PathBuf,
        grace: Duration,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub struct Publish {
    pub bin: String,
    pub version: String,
    pub file: PathBuf,
    pub arch: Option<String>,
    /// With `--signature`: the `.minisig` file to store once the upload is done.
    pub signature: Option<PathBuf>,
    /// With `--release`: the release to create once the upload (and the
    /// signature) is done.
    pub release: Option<NewRelease>,
}

/// `signature BIN VERSION FILE.minisig [--arch A]`: (re)signs an uploaded artifact.
#[derive(Debug, PartialEq, Eq)]
pub struct Signature {
    pub bin: String,
    pub version: String,
    pub file: PathBuf,
    /// The artifact's arch; `None`: the arch-less artifact.
    pub arch: Option<String>,
}

/// Checks an admin command line; nothing is read or sent yet.
pub fn check(admin: Admin) -> Result<Parsed, ClientError> {
    let (command, common) = match admin {
        Admin::Publish(p) => publish(p)?,
        Admin::Signature(s) => (
            Command::Signature(Signature {
                bin: name(s.bin, check_bin_name)?,
                version: name(s.version, check_version)?,
                file: s.file,
                arch: checked("arch", once("arch", s.arch)?, check_arch)?,
            }),
            s.common,
        ),
        Admin::Release(r) => {
            let (bin, version) = (
                name(r.bin, check_bin_name)?,
                name(r.version, check_version)?,
            );
            (
                Command::Release(new_release(bin, version, r.arch, r.plan)?),
                r.common,
            )
        }
        Admin::Releases { bin, common } => (
            Command::Releases {
                bin: checked("bin", bin, check_bin_name)?,
            },
            common,
        ),
        Admin::Approve(a) => operate(ReleaseOp::Approve, a)?,
        Admin::Pause(a) => operate(ReleaseOp::Pause, a)?,
        Admin::Resume(a) => operate(ReleaseOp::Resume, a)?,
        Admin::Promote(a) => operate(ReleaseOp::Promote, a)?,
        Admin::Cancel(a) => operate(ReleaseOp::Cancel, a)?,
        Admin::Rollback { id, waves, common } => (
            Command::Rollback {
                id: release_id(&id)?,
                waves: waves
                    .as_deref()
                    .map(parse_waves)
                    .transpose()?
                    .unwrap_or_default(),
            },
            common,
        ),
        Admin::Pin {
            node,
            bin,
            version,
            common,
        } => (
            Command::Pin {
                node: name(node, check_node_id)?,
                bin: name(bin, check_bin_name)?,
                version: name(version, check_version)?,
            },
            common,
        ),
        Admin::Unpin { node, bin, common } => (
            Command::Unpin {
                node: name(node, check_node_id)?,
                bin: name(bin, check_bin_name)?,
            },
            common,
        ),
        Admin::Nodes { common } => (Command::Nodes, common),
        Admin::Node(n) => (node(n.node, n.action)?, n.common),
        Admin::Progress {
            bin,
            node,
            limit,
            common,
        } => (
            Command::Progress {
                bin: name(bin, check_bin_name)?,
                node: checked("node", once("node", node)?, check_node_id)?,
                limit,
            },
            common,
        ),
        Admin::Token(t) => (token(t.action)?, t.common),
        Admin::Version(v) => match v.action {
            VersionAction::Delete { bin, version, arch } => (
                Command::VersionDelete {
                    bin: name(bin, check_bin_name)?,
                    version: name(version, check_version)?,
                    arch: checked("arch", arch, check_arch)?,
                },
                v.common,
            ),
        },
        Admin::Audit { limit, common } => (
            Command::Audit {
                limit: audit_limit(limit)?,
            },
            common,
        ),
        Admin::Backup { to, common } => (Command::Backup { to }, common),
        Admin::Mirror(m) => mirror(m)?,
    };
    Ok(Parsed { command, common })
}

/// `publish`: the plan options only make sense with `--release`.
fn publish(p: args::Publish) -> Result<(Command, Common), ClientError> {
    let bin = name(p.bin, check_bin_name)?;
    let version = name(p.version, check_version)?;
    let arch = checked("arch", once("arch", p.arch)?, check_arch)?;
    let release = match (p.release, release_option(&p.plan)) {
        // --arch is the artifact's here, not a selector.
        (true, _) => Some(new_release(
            bin.clone(),
            version.clone(),
            Vec::new(),
            p.plan,
        )?),
        (false, Some(option)) => return Err(usage(&format!("--{option} goes with --release"))),
        (false, None) => None,
    };
    let publish = Publish {
        bin,
        version,
        file: p.file,
        arch,
        signature: p.signature,
        release,
    };
    Ok((Command::Publish(publish), p.common))
}

/// The first option given that only makes sense for a new release.
fn release_option(plan: &Plan) -> Option<&'static str> {
    [
        ("note", plan.note.is_some()),
        ("waves", plan.waves.is_some()),
        ("success-threshold", plan.success_threshold.is_some()),
        ("max-failures", plan.max_failures.is_some()),
        ("select", !plan.select.is_empty()),
        ("node", !plan.node.is_empty()),
        ("exclude-node", !plan.exclude_node.is_empty()),
        ("os", !plan.os.is_empty()),
        ("require-approval", plan.require_approval),
        ("window", !plan.window.is_empty()),
    ]
    .into_iter()
    .find_map(|(option, given)| given.then_some(option))
}

fn operate(op: ReleaseOp, a: args::IdArgs) -> Result<(Command, Common), ClientError> {
    let id = release_id(&a.id)?;
    Ok((
        Command::Operate {
            op: op.as_str(),
            id,
        },
        a.common,
    ))
}

/// `node NODE`, `node revoke NODE` or `node delete NODE`.
fn node(node: Option<String>, action: Option<NodeAction>) -> Result<Command, ClientError> {
    match (action, node) {
        (Some(NodeAction::Revoke { node }), _) => Ok(Command::NodeRevoke {
            node: name(node, check_node_id)?,
        }),
        (Some(NodeAction::Delete { node }), _) => Ok(Command::NodeDelete {
            node: name(node, check_node_id)?,
        }),
        (None, Some(node)) => Ok(Command::Node {
            node: name(node, check_node_id)?,
        }),
        // clap requires NODE without a subcommand; kept as an error all the same.
        (None, None) => Err(usage("missing NODE")),
    }
}

/// `token create NAME ROLE`, `token list`, `token revoke NAME`.
fn token(action: TokenAction) -> Result<Command, ClientError> {
    Ok(match action {
        TokenAction::Create { name: n, role: r } => Command::TokenCreate(NewToken {
            name: name(n, check_token_name)?,
            role: role(&r)?,
        }),
        TokenAction::List => Command::TokenList,
        TokenAction::Revoke { name: n } => Command::TokenRevoke {
            name: name(n, check_token_name)?,
        },
    })
}

pub(super) fn usage(message: &str) -> ClientError {
    ClientError::Usage(message.to_owned())
}

type Check = fn(&str) -> Result<(), NameError>;

/// The value of an option that may be given once, if it was.
fn once(option: &str, mut values: Vec<String>) -> Result<Option<String>, ClientError> {
    if values.len() > 1 {
        return Err(usage(&format!("--{option} may be given only once")));
    }
    Ok(values.pop())
}

/// A positional word as a name that passes `check`.
fn name(value: String, check: Check) -> Result<String, ClientError> {
    check(&value)?;
    Ok(value)
}

/// An option's value, checked when given; the error names the option.
fn checked(
    option: &str,
    value: Option<String>,
    check: Check,
) -> Result<Option<String>, ClientError> {
    if let Some(v) = &value {
        check(v).map_err(|e| usage(&format!("--{option}: {e}")))?;
    }
    Ok(value)
}

/// Every value of a repeatable option, each checked.
pub(super) fn checked_all(
    option: &str,
    values: Vec<String>,
    check: Check,
) -> Result<Vec<String>, ClientError> {
    for v in &values {
        check(v).map_err(|e| usage(&format!("--{option}: {e}")))?;
    }
    Ok(values)
}

/// Token names: `[A-Za-z0-9._-]{1,64}`, not `.` or `..` (a path segment
/// cannot carry those to `DELETE /api/v1/tokens/NAME`).
fn check_token_name(token: &str) -> Result<(), NameError> {
    check_bin_name(token).map_err(|e| NameError {
        field: "token name",
        ..e
    })
}

/// The ROLE word: one of [`ROLES`].
fn role(word: &str) -> Result<Role, ClientError> {
    ROLES
        .iter()
        .copied()
        .find(|r| word == r.as_str())
        .ok_or_else(|| {
            let names: Vec<&str> = ROLES.iter().map(|r| r.as_str()).collect();
            usage(&format!(
                "ROLE \"{}\" must be one of {}",
                crate::cli::table::clean(word),
                names.join(", ")
            ))
        })
}

/// `--limit N` of `audit`: 1 to [`MAX_AUDIT_LIMIT`].
fn audit_limit(limit: Option<u32>) -> Result<Option<u32>, ClientError> {
    match limit {
        Some(n) if !(1..=MAX_AUDIT_LIMIT).contains(&n) => Err(usage(&format!(
            "--limit {n}: must be 1 to {MAX_AUDIT_LIMIT}"
        ))),
        _ => Ok(limit),
    }
}

/// `mirror sync --to DIR [--grace DURATION]`.
fn mirror(m: args::MirrorArgs) -> Result<(Command, Common), ClientError> {
    match m.action {
        MirrorAction::Sync { to, grace } => Ok((
            Command::MirrorSync {
                to,
                grace: grace_period(&grace)?,
            },
            m.common,
        )),
    }
}

/// `--grace` of `mirror sync`: a humantime duration, zero allowed.
fn grace_period(word: &str) -> Result<Duration, ClientError> {
    humantime::parse_duration(word).map_err(|e| {
        usage(&format!(
            "--grace {}: {e} (a duration such as 24h, 90m or 0s)",
            crate::cli::table::clean(word)
        ))
    })
}

/// A release id: the ID word, a positive integer.
fn release_id(id: &str) -> Result<u64, ClientError> {
    Some(id)
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            usage(&format!(
                "ID \"{}\" must be a release id: a positive integer",
                crate::cli::table::clean(id)
            ))
        })
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;

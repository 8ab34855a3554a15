//! The admin command line: `publish`, `signature`, `release`, `releases`,
//! `nodes`, `node`, `progress`, the release operations (`approve`, `pause`, `resume`,
//! `promote`, `cancel`, `rollback`), `pin`/`unpin`, `token` (create, list,
//! revoke the named tokens of the roles admin, publisher, approver, viewer)
//! and `audit` talk to a running manager-lite over its HTTP API.
//!
//! Each command parses its arguments with lexopt and checks every name, release
//! id and rollout plan (waves, thresholds, selector) against the protocol's
//! rules before anything is sent, so a typo is a usage error naming the option
//! and not a round trip. It then sends one request (one more for each of
//! `publish --signature` and `publish --release`) with the admin token, and shows the answer as a table or a
//! key/value block ([`crate::table`]) or, with `--json`, as the server's own
//! JSON. Uploads stream the file from disk: an artifact can be as large as the
//! server allows (1 GiB by default) and is never held in memory.
//!
//! Exit codes: 0 done; 1 the server refused or could not be reached; 2 usage or
//! configuration error. Every error is one line on stderr, and the token is
//! never printed; the one exception is the secret of a new token, which
//! `token create` prints once on stdout because the server never shows it again.

use crate::table;
use binproxy_protocol::names::normalize_arch;
use binproxy_protocol::window::Windows;
use binproxy_protocol::{
    check_arch, check_bin_name, check_node_id, check_version, AuditRecord, CreatedToken, ErrorBody,
    NameError, NewRelease, NewToken, Node, NodeView, Pin, ProgressRecord, Release, ReleaseStatus,
    Role, Selector, TokenInfo, Version, Wave, API_PREFIX,
};
use lexopt::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use ureq::http::Response;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::typestate::WithBody;
use ureq::{Agent, Body, RequestBuilder};

/// Commands this module handles.
pub const COMMANDS: &[&str] = &[
    "publish",
    "signature",
    "release",
    "releases",
    "nodes",
    "node",
    "progress",
    "approve",
    "pause",
    "resume",
    "promote",
    "cancel",
    "rollback",
    "pin",
    "unpin",
    "token",
    "audit",
];

/// The roles a token may have, as the server spells them.
const ROLES: &[Role] = &[Role::Admin, Role::Publisher, Role::Approver, Role::Viewer];

/// Most audit records one request may ask for.
const MAX_AUDIT_LIMIT: u32 = 1000;

/// The commands that move one release along: `POST /api/v1/releases/{id}/{op}`.
const OPERATIONS: &[&str] = &["approve", "pause", "resume", "promote", "cancel"];

const DEFAULT_SERVER: &str = "http://127.0.0.1:38012";
const SERVER_ENV: &str = "MANAGER_URL";
const TOKEN_ENV: &str = "MANAGER_ADMIN_TOKEN";
const CA_ENV: &str = "MANAGER_CA_FILE";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Per read and per write, never for a whole request: an upload of a large
/// artifact over a slow link may rightly take many minutes, but a link that
/// stalls for this long is dead.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer read; ureq's default of 10 MB is small for the node list of
/// a big fleet.
const MAX_ANSWER: u64 = 64 << 20;
/// Hex digits shown of a sha256 in tables: enough to tell builds apart.
const SHORT_SHA: usize = 12;

/// A command: the options it takes besides the common ones, and its usage.
struct Spec {
    name: &'static str,
    options: &'static [&'static str],
    usage: &'static str,
}

/// Options that shape a new release: who it is for and how it rolls out.
/// `release` takes them all, with `--arch A`... too; `publish --release` all
/// of them, but there `--arch` names the artifact's arch.
macro_rules! plan_usage {
    () => {
        "[--waves P%[:WAIT],...] [--success-threshold N%] [--max-failures N%|N] \
         [--select KEY=V1,V2]... [--node ID]... [--exclude-node ID]... [--os OS]... \
         [--require-approval] [--window \"DAYS HH:MM-HH:MM +HH:MM\"]..."
    };
}

const SPECS: &[Spec] = &[
    Spec {
        name: "publish",
        options: &[
            "arch",
            "signature",
            "release",
            "note",
            "waves",
            "success-threshold",
            "max-failures",
            "select",
            "node",
            "exclude-node",
            "os",
            "require-approval",
            "window",
        ],
        usage: concat!(
            "manager-lite publish BIN VERSION FILE [--arch A] [--signature FILE.minisig] ",
            "[--release [--note TEXT] ",
            plan_usage!(),
            "]"
        ),
    },
    Spec {
        name: "signature",
        options: &["arch"],
        usage: "manager-lite signature BIN VERSION FILE.minisig [--arch A]",
    },
    Spec {
        name: "release",
        options: &[
            "note",
            "waves",
            "success-threshold",
            "max-failures",
            "select",
            "node",
            "exclude-node",
            "arch",
            "os",
            "require-approval",
            "window",
        ],
        usage: concat!(
            "manager-lite release BIN VERSION [--note TEXT] [--arch A]... ",
            plan_usage!()
        ),
    },
    Spec {
        name: "releases",
        options: &["bin"],
        usage: "manager-lite releases [--bin BIN]",
    },
    Spec {
        name: "nodes",
        options: &[],
        usage: "manager-lite nodes",
    },
    Spec {
        name: "node",
        options: &[],
        usage: "manager-lite node NODE",
    },
    Spec {
        name: "progress",
        options: &["node", "limit"],
        usage: "manager-lite progress BIN [--node NODE] [--limit N]",
    },
    Spec {
        name: "approve",
        options: &[],
        usage: "manager-lite approve ID",
    },
    Spec {
        name: "pause",
        options: &[],
        usage: "manager-lite pause ID",
    },
    Spec {
        name: "resume",
        options: &[],
        usage: "manager-lite resume ID",
    },
    Spec {
        name: "promote",
        options: &[],
        usage: "manager-lite promote ID",
    },
    Spec {
        name: "cancel",
        options: &[],
        usage: "manager-lite cancel ID",
    },
    Spec {
        name: "rollback",
        options: &["waves"],
        usage: "manager-lite rollback ID [--waves P%[:WAIT],...]",
    },
    Spec {
        name: "pin",
        options: &[],
        usage: "manager-lite pin NODE BIN VERSION",
    },
    Spec {
        name: "unpin",
        options: &[],
        usage: "manager-lite unpin NODE BIN",
    },
    Spec {
        name: "token",
        options: &[],
        usage:
            "manager-lite token create NAME admin|publisher|approver|viewer | list | revoke NAME",
    },
    Spec {
        name: "audit",
        options: &["limit"],
        usage: "manager-lite audit [--limit N]",
    },
];

const COMMON_USAGE: &str = "[--server URL] [--token-file FILE] [--ca-file FILE] [--json]";

fn spec(command: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == command)
}

/// Why a command failed, which decides its exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Bad, missing or extra arguments.
    Usage(String),
    /// No usable token, server URL or file to upload.
    Config(String),
    /// The server answered with an error status and this `{"error"}` text.
    Refused { status: u16, error: String },
    /// No usable answer: unreachable, timed out, not JSON; or stdout failed.
    Failed(String),
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::Config(_) => 2,
            Self::Refused { .. } | Self::Failed(_) => 1,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(m) | Self::Config(m) | Self::Failed(m) => f.write_str(m),
            Self::Refused { status, error } => write!(f, "{status} {error}"),
        }
    }
}

impl From<lexopt::Error> for ClientError {
    fn from(e: lexopt::Error) -> Self {
        Self::Usage(e.to_string())
    }
}

impl From<NameError> for ClientError {
    fn from(e: NameError) -> Self {
        Self::Usage(e.to_string())
    }
}

/// Runs one admin command; returns the process exit code.
pub fn main(command: &str, args: Vec<OsString>) -> u8 {
    match run(command, args) {
        Ok(()) => 0,
        Err(err) => {
            let usage = match (&err, spec(command)) {
                (ClientError::Usage(_), Some(s)) => format!(" (usage: {} {COMMON_USAGE})", s.usage),
                _ => String::new(),
            };
            // Nothing sensible is left to do if stderr itself is gone.
            let _ = writeln!(io::stderr(), "manager-lite {command}: {err}{usage}");
            err.exit_code()
        }
    }
}

fn run(command: &str, args: Vec<OsString>) -> Result<(), ClientError> {
    let spec =
        spec(command).ok_or_else(|| ClientError::Usage(format!("unknown command {command:?}")))?;
    let Parsed { command, common } = parse(spec, args)?;
    let json = common.json;
    // Built on first use, so that --help needs no token.
    let connect = || settings(&common, &|key| std::env::var_os(key)).map(Client::new);
    match command {
        Command::Help => emit(&format!("usage: {} {COMMON_USAGE}\n", spec.usage)),
        Command::Publish(p) => publish(&connect()?, json, &p),
        Command::Signature(s) => signature(&connect()?, json, &s),
        Command::Release(r) => release(&connect()?, json, &r),
        Command::Releases { bin } => releases(&connect()?, json, bin.as_deref()),
        Command::Nodes => nodes(&connect()?, json),
        Command::Node { node } => node_details(&connect()?, json, &node),
        Command::NodeRevoke { node } => node_revoke(&connect()?, json, &node),
        Command::Progress { bin, node, limit } => {
            progress(&connect()?, json, &bin, node.as_deref(), limit)
        }
        Command::Operate { op, id } => operate(&connect()?, json, op, id),
        Command::Rollback { id, waves } => rollback(&connect()?, json, id, waves),
        Command::Pin { node, bin, version } => pin(&connect()?, json, &node, &bin, &version),
        Command::Unpin { node, bin } => unpin(&connect()?, json, &node, &bin),
        Command::TokenCreate(new) => token_create(&connect()?, json, &new),
        Command::TokenList => token_list(&connect()?, json),
        Command::TokenRevoke { name } => token_revoke(&connect()?, json, &name),
        Command::Audit { limit } => audit(&connect()?, json, limit),
    }
}

// ---------------------------------------------------------------------------
// Arguments

/// A command line, parsed and checked.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    command: Command,
    common: Common,
}

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Help,
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
    Progress {
        bin: String,
        node: Option<String>,
        limit: Option<u32>,
    },
    /// One of [`OPERATIONS`] on release `id`.
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
    Audit {
        limit: Option<u32>,
    },
}

#[derive(Debug, PartialEq, Eq)]
struct Publish {
    bin: String,
    version: String,
    file: PathBuf,
    arch: Option<String>,
    /// With `--signature`: the `.minisig` file to store once the upload is done.
    signature: Option<PathBuf>,
    /// With `--release`: the release to create once the upload (and the
    /// signature) is done.
    release: Option<NewRelease>,
}

/// `signature BIN VERSION FILE.minisig [--arch A]`: (re)signs an uploaded artifact.
#[derive(Debug, PartialEq, Eq)]
struct Signature {
    bin: String,
    version: String,
    file: PathBuf,
    /// The artifact's arch; `None`: the arch-less artifact.
    arch: Option<String>,
}

/// Options every command takes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Common {
    server: Option<String>,
    token_file: Option<PathBuf>,
    /// PEM certificates to trust for an https server, instead of the
    /// built-in web roots.
    ca_file: Option<PathBuf>,
    json: bool,
}

/// Everything on the command line, before the command's own checks.
#[derive(Debug, Default)]
struct Raw {
    common: Common,
    words: Vec<OsString>,
    help: bool,
    /// Each `--arch`: selector values of `release`; the artifact's arch
    /// (once) for `publish` and `signature`.
    arch: Vec<String>,
    /// `--signature FILE.minisig` of `publish`.
    signature: Option<PathBuf>,
    release: bool,
    note: Option<String>,
    bin: Option<String>,
    /// Each `--node`: selector values of a release; the filter (once) for
    /// `progress`.
    node: Vec<String>,
    limit: Option<u32>,
    waves: Option<String>,
    success_threshold: Option<String>,
    max_failures: Option<String>,
    select: Vec<String>,
    exclude_node: Vec<String>,
    os: Vec<String>,
    require_approval: bool,
    /// Each `--window`: a maintenance window of a release.
    window: Vec<String>,
}

impl Raw {
    /// The first option given that only makes sense for a new release.
    fn release_option(&self) -> Option<&'static str> {
        [
            ("note", self.note.is_some()),
            ("waves", self.waves.is_some()),
            ("success-threshold", self.success_threshold.is_some()),
            ("max-failures", self.max_failures.is_some()),
            ("select", !self.select.is_empty()),
            ("node", !self.node.is_empty()),
            ("exclude-node", !self.exclude_node.is_empty()),
            ("os", !self.os.is_empty()),
            ("require-approval", self.require_approval),
            ("window", !self.window.is_empty()),
        ]
        .into_iter()
        .find_map(|(option, given)| given.then_some(option))
    }
}

fn parse(spec: &'static Spec, args: Vec<OsString>) -> Result<Parsed, ClientError> {
    let mut raw = scan(spec, args)?;
    let common = std::mem::take(&mut raw.common);
    Ok(Parsed {
        command: build(spec.name, raw)?,
        common,
    })
}

/// Collects options (anywhere on the line) and positional words; an option
/// the command does not take is a usage error.
fn scan(spec: &Spec, args: Vec<OsString>) -> Result<Raw, ClientError> {
    let mut raw = Raw::default();
    let mut parser = lexopt::Parser::from_args(args);
    let takes = |option: &str| spec.options.contains(&option);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("server") => raw.common.server = Some(parser.value()?.string()?),
            Long("token-file") => raw.common.token_file = Some(parser.value()?.into()),
            Long("ca-file") => raw.common.ca_file = Some(parser.value()?.into()),
            Long("json") => raw.common.json = true,
            Short('h') | Long("help") => raw.help = true,
            Long("arch") if takes("arch") => raw.arch.push(parser.value()?.string()?),
            Long("signature") if takes("signature") => {
                raw.signature = Some(parser.value()?.into());
            }
            Long("release") if takes("release") => raw.release = true,
            Long("note") if takes("note") => raw.note = Some(parser.value()?.string()?),
            Long("bin") if takes("bin") => raw.bin = Some(parser.value()?.string()?),
            Long("node") if takes("node") => raw.node.push(parser.value()?.string()?),
            Long("limit") if takes("limit") => raw.limit = Some(parser.value()?.parse()?),
            Long("waves") if takes("waves") => raw.waves = Some(parser.value()?.string()?),
            Long("success-threshold") if takes("success-threshold") => {
                raw.success_threshold = Some(parser.value()?.string()?);
            }
            Long("max-failures") if takes("max-failures") => {
                raw.max_failures = Some(parser.value()?.string()?);
            }
            Long("select") if takes("select") => raw.select.push(parser.value()?.string()?),
            Long("exclude-node") if takes("exclude-node") => {
                raw.exclude_node.push(parser.value()?.string()?);
            }
            Long("os") if takes("os") => raw.os.push(parser.value()?.string()?),
            Long("require-approval") if takes("require-approval") => raw.require_approval = true,
            Long("window") if takes("window") => raw.window.push(parser.value()?.string()?),
            Value(word) => raw.words.push(word),
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(raw)
}

/// Turns the words and options of `command` into a checked [`Command`].
fn build(command: &'static str, mut raw: Raw) -> Result<Command, ClientError> {
    if raw.help {
        return Ok(Command::Help);
    }
    let words = &mut std::mem::take(&mut raw.words).into_iter();
    let built = match command {
        "publish" => {
            let bin = name(words, "BIN", check_bin_name)?;
            let version = name(words, "VERSION", check_version)?;
            let file = word(words, "FILE")?.into();
            let arch = checked(
                "arch",
                once("arch", std::mem::take(&mut raw.arch))?,
                check_arch,
            )?;
            let signature = raw.signature.take();
            let release = match (raw.release, raw.release_option()) {
                (true, _) => Some(new_release(bin.clone(), version.clone(), raw)?),
                (false, Some(option)) => {
                    return Err(usage(&format!("--{option} goes with --release")))
                }
                (false, None) => None,
            };
            Command::Publish(Publish {
                bin,
                version,
                file,
                arch,
                signature,
                release,
            })
        }
        "signature" => Command::Signature(Signature {
            bin: name(words, "BIN", check_bin_name)?,
            version: name(words, "VERSION", check_version)?,
            file: word(words, "FILE")?.into(),
            arch: checked("arch", once("arch", raw.arch)?, check_arch)?,
        }),
        "release" => {
            let bin = name(words, "BIN", check_bin_name)?;
            let version = name(words, "VERSION", check_version)?;
            Command::Release(new_release(bin, version, raw)?)
        }
        "releases" => Command::Releases {
            bin: checked("bin", raw.bin, check_bin_name)?,
        },
        "nodes" => Command::Nodes,
        "node" => {
            let first = word(words, "NODE")?
                .into_string()
                .map_err(|w| usage(&format!("NODE {} is not UTF-8", quoted(&w))))?;
            if first == "revoke" {
                Command::NodeRevoke {
                    node: name(words, "NODE", check_node_id)?,
                }
            } else {
                check_node_id(&first)?;
                Command::Node { node: first }
            }
        }
        "progress" => Command::Progress {
            bin: name(words, "BIN", check_bin_name)?,
            node: checked("node", once("node", raw.node)?, check_node_id)?,
            limit: raw.limit,
        },
        op if OPERATIONS.contains(&op) => Command::Operate {
            op,
            id: release_id(words)?,
        },
        "rollback" => Command::Rollback {
            id: release_id(words)?,
            waves: match &raw.waves {
                Some(text) => parse_waves(text)?,
                None => Vec::new(),
            },
        },
        "pin" => Command::Pin {
            node: name(words, "NODE", check_node_id)?,
            bin: name(words, "BIN", check_bin_name)?,
            version: name(words, "VERSION", check_version)?,
        },
        "unpin" => Command::Unpin {
            node: name(words, "NODE", check_node_id)?,
            bin: name(words, "BIN", check_bin_name)?,
        },
        "token" => token_command(words)?,
        "audit" => Command::Audit {
            limit: audit_limit(raw.limit)?,
        },
        _ => return Err(usage(&format!("unknown command {command:?}"))),
    };
    match words.next() {
        Some(extra) => Err(usage(&format!("unexpected argument {}", quoted(&extra)))),
        None => Ok(built),
    }
}

/// A word from the command line, quoted and cleaned for a message.
fn quoted(word: &OsStr) -> String {
    format!("\"{}\"", table::clean(&word.to_string_lossy()))
}

fn usage(message: &str) -> ClientError {
    ClientError::Usage(message.to_owned())
}

/// The next positional word, named `what` in the error when it is missing.
fn word(words: &mut impl Iterator<Item = OsString>, what: &str) -> Result<OsString, ClientError> {
    words
        .next()
        .ok_or_else(|| usage(&format!("missing {what}")))
}

type Check = fn(&str) -> Result<(), NameError>;

/// The next positional word as a name that passes `check`.
fn name(
    words: &mut impl Iterator<Item = OsString>,
    what: &str,
    check: Check,
) -> Result<String, ClientError> {
    let value = word(words, what)?
        .into_string()
        .map_err(|w| usage(&format!("{what} {} is not UTF-8", quoted(&w))))?;
    check(&value)?;
    Ok(value)
}

/// The value of an option that may be given once, if it was.
fn once(option: &str, mut values: Vec<String>) -> Result<Option<String>, ClientError> {
    if values.len() > 1 {
        return Err(usage(&format!("--{option} may be given only once")));
    }
    Ok(values.pop())
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
fn checked_all(
    option: &str,
    values: Vec<String>,
    check: Check,
) -> Result<Vec<String>, ClientError> {
    for v in &values {
        check(v).map_err(|e| usage(&format!("--{option}: {e}")))?;
    }
    Ok(values)
}

/// OS names (`linux`) follow the arch rule, as the server checks them.
fn check_os(os: &str) -> Result<(), NameError> {
    check_arch(os).map_err(|e| NameError { field: "os", ..e })
}

/// Token names: `[A-Za-z0-9._-]{1,64}`, not `.` or `..` (a path segment
/// cannot carry those to `DELETE /api/v1/tokens/NAME`).
fn check_token_name(token: &str) -> Result<(), NameError> {
    check_bin_name(token).map_err(|e| NameError {
        field: "token name",
        ..e
    })
}

/// `create NAME ROLE`, `list` or `revoke NAME`: the words after `token`.
fn token_command(words: &mut impl Iterator<Item = OsString>) -> Result<Command, ClientError> {
    let action = word(words, "create, list or revoke")?;
    Ok(match action.to_str() {
        Some("create") => Command::TokenCreate(NewToken {
            name: name(words, "NAME", check_token_name)?,
            role: role(words)?,
        }),
        Some("list") => Command::TokenList,
        Some("revoke") => Command::TokenRevoke {
            name: name(words, "NAME", check_token_name)?,
        },
        _ => {
            return Err(usage(&format!(
                "unknown token command {}: use create, list or revoke",
                quoted(&action)
            )))
        }
    })
}

/// The ROLE word: one of [`ROLES`].
fn role(words: &mut impl Iterator<Item = OsString>) -> Result<Role, ClientError> {
    let word = word(words, "ROLE")?;
    ROLES
        .iter()
        .copied()
        .find(|r| word.to_str() == Some(r.as_str()))
        .ok_or_else(|| {
            let names: Vec<&str> = ROLES.iter().map(|r| r.as_str()).collect();
            usage(&format!(
                "ROLE {} must be one of {}",
                quoted(&word),
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

/// A release id: the ID word, a positive integer.
fn release_id(words: &mut impl Iterator<Item = OsString>) -> Result<u64, ClientError> {
    let id = word(words, "ID")?;
    id.to_str()
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            usage(&format!(
                "ID {} must be a release id: a positive integer",
                quoted(&id)
            ))
        })
}

/// The release of `bin` `version` that the plan options describe.
fn new_release(bin: String, version: String, raw: Raw) -> Result<NewRelease, ClientError> {
    let cpu_arch = checked_all("arch", raw.arch, check_arch)?
        .iter()
        // Nodes report their arch in this spelling; a selector must match it.
        .map(|a| normalize_arch(a).to_owned())
        .collect();
    Ok(NewRelease {
        bin_name: bin,
        version,
        note: raw.note,
        selector: Selector {
            node_ids: checked_all("node", raw.node, check_node_id)?,
            exclude_node_ids: checked_all("exclude-node", raw.exclude_node, check_node_id)?,
            cpu_arch,
            os: checked_all("os", raw.os, check_os)?,
            labels: parse_labels(&raw.select)?,
        },
        waves: match &raw.waves {
            Some(text) => parse_waves(text)?,
            None => Vec::new(),
        },
        success_threshold: raw
            .success_threshold
            .map(|t| threshold("success-threshold", &t, false))
            .transpose()?,
        max_failures: raw
            .max_failures
            .map(|t| threshold("max-failures", &t, true))
            .transpose()?,
        require_approval: raw.require_approval,
        windows: check_windows(raw.window)?,
    })
}

/// `--window "Mon-Fri 01:00-05:00 +08:00"`, checked here as the server does.
fn check_windows(windows: Vec<String>) -> Result<Vec<String>, ClientError> {
    Windows::parse(&windows).map_err(|(_, e)| usage(&format!("--window {e}")))?;
    Ok(windows)
}

/// `--waves 1%:10m,10%:30m,100%`: percents from 1 to 100, each above the one
/// before, the last 100; a wait (humantime: `90s`, `1h 30m`) after any of them.
fn parse_waves(text: &str) -> Result<Vec<Wave>, ClientError> {
    let bad = |why: &str| usage(&format!("--waves {text:?}: {why}"));
    let mut waves = Vec::new();
    let mut last = 0;
    for part in text.split(',').map(str::trim) {
        let (percent, wait) = match part.split_once(':') {
            Some((p, w)) => (p.trim(), Some(w.trim())),
            None => (part, None),
        };
        let digits = percent.strip_suffix('%').unwrap_or(percent).trim();
        let percent: u32 = digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())
            .flatten()
            .ok_or_else(|| bad(&format!("{part:?} is not PERCENT%[:WAIT]")))?;
        if !(1..=100).contains(&percent) {
            return Err(bad(&format!("{percent}% is not 1% to 100%")));
        }
        if percent <= last {
            return Err(bad(&format!(
                "{percent}% does not go above the wave before ({last}%)"
            )));
        }
        if let Some(w) = wait {
            humantime::parse_duration(w)
                .map_err(|e| bad(&format!("wait {w:?} after {percent}%: {e}")))?;
        }
        waves.push(Wave {
            percent,
            wait: wait.map(str::to_owned),
        });
        last = percent;
    }
    if last != 100 {
        return Err(bad("the last wave must be 100%"));
    }
    Ok(waves)
}

/// `--success-threshold 95%`, `--max-failures 5%` or (`count`) `3`: a share
/// from 0% to 100% (decimals allowed), or a number of nodes.
fn threshold(option: &str, text: &str, count: bool) -> Result<String, ClientError> {
    let t = text.trim();
    let share = t
        .strip_suffix('%')
        .and_then(|p| p.trim().parse::<f64>().ok())
        .is_some_and(|p| (0.0..=100.0).contains(&p));
    let number = count && !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if share || number && t.parse::<u64>().is_ok() {
        return Ok(t.to_owned());
    }
    let wanted = if count {
        "a share like \"5%\" or a number of nodes like \"3\""
    } else {
        "a share from 0% to 100% like \"95%\""
    };
    Err(usage(&format!("--{option} {text:?}: must be {wanted}")))
}

/// `--select KEY=V1,V2`, each into `labels[KEY]`; a key given again adds values.
fn parse_labels(select: &[String]) -> Result<BTreeMap<String, Vec<String>>, ClientError> {
    let mut labels: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for item in select {
        let bad = |why: &str| usage(&format!("--select {item:?}: {why}"));
        let (key, values) = item
            .split_once('=')
            .ok_or_else(|| bad("must be KEY=VALUE[,VALUE...]"))?;
        check_bin_name(key).map_err(|_| {
            bad("the label key must be 1 to 64 of A-Z a-z 0-9 . _ - and not . or ..")
        })?;
        let list = labels.entry(key.to_owned()).or_default();
        for value in values.split(',') {
            if value.is_empty() {
                return Err(bad("empty label value"));
            }
            if value.chars().any(char::is_control) {
                return Err(bad("control character in a label value"));
            }
            if !list.iter().any(|v| v == value) {
                list.push(value.to_owned());
            }
        }
    }
    Ok(labels)
}

// ---------------------------------------------------------------------------
// Configuration

/// Where the server is, how to prove we are its admin, and which
/// certificates to trust (`None`: the built-in web roots).
struct Settings {
    server: String,
    token: String,
    roots: Option<Vec<Certificate<'static>>>,
}

/// Resolves the server URL and the token from the options, else from the
/// environment (`env` stands for `std::env::var_os`, so tests can fake it).
fn settings(
    common: &Common,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Settings, ClientError> {
    let ca_file = match (&common.ca_file, env(CA_ENV).filter(|v| !v.is_empty())) {
        (Some(path), _) => Some(path.clone()),
        (None, from_env) => from_env.map(PathBuf::from),
    };
    Ok(Settings {
        server: server_url(common.server.as_deref(), env)?,
        token: admin_token(common.token_file.as_deref(), env)?,
        roots: ca_file.as_deref().map(ca_certificates).transpose()?,
    })
}

/// The certificates of a PEM CA file (others items in it are skipped).
fn ca_certificates(path: &Path) -> Result<Vec<Certificate<'static>>, ClientError> {
    let config = |why: String| ClientError::Config(format!("CA file {}: {why}", shown(path)));
    let pem = fs::read(path).map_err(|e| config(format!("cannot read it: {e}")))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(config(format!("not valid PEM: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(config("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn server_url(
    option: Option<&str>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<String, ClientError> {
    let from_env = env(SERVER_ENV).filter(|v| !v.is_empty());
    let url = match (option, from_env) {
        (Some(url), _) => url.to_owned(),
        (None, Some(url)) => url
            .into_string()
            .map_err(|_| ClientError::Config(format!("{SERVER_ENV} is not UTF-8")))?,
        (None, None) => DEFAULT_SERVER.to_owned(),
    };
    let url = url.trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() => Ok(url.to_owned()),
        _ => Err(ClientError::Config(format!(
            "server URL {:?} must look like http://HOST:PORT or https://HOST:PORT",
            table::clean(url)
        ))),
    }
}

/// The admin token: the trimmed content of `--token-file`, else of
/// `MANAGER_ADMIN_TOKEN`. Errors name where it came from, never what it is.
fn admin_token(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<String, ClientError> {
    let config = ClientError::Config;
    let (token, source) = match (file, env(TOKEN_ENV)) {
        (Some(path), _) => (
            fs::read_to_string(path)
                .map_err(|e| config(format!("cannot read token file {}: {e}", shown(path))))?,
            format!("token file {}", shown(path)),
        ),
        (None, Some(value)) => (
            value
                .into_string()
                .map_err(|_| config(format!("{TOKEN_ENV} is not UTF-8")))?,
            TOKEN_ENV.to_owned(),
        ),
        (None, None) => {
            return Err(config(format!(
                "no admin token: pass --token-file FILE or set {TOKEN_ENV}"
            )))
        }
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(config(format!("the admin token in {source} is empty")));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(config(format!(
            "the admin token in {source} has characters that cannot go in an HTTP header"
        )));
    }
    Ok(token.to_owned())
}

/// A path for a one-line message.
fn shown(path: &Path) -> String {
    table::clean(&path.to_string_lossy()).into_owned()
}

// ---------------------------------------------------------------------------
// HTTP

/// Sends admin requests to one server.
struct Client {
    agent: Agent,
    server: String,
    authorization: String,
}

/// A successful answer: its status (an upload tells 201 from 200) and body.
struct Answer {
    status: u16,
    body: Json,
}

impl Answer {
    fn parse<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        T::deserialize(&self.body)
            .map_err(|e| ClientError::Failed(format!("unexpected answer from the server: {e}")))
    }
}

impl Client {
    fn new(settings: Settings) -> Self {
        let config = Agent::config_builder()
            // Error statuses are answers too: their {"error"} text is the message.
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(IO_TIMEOUT))
            .timeout_per_write(Some(IO_TIMEOUT))
            .user_agent(concat!("manager-lite/", env!("CARGO_PKG_VERSION")))
            .tls_config(
                TlsConfig::builder()
                    .root_certs(settings.roots.map_or(RootCerts::WebPki, RootCerts::from))
                    .build(),
            )
            .build();
        Self {
            agent: Agent::new_with_config(config),
            server: settings.server,
            authorization: format!("Bearer {}", settings.token),
        }
    }

    /// `path` under the server URL, and a request to it with the token and
    /// the (percent-encoded) query.
    fn start<B>(
        &self,
        method: fn(&Agent, String) -> RequestBuilder<B>,
        path: &str,
        query: &[(&str, &str)],
    ) -> (String, RequestBuilder<B>) {
        let url = format!("{}{path}", self.server);
        let request = method(&self.agent, url.clone())
            .header("Authorization", &self.authorization)
            .query_pairs(query.iter().copied());
        (url, request)
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Answer, ClientError> {
        let (url, request) = self.start(Agent::get, path, query);
        read_answer("GET", &url, request.call())
    }

    fn post_json(&self, path: &str, body: &impl Serialize) -> Result<Answer, ClientError> {
        self.send_json("POST", Agent::post, path, body)
    }

    fn put_json(&self, path: &str, body: &impl Serialize) -> Result<Answer, ClientError> {
        self.send_json("PUT", Agent::put, path, body)
    }

    fn send_json(
        &self,
        verb: &str,
        method: fn(&Agent, String) -> RequestBuilder<WithBody>,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Answer, ClientError> {
        let json = serde_json::to_string(body)
            .map_err(|e| ClientError::Failed(format!("cannot encode the request: {e}")))?;
        let (url, request) = self.start(method, path, &[]);
        let sent = request.content_type("application/json").send(json);
        read_answer(verb, &url, sent)
    }

    /// A POST without a body (`Content-Length: 0`).
    fn post_empty(&self, path: &str) -> Result<Answer, ClientError> {
        let (url, request) = self.start(Agent::post, path, &[]);
        read_answer("POST", &url, request.send_empty())
    }

    fn delete(&self, path: &str) -> Result<Answer, ClientError> {
        let (url, request) = self.start(Agent::delete, path, &[]);
        read_answer("DELETE", &url, request.call())
    }

    fn put_text(
        &self,
        path: &str,
        query: &[(&str, &str)],
        text: &str,
    ) -> Result<Answer, ClientError> {
        let (url, request) = self.start(Agent::put, path, query);
        let sent = request.content_type("text/plain; charset=utf-8").send(text);
        read_answer("PUT", &url, sent)
    }

    /// Streams `file` (`size` bytes) as the body.
    fn upload(
        &self,
        path: &str,
        query: &[(&str, &str)],
        file: File,
        size: u64,
    ) -> Result<Answer, ClientError> {
        let (url, request) = self.start(Agent::post, path, query);
        let sent = request
            .content_type("application/octet-stream")
            .header("Content-Length", size)
            // No `Expect: 100-continue`: some servers send a 100 answer with
            // headers, which ureq takes for a final answer.
            .send(file);
        read_answer("POST", &url, sent)
    }
}

/// Turns what came back into an [`Answer`], or the error to report.
fn read_answer(
    method: &str,
    url: &str,
    sent: Result<Response<Body>, ureq::Error>,
) -> Result<Answer, ClientError> {
    let mut response =
        sent.map_err(|e| ClientError::Failed(format!("{method} {url} failed: {e}")))?;
    let status = response.status();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string();
    if !status.is_success() {
        return Err(ClientError::Refused {
            status: status.as_u16(),
            error: error_text(&text.unwrap_or_default(), status.canonical_reason()),
        });
    }
    let text = text.map_err(|e| {
        ClientError::Failed(format!("reading the answer to {method} {url} failed: {e}"))
    })?;
    // A success without a body (a DELETE, say) is fine: it reads as null.
    let body = if text.trim().is_empty() {
        Json::Null
    } else {
        serde_json::from_str(&text).map_err(|e| {
            ClientError::Failed(format!("the answer to {method} {url} is not JSON: {e}"))
        })?
    };
    Ok(Answer {
        status: status.as_u16(),
        body,
    })
}

/// The `{"error"}` text of an error answer; else its first line (a proxy's
/// HTML page, say); else the status' reason phrase.
fn error_text(body: &str, reason: Option<&str>) -> String {
    if let Ok(ErrorBody { error }) = serde_json::from_str(body) {
        return table::clean(&error).into_owned();
    }
    let first = body.lines().map(str::trim).find(|l| !l.is_empty());
    let text: String = first.or(reason).unwrap_or("").chars().take(200).collect();
    table::clean(&text).into_owned()
}

// ---------------------------------------------------------------------------
// Commands

fn publish(client: &Client, json: bool, p: &Publish) -> Result<(), ClientError> {
    // Both files are read before anything is sent: a bad signature file
    // uploads nothing.
    let signature = p.signature.as_deref().map(read_signature).transpose()?;
    let (file, size) = open_artifact(&p.file)?;
    let mut query = vec![("version", p.version.as_str())];
    if let Some(arch) = &p.arch {
        query.push(("arch", arch));
    }
    let path = format!("{API_PREFIX}/bins/{}/versions", p.bin);
    let uploaded = client.upload(&path, &query, file, size)?;
    let already = uploaded.status == 200;
    // With a signature, show the version as it is once signed.
    let answer = match &signature {
        Some(text) => put_signature(client, &p.bin, &p.version, p.arch.as_deref(), text)?,
        None => uploaded,
    };
    show(json, &answer, |v: Version| {
        let mut text = versions_table(std::slice::from_ref(&v));
        if already {
            text.push_str("(already uploaded with the same bytes)\n");
        }
        if signature.is_some() {
            text.push_str(&signed_line(&v));
        }
        text
    })?;
    let Some(new) = &p.release else {
        return Ok(());
    };
    if !json {
        emit("\n")?;
    }
    release(client, json, new)
}

/// Stores (or replaces) the signature of an uploaded artifact.
fn signature(client: &Client, json: bool, s: &Signature) -> Result<(), ClientError> {
    let text = read_signature(&s.file)?;
    let answer = put_signature(client, &s.bin, &s.version, s.arch.as_deref(), &text)?;
    show(json, &answer, |v: Version| {
        let mut out = versions_table(std::slice::from_ref(&v));
        out.push_str(&signed_line(&v));
        out
    })
}

/// `PUT /api/v1/bins/{bin}/versions/{version}/signature[?arch=A]`.
fn put_signature(
    client: &Client,
    bin: &str,
    version: &str,
    arch: Option<&str>,
    text: &str,
) -> Result<Answer, ClientError> {
    let query: Vec<_> = arch.map(|a| ("arch", a)).into_iter().collect();
    let path = format!("{API_PREFIX}/bins/{bin}/versions/{version}/signature");
    client.put_text(&path, &query, text)
}

/// The text of a `.minisig` file, checked as the server will check it.
fn read_signature(path: &Path) -> Result<String, ClientError> {
    let config = |why: String| ClientError::Config(format!("{}: {why}", shown(path)));
    let file = File::open(path).map_err(|e| config(format!("cannot read it: {e}")))?;
    let mut bytes = Vec::new();
    // One byte over the limit is enough to refuse it.
    file.take(crate::signature::MAX_SIGNATURE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| config(format!("cannot read it: {e}")))?;
    let text = crate::signature::check(&bytes)
        .map_err(|why| config(format!("not a minisign signature: {why}")))?;
    Ok(text.to_owned())
}

/// What the CLI says about a signed version: its trusted comment.
fn signed_line(v: &Version) -> String {
    match v.signature.as_deref().and_then(|s| s.lines().nth(2)) {
        Some(trusted) => format!("signature stored ({})\n", table::clean(trusted)),
        None => "no signature stored\n".to_owned(),
    }
}

/// The file to upload and its size, which becomes the Content-Length.
fn open_artifact(path: &Path) -> Result<(File, u64), ClientError> {
    let unreadable =
        |e: io::Error| ClientError::Config(format!("cannot read {}: {e}", shown(path)));
    let file = File::open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(ClientError::Config(format!(
            "{} is not a regular file",
            shown(path)
        )));
    }
    Ok((file, meta.len()))
}

fn release(client: &Client, json: bool, new: &NewRelease) -> Result<(), ClientError> {
    let answer = client.post_json(&format!("{API_PREFIX}/releases"), new)?;
    show(json, &answer, |r: Release| release_block(&r))
}

/// `approve`, `pause`, ... : the release as it is afterwards.
fn operate(client: &Client, json: bool, op: &str, id: u64) -> Result<(), ClientError> {
    let answer = client.post_empty(&format!("{API_PREFIX}/releases/{id}/{op}"))?;
    show(json, &answer, |r: Release| release_block(&r))
}

/// Rolls release `id` back: the answer is the new release of its baseline.
fn rollback(client: &Client, json: bool, id: u64, waves: Vec<Wave>) -> Result<(), ClientError> {
    #[derive(Serialize)]
    struct Plan {
        waves: Vec<Wave>,
    }
    let path = format!("{API_PREFIX}/releases/{id}/rollback");
    let answer = if waves.is_empty() {
        client.post_empty(&path)?
    } else {
        client.post_json(&path, &Plan { waves })?
    };
    show(json, &answer, |r: Release| {
        format!(
            "release {id} rolled back; new release:\n{}",
            release_block(&r)
        )
    })
}

fn pin(
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

fn unpin(client: &Client, json: bool, node: &str, bin: &str) -> Result<(), ClientError> {
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

/// Forgets a node's secret: the node must enroll again.
fn node_revoke(client: &Client, json: bool, node: &str) -> Result<(), ClientError> {
    let answer = client.delete(&format!("{API_PREFIX}/nodes/{node}/secret"))?;
    if json {
        emit(&pretty(&answer.body))
    } else {
        emit(&format!(
            "revoked the secret of {node}: it must enroll again\n"
        ))
    }
}

/// Creates a named token and prints its secret, the one time it is shown.
fn token_create(client: &Client, json: bool, new: &NewToken) -> Result<(), ClientError> {
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

fn token_list(client: &Client, json: bool) -> Result<(), ClientError> {
    let answer = client.get(&format!("{API_PREFIX}/tokens"), &[])?;
    show(json, &answer, |t: Vec<TokenInfo>| tokens_table(&t))
}

fn token_revoke(client: &Client, json: bool, name: &str) -> Result<(), ClientError> {
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
fn audit(client: &Client, json: bool, limit: Option<u32>) -> Result<(), ClientError> {
    let limit = limit.map(|n| n.to_string());
    let query: Vec<_> = limit.as_deref().map(|n| ("limit", n)).into_iter().collect();
    let answer = client.get(&format!("{API_PREFIX}/audit"), &query)?;
    show(json, &answer, |r: Vec<AuditRecord>| audit_table(&r))
}

/// `value`, or `fallback` when the server left it out.
fn or<'a>(value: &'a str, fallback: &'a str) -> &'a str {
    if value.is_empty() {
        fallback
    } else {
        value
    }
}

fn releases(client: &Client, json: bool, bin: Option<&str>) -> Result<(), ClientError> {
    let query: Vec<_> = bin.map(|b| ("bin_name", b)).into_iter().collect();
    let answer = client.get(&format!("{API_PREFIX}/releases"), &query)?;
    show(json, &answer, |r: Vec<Release>| releases_table(&r))
}

fn nodes(client: &Client, json: bool) -> Result<(), ClientError> {
    let answer = client.get(&format!("{API_PREFIX}/nodes"), &[])?;
    show(json, &answer, |n: Vec<Node>| nodes_table(&n))
}

/// One node, and for each of its bins the target and why.
fn node_details(client: &Client, json: bool, node: &str) -> Result<(), ClientError> {
    let answer = client.get(&format!("{API_PREFIX}/nodes/{node}"), &[])?;
    show(json, &answer, |v: NodeView| node_view(&v))
}

fn progress(
    client: &Client,
    json: bool,
    bin: &str,
    node: Option<&str>,
    limit: Option<u32>,
) -> Result<(), ClientError> {
    let limit = limit.map(|n| n.to_string());
    let query: Vec<_> = [("node_id", node), ("limit", limit.as_deref())]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value?)))
        .collect();
    let answer = client.get(&format!("{API_PREFIX}/bins/{bin}/progress"), &query)?;
    show(json, &answer, |r: Vec<ProgressRecord>| progress_table(&r))
}

// ---------------------------------------------------------------------------
// Output

/// Prints the answer: as pretty JSON with `--json`, else as `render` makes it
/// of the answer read as a `T`.
fn show<T: DeserializeOwned>(
    json: bool,
    answer: &Answer,
    render: impl FnOnce(T) -> String,
) -> Result<(), ClientError> {
    let text = if json {
        pretty(&answer.body)
    } else {
        render(answer.parse()?)
    };
    emit(&text)
}

/// JSON as `--json` prints it: indented, ending in a newline.
fn pretty(body: &Json) -> String {
    let mut text = serde_json::to_string_pretty(body).unwrap_or_else(|_| body.to_string());
    text.push('\n');
    text
}

/// Writes to stdout. A closed pipe (`| head`) is not an error.
fn emit(text: &str) -> Result<(), ClientError> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(ClientError::Failed(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

fn versions_table(versions: &[Version]) -> String {
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            vec![
                v.bin_name.clone(),
                v.version.clone(),
                v.arch.clone().unwrap_or_else(|| "any".to_owned()),
                v.sha256sum.clone(),
                v.size.to_string(),
                v.created_at.clone(),
            ]
        })
        .collect();
    table::render(
        &["BIN", "VERSION", "ARCH", "SHA256", "SIZE", "CREATED"],
        &rows,
    )
}

fn releases_table(releases: &[Release]) -> String {
    let rows: Vec<Vec<String>> = releases
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.bin_name.clone(),
                r.version.clone(),
                r.status.as_str().to_owned(),
                wave(r),
                format!("{}%", r.percent),
                r.counts.targeted.to_string(),
                r.counts.success.to_string(),
                r.counts.failed.to_string(),
                r.counts.rolled_back.to_string(),
                r.created_at.clone(),
                r.created_by.clone(),
                note(r),
            ]
        })
        .collect();
    let header = [
        "ID", "BIN", "VERSION", "STATUS", "WAVE", "PERCENT", "TARGETED", "OK", "FAIL", "RB",
        "CREATED", "BY", "NOTE",
    ];
    table::render(&header, &rows)
}

/// The current wave, counted from 1, of how many: `2/3`. A release awaiting
/// approval is in none yet: `0/3`.
fn wave(r: &Release) -> String {
    let waves = r.waves.len().max(1);
    let current = if r.status == ReleaseStatus::PendingApproval {
        0
    } else {
        (r.wave + 1).min(waves)
    };
    format!("{current}/{waves}")
}

/// The note; for a paused release, why it paused first.
fn note(r: &Release) -> String {
    let note = r.note.as_deref().unwrap_or_default();
    match (r.status, r.paused_reason.as_deref()) {
        (ReleaseStatus::Paused, Some(reason)) if note.is_empty() => format!("paused: {reason}"),
        (ReleaseStatus::Paused, Some(reason)) => format!("paused: {reason}; {note}"),
        _ => note.to_owned(),
    }
}

/// History events a release's block shows, the latest.
const HISTORY_SHOWN: usize = 5;

/// One release as a key/value block, with its latest history events.
fn release_block(r: &Release) -> String {
    let plan = if r.waves.is_empty() {
        "100%".to_owned()
    } else {
        r.waves
            .iter()
            .map(|w| match &w.wait {
                Some(wait) => format!("{}%:{wait}", w.percent),
                None => format!("{}%", w.percent),
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let c = &r.counts;
    let mut fields = vec![
        ("release", r.id.to_string()),
        ("bin", format!("{} {}", r.bin_name, r.version)),
        ("status", r.status.as_str().to_owned()),
    ];
    if let Some(reason) = &r.paused_reason {
        fields.push(("paused", reason.clone()));
    }
    fields.extend([
        (
            "wave",
            format!(
                "{} at {}%{}",
                wave(r),
                r.percent,
                r.wave_started_at
                    .as_deref()
                    .map(|t| format!(" since {t}"))
                    .unwrap_or_default()
            ),
        ),
        ("plan", plan),
        ("selector", selector_summary(&r.selector)),
        (
            "thresholds",
            format!(
                "success {}, max failures {}",
                r.success_threshold.as_deref().unwrap_or("default"),
                r.max_failures.as_deref().unwrap_or("none")
            ),
        ),
        (
            "approval",
            if r.require_approval {
                "required"
            } else {
                "not required"
            }
            .to_owned(),
        ),
        (
            "windows",
            if r.windows.is_empty() {
                "always open".to_owned()
            } else {
                r.windows.join("; ")
            },
        ),
        (
            "counts",
            format!(
                "targeted {}, in progress {}, ok {}, failed {}, rolled back {}",
                c.targeted, c.in_progress, c.success, c.failed, c.rolled_back
            ),
        ),
        ("baseline", r.baseline_version.clone().unwrap_or_default()),
        ("note", r.note.clone().unwrap_or_default()),
        ("created", format!("{} by {}", r.created_at, r.created_by)),
        ("updated", r.updated_at.clone()),
    ]);
    let mut out = table::fields(&fields);
    let skip = r.history.len().saturating_sub(HISTORY_SHOWN);
    if skip < r.history.len() {
        let rows: Vec<Vec<String>> = r.history[skip..]
            .iter()
            .map(|e| {
                vec![
                    e.at.clone(),
                    e.actor.clone(),
                    e.action.clone(),
                    e.detail.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let shown = if skip > 0 {
            format!("history (last {} of {}):\n", rows.len(), r.history.len())
        } else {
            "history:\n".to_owned()
        };
        out.push_str(&shown);
        for line in table::render(&["AT", "ACTOR", "ACTION", "DETAIL"], &rows).lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Which nodes a selector names, in a few words: `arch x86_64; env=canary,staging`.
fn selector_summary(s: &Selector) -> String {
    let mut parts = Vec::new();
    for (what, list) in [
        ("nodes", &s.node_ids),
        ("except", &s.exclude_node_ids),
        ("arch", &s.cpu_arch),
        ("os", &s.os),
    ] {
        if !list.is_empty() {
            parts.push(format!("{what} {}", list.join(",")));
        }
    }
    for (key, values) in &s.labels {
        parts.push(format!("{key}={}", values.join(",")));
    }
    if parts.is_empty() {
        "all nodes".to_owned()
    } else {
        parts.join("; ")
    }
}

/// A node, then per bin: its target, what it runs, and why.
fn node_view(v: &NodeView) -> String {
    let n = &v.node;
    let head = table::render(
        &["NODE", "ONLINE", "LAST_SEEN", "ARCH", "OS", "LABELS"],
        &[vec![
            n.node_id.clone(),
            if n.online { "yes" } else { "no" }.to_owned(),
            n.last_seen.clone(),
            n.cpu_arch.clone(),
            n.os.clone(),
            pairs(&n.labels, str::to_owned),
        ]],
    );
    let rows: Vec<Vec<String>> = v
        .bins
        .iter()
        .map(|(bin, view)| {
            vec![
                bin.clone(),
                view.target
                    .as_ref()
                    .map(|t| format!("{}@{}", t.version, short(&t.sha256sum)))
                    .unwrap_or_default(),
                // Not reported (""), or reported without a file on disk.
                match n.bins.get(bin).map(String::as_str) {
                    None => String::new(),
                    Some("") => "missing".to_owned(),
                    Some(sha) => short(sha),
                },
                view.reason.clone(),
            ]
        })
        .collect();
    let bins = table::render(&["BIN", "TARGET", "INSTALLED", "REASON"], &rows);
    format!("{head}\n{bins}")
}

fn nodes_table(nodes: &[Node]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.node_id.clone(),
                if n.online { "yes" } else { "no" }.to_owned(),
                n.last_seen.clone(),
                n.cpu_arch.clone(),
                n.bin_proxy_version.clone(),
                // A bin the node has no file for is reported with "".
                pairs(&n.bins, |sha| {
                    if sha.is_empty() {
                        "-".to_owned()
                    } else {
                        short(sha)
                    }
                }),
                pairs(&n.labels, str::to_owned),
            ]
        })
        .collect();
    let header = [
        "NODE",
        "ONLINE",
        "LAST_SEEN",
        "ARCH",
        "VERSION",
        "BINS",
        "LABELS",
    ];
    table::render(&header, &rows)
}

fn progress_table(records: &[ProgressRecord]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.received_at.clone(),
                r.node_id.clone(),
                r.status.as_str().to_owned(),
                short(&r.target_hash),
                r.from_hash.as_deref().map(short).unwrap_or_default(),
                r.processing_time_ms.to_string(),
                r.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = [
        "ID", "TIME", "NODE", "STATUS", "TARGET", "FROM", "MS", "MESSAGE",
    ];
    table::render(&header, &rows)
}

fn tokens_table(tokens: &[TokenInfo]) -> String {
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.role.as_str().to_owned(),
                t.created_at.clone(),
                t.created_by.clone(),
            ]
        })
        .collect();
    table::render(&["NAME", "ROLE", "CREATED", "BY"], &rows)
}

/// Unauthenticated callers have no actor, and shows as `-`.
fn audit_table(records: &[AuditRecord]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.at.clone(),
                r.actor.clone().unwrap_or_default(),
                r.method.clone(),
                r.path.clone(),
                r.status.to_string(),
                r.remote_addr.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["ID", "TIME", "ACTOR", "METHOD", "PATH", "STATUS", "FROM"];
    table::render(&header, &rows)
}

fn short(sha: &str) -> String {
    sha.chars().take(SHORT_SHA).collect()
}

/// `key=value,key=value`, each value shown through `value`.
fn pairs(map: &BTreeMap<String, String>, value: impl Fn(&str) -> String) -> String {
    let shown: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", value(v)))
        .collect();
    shown.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};
    use std::net::{TcpListener, TcpStream};

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn parse_line(command: &str, words: &[&str]) -> Result<Parsed, ClientError> {
        let spec = spec(command).ok_or_else(|| usage("no such command"))?;
        parse(spec, args(words))
    }

    fn usage_error(command: &str, words: &[&str]) -> String {
        match parse_line(command, words) {
            Err(ClientError::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    /// A file under the temp dir, unique to this test process and `name`.
    fn temp_file(name: &str, content: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("manager-lite-client-{}-{name}", std::process::id()));
        fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn every_command_has_a_spec() {
        for command in COMMANDS {
            assert!(spec(command).is_some(), "{command}");
        }
        assert_eq!(SPECS.len(), COMMANDS.len());
    }

    #[test]
    fn publish_parses_options_anywhere() {
        let parsed = parse_line(
            "publish",
            &[
                "--json",
                "agent",
                "--arch",
                "x86_64",
                "1.2.0",
                "--server",
                "http://h:1/",
                "./a.bin",
                "--release",
                "--note=first",
            ],
        )
        .unwrap();
        assert_eq!(
            parsed.command,
            Command::Publish(Publish {
                bin: "agent".into(),
                version: "1.2.0".into(),
                file: "./a.bin".into(),
                arch: Some("x86_64".into()),
                signature: None,
                release: Some(NewRelease {
                    bin_name: "agent".into(),
                    version: "1.2.0".into(),
                    note: Some("first".into()),
                    ..NewRelease::default()
                }),
            })
        );
        assert_eq!(
            parsed.common,
            Common {
                server: Some("http://h:1/".into()),
                token_file: None,
                ca_file: None,
                json: true,
            }
        );
    }

    #[test]
    fn missing_and_extra_words_are_usage_errors() {
        assert_eq!(usage_error("publish", &["agent", "1.0"]), "missing FILE");
        assert_eq!(usage_error("release", &["agent"]), "missing VERSION");
        assert_eq!(usage_error("progress", &[]), "missing BIN");
        assert!(usage_error("nodes", &["extra"]).contains("unexpected argument"));
        assert!(usage_error("release", &["a", "1", "2"]).contains("\"2\""));
    }

    #[test]
    fn options_of_other_commands_are_refused() {
        assert!(usage_error("nodes", &["--arch", "x"]).contains("--arch"));
        assert!(usage_error("release", &["a", "1", "--release"]).contains("--release"));
        assert!(usage_error("releases", &["--json=yes"]).contains("--json"));
        assert!(usage_error("nodes", &["--server"]).contains("--server"));
    }

    #[test]
    fn names_are_checked_before_sending() {
        assert!(usage_error("publish", &["../x", "1", "f"]).contains("invalid bin name"));
        assert!(usage_error("release", &["a", "1 0"]).contains("invalid version"));
        assert!(usage_error("publish", &["a", "1", "f", "--arch", "x/y"]).contains("arch"));
        assert!(usage_error("progress", &["a", "--node", "n 1"]).contains("node"));
        assert!(usage_error("releases", &["--bin", ".."]).contains("bin name"));
    }

    #[test]
    fn note_without_release_and_bad_limit_are_refused() {
        assert!(usage_error("publish", &["a", "1", "f", "--note", "x"]).contains("--release"));
        assert!(usage_error("progress", &["a", "--limit", "ten"]).contains("ten"));
    }

    #[test]
    fn progress_and_help_parse() {
        let parsed = parse_line("progress", &["agent", "--node", "host:1", "--limit", "5"]);
        assert_eq!(
            parsed.unwrap().command,
            Command::Progress {
                bin: "agent".into(),
                node: Some("host:1".into()),
                limit: Some(5),
            }
        );
        // --help wins over missing words and needs no token.
        assert_eq!(
            parse_line("publish", &["--help"]).unwrap().command,
            Command::Help
        );
    }

    fn release_of(words: &[&str]) -> NewRelease {
        match parse_line("release", words).unwrap().command {
            Command::Release(r) => r,
            other => panic!("expected a release, got {other:?}"),
        }
    }

    fn wave(percent: u32, wait: Option<&str>) -> Wave {
        Wave {
            percent,
            wait: wait.map(str::to_owned),
        }
    }

    #[test]
    fn release_takes_a_whole_plan() {
        let r = release_of(&[
            "agent",
            "1.3.0",
            "--waves",
            "1%:10m, 10%:1h 30m,100%",
            "--success-threshold",
            "99.5%",
            "--max-failures",
            "3",
            "--select",
            "env=canary,staging",
            "--select=region=eu",
            "--select",
            "env=prod,canary",
            "--node",
            "web-1",
            "--node=10.0.0.2:db",
            "--exclude-node",
            "web-9",
            "--arch",
            "amd64",
            "--arch",
            "aarch64",
            "--os",
            "linux",
            "--require-approval",
            "--note",
            "canary first",
            "--window",
            "Mon-Fri 01:00-05:00 +08:00",
            "--window=Sat 00:00-24:00 +00:00",
        ]);
        assert_eq!(
            r,
            NewRelease {
                bin_name: "agent".into(),
                version: "1.3.0".into(),
                note: Some("canary first".into()),
                selector: Selector {
                    node_ids: vec!["web-1".into(), "10.0.0.2:db".into()],
                    exclude_node_ids: vec!["web-9".into()],
                    cpu_arch: vec!["x86_64".into(), "aarch64".into()],
                    os: vec!["linux".into()],
                    labels: [
                        (
                            "env".to_owned(),
                            vec!["canary".into(), "staging".into(), "prod".into()]
                        ),
                        ("region".to_owned(), vec!["eu".into()]),
                    ]
                    .into(),
                },
                waves: vec![
                    wave(1, Some("10m")),
                    wave(10, Some("1h 30m")),
                    wave(100, None)
                ],
                success_threshold: Some("99.5%".into()),
                max_failures: Some("3".into()),
                require_approval: true,
                windows: vec![
                    "Mon-Fri 01:00-05:00 +08:00".into(),
                    "Sat 00:00-24:00 +00:00".into()
                ],
            }
        );
        let body = serde_json::to_value(&r).unwrap();
        assert_eq!(
            body["waves"][0],
            serde_json::json!({"percent": 1, "wait": "10m"})
        );
        assert_eq!(
            body["selector"]["labels"]["region"],
            serde_json::json!(["eu"])
        );
    }

    #[test]
    fn a_bare_release_sends_no_plan() {
        let r = release_of(&["agent", "1.3.0"]);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"bin_name": "agent", "version": "1.3.0", "require_approval": false})
        );
    }

    #[test]
    fn bad_windows_are_usage_errors_naming_the_entry() {
        for (bad, why) in [
            ("Mon 01:00-05:00", "expected DAYS"),
            ("Someday 01:00-05:00 +00:00", "\"Someday\" is not a day"),
            ("Mon 01:00-25:00 +00:00", "\"25:00\" is not a time"),
        ] {
            let err = usage_error("release", &["a", "1", "--window", bad]);
            assert!(err.starts_with("--window "), "{bad}: {err}");
            assert!(
                err.contains(&format!("{bad:?}")) && err.contains(why),
                "{bad}: {err}"
            );
        }
        let err = usage_error(
            "publish",
            &["a", "1", "f", "--window", "* 00:00-24:00 +00:00"],
        );
        assert!(err.contains("--window goes with --release"), "{err}");
    }

    #[test]
    fn waves_parse() {
        assert_eq!(parse_waves("100%").unwrap(), vec![wave(100, None)]);
        assert_eq!(
            parse_waves("5:30s,100").unwrap(),
            vec![wave(5, Some("30s")), wave(100, None)]
        );
        assert_eq!(
            parse_waves("50%:1h,100%:5m").unwrap(),
            vec![wave(50, Some("1h")), wave(100, Some("5m"))]
        );
    }

    #[test]
    fn bad_waves_are_usage_errors_naming_the_option() {
        for (bad, why) in [
            ("", "is not PERCENT%[:WAIT]"),
            ("10%,", "is not PERCENT%[:WAIT]"),
            ("ten%,100%", "is not PERCENT%[:WAIT]"),
            ("-1%,100%", "is not PERCENT%[:WAIT]"),
            ("0%,100%", "0% is not 1% to 100%"),
            ("50%,101%", "101% is not 1% to 100%"),
            ("10%,10%,100%", "does not go above the wave before (10%)"),
            ("50%,20%,100%", "20% does not go above"),
            ("1%,50%", "the last wave must be 100%"),
            ("1%:soon,100%", "wait \"soon\" after 1%"),
            ("1%:,100%", "wait \"\" after 1%"),
        ] {
            let err = usage_error("release", &["a", "1", "--waves", bad]);
            assert!(err.starts_with("--waves "), "{bad}: {err}");
            assert!(err.contains(why), "{bad}: {err}");
        }
        let err = usage_error("rollback", &["7", "--waves", "50%"]);
        assert!(err.contains("--waves"), "{err}");
        let err = usage_error("publish", &["a", "1", "f", "--release", "--waves", "0%"]);
        assert!(err.contains("--waves"), "{err}");
    }

    #[test]
    fn thresholds_are_shares_or_counts() {
        let r = release_of(&[
            "a",
            "1",
            "--success-threshold",
            "95%",
            "--max-failures",
            "5%",
        ]);
        assert_eq!(r.success_threshold.as_deref(), Some("95%"));
        assert_eq!(r.max_failures.as_deref(), Some("5%"));
        for (option, bad) in [
            ("--success-threshold", "95"),
            ("--success-threshold", "101%"),
            ("--success-threshold", "-1%"),
            ("--success-threshold", "NaN%"),
            ("--max-failures", "many"),
            ("--max-failures", "-3"),
            ("--max-failures", "3.5"),
            ("--max-failures", ""),
            ("--max-failures", "150%"),
        ] {
            let err = usage_error("release", &["a", "1", option, bad]);
            assert!(err.starts_with(option), "{option} {bad}: {err}");
        }
    }

    #[test]
    fn bad_selectors_are_usage_errors_naming_the_option() {
        for (option, bad) in [
            ("--select", "env"),
            ("--select", "=prod"),
            ("--select", "env="),
            ("--select", "env=a,,b"),
            ("--select", "e nv=a"),
            ("--select", "env=a\nb"),
            ("--node", "a b"),
            ("--exclude-node", ".."),
            ("--arch", "x/y"),
            ("--os", "linux!"),
        ] {
            let err = usage_error("release", &["a", "1", option, bad]);
            assert!(err.starts_with(option), "{option} {bad}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let err = usage_error("release", &["a", "1", "--os", "a b"]);
        assert!(err.contains("invalid os"), "{err}");
    }

    #[test]
    fn publish_takes_the_plan_only_with_release() {
        let parsed = parse_line(
            "publish",
            &[
                "a",
                "1",
                "f",
                "--arch",
                "arm64",
                "--release",
                "--waves",
                "10%,100%",
                "--os",
                "linux",
            ],
        )
        .unwrap();
        let Command::Publish(p) = parsed.command else {
            panic!("not a publish");
        };
        // --arch is the artifact's arch here, not a selector.
        assert_eq!(p.arch.as_deref(), Some("arm64"));
        let r = p.release.unwrap();
        assert!(r.selector.cpu_arch.is_empty());
        assert_eq!(r.selector.os, ["linux"]);
        assert_eq!(r.waves, [wave(10, None), wave(100, None)]);
        for option in [
            "--waves=100%",
            "--select=a=b",
            "--require-approval",
            "--node=n",
        ] {
            let err = usage_error("publish", &["a", "1", "f", option]);
            assert!(err.ends_with("goes with --release"), "{option}: {err}");
        }
        let err = usage_error("publish", &["a", "1", "f", "--arch", "x", "--arch", "y"]);
        assert!(err.contains("--arch"), "{err}");
    }

    #[test]
    fn operations_take_a_release_id() {
        for op in OPERATIONS {
            assert_eq!(
                parse_line(op, &["42"]).unwrap().command,
                Command::Operate { op, id: 42 }
            );
            assert_eq!(usage_error(op, &[]), "missing ID");
            for bad in ["0", "+1", "x", "1.0", "99999999999999999999", ""] {
                let err = usage_error(op, &[bad]);
                assert!(err.contains("positive integer"), "{op} {bad}: {err}");
            }
            assert!(usage_error(op, &["1", "2"]).contains("unexpected argument \"2\""));
            assert!(usage_error(op, &["1", "--waves", "100%"]).contains("--waves"));
        }
    }

    #[test]
    fn rollback_sends_waves_only_when_given() {
        assert_eq!(
            parse_line("rollback", &["7"]).unwrap().command,
            Command::Rollback {
                id: 7,
                waves: vec![]
            }
        );
        assert_eq!(
            parse_line("rollback", &["--waves", "50%:5m,100%", "7"])
                .unwrap()
                .command,
            Command::Rollback {
                id: 7,
                waves: vec![wave(50, Some("5m")), wave(100, None)]
            }
        );
        assert!(usage_error("rollback", &["seven"]).contains("positive integer"));
    }

    #[test]
    fn pin_unpin_and_node_check_their_names() {
        assert_eq!(
            parse_line("pin", &["10.0.0.1:web", "agent", "1.2.0"])
                .unwrap()
                .command,
            Command::Pin {
                node: "10.0.0.1:web".into(),
                bin: "agent".into(),
                version: "1.2.0".into(),
            }
        );
        assert_eq!(
            parse_line("unpin", &["web-1", "agent"]).unwrap().command,
            Command::Unpin {
                node: "web-1".into(),
                bin: "agent".into(),
            }
        );
        assert_eq!(
            parse_line("node", &["web-1"]).unwrap().command,
            Command::Node {
                node: "web-1".into()
            }
        );
        assert_eq!(usage_error("pin", &["web-1", "agent"]), "missing VERSION");
        assert!(usage_error("pin", &["web 1", "agent", "1"]).contains("node_id"));
        assert!(usage_error("pin", &["web-1", "a/b", "1"]).contains("bin name"));
        assert!(usage_error("unpin", &["web-1", "a", "1"]).contains("unexpected"));
        assert!(usage_error("node", &["../x"]).contains("node_id"));
        assert_eq!(usage_error("node", &[]), "missing NODE");
    }

    #[test]
    fn progress_takes_one_node() {
        let err = usage_error("progress", &["a", "--node", "x", "--node", "y"]);
        assert!(err.contains("--node"), "{err}");
    }

    #[test]
    fn usage_lines_expand_the_plan() {
        let release = spec("release").unwrap().usage;
        assert!(release.contains("--waves P%[:WAIT],..."), "{release}");
        assert!(
            !release.contains('\n') && !release.contains("  "),
            "{release}"
        );
        let publish = spec("publish").unwrap().usage;
        assert!(
            publish.contains("[--require-approval] [--window \"DAYS HH:MM-HH:MM +HH:MM\"]...]"),
            "{publish}"
        );
    }

    #[test]
    fn token_commands_parse() {
        assert_eq!(
            parse_line("token", &["create", "ci-1.x_y", "publisher", "--json"])
                .unwrap()
                .command,
            Command::TokenCreate(NewToken {
                name: "ci-1.x_y".into(),
                role: Role::Publisher,
            })
        );
        for role in ROLES {
            let parsed = parse_line("token", &["create", "t", role.as_str()]).unwrap();
            assert!(
                matches!(parsed.command, Command::TokenCreate(NewToken { role: r, .. }) if r == *role),
                "{role:?}"
            );
        }
        assert_eq!(
            parse_line("token", &["list"]).unwrap().command,
            Command::TokenList
        );
        assert_eq!(
            parse_line("token", &["revoke", "ci"]).unwrap().command,
            Command::TokenRevoke { name: "ci".into() }
        );
        assert_eq!(
            parse_line("token", &["--help"]).unwrap().command,
            Command::Help
        );
        let body = serde_json::to_value(NewToken {
            name: "ci".into(),
            role: Role::Approver,
        })
        .unwrap();
        assert_eq!(body, serde_json::json!({"name": "ci", "role": "approver"}));
    }

    #[test]
    fn a_bad_role_is_a_usage_error_naming_it() {
        for bad in ["root", "Admin", "viewers", ""] {
            let err = parse_line("token", &["create", "ci", bad]).err().unwrap();
            assert_eq!(err.exit_code(), 2, "{bad}");
            let text = err.to_string();
            assert!(text.contains(&format!("ROLE \"{bad}\"")), "{text}");
            assert!(
                text.ends_with("must be one of admin, publisher, approver, viewer"),
                "{text}"
            );
        }
        // And through the whole command, before any token or server is needed.
        let err = run("token", args(&["create", "ci", "superuser"])).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("superuser"), "{err}");
    }

    #[test]
    fn bad_token_command_lines_are_usage_errors() {
        assert_eq!(usage_error("token", &[]), "missing create, list or revoke");
        assert!(
            usage_error("token", &["remove", "ci"]).contains("unknown token command \"remove\"")
        );
        assert_eq!(usage_error("token", &["create"]), "missing NAME");
        assert_eq!(usage_error("token", &["create", "ci"]), "missing ROLE");
        assert_eq!(usage_error("token", &["revoke"]), "missing NAME");
        assert!(usage_error("token", &["list", "all"]).contains("unexpected argument \"all\""));
        assert!(usage_error("token", &["revoke", "a", "b"]).contains("unexpected argument \"b\""));
        assert!(
            usage_error("token", &["create", "a", "viewer", "x"]).contains("unexpected argument")
        );
        assert!(usage_error("token", &["list", "--limit", "3"]).contains("--limit"));
        for bad in ["a/b", "a b", "..", ".", "", &"x".repeat(65), "caf\u{e9}"] {
            let err = usage_error("token", &["create", bad, "viewer"]);
            assert!(err.contains("invalid token name"), "{bad:?}: {err}");
            let err = usage_error("token", &["revoke", bad]);
            assert!(err.contains("invalid token name"), "{bad:?}: {err}");
        }
        assert!(parse_line("token", &["create", &"x".repeat(64), "viewer"]).is_ok());
    }

    #[test]
    fn audit_takes_a_bounded_limit() {
        assert_eq!(
            parse_line("audit", &[]).unwrap().command,
            Command::Audit { limit: None }
        );
        assert_eq!(
            parse_line("audit", &["--limit", "1000"]).unwrap().command,
            Command::Audit { limit: Some(1000) }
        );
        assert_eq!(
            parse_line("audit", &["--limit=1"]).unwrap().command,
            Command::Audit { limit: Some(1) }
        );
        for bad in ["0", "1001"] {
            let err = usage_error("audit", &["--limit", bad]);
            assert!(err.starts_with("--limit "), "{bad}: {err}");
        }
        for bad in ["ten", "-1", "99999999999"] {
            assert!(usage_error("audit", &["--limit", bad]).contains(bad));
        }
        assert!(usage_error("audit", &["5"]).contains("unexpected argument \"5\""));
        assert!(usage_error("audit", &["--bin", "a"]).contains("--bin"));
    }

    #[test]
    fn token_and_audit_tables() {
        let tokens: Vec<TokenInfo> = serde_json::from_value(serde_json::json!([
            {"name": "admin", "role": "admin", "created_at": "t0", "created_by": "admin"},
            {"name": "ci", "role": "publisher", "created_at": "2025-01-01T00:00:00Z", "created_by": "admin"}
        ]))
        .unwrap();
        let out = tokens_table(&tokens);
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines,
            [
                vec!["NAME", "ROLE", "CREATED", "BY"],
                vec!["admin", "admin", "t0", "admin"],
                vec!["ci", "publisher", "2025-01-01T00:00:00Z", "admin"],
            ]
        );
        let records: Vec<AuditRecord> = serde_json::from_value(serde_json::json!([
            {"id": 2, "at": "t2", "actor": null, "method": "POST", "path": "/api/v1/releases",
             "status": 401, "remote_addr": "127.0.0.1"},
            {"id": 1, "at": "t1", "actor": "ci", "method": "DELETE", "path": "/api/v1/tokens/x\ny",
             "status": 404, "remote_addr": null}
        ]))
        .unwrap();
        let out = audit_table(&records);
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0],
            ["ID", "TIME", "ACTOR", "METHOD", "PATH", "STATUS", "FROM"]
        );
        assert_eq!(
            lines[1],
            [
                "2",
                "t2",
                "-",
                "POST",
                "/api/v1/releases",
                "401",
                "127.0.0.1"
            ]
        );
        // A path from the network stays on its line.
        assert_eq!(lines[2].len(), 7, "{out}");
        assert_eq!(lines[2][6], "-");
    }

    #[test]
    fn token_create_posts_name_and_role_and_reads_the_secret() {
        let json = r#"{"name":"ci","role":"publisher","token":"s3cr3t-once","created_at":"t","created_by":"admin"}"#;
        let answer = http_answer("201 Created", json);
        let (url, server) = serve_once(move |r| {
            let mut body = [0; 32];
            r.read_exact(&mut body).unwrap();
            r.get_mut().write_all(answer.as_bytes()).unwrap();
            body
        });
        let new = NewToken {
            name: "ci".into(),
            role: Role::Publisher,
        };
        let answer = client(&url).post_json("/api/v1/tokens", &new).ok().unwrap();
        assert_eq!(answer.status, 201);
        let created: CreatedToken = answer.parse().unwrap();
        assert_eq!(
            (created.token.as_str(), created.info.role),
            ("s3cr3t-once", Role::Publisher)
        );
        let (head, body) = server.join().unwrap();
        assert!(head.starts_with("POST /api/v1/tokens HTTP/1.1"), "{head}");
        assert_eq!(&body, br#"{"name":"ci","role":"publisher"}"#);
    }

    #[test]
    fn server_url_comes_from_option_then_env_then_default() {
        let env = |key: &str| (key == SERVER_ENV).then(|| OsString::from("http://env:2//"));
        assert_eq!(
            server_url(Some("http://opt:1/"), &env).unwrap(),
            "http://opt:1"
        );
        assert_eq!(server_url(None, &env).unwrap(), "http://env:2");
        assert_eq!(server_url(None, &no_env).unwrap(), DEFAULT_SERVER);
        let empty = |_: &str| Some(OsString::new());
        assert_eq!(server_url(None, &empty).unwrap(), DEFAULT_SERVER);
        assert_eq!(
            server_url(Some("https://h:1/"), &no_env).unwrap(),
            "https://h:1"
        );
        for bad in ["ftp://h", "h:1", "http://", "https://", ""] {
            let err = server_url(Some(bad), &no_env).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn token_file_wins_over_env_and_is_trimmed() {
        let file = temp_file("token-precedence", "  from-file\n");
        let env = |key: &str| (key == TOKEN_ENV).then(|| OsString::from(" from-env \n"));
        assert_eq!(admin_token(Some(&file), &env).unwrap(), "from-file");
        assert_eq!(admin_token(None, &env).unwrap(), "from-env");
        fs::remove_file(file).unwrap();
    }

    #[test]
    fn token_problems_are_config_errors_that_hide_the_token() {
        let err = admin_token(None, &no_env).unwrap_err();
        assert!(
            matches!(&err, ClientError::Config(m) if m.contains(TOKEN_ENV)),
            "{err}"
        );

        let empty = temp_file("token-empty", " \n");
        let err = admin_token(Some(&empty), &no_env).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        assert_eq!(err.exit_code(), 2);
        fs::remove_file(empty).unwrap();

        let spaced = temp_file("token-spaced", "sec ret\n");
        let err = admin_token(Some(&spaced), &no_env).unwrap_err();
        assert!(!err.to_string().contains("sec"), "{err}");
        fs::remove_file(spaced).unwrap();

        let missing = Path::new("/nonexistent/manager-lite-token");
        let err = admin_token(Some(missing), &no_env).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/manager-lite-token"),
            "{err}"
        );
    }

    #[test]
    fn settings_come_from_common_options() {
        let file = temp_file("token-settings", "t0k\n");
        let common = Common {
            server: Some("http://127.0.0.1:9/".into()),
            token_file: Some(file.clone()),
            ca_file: None,
            json: false,
        };
        let s = settings(&common, &no_env).unwrap();
        assert_eq!(
            (s.server.as_str(), s.token.as_str()),
            ("http://127.0.0.1:9", "t0k")
        );
        fs::remove_file(file).unwrap();
    }

    #[test]
    fn unreadable_artifact_is_a_config_error_naming_the_path() {
        let err = open_artifact(Path::new("/nonexistent/a.bin")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("/nonexistent/a.bin"), "{err}");
        let err = open_artifact(&std::env::temp_dir()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn error_text_prefers_the_error_field() {
        assert_eq!(
            error_text(r#"{"error":"bad\ntoken"}"#, Some("Unauthorized")),
            "bad\\ntoken"
        );
        assert_eq!(
            error_text("\n<html>oops</html>\n", None),
            "<html>oops</html>"
        );
        assert_eq!(error_text("", Some("Not Found")), "Not Found");
    }

    /// Accepts one connection on 127.0.0.1, reads the request head, lets
    /// `respond` answer it, and hands back the head and what `respond` returned.
    fn serve_once<T: Send + 'static>(
        respond: impl FnOnce(&mut BufReader<TcpStream>) -> T + Send + 'static,
    ) -> (String, std::thread::JoinHandle<(String, T)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut reader = BufReader::new(listener.accept().unwrap().0);
            let mut head = String::new();
            while reader.read_line(&mut head).unwrap() > 2 {}
            let out = respond(&mut reader);
            (head, out)
        });
        (url, handle)
    }

    /// An HTTP/1.1 answer with `body` and a Content-Length.
    fn http_answer(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn client(server: &str) -> Client {
        Client::new(Settings {
            server: server.to_owned(),
            token: "s3cret".to_owned(),
            roots: None,
        })
    }

    #[test]
    fn error_answers_become_refused_with_the_server_text() {
        let answer = http_answer(
            "401 Unauthorized",
            r#"{"error":"missing or wrong admin token"}"#,
        );
        let (url, server) = serve_once(move |r| r.get_mut().write_all(answer.as_bytes()).unwrap());
        let err = client(&url)
            .get("/api/v1/nodes", &[("node_id", "a:b c")])
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "401 missing or wrong admin token");
        assert_eq!(err.exit_code(), 1);
        let (head, ()) = server.join().unwrap();
        assert!(
            head.starts_with("GET /api/v1/nodes?node_id=a%3Ab%20c HTTP/1.1"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer s3cret"),
            "{head}"
        );
    }

    #[test]
    fn success_answers_are_parsed() {
        let answer = http_answer("200 OK", "[]");
        let (url, server) = serve_once(move |r| r.get_mut().write_all(answer.as_bytes()).unwrap());
        let answer = client(&url).get("/api/v1/releases", &[]).ok().unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.parse::<Vec<Release>>().unwrap(), vec![]);
        server.join().unwrap();
    }

    #[test]
    fn an_unreachable_server_is_named() {
        // Bind then drop, so the port is (almost certainly) closed.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let err = client(&url).get("/api/v1/nodes", &[]).err().unwrap();
        assert_eq!(err.exit_code(), 1);
        assert!(
            err.to_string().contains(&format!("{url}/api/v1/nodes")),
            "{err}"
        );
        assert!(!err.to_string().contains("s3cret"));
    }

    #[test]
    fn upload_streams_the_file_with_its_length() {
        let file = temp_file("upload", "0123456789");
        let (url, server) = serve_once(|r| {
            let mut body = [0; 10];
            r.read_exact(&mut body).unwrap();
            let json = r#"{"bin_name":"a","version":"1","arch":null,"sha256sum":"ab","size":10,"created_at":"t"}"#;
            let answer = http_answer("201 Created", json);
            r.get_mut().write_all(answer.as_bytes()).unwrap();
            body
        });
        let (f, size) = open_artifact(&file).unwrap();
        let answer = client(&url)
            .upload("/api/v1/bins/a/versions", &[("version", "1")], f, size)
            .ok()
            .unwrap();
        assert_eq!(answer.status, 201);
        assert_eq!(answer.parse::<Version>().unwrap().size, 10);
        let (head, body) = server.join().unwrap();
        // No "Expect: 100-continue": ureq cannot parse a 100 answer that has
        // headers, and would then never send the body.
        assert!(!head.to_ascii_lowercase().contains("expect:"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("content-length: 10\r\n"),
            "{head}"
        );
        assert_eq!(&body, b"0123456789");
        fs::remove_file(file).unwrap();
    }

    #[test]
    fn tables_shorten_hashes() {
        let node = Node {
            node_id: "web-1".into(),
            online: true,
            bins: [
                ("agent".to_owned(), "a".repeat(64)),
                ("db".to_owned(), String::new()),
            ]
            .into(),
            labels: [("env".to_owned(), "prod".to_owned())].into(),
            ..Node::default()
        };
        let out = nodes_table(&[node]);
        let line = out.lines().nth(1).unwrap();
        assert!(
            line.contains(&format!("agent={},db=-", "a".repeat(12))),
            "{out}"
        );
        assert!(line.starts_with("web-1  yes"), "{out}");
        assert!(line.ends_with("env=prod"), "{out}");
    }

    fn sample_release() -> Release {
        serde_json::from_value(serde_json::json!({
            "id": 7, "bin_name": "agent", "version": "1.3.0", "note": "canary",
            "status": "paused", "percent": 10, "wave": 1,
            "selector": {"cpu_arch": ["x86_64"], "labels": {"env": ["canary", "staging"]}},
            "waves": [{"percent": 1, "wait": "10m"}, {"percent": 10, "wait": "30m"}, {"percent": 100}],
            "success_threshold": "95%", "max_failures": "5%", "require_approval": false,
            "baseline_version": "1.2.0",
            "paused_reason": "6 failures > 5% of 100 reached nodes",
            "wave_started_at": "2025-01-01T10:00:00Z",
            "counts": {"targeted": 100, "in_progress": 3, "success": 91, "failed": 4, "rolled_back": 2},
            "created_at": "2025-01-01T09:00:00Z", "created_by": "admin",
            "updated_at": "2025-01-01T10:05:00Z",
            "history": (1..=7).map(|i| serde_json::json!({
                "at": format!("2025-01-01T10:0{i}:00Z"), "actor": "admin", "action": format!("step{i}")
            })).collect::<Vec<_>>()
        }))
        .unwrap()
    }

    #[test]
    fn releases_table_shows_waves_counts_and_why_paused() {
        let mut r = sample_release();
        let out = releases_table(&[r.clone()]);
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            [
                "ID", "BIN", "VERSION", "STATUS", "WAVE", "PERCENT", "TARGETED", "OK", "FAIL",
                "RB", "CREATED", "BY", "NOTE"
            ]
        );
        let row = lines.next().unwrap();
        assert!(
            row.split_whitespace()
                .take(10)
                .eq(["7", "agent", "1.3.0", "paused", "2/3", "10%", "100", "91", "4", "2"]),
            "{out}"
        );
        assert!(
            row.ends_with("paused: 6 failures > 5% of 100 reached nodes; canary"),
            "{out}"
        );
        r.status = ReleaseStatus::PendingApproval;
        r.paused_reason = None;
        let row = releases_table(&[r]).lines().nth(1).unwrap().to_owned();
        assert!(row.contains(" 0/3 "), "{row}");
        assert!(row.ends_with(" canary"), "{row}");
    }

    #[test]
    fn one_release_shows_as_a_block_with_recent_history() {
        let out = release_block(&sample_release());
        for line in [
            "status:      paused",
            "paused:      6 failures > 5% of 100 reached nodes",
            "wave:        2/3 at 10% since 2025-01-01T10:00:00Z",
            "plan:        1%:10m,10%:30m,100%",
            "selector:    arch x86_64; env=canary,staging",
            "counts:      targeted 100, in progress 3, ok 91, failed 4, rolled back 2",
            "baseline:    1.2.0",
            "history (last 5 of 7):",
        ] {
            assert!(out.lines().any(|l| l == line), "{line:?} in\n{out}");
        }
        assert!(!out.contains("step2"), "{out}");
        assert!(out.trim_end().ends_with("step7   -"), "{out}");
        assert_eq!(selector_summary(&Selector::default()), "all nodes");
    }

    #[test]
    fn node_view_tells_why() {
        let view: NodeView = serde_json::from_value(serde_json::json!({
            "node": {"node_id": "web-1", "cpu_arch": "x86_64", "os": "linux",
                     "labels": {"env": "prod"}, "bins": {"agent": "b".repeat(64), "db": ""},
                     "registered_at": "t0", "last_seen": "t1", "online": true},
            "bins": {
                "agent": {"target": {"bin_name": "agent", "version": "1.3.0", "sha256sum": "a".repeat(64),
                                     "size": 1, "url": "/x"}, "reason": "in wave 2 of release 7"},
                "db": {"target": null, "reason": "no release"},
                "web": {"target": null, "reason": "outside selector of release 3"}
            }
        }))
        .unwrap();
        let out = node_view(&view);
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[1]
                .split_whitespace()
                .take(3)
                .eq(["web-1", "yes", "t1"]),
            "{out}"
        );
        assert!(lines[1].ends_with("env=prod"), "{out}");
        assert_eq!(lines[2], "");
        assert!(lines[3].starts_with("BIN "), "{out}");
        let agent = format!("1.3.0@{}  {}", "a".repeat(12), "b".repeat(12));
        assert!(lines[4].contains(&agent), "{out}");
        assert!(lines[4].ends_with("in wave 2 of release 7"), "{out}");
        assert!(
            lines[5].starts_with("db     -") && lines[5].contains("missing"),
            "{out}"
        );
        assert!(lines[6].ends_with("outside selector of release 3"), "{out}");
    }

    #[test]
    fn operations_post_without_a_body() {
        let json = serde_json::to_string(&sample_release()).unwrap();
        let answer = http_answer("200 OK", &json);
        let (url, server) = serve_once(move |r| r.get_mut().write_all(answer.as_bytes()).unwrap());
        let answer = client(&url)
            .post_empty("/api/v1/releases/7/pause")
            .ok()
            .unwrap();
        assert_eq!(answer.parse::<Release>().unwrap().id, 7);
        let (head, ()) = server.join().unwrap();
        assert!(
            head.starts_with("POST /api/v1/releases/7/pause HTTP/1.1"),
            "{head}"
        );
        let lower = head.to_ascii_lowercase();
        assert!(
            !lower.contains("content-length") || lower.contains("content-length: 0\r\n"),
            "{head}"
        );
    }

    #[test]
    fn pins_are_put_and_deleted() {
        let answer = http_answer(
            "200 OK",
            r#"{"node_id":"n:1","bin_name":"a","version":"1"}"#,
        );
        let (url, server) = serve_once(move |r| {
            let mut body = [0; 15];
            r.read_exact(&mut body).unwrap();
            r.get_mut().write_all(answer.as_bytes()).unwrap();
            body
        });
        let answer = client(&url)
            .put_json(
                "/api/v1/nodes/n:1/pins/a",
                &serde_json::json!({"version": "1"}),
            )
            .ok()
            .unwrap();
        assert_eq!(answer.parse::<Pin>().unwrap().version, "1");
        let (head, body) = server.join().unwrap();
        assert!(
            head.starts_with("PUT /api/v1/nodes/n:1/pins/a HTTP/1.1"),
            "{head}"
        );
        assert_eq!(&body, br#"{"version":"1"}"#);

        // An answer without a body is a success too.
        let answer = http_answer("200 OK", "");
        let (url, server) = serve_once(move |r| r.get_mut().write_all(answer.as_bytes()).unwrap());
        let answer = client(&url).delete("/api/v1/nodes/n/pins/a").ok().unwrap();
        assert_eq!(answer.body, Json::Null);
        let (head, ()) = server.join().unwrap();
        assert!(
            head.starts_with("DELETE /api/v1/nodes/n/pins/a HTTP/1.1"),
            "{head}"
        );
    }

    /// A well-formed signature (base64 of the right lengths), not a valid one.
    const SIGNATURE: &str = "untrusted comment: signature from minisign secret key\n\
        RUS/6ARklDCuZucTpt+RnHwxPQQVoBhvNhJaitDn16AWO1o+21elY7nnfC3f6X79V2U4x7EHazg3tTD9MXtJYSzHFiD37mRcnQw=\n\
        trusted comment: bin=a version=1 timestamp=1700000000\n\
        NJa3FKs9y0AKjHaxW9fhpycmdS1ManTIIEgQXEXPXKQ7VH0nr3kLP/PUQTUdxU1IohV89S60PCSyKZRt8TuhDQ==\n";

    #[test]
    fn signature_and_publish_signature_parse() {
        let parsed =
            parse_line("signature", &["a", "1.0", "a.minisig", "--arch", "arm64"]).unwrap();
        assert_eq!(
            parsed.command,
            Command::Signature(Signature {
                bin: "a".into(),
                version: "1.0".into(),
                file: "a.minisig".into(),
                arch: Some("arm64".into()),
            })
        );
        let Command::Publish(p) = parse_line(
            "publish",
            &["a", "1", "f", "--signature", "f.minisig", "--release"],
        )
        .unwrap()
        .command
        else {
            panic!("not a publish");
        };
        assert_eq!(p.signature.as_deref(), Some(Path::new("f.minisig")));
        assert!(p.release.is_some());
        assert_eq!(usage_error("signature", &["a", "1"]), "missing FILE");
        assert!(usage_error("signature", &["a", "1", "f", "x"]).contains("unexpected"));
        assert!(usage_error("signature", &["a", "1", "f", "--release"]).contains("--release"));
        assert!(usage_error("signature", &["a/b", "1", "f"]).contains("bin name"));
        let err = usage_error("signature", &["a", "1", "f", "--arch", "x", "--arch", "y"]);
        assert!(err.contains("--arch"), "{err}");
        assert!(usage_error("release", &["a", "1", "--signature", "f"]).contains("--signature"));
    }

    #[test]
    fn signature_files_are_checked_before_sending() {
        let good = temp_file("good.minisig", SIGNATURE);
        assert_eq!(read_signature(&good).unwrap(), SIGNATURE);
        let bad = temp_file("bad.minisig", "untrusted comment: x\nnot base64\n");
        let err = read_signature(&bad).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(
            text.contains("bad.minisig") && text.contains("2 lines"),
            "{text}"
        );
        let big = temp_file("big.minisig", &"x".repeat(5000));
        let text = read_signature(&big).unwrap_err().to_string();
        assert!(text.contains("over the limit of 4096"), "{text}");
        let text = read_signature(Path::new("/nonexistent/a.minisig"))
            .unwrap_err()
            .to_string();
        assert!(text.contains("/nonexistent/a.minisig"), "{text}");
        for f in [good, bad, big] {
            fs::remove_file(f).unwrap();
        }
    }

    #[test]
    fn signatures_are_put_as_text_with_the_arch() {
        let version = serde_json::json!({
            "bin_name": "a", "version": "1", "arch": "aarch64", "sha256sum": "ab",
            "size": 10, "created_at": "t", "signature": SIGNATURE,
        });
        let answer = http_answer("200 OK", &version.to_string());
        let (url, server) = serve_once(move |r| {
            let mut body = vec![0; SIGNATURE.len()];
            r.read_exact(&mut body).unwrap();
            r.get_mut().write_all(answer.as_bytes()).unwrap();
            body
        });
        let answer = put_signature(&client(&url), "a", "1", Some("arm64"), SIGNATURE)
            .ok()
            .unwrap();
        let v: Version = answer.parse().unwrap();
        assert_eq!(
            signed_line(&v),
            "signature stored (trusted comment: bin=a version=1 timestamp=1700000000)\n"
        );
        let (head, body) = server.join().unwrap();
        assert!(
            head.starts_with("PUT /api/v1/bins/a/versions/1/signature?arch=arm64 HTTP/1.1"),
            "{head}"
        );
        assert_eq!(body, SIGNATURE.as_bytes());
        assert_eq!(
            signed_line(&Version {
                signature: None,
                ..v
            }),
            "no signature stored\n"
        );
    }
}

//! The command line as clap sees it: one derive definition that is at once
//! the parser, every command's `--help` and the source of the shell
//! completions. Doc comments are the help text; the long prose (roles,
//! signatures, plans, exit codes) sits in `after_long_help` of the command it
//! belongs to. Values stay plain strings here where the protocol has its own
//! rules: [`super::check`] checks them with the messages operators know.

use super::serve_args::ServeArgs;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

const TOP_AFTER: &str = concat!(
    "Every command answers --help with its own options and notes \
     (`manager-lite token --help` for the roles, `release --help` for plans).\n\n",
    "CLIENT OPTIONS (every admin command):
    --server URL        manager to talk to (env MANAGER_URL, default http://127.0.0.1:38012)
    --token-file FILE   admin or named token (else env MANAGER_ADMIN_TOKEN)
    --ca-file FILE      PEM CA certificate(s) to trust for an https:// server
                        (env MANAGER_CA_FILE; default: the built-in web roots)
    --json              print JSON instead of a table\n\n",
    "EXIT CODES:
    0 done, 1 the server refused or could not be reached, 2 usage or configuration error"
);

const ROLES: &str = "\
TOKENS AND ROLES:
    `token create` prints the new token's secret once, on stdout: the server keeps
    only its sha256 and never shows it again. NAME is 1 to 64 of A-Z a-z 0-9 . _ -,
    not . or .. (\"admin\" is the bootstrap token's). ROLE decides what it may do; every
    role may read everything (releases, nodes, progress, tokens, audit):
    admin                       everything, incl. tokens, pins and `cancel`
    publisher                   upload and sign versions (`publish`, `signature`),
                                create releases, `pause`
    approver                    `approve`, `pause`, `resume`, `promote`, `rollback`
    viewer                      read only
    A release created with --require-approval must be approved by another token.
    `token revoke NAME` refuses that token at once.";

const SIGNATURES: &str = "\
SIGNATURES:
    `publish --signature FILE.minisig` uploads, then stores the artifact's minisign
    signature (`minisign -S -m FILE`), before any --release. `signature` stores one for
    an uploaded artifact, replacing an earlier one (a re-signature: a fresh timestamp in
    the trusted comment, say). --arch is the signed artifact's arch; without it, the
    arch-less artifact. The manager only checks the file's shape (4 lines, at most
    4096 bytes): it holds no key, and agents verify the signature.";

const PLAN: &str = "\
PLAN (options of a new release: which nodes get it, and how fast):
    Waves run in order, each WAIT long before the next; without --waves the
    release goes to 100% at once. Selector options must all match; each is
    repeatable, and any of its values matches. Names are checked before anything
    is sent: a typo is a usage error (exit 2) naming the option.";

/// manager-lite: the control plane of binproxy fleets.
///
/// `serve` runs the control plane; every other command is an admin client of a
/// running server.
#[derive(Debug, Parser)]
#[command(
    name = "manager-lite",
    version,
    arg_required_else_help = true,
    after_long_help = TOP_AFTER
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Parses a command line (the program's name first).
pub fn parse(args: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
    let matches: ArgMatches = command().try_get_matches_from(args)?;
    Cli::from_arg_matches(&matches)
}

/// The whole definition, where an option given twice takes its last value,
/// as command lines always could (`serve --listen A ... --listen B`);
/// repeatable options still collect every value.
pub fn command() -> clap::Command {
    fn last_wins(command: clap::Command) -> clap::Command {
        command.args_override_self(true).mut_subcommands(last_wins)
    }
    last_wins(Cli::command())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane (flags have defaults; see --help).
    #[command(
        after_long_help = "Durations use humantime syntax (90s, 3m, 1h); durations \
        and numbers must be at least 1. A bad flag prints one line on stderr and exits 2; \
        a startup failure (cannot bind, unusable token, database error) is logged and exits 1."
    )]
    Serve(ServeArgs),
    #[command(flatten)]
    Admin(Admin),
    /// Make a private CA and a server certificate for `serve --tls-cert`.
    #[command(subcommand)]
    Tls(Tls),
    /// Build a data directory from a backup, offline (no manager running on DIR).
    #[command(
        after_long_help = "Every file is checked against the backup's manifest (sha256 and size);         DIR must be new or empty. Written into a temp directory beside DIR, fsync'd and         renamed at the end. Then start `manager-lite serve --data DIR` with the admin token         file it had. Exit codes: 0 done, 1 refused or failed (a non-empty DIR, a damaged         or altered backup), 2 usage."
    )]
    Restore {
        /// The backup file (from `manager-lite backup`).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The data directory to build: must not exist or be empty.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
    /// Print a shell completion script (e.g. `manager-lite completions bash > /etc/bash_completion.d/manager-lite`).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The admin commands: each talks to a running manager.
#[derive(Debug, Subcommand)]
pub enum Admin {
    /// Upload a version of a bin (streamed from FILE), optionally sign it and release it.
    #[command(after_long_help = concat!(
        "--arch is the artifact's arch here, not a selector. The plan options go with --release.\n\n",
        "SIGNATURES:
    `publish --signature FILE.minisig` uploads, then stores the artifact's minisign
    signature (`minisign -S -m FILE`), before any --release. See `signature --help`.\n\n",
        "A progress bar (bytes, rate, ETA) is drawn on stderr when it is a terminal and
the file is large; none otherwise."
    ))]
    Publish(Publish),
    /// Store (or replace) the minisign signature of an uploaded artifact.
    #[command(after_long_help = SIGNATURES)]
    Signature(SignatureArgs),
    /// Create a release of an uploaded version: who gets it, and how fast.
    #[command(after_long_help = PLAN)]
    Release(ReleaseArgs),
    /// List releases, newest first.
    Releases {
        /// Only the releases of this bin.
        #[arg(long, value_name = "BIN")]
        bin: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Start a release created with --require-approval.
    Approve(IdArgs),
    /// Pause a rolling release: no node gets it newly.
    Pause(IdArgs),
    /// Resume a paused release.
    Resume(IdArgs),
    /// Take a release straight to 100%.
    Promote(IdArgs),
    /// Cancel a release: its nodes fall back to what older releases give them.
    Cancel(IdArgs),
    /// Roll a release back: a new release of the version before it.
    Rollback {
        /// Release id (a positive integer).
        #[arg(value_name = "ID")]
        id: String,
        /// Waves of the rollback, e.g. 50%:5m,100% (default: 100% at once).
        #[arg(long, allow_hyphen_values = true, value_name = "P%[:WAIT],...")]
        waves: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Pin a node to a version of a bin, whatever releases say.
    Pin {
        /// The node's id, as its agent reports it.
        #[arg(value_name = "NODE")]
        node: String,
        /// The bin's name: 1 to 64 of A-Z a-z 0-9 . _ - (not . or ..).
        #[arg(value_name = "BIN")]
        bin: String,
        /// The version, as the artifact was published.
        #[arg(value_name = "VERSION")]
        version: String,
        #[command(flatten)]
        common: Common,
    },
    /// Remove a pin: the node's releases decide its target again.
    Unpin {
        /// The node's id, as its agent reports it.
        #[arg(value_name = "NODE")]
        node: String,
        /// The bin's name: 1 to 64 of A-Z a-z 0-9 . _ - (not . or ..).
        #[arg(value_name = "BIN")]
        bin: String,
        #[command(flatten)]
        common: Common,
    },
    /// List the nodes.
    Nodes {
        #[command(flatten)]
        common: Common,
    },
    /// Show one node and, per bin, its target and why (`node revoke NODE`: forget its
    /// secret; `node delete NODE`: forget the node).
    Node(NodeArgs),
    /// Show a bin's latest progress reports.
    Progress {
        /// The bin's name: 1 to 64 of A-Z a-z 0-9 . _ - (not . or ..).
        #[arg(value_name = "BIN")]
        bin: String,
        /// Only this node's reports; once.
        #[arg(long, value_name = "NODE")]
        node: Vec<String>,
        /// How many reports at most.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        #[command(flatten)]
        common: Common,
    },
    /// Create, list or revoke named tokens.
    #[command(after_long_help = ROLES)]
    Token(TokenArgs),
    /// Delete a version that no release or pin needs (`version delete BIN VERSION`).
    Version(VersionArgs),
    /// The latest admin writes, refused ones included, newest first.
    #[command(
        after_long_help = "Writes refused for want of a valid token are summed up \
        in one record a minute."
    )]
    Audit {
        /// How many records: 1 to 1000 (default 100).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        #[command(flatten)]
        common: Common,
    },
    /// Write a backup of the running manager to FILE (admin token): the database at
    /// one transaction and every artifact, checked against its manifest.
    #[command(after_long_help = BACKUP)]
    Backup {
        /// Where to write the backup (a tar file, mode 0600). Written to a temp
        /// file beside it and renamed when complete and checked.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Write a static mirror for any file server (`mirror sync --to DIR`): artifacts,
    /// signatures and each bin's node-independent targets.
    Mirror(MirrorArgs),
}

#[derive(Debug, Args)]
pub struct MirrorArgs {
    #[command(subcommand)]
    pub action: MirrorAction,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Subcommand)]
pub enum MirrorAction {
    /// Bring DIR up to date with the manager: new artifacts, signatures, bins files and
    /// index.json; removes what the manager deleted once --grace has passed.
    #[command(after_long_help = super::mirror::SYNC_HELP)]
    Sync {
        /// The mirror's directory (created if missing; its parent must exist).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// How long an artifact the manager no longer stores stays in DIR (humantime:
        /// 24h, 90m; 0s removes it at once), for readers still holding older files.
        #[arg(long, value_name = "DURATION", default_value = "24h")]
        grace: String,
    },
}

const BACKUP: &str =
    "The manager keeps serving and taking writes meanwhile. The backup holds the sha256s of
node secrets and named tokens (not the secrets), and not the bootstrap admin token or
the enrollment token, which live in files of their own. A progress bar is drawn on
stderr when it is a terminal. Restore it with `manager-lite restore`.";

/// Options every admin command takes. `global`: under `token` and `node`
/// they may also come after the subcommand's words, as they always could.
#[derive(Debug, Default, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Client options")]
pub struct Common {
    /// Manager to talk to [env: MANAGER_URL] [default: http://127.0.0.1:38012].
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// File holding the admin or a named token [else env: MANAGER_ADMIN_TOKEN].
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for an https:// server [env: MANAGER_CA_FILE]
    /// (default: the built-in web roots).
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Print the server's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct Publish {
    /// The bin's name: 1 to 64 of A-Z a-z 0-9 . _ - (not . or ..).
    #[arg(value_name = "BIN")]
    pub bin: String,
    /// The version, as the artifact was published.
    #[arg(value_name = "VERSION")]
    pub version: String,
    /// The artifact to upload.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The artifact's arch (default: an arch-less artifact); once.
    // A Vec, so that a second one is refused rather than taken.
    #[arg(long, value_name = "A")]
    pub arch: Vec<String>,
    /// A minisign signature of FILE to store after the upload.
    #[arg(long, value_name = "FILE.minisig")]
    pub signature: Option<PathBuf>,
    /// Create a release of the version once uploaded (and signed).
    #[arg(long)]
    pub release: bool,
    #[command(flatten)]
    pub plan: Plan,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct SignatureArgs {
    /// The bin's name: 1 to 64 of A-Z a-z 0-9 . _ - (not . or ..).
    #[arg(value_name = "BIN")]
    pub bin: String,
    /// The version, as the artifact was published.
    #[arg(value_name = "VERSION")]
    pub version: String,
    /// The `.minisig` file (`minisign -S -m FILE`).
    #[arg(value_name = "FILE.minisig")]
    pub file: PathBuf,
    /// The signed artifact's arch (default: the arch-less artifact); once.
    #[arg(long, value_name = "A")]
    pub arch: Vec<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The bin's name: 1 to 64 of A-Z a-z 0-9 . _ - (not . or ..).
    #[arg(value_name = "BIN")]
    pub bin: String,
    /// The version, as the artifact was published.
    #[arg(value_name = "VERSION")]
    pub version: String,
    /// Only nodes of these arches (selector; repeatable).
    #[arg(long, allow_hyphen_values = true, value_name = "A")]
    pub arch: Vec<String>,
    #[command(flatten)]
    pub plan: Plan,
    #[command(flatten)]
    pub common: Common,
}

/// Options that shape a new release: who it is for and how it rolls out.
/// Their values may start with `-` (`--max-failures -3`): the checks, not
/// the parser, say what is wrong with them, as they always did.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Plan (of a new release)")]
pub struct Plan {
    /// A note shown with the release.
    #[arg(long, allow_hyphen_values = true, value_name = "TEXT")]
    pub note: Option<String>,
    /// Waves, e.g. 1%:10m,10%:30m,100%: percents rising to 100%, each wave running
    /// WAIT (90s, 1h 30m) before the next.
    #[arg(long, allow_hyphen_values = true, value_name = "P%[:WAIT],...")]
    pub waves: Option<String>,
    /// Reached nodes that must succeed to go on: a share, or a count (every
    /// reached node while fewer are reached).
    #[arg(long, allow_hyphen_values = true, value_name = "N%|N")]
    pub success_threshold: Option<String>,
    /// Failures (share or count) that pause the release.
    #[arg(long, allow_hyphen_values = true, value_name = "N%|N")]
    pub max_failures: Option<String>,
    /// Only nodes whose label KEY is V1 or V2 (repeatable).
    #[arg(long, allow_hyphen_values = true, value_name = "KEY=V1,V2")]
    pub select: Vec<String>,
    /// Only these nodes (repeatable).
    #[arg(long, allow_hyphen_values = true, value_name = "ID")]
    pub node: Vec<String>,
    /// Never these nodes (repeatable).
    #[arg(long, allow_hyphen_values = true, value_name = "ID")]
    pub exclude_node: Vec<String>,
    /// Only nodes of these OSes (repeatable).
    #[arg(long, allow_hyphen_values = true, value_name = "OS")]
    pub os: Vec<String>,
    /// Start only on `approve ID`, by another token.
    #[arg(long)]
    pub require_approval: bool,
    /// A maintenance window, e.g. "Mon-Fri 01:00-05:00 +08:00": nodes move
    /// only inside one (repeatable).
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "\"DAYS HH:MM-HH:MM +HH:MM\""
    )]
    pub window: Vec<String>,
}

/// `approve`, `pause`, ...: one release by its id.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// Release id (a positive integer).
    #[arg(value_name = "ID")]
    pub id: String,
    #[command(flatten)]
    pub common: Common,
}

/// `node NODE`, `node revoke NODE` or `node delete NODE`: the actions are
/// subcommands, as "revoke" was.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct NodeArgs {
    /// The node's id, as its agent reports it.
    #[arg(value_name = "NODE", required = true)]
    pub node: Option<String>,
    #[command(subcommand)]
    pub action: Option<NodeAction>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Subcommand)]
pub enum NodeAction {
    /// Forget a node's secret: it must enroll again.
    Revoke {
        /// The node's id, as its agent reports it.
        #[arg(value_name = "NODE")]
        node: String,
    },
    /// Delete a node: its record, pins and secret (its progress reports stay with
    /// the releases), for a decommissioned host. A host still running an agent
    /// registers again; with node authentication it must enroll again first.
    Delete {
        /// The node's id, as its agent reports it.
        #[arg(value_name = "NODE")]
        node: String,
    },
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    #[command(subcommand)]
    pub action: VersionAction,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Subcommand)]
pub enum VersionAction {
    /// Delete a version's artifacts (every arch, or --arch), with their
    /// signatures and the files no other version shares. Refused (exit 1)
    /// while a release that is not over targets it or would roll back to it,
    /// or a pin names it.
    Delete {
        /// The bin's name.
        #[arg(value_name = "BIN")]
        bin: String,
        /// The version's name.
        #[arg(value_name = "VERSION")]
        version: String,
        /// Only the artifact uploaded for this arch.
        #[arg(long, value_name = "A")]
        arch: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub action: TokenAction,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a named token and print its secret, once.
    #[command(after_long_help = ROLES)]
    Create {
        /// The token's name: 1 to 64 of A-Z a-z 0-9 . _ - (not . or ..).
        #[arg(value_name = "NAME")]
        name: String,
        /// admin, publisher, approver or viewer.
        #[arg(value_name = "ROLE")]
        role: String,
    },
    /// List the named tokens (never their secrets).
    List,
    /// Refuse a named token from now on.
    Revoke {
        /// The token's name: 1 to 64 of A-Z a-z 0-9 . _ - (not . or ..).
        #[arg(value_name = "NAME")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum Tls {
    /// Write a private CA (ca.pem, ca.key) and a server certificate signed by it
    /// (server.pem, server.key) into DIR; print the `serve` flags and the agent's
    /// `ca_file` line.
    Init {
        /// Directory for the CA and the server certificate.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The server's names and addresses, comma separated (the certificate's SANs).
        #[arg(long, value_name = "NAME[,IP...]")]
        host: String,
        /// Validity of the server certificate, in days.
        #[arg(long, value_name = "N", default_value_t = crate::pki::DEFAULT_DAYS)]
        days: u32,
    },
    /// Issue a new server certificate from the CA in DIR.
    Renew {
        /// Directory holding the CA made by `tls init`.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// New names and addresses (default: those of the current certificate).
        #[arg(long, value_name = "NAME[,IP...]")]
        host: Option<String>,
        /// Validity of the server certificate, in days.
        #[arg(long, value_name = "N", default_value_t = crate::pki::DEFAULT_DAYS)]
        days: u32,
    },
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;

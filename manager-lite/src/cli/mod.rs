//! The `manager-lite` command line, from one clap definition ([`args`]):
//! `serve` starts the control plane ([`crate::serve`]); `tls` makes its
//! certificates ([`crate::pki`]); `restore` builds a data directory from a
//! backup ([`crate::backup`]); `completions` prints a shell completion
//! script; every other command is an admin client of a running server
//! (`backup` downloads through [`backup`]).
//!
//! An admin command goes: clap places the words ([`args`]), [`check`]
//! checks every name (and [`plan`] every release plan) before anything is
//! sent, [`settings`] finds
//! the server and the token, one file per command group sends the request
//! over [`http`] and [`render`] prints the answer: [`bins`] (publish,
//! signature, version delete, progress; uploads through [`progress`]),
//! [`releases`] (release, approve, pause, ..., rollback), [`nodes`] (nodes,
//! node, pin, unpin), [`access`] (token, audit), [`backup`] and [`mirror`]
//! (`mirror sync`: what to mirror in [`mirror_plan`], the directory in
//! [`mirror_tree`]).
//!
//! Exit codes are the contract: 0 done; 1 the server refused or could not be
//! reached; 2 usage or configuration error. `--help` and `--version` exit 0.
//! Every error is one line on stderr, clap's own included (with its "tip:"
//! for a misspelt flag), and the token is never printed.

mod access;
pub mod args;
mod backup;
mod bins;
mod check;
mod http;
mod mirror;
mod mirror_plan;
mod mirror_tree;
mod nodes;
mod plan;
mod progress;
mod releases;
mod render;
pub mod serve_args;
mod settings;
mod table;

use args::{Admin, Command, Tls};
use binproxy_protocol::NameError;
use check::Command as C;
use check::Parsed;
use clap::error::ErrorKind;
use http::Client;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};

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

impl From<NameError> for ClientError {
    fn from(e: NameError) -> Self {
        Self::Usage(e.to_string())
    }
}

/// Runs the program on `args` (the program's name first); returns the exit code.
pub fn main(args: &[OsString]) -> u8 {
    let path = command_path(args);
    let cli = match args::parse(args) {
        Ok(cli) => cli,
        Err(e) => return clap_failure(&path, &e),
    };
    match cli.command {
        Command::Serve(flags) => match flags.into_config() {
            Ok(config) => crate::serve::main(&config),
            Err(e) => fail(&path, &e.to_string(), 2),
        },
        Command::Admin(admin) => match run(admin) {
            Ok(()) => 0,
            Err(e @ ClientError::Usage(_)) => fail(&path, &format!("{e} (see {path} --help)"), 2),
            Err(e) => fail(&path, &e.to_string(), e.exit_code()),
        },
        Command::Tls(tls) => run_tls(&path, tls),
        Command::Restore { from, data } => match crate::backup::restore::restore(&from, &data) {
            Ok(text) => print(&path, &format!("{text}\n")),
            Err(e) => fail(&path, &e.to_string(), 1),
        },
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut args::command(), "manager-lite", &mut script);
            print(&path, &String::from_utf8_lossy(&script))
        }
    }
}

/// Writes `text` to stdout; 0, or 1 if stdout failed.
fn print(path: &str, text: &str) -> u8 {
    match render::emit(text) {
        Ok(()) => 0,
        Err(e) => fail(path, &e.to_string(), e.exit_code()),
    }
}

/// Says what went wrong, on one line of stderr, and gives back `code`.
fn fail(path: &str, message: &str, code: u8) -> u8 {
    // Nothing sensible is left to do if stderr itself is gone.
    let _ = writeln!(io::stderr(), "{path}: {message}");
    code
}

/// The words that name the command (`manager-lite token create`), for messages.
fn command_path(args: &[OsString]) -> String {
    let mut command = args::command();
    let mut path = vec![command.get_name().to_owned()];
    for word in args.iter().skip(1).filter_map(|a| a.to_str()) {
        let Some(sub) = command.find_subcommand(word).cloned() else {
            break;
        };
        path.push(sub.get_name().to_owned());
        command = sub;
    }
    path.join(" ")
}

/// `--help` and `--version` print and exit 0; a bare `manager-lite` prints
/// the help on stderr and exits 2; any other clap error is a one-line usage
/// error (exit 2) that keeps clap's tip.
fn clap_failure(path: &str, e: &clap::Error) -> u8 {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // Nothing sensible is left to do if stdout is gone (`| head`).
            let _ = e.print();
            0
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            2
        }
        _ => fail(path, &one_line(e, path), 2),
    }
}

/// clap's error text on one line: the error, its tips, and where help is.
fn one_line(e: &clap::Error, path: &str) -> String {
    let text = e.render().to_string();
    let mut error = String::new();
    let mut notes = Vec::new();
    for paragraph in text.split("\n\n") {
        let words = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(message) = words.strip_prefix("error: ") {
            message.clone_into(&mut error);
        } else if words.starts_with("tip:") {
            notes.push(words);
        }
        // "Usage:" and "For more information": --help says it all.
    }
    notes.push(format!("see {path} --help"));
    format!("{error} ({})", notes.join("; "))
}

/// Runs one admin command: checks it, then connects and sends.
fn run(admin: Admin) -> Result<(), ClientError> {
    let Parsed { command, common } = check::check(admin)?;
    let json = common.json;
    // Built on first use, after the checks: a bad name needs no token.
    let connect = || settings::settings(&common, &|key| std::env::var_os(key)).map(Client::new);
    match command {
        C::Publish(p) => bins::publish(&connect()?, json, &p),
        C::Signature(s) => bins::signature(&connect()?, json, &s),
        C::Release(r) => releases::release(&connect()?, json, &r),
        C::Releases { bin } => releases::releases(&connect()?, json, bin.as_deref()),
        C::Nodes => nodes::nodes(&connect()?, json),
        C::Node { node } => nodes::node_details(&connect()?, json, &node),
        C::NodeRevoke { node } => nodes::node_revoke(&connect()?, json, &node),
        C::NodeDelete { node } => nodes::node_delete(&connect()?, json, &node),
        C::Progress { bin, node, limit } => {
            bins::progress(&connect()?, json, &bin, node.as_deref(), limit)
        }
        C::Operate { op, id } => releases::operate(&connect()?, json, op, id),
        C::Rollback { id, waves } => releases::rollback(&connect()?, json, id, waves),
        C::Pin { node, bin, version } => nodes::pin(&connect()?, json, &node, &bin, &version),
        C::Unpin { node, bin } => nodes::unpin(&connect()?, json, &node, &bin),
        C::TokenCreate(new) => access::token_create(&connect()?, json, &new),
        C::TokenList => access::token_list(&connect()?, json),
        C::TokenRevoke { name } => access::token_revoke(&connect()?, json, &name),
        C::VersionDelete { bin, version, arch } => {
            bins::version_delete(&connect()?, json, &bin, &version, arch.as_deref())
        }
        C::Audit { limit } => access::audit(&connect()?, json, limit),
        C::Backup { to } => backup::backup(&connect()?, &to),
        C::MirrorSync { to, grace } => mirror::sync(&connect()?, json, &to, grace),
    }
}

/// `tls init` and `tls renew`: the text they return goes to stdout.
fn run_tls(path: &str, tls: Tls) -> u8 {
    let done = match tls {
        Tls::Init { dir, host, days } => crate::pki::init(&dir, &host, days),
        Tls::Renew { dir, host, days } => crate::pki::renew(&dir, host.as_deref(), days),
    };
    match done {
        Ok(text) => print(path, &text),
        Err(e) => fail(path, &e.to_string(), e.exit_code()),
    }
}

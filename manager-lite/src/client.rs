//! The admin command line: `publish`, `release`, `releases`, `nodes` and
//! `progress` talk to a running manager-lite over its HTTP API.
//!
//! Each command parses its arguments with lexopt and checks every name against
//! the protocol's rules before anything is sent, so a typo is a usage error and
//! not a round trip. It then sends one request (two for `publish --release`)
//! with the admin token, and shows the answer as a table ([`crate::table`]) or,
//! with `--json`, as the server's own JSON. Uploads stream the file from disk:
//! an artifact can be as large as the server allows (1 GiB by default) and is
//! never held in memory.
//!
//! Exit codes: 0 done; 1 the server refused or could not be reached; 2 usage or
//! configuration error. Every error is one line on stderr, and the token is
//! never printed.

use crate::table;
use binproxy_protocol::{
    check_arch, check_bin_name, check_node_id, check_version, ErrorBody, NameError, NewRelease,
    Node, ProgressRecord, Release, Version, API_PREFIX,
};
use lexopt::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use ureq::http::Response;
use ureq::{Agent, Body, RequestBuilder};

/// Commands this module handles.
pub const COMMANDS: &[&str] = &["publish", "release", "releases", "nodes", "progress"];

const DEFAULT_SERVER: &str = "http://127.0.0.1:38012";
const SERVER_ENV: &str = "MANAGER_URL";
const TOKEN_ENV: &str = "MANAGER_ADMIN_TOKEN";

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

const SPECS: &[Spec] = &[
    Spec {
        name: "publish",
        options: &["arch", "release", "note"],
        usage: "manager-lite publish BIN VERSION FILE [--arch A] [--release] [--note TEXT]",
    },
    Spec {
        name: "release",
        options: &["note"],
        usage: "manager-lite release BIN VERSION [--note TEXT]",
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
        name: "progress",
        options: &["node", "limit"],
        usage: "manager-lite progress BIN [--node NODE] [--limit N]",
    },
];

const COMMON_USAGE: &str = "[--server URL] [--token-file FILE] [--json]";

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
        Command::Release(r) => release(&connect()?, json, &r),
        Command::Releases { bin } => releases(&connect()?, json, bin.as_deref()),
        Command::Nodes => nodes(&connect()?, json),
        Command::Progress { bin, node, limit } => {
            progress(&connect()?, json, &bin, node.as_deref(), limit)
        }
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
    Release(NewRelease),
    Releases {
        bin: Option<String>,
    },
    Nodes,
    Progress {
        bin: String,
        node: Option<String>,
        limit: Option<u32>,
    },
}

#[derive(Debug, PartialEq, Eq)]
struct Publish {
    bin: String,
    version: String,
    file: PathBuf,
    arch: Option<String>,
    release: bool,
    note: Option<String>,
}

/// Options every command takes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Common {
    server: Option<String>,
    token_file: Option<PathBuf>,
    json: bool,
}

/// Everything on the command line, before the command's own checks.
#[derive(Debug, Default)]
struct Raw {
    common: Common,
    words: Vec<OsString>,
    help: bool,
    arch: Option<String>,
    release: bool,
    note: Option<String>,
    bin: Option<String>,
    node: Option<String>,
    limit: Option<u32>,
}

fn parse(spec: &Spec, args: Vec<OsString>) -> Result<Parsed, ClientError> {
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
            Long("json") => raw.common.json = true,
            Short('h') | Long("help") => raw.help = true,
            Long("arch") if takes("arch") => raw.arch = Some(parser.value()?.string()?),
            Long("release") if takes("release") => raw.release = true,
            Long("note") if takes("note") => raw.note = Some(parser.value()?.string()?),
            Long("bin") if takes("bin") => raw.bin = Some(parser.value()?.string()?),
            Long("node") if takes("node") => raw.node = Some(parser.value()?.string()?),
            Long("limit") if takes("limit") => raw.limit = Some(parser.value()?.parse()?),
            Value(word) => raw.words.push(word),
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(raw)
}

/// Turns the words and options of `command` into a checked [`Command`].
fn build(command: &str, raw: Raw) -> Result<Command, ClientError> {
    if raw.help {
        return Ok(Command::Help);
    }
    let words = &mut raw.words.into_iter();
    let built = match command {
        "publish" => Command::Publish(Publish {
            bin: name(words, "BIN", check_bin_name)?,
            version: name(words, "VERSION", check_version)?,
            file: word(words, "FILE")?.into(),
            arch: checked(raw.arch, check_arch)?,
            release: raw.release,
            note: match (raw.note, raw.release) {
                (Some(_), false) => return Err(usage("--note goes with --release")),
                (note, _) => note,
            },
        }),
        "release" => Command::Release(NewRelease {
            bin_name: name(words, "BIN", check_bin_name)?,
            version: name(words, "VERSION", check_version)?,
            note: raw.note,
        }),
        "releases" => Command::Releases {
            bin: checked(raw.bin, check_bin_name)?,
        },
        "nodes" => Command::Nodes,
        "progress" => Command::Progress {
            bin: name(words, "BIN", check_bin_name)?,
            node: checked(raw.node, check_node_id)?,
            limit: raw.limit,
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

/// An optional name, checked when given.
fn checked(value: Option<String>, check: Check) -> Result<Option<String>, ClientError> {
    if let Some(v) = &value {
        check(v)?;
    }
    Ok(value)
}

// ---------------------------------------------------------------------------
// Configuration

/// Where the server is and how to prove we are its admin.
struct Settings {
    server: String,
    token: String,
}

/// Resolves the server URL and the token from the options, else from the
/// environment (`env` stands for `std::env::var_os`, so tests can fake it).
fn settings(
    common: &Common,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Settings, ClientError> {
    Ok(Settings {
        server: server_url(common.server.as_deref(), env)?,
        token: admin_token(common.token_file.as_deref(), env)?,
    })
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
    // This build has no TLS: https would only fail later with a vaguer error.
    match url.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() => Ok(url.to_owned()),
        _ => Err(ClientError::Config(format!(
            "server URL {:?} must look like http://HOST:PORT",
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
        let json = serde_json::to_string(body)
            .map_err(|e| ClientError::Failed(format!("cannot encode the request: {e}")))?;
        let (url, request) = self.start(Agent::post, path, &[]);
        let sent = request.content_type("application/json").send(json);
        read_answer("POST", &url, sent)
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
            // No `Expect: 100-continue`: tiny_http's 100 answer carries
            // headers, ureq takes it for a final answer and never sends the body.
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
    let body = serde_json::from_str(&text).map_err(|e| {
        ClientError::Failed(format!("the answer to {method} {url} is not JSON: {e}"))
    })?;
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
    let (file, size) = open_artifact(&p.file)?;
    let mut query = vec![("version", p.version.as_str())];
    if let Some(arch) = &p.arch {
        query.push(("arch", arch));
    }
    let path = format!("{API_PREFIX}/bins/{}/versions", p.bin);
    let answer = client.upload(&path, &query, file, size)?;
    show(json, &answer, |v: Version| {
        let mut text = versions_table(&[v]);
        if answer.status == 200 {
            text.push_str("(already uploaded with the same bytes)\n");
        }
        text
    })?;
    if !p.release {
        return Ok(());
    }
    if !json {
        emit("\n")?;
    }
    let new = NewRelease {
        bin_name: p.bin.clone(),
        version: p.version.clone(),
        note: p.note.clone(),
    };
    release(client, json, &new)
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
    show(json, &answer, |r: Release| releases_table(&[r]))
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
        let mut text =
            serde_json::to_string_pretty(&answer.body).unwrap_or_else(|_| answer.body.to_string());
        text.push('\n');
        text
    } else {
        render(answer.parse()?)
    };
    emit(&text)
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
                format!("{}%", r.percent),
                r.created_at.clone(),
                r.created_by.clone(),
                r.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = [
        "ID", "BIN", "VERSION", "STATUS", "PERCENT", "CREATED", "BY", "NOTE",
    ];
    table::render(&header, &rows)
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
                release: true,
                note: Some("first".into()),
            })
        );
        assert_eq!(
            parsed.common,
            Common {
                server: Some("http://h:1/".into()),
                token_file: None,
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
        for bad in ["https://h", "h:1", "http://", ""] {
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
        // No "Expect: 100-continue": ureq cannot parse tiny_http's 100
        // answer (it has headers) and would then never send the body.
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
}

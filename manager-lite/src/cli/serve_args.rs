//! `serve`'s flags: one clap struct whose defaults are the server's defaults
//! (and so show in `serve --help`), turned into a [`ServeConfig`] with the
//! checks that span flags (TLS pair, authentication off loopback). The
//! server's start-up itself stays in [`crate::serve`].

use crate::alerts::{Format, FormatError, Webhook, WebhookError};
use crate::serve::ServeConfig;
use crate::server::rate::RateError;
use clap::Args;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to bind, an IP:PORT (no host names); port 0 picks a free one.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:38012")]
    pub listen: SocketAddr,
    /// Data directory, created if missing.
    #[arg(long, value_name = "DIR", default_value = "manager-data")]
    pub data: PathBuf,
    /// File holding the admin token [else env: MANAGER_ADMIN_TOKEN, else one is
    /// generated into DIR].
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// A node not seen for this long is shown offline.
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = duration)]
    pub offline_after: Duration,
    /// Delete a node not seen for this long, with its pins and secret (off
    /// unless given; at least --offline-after).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub forget_offline_after: Option<Duration>,
    /// Keep, per bin and arch, only the newest N versions and those a release or
    /// a pin needs: older ones are deleted after each upload (off unless given).
    #[arg(long, value_name = "N", value_parser = count::<usize>)]
    pub keep_versions: Option<usize>,
    /// Hand out artifacts as URL<sha256> (a CDN, an object store, a static
    /// mirror) instead of the manager's download route, which keeps serving;
    /// http(s), ending in `/`.
    #[arg(long, value_name = "URL", value_parser = url_base)]
    pub artifact_url_base: Option<String>,
    /// Make patches to each new version from the newest N earlier builds of
    /// its bin and arch, in the background (0: none; the zst form is made
    /// anyway).
    #[arg(long, value_name = "N", default_value = "2")]
    pub delta_from: usize,
    /// Largest upload, in bytes.
    #[arg(long, value_name = "BYTES", default_value = "1073741824", value_parser = count::<u64>)]
    pub max_artifact_size: u64,
    /// Progress reports kept per (node, bin).
    #[arg(long, value_name = "N", default_value = "100", value_parser = count::<usize>)]
    pub progress_keep: usize,
    /// How often batched `last_seen` updates are written.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub flush_interval: Duration,
    /// How often releases are recounted, advanced or paused.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub rollout_interval: Duration,
    /// Turns node authentication on: nodes enroll with the token in FILE.
    #[arg(long, value_name = "FILE")]
    pub node_enroll_token_file: Option<PathBuf>,
    /// Serve nodes without authentication on a non-loopback address anyway.
    #[arg(long)]
    pub insecure_open_nodes: bool,
    /// PEM certificate chain (leaf first): serve HTTPS. Goes with --tls-key.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Client connections open at once (--workers is its old name).
    #[arg(long, alias = "workers", value_name = "N", default_value = "16384", value_parser = count::<usize>)]
    pub max_connections: usize,
    /// The same cap per client address (IPv6: per /64).
    #[arg(long, value_name = "N", default_value = "256", value_parser = count::<usize>)]
    pub max_connections_per_ip: usize,
    /// The TLS handshake and a request head must be done within this.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub header_timeout: Duration,
    /// An idle kept-alive connection is closed after this.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub keepalive_timeout: Duration,
    /// The longest a body or an answer may stall with no byte moving.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub io_timeout: Duration,
    /// Bytes per second bodies and answers must keep up (500, 16KiB, 1MiB/s).
    #[arg(long, value_name = "BYTES/s", default_value = "16KiB", value_parser = rate)]
    pub min_rate: u64,
    /// The window --min-rate is measured over.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub min_rate_window: Duration,
    /// A whole request with a small body, head to last byte.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub request_timeout: Duration,
    /// Threads for handlers that write or read files.
    #[arg(long, value_name = "N", default_value = "16", value_parser = count::<usize>)]
    pub blocking_threads: usize,
    /// How long a request may wait for one of them before 503.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = duration)]
    pub queue_timeout: Duration,
    /// How long requests in hand may take to finish on SIGTERM or SIGINT.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub shutdown_timeout: Duration,
    /// `GET /metrics` without a token.
    #[arg(long)]
    pub metrics_public: bool,
    /// Post alerts to URL (repeatable); only its scheme and host are ever shown.
    // A string here: clap's own error would echo the URL, which may hold a secret.
    #[arg(long, value_name = "URL")]
    pub webhook: Vec<String>,
    /// Body shape of every --webhook.
    #[arg(long, value_name = "F", default_value = "json", value_parser = ["json", "slack", "dingtalk"])]
    pub webhook_format: String,
}

impl ServeArgs {
    /// The configuration, after the checks that span more than one flag.
    pub fn into_config(self) -> Result<ServeConfig, ServeArgsError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ServeArgsError::HalfTlsPair);
        }
        // Secure by default: anyone who can reach an open manager can read every
        // artifact and forge any node's reports.
        if !self.listen.ip().is_loopback()
            && self.node_enroll_token_file.is_none()
            && !self.insecure_open_nodes
        {
            return Err(ServeArgsError::OpenOffLoopback {
                listen: self.listen,
            });
        }
        if let Some(forget) = self.forget_offline_after {
            if forget < self.offline_after {
                return Err(ServeArgsError::ForgetBeforeOffline {
                    forget,
                    offline: self.offline_after,
                });
            }
        }
        let webhooks = self
            .webhook
            .iter()
            .map(|url| Webhook::parse(url))
            .collect::<Result<_, _>>()?;
        Ok(ServeConfig {
            listen: self.listen,
            data: self.data,
            admin_token_file: self.admin_token_file,
            offline_after: self.offline_after,
            forget_offline_after: self.forget_offline_after,
            keep_versions: self.keep_versions,
            artifact_url_base: self.artifact_url_base,
            max_artifact_size: self.max_artifact_size,
            delta_from: self.delta_from,
            progress_keep: self.progress_keep,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            header_timeout: self.header_timeout,
            io_timeout: self.io_timeout,
            keepalive_timeout: self.keepalive_timeout,
            min_rate: self.min_rate,
            min_rate_window: self.min_rate_window,
            request_timeout: self.request_timeout,
            blocking_threads: self.blocking_threads,
            queue_timeout: self.queue_timeout,
            shutdown_timeout: self.shutdown_timeout,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            flush_interval: self.flush_interval,
            rollout_interval: self.rollout_interval,
            node_enroll_token_file: self.node_enroll_token_file,
            insecure_open_nodes: self.insecure_open_nodes,
            metrics_public: self.metrics_public,
            webhooks,
            webhook_format: Format::parse(&self.webhook_format)?,
        })
    }
}

/// Why `serve`'s flags, each valid alone, do not make a configuration.
#[derive(Debug)]
pub enum ServeArgsError {
    /// `--tls-cert` without `--tls-key`, or the other way round.
    HalfTlsPair,
    /// `--listen` off loopback with node authentication off.
    OpenOffLoopback {
        listen: SocketAddr,
    },
    /// `--forget-offline-after` shorter than `--offline-after`.
    ForgetBeforeOffline {
        forget: Duration,
        offline: Duration,
    },
    Webhook(WebhookError),
    WebhookFormat(FormatError),
}

impl fmt::Display for ServeArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HalfTlsPair => f.write_str(
                "--tls-cert and --tls-key go together: give both (PEM files) or neither",
            ),
            Self::OpenOffLoopback { listen } => write!(
                f,
                "--listen {listen} is not a loopback address and node authentication is off: \
                 give --node-enroll-token-file FILE (nodes enroll with it), or \
                 --insecure-open-nodes to serve nodes unauthenticated anyway"
            ),
            Self::ForgetBeforeOffline { forget, offline } => write!(
                f,
                "--forget-offline-after {} is shorter than --offline-after {}: a node would \
                 be deleted before it shows offline",
                humantime::format_duration(*forget),
                humantime::format_duration(*offline)
            ),
            Self::Webhook(e) => e.fmt(f),
            Self::WebhookFormat(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ServeArgsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Webhook(e) => Some(e),
            Self::WebhookFormat(e) => Some(e),
            _ => None,
        }
    }
}

impl From<WebhookError> for ServeArgsError {
    fn from(e: WebhookError) -> Self {
        Self::Webhook(e)
    }
}

impl From<FormatError> for ServeArgsError {
    fn from(e: FormatError) -> Self {
        Self::WebhookFormat(e)
    }
}

/// Why one flag's value was refused (clap names the flag and the value).
#[derive(Debug)]
pub enum ValueError {
    Zero,
    NotDuration(humantime::DurationError),
    NotCount,
    NotRate(RateError),
    NotUrlBase,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zero => f.write_str("must be more than zero"),
            Self::NotDuration(e) => write!(f, "{e} (e.g. 3m, 90s)"),
            Self::NotCount => f.write_str("expected a whole number of at least 1"),
            Self::NotRate(e) => write!(f, "{e} (e.g. 16KiB, 1MiB/s)"),
            Self::NotUrlBase => f.write_str(
                "expected an http:// or https:// URL ending in / with no query, fragment, \
                 spaces or control characters (e.g. https://cdn.example.com/binproxy/)",
            ),
        }
    }
}

impl std::error::Error for ValueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NotDuration(e) => Some(e),
            Self::NotRate(e) => Some(e),
            Self::Zero | Self::NotCount | Self::NotUrlBase => None,
        }
    }
}

/// The base of artifact URLs: http(s), a host, ending in `/`, nothing an
/// agent would read as more than a prefix for the sha256.
fn url_base(v: &str) -> Result<String, ValueError> {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| !r.starts_with('/') && r.len() > 1)
        && v.ends_with('/')
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#');
    if ok {
        Ok(v.to_owned())
    } else {
        Err(ValueError::NotUrlBase)
    }
}

/// A humantime duration (`90s`, `3m`) of more than zero.
fn duration(v: &str) -> Result<Duration, ValueError> {
    match humantime::parse_duration(v) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(ValueError::Zero),
        Err(e) => Err(ValueError::NotDuration(e)),
    }
}

/// A whole number of at least 1.
fn count<T: std::str::FromStr + PartialOrd + From<u8>>(v: &str) -> Result<T, ValueError> {
    match v.parse::<T>() {
        Ok(n) if n >= T::from(1) => Ok(n),
        _ => Err(ValueError::NotCount),
    }
}

fn rate(v: &str) -> Result<u64, ValueError> {
    crate::server::rate::parse(v).map_err(ValueError::NotRate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    /// `serve WORDS`: clap's error or the configuration's.
    fn config(words: &[&str]) -> Result<ServeConfig, Box<dyn std::error::Error>> {
        let line = std::iter::once("serve").chain(words.iter().copied());
        Ok(Serve::try_parse_from(line)?.args.into_config()?)
    }

    #[test]
    fn defaults_are_the_servers() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 38012)));
        assert_eq!(c.offline_after, Duration::from_secs(180));
        assert_eq!(c.max_artifact_size, 1 << 30);
        assert_eq!(c.min_rate, 16 << 10);
        assert_eq!((c.max_connections, c.blocking_threads), (16_384, 16));
        assert_eq!(c.webhook_format, Format::Json);
    }

    #[test]
    fn artifact_url_base_is_an_http_prefix_ending_in_a_slash() {
        assert_eq!(config(&[]).unwrap().artifact_url_base, None);
        for good in ["https://cdn.example.com/binproxy/", "http://10.0.0.5:8080/"] {
            let c = config(&["--artifact-url-base", good]).unwrap();
            assert_eq!(c.artifact_url_base.as_deref(), Some(good));
        }
        for bad in [
            "https://cdn.example.com/binproxy",
            "ftp://cdn.example.com/",
            "https:///x/",
            "https://cdn.example.com/?a=/",
            "https://cdn.example.com/a b/",
            "cdn.example.com/",
        ] {
            let e = config(&["--artifact-url-base", bad])
                .unwrap_err()
                .to_string();
            assert!(e.contains("ending in /"), "{bad}: {e}");
        }
    }

    #[test]
    fn flags_set_their_values_and_workers_is_an_alias() {
        let c = config(&[
            "--workers",
            "7",
            "--flush-interval",
            "1m",
            "--min-rate=1MiB/s",
        ])
        .unwrap();
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.flush_interval, Duration::from_secs(60));
        assert_eq!(c.min_rate, 1 << 20);
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        for (bad, why) in [
            (&["--progress-keep", "0"][..], "at least 1"),
            (&["--io-timeout", "0s"], "more than zero"),
            (&["--header-timeout", "soon"], "e.g. 3m"),
            (&["--tls-cert", "c.pem"], "--tls-key"),
            (&["--listen", "0.0.0.0:1"], "--insecure-open-nodes"),
            (&["--webhook", "ftp://x/SeCrEt"], "--webhook"),
        ] {
            let err = config(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(!err.contains("SeCrEt"), "{err}");
        }
    }
}

//! manager-lite, the thin control plane of binproxy fleets.
//!
//! One process answers two audiences over HTTP: nodes (keepalive, their target
//! per bin, downloads, progress reports) and admins (uploads, releases, views of
//! the fleet). All state lives in one redb file behind [`store`]; artifacts are
//! files named by their sha256 behind [`artifacts`]. [`api`] is the HTTP API:
//! its route table maps a request to one thin endpoint function (by area:
//! nodes, bins, releases, access), which checks names, calls the store and
//! answers JSON; the module's doc is the map of which file has which
//! endpoint. [`store`] only persists; [`rollout`] is the release policy on
//! top of it (plans, waves and the tick, creating, superseding and rolling
//! back releases) and [`rollout::targets`] decides which version a node
//! should run. [`retention`] decides which versions may be forgotten.
//! [`serve`] owns the process: startup, signals, clean shutdown; [`server`]
//! is its network layer (hyper on tokio, TLS, connection caps, deadlines,
//! minimum rates, the bounded blocking pool).
//! [`signature`] checks the shape of the minisign signatures stored with
//! versions (the manager holds no key; agents verify them).
//! [`page`] is the admin page a browser opens at `/`, a client of the same API.
//! [`metrics`] renders `/metrics` for Prometheus; [`alerts`] posts release
//! and node events to webhooks (event bodies, a queue and delivery thread
//! per webhook, the node-offline watch).
//! [`cli`] is the command line (clap): `serve`'s flags, `tls`, shell
//! completions, and the admin commands that talk to a running server, one
//! file per command group (bins, releases, nodes, access, backup, mirror), every
//! table through one helper (`cli/table.rs` lays them out).
//! [`degraded`] tracks a storage part that failed a write (a full disk)
//! until a write works again (`GET /health` reports it).
//! [`backup`] makes the online backup archive and restores from one;
//! [`retention`] deletes versions and prunes beyond `--keep-versions`.
//! [`pki`] makes a private CA and the server's certificate (`tls init`,
//! `tls renew`) for `serve --tls-cert/--tls-key`: host checks, CA, leaf,
//! crash-safe file writing.

pub mod alerts;
pub mod api;
pub mod artifacts;
pub mod backup;
pub mod cli;
pub mod degraded;
pub mod deltas;
pub mod metrics;
pub mod page;
pub mod pki;
pub mod retention;
pub mod rollout;
pub mod serve;
pub mod server;
pub mod signature;
pub mod store;
pub mod time;

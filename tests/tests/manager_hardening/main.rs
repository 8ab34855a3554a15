//! The manager's HTTP server under hostile, sloppy or merely heavy clients,
//! over raw TCP (and TLS) on loopback, most cases while a legitimate client
//! checks it is still served. What `manager-lite serve` promises here:
//!
//! - Heads: a slow head gets 408 after `--header-timeout`, a silent
//!   connection is closed without a word; an idle kept-alive connection is
//!   closed after `--keepalive-timeout`; oversized heads get 431, bodies over
//!   the limit 413 and a close; garbage and broken framing a 4xx/5xx (from the
//!   HTTP engine, body possibly empty) and the server lives on.
//! - Capacity: the connection over `--max-connections` or over
//!   `--max-connections-per-ip` gets 503 + `Retry-After: 1` and a close, and
//!   the held connections (idle or kept alive) are untouched; 10,000 idle
//!   connections and 2,000 stalled TLS handshakes cost memory, not capacity,
//!   and the stalled handshakes are closed after the header timeout.
//! - Slow transfers: a body below `--min-rate` and a request past
//!   `--request-timeout` get 408 and a close; answers a client does not drain
//!   are dropped while a normal client downloads the same 64 MiB; a 1 GiB
//!   upload and download at normal speed go through.
//! - The blocking pool: with `--blocking-threads 1` a slowly streamed upload
//!   holds it and a keepalive gets 503 busy after `--queue-timeout`.
//! - Audit: a flood of unauthenticated admin writes is counted
//!   (`manager_audit_unauthenticated_total`), not written one record each;
//!   authenticated writes, 403s included, still are.
//! - Protocol: `Host` (missing or doubled: 400), `Authorization` (any case of
//!   `bearer`; doubled: 400), absolute-form targets, keep-alive, pipelining,
//!   HEAD, HTTP/1.0, `Expect: 100-continue`, and the `Cache-Control`, `ETag`
//!   and length headers of downloads, manifests, keepalives and a token's
//!   answers (`private`, `Vary: Authorization`, also on their 304s).
//! - SIGTERM exits 0 with idle and half-sent connections open; the new flags
//!   take their documented forms and the `listening on` line is unchanged.
//!
//! The `manager_http_*` metrics are checked where the contract names them.
//! No timing is asserted: waits are bounded generously only to catch hangs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::many_single_char_names
)]

mod audit;
mod capacity;
mod heads;
mod protocol;
mod transfers;

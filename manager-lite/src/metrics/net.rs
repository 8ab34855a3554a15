//! Counters of the network layer: connections open and refused, requests
//! cut by a deadline, requests turned away busy, and unauthenticated admin
//! writes (counted here instead of audited one by one). Plain atomics: the
//! server bumps them on every connection without taking a lock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Text;

/// Why a connection or request was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    HeaderTimeout,
    BodyTooSlow,
    AnswerTooSlow,
    RequestTimeout,
}

impl Cut {
    const ALL: [Cut; 4] = [
        Cut::HeaderTimeout,
        Cut::BodyTooSlow,
        Cut::AnswerTooSlow,
        Cut::RequestTimeout,
    ];

    fn label(self) -> &'static str {
        match self {
            Cut::HeaderTimeout => "header_timeout",
            Cut::BodyTooSlow => "body_too_slow",
            Cut::AnswerTooSlow => "answer_too_slow",
            Cut::RequestTimeout => "request_timeout",
        }
    }
}

/// Why a new connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    MaxConnections,
    PerIp,
}

/// Distinct addresses remembered between two summaries; past it, the rest
/// are only counted.
const MAX_ADDRS: usize = 1024;

#[derive(Default)]
pub struct Net {
    open: AtomicU64,
    refused: [AtomicU64; 2],
    cuts: [AtomicU64; 4],
    busy: AtomicU64,
    unauthenticated: AtomicU64,
    pending: Mutex<Pending>,
}

/// Unauthenticated writes since the last summary.
#[derive(Default)]
struct Pending {
    count: u64,
    since: Option<(Instant, String)>,
    by_addr: HashMap<IpAddr, u64>,
    last_summary: Option<Instant>,
}

/// What one audit summary says.
pub struct Summary {
    pub count: u64,
    /// RFC 3339.
    pub since: String,
    pub top_addr: String,
    pub top_count: u64,
}

impl Net {
    pub fn opened(&self) {
        self.open.fetch_add(1, Relaxed);
    }

    pub fn closed(&self) {
        self.open.fetch_sub(1, Relaxed);
    }

    pub fn refused(&self, why: Refused) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    pub fn cut(&self, why: Cut) {
        self.cuts[why as usize].fetch_add(1, Relaxed);
    }

    pub fn busy(&self) {
        self.busy.fetch_add(1, Relaxed);
    }

    /// An admin write refused with 401 (or 404/405 without a valid token).
    pub fn unauthenticated(&self, from: IpAddr) {
        self.unauthenticated.fetch_add(1, Relaxed);
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        p.count += 1;
        if p.since.is_none() {
            p.since = Some((Instant::now(), crate::time::now_rfc3339()));
        }
        if p.by_addr.len() < MAX_ADDRS || p.by_addr.contains_key(&from) {
            *p.by_addr.entry(from).or_default() += 1;
        }
    }

    /// The writes to sum up, if there are any and the last summary is at
    /// least `every` old; resets the count.
    pub fn take_unauthenticated(&self, every: Duration) -> Option<Summary> {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if p.count == 0 || p.last_summary.is_some_and(|t| t.elapsed() < every) {
            return None;
        }
        let (top_addr, top_count) = p
            .by_addr
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(a, n)| (a.to_string(), *n))
            .unwrap_or_default();
        let summary = Summary {
            count: p.count,
            since: p.since.take().map(|(_, at)| at).unwrap_or_default(),
            top_addr,
            top_count,
        };
        p.count = 0;
        p.by_addr.clear();
        p.last_summary = Some(Instant::now());
        Some(summary)
    }

    pub(super) fn render(&self, out: &mut Text) {
        out.head(
            "manager_http_connections_open",
            "gauge",
            "Client connections open now.",
        );
        out.sample(
            "manager_http_connections_open",
            &[],
            self.open.load(Relaxed),
        );
        out.head(
            "manager_http_connections_refused_total",
            "counter",
            "New connections answered 503 and closed: over --max-connections or --max-connections-per-ip.",
        );
        for (reason, n) in [("max_connections", 0), ("per_ip", 1)] {
            let v = self.refused[n].load(Relaxed);
            out.sample(
                "manager_http_connections_refused_total",
                &[("reason", reason)],
                v,
            );
        }
        out.head(
            "manager_http_cut_total",
            "counter",
            "Connections or requests cut by a deadline or the minimum rate.",
        );
        for cut in Cut::ALL {
            let v = self.cuts[cut as usize].load(Relaxed);
            out.sample("manager_http_cut_total", &[("reason", cut.label())], v);
        }
        out.head(
            "manager_http_busy_total",
            "counter",
            "Requests answered 503 because no blocking worker came free within --queue-timeout.",
        );
        out.sample("manager_http_busy_total", &[], self.busy.load(Relaxed));
        out.head(
            "manager_audit_unauthenticated_total",
            "counter",
            "Admin writes refused without a valid token: counted, summed up in the audit log at most once a minute.",
        );
        out.sample(
            "manager_audit_unauthenticated_total",
            &[],
            self.unauthenticated.load(Relaxed),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthenticated_writes_are_summed_up_at_most_once_per_period() {
        let net = Net::default();
        assert!(net.take_unauthenticated(Duration::ZERO).is_none());
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..3 {
            net.unauthenticated(a);
        }
        net.unauthenticated(b);
        let s = net.take_unauthenticated(Duration::from_secs(60)).unwrap();
        assert_eq!(
            (s.count, s.top_addr.as_str(), s.top_count),
            (4, "10.0.0.1", 3)
        );
        net.unauthenticated(b);
        assert!(net.take_unauthenticated(Duration::from_secs(60)).is_none());
        let s = net.take_unauthenticated(Duration::ZERO).unwrap();
        assert_eq!(s.count, 1);
        assert_eq!(net.unauthenticated.load(Relaxed), 5);
    }
}

//! The machinery of the permission table: the kinds of caller, one call
//! ready to send and what must still hold when it is refused, and the
//! fixtures (a fresh bin, a release in the state an operation needs, a pin,
//! an enrolled node) each call gets for itself.

use binproxy_protocol::{Release, ReleaseStatus};
use binproxy_tests::roles::{bearer, send};
use binproxy_tests::{artifact_bytes, Manager, Response};
use serde_json::{json, Value};
use std::cell::Cell;

// ---------------------------------------------------------------------------
// the permission table

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    NoToken,
    WrongToken,
    /// The bootstrap token (named "admin", from the environment).
    Bootstrap,
    /// A token created through the API with role admin.
    NamedAdmin,
    Publisher,
    Approver,
    Viewer,
}

impl Caller {
    pub(crate) const ALL: [Caller; 7] = [
        Caller::NoToken,
        Caller::WrongToken,
        Caller::Bootstrap,
        Caller::NamedAdmin,
        Caller::Publisher,
        Caller::Approver,
        Caller::Viewer,
    ];

    /// The role of the caller's token; `None` when it has no valid token.
    pub(crate) fn role(self) -> Option<&'static str> {
        match self {
            Caller::NoToken | Caller::WrongToken => None,
            Caller::Bootstrap | Caller::NamedAdmin => Some("admin"),
            Caller::Publisher => Some("publisher"),
            Caller::Approver => Some("approver"),
            Caller::Viewer => Some("viewer"),
        }
    }
}

/// The roles of the table besides admin, which may do everything.
pub(crate) const READERS: &[&str] = &["viewer", "publisher", "approver"];
pub(crate) const PUBLISHER: &[&str] = &["publisher"];
pub(crate) const PAUSERS: &[&str] = &["publisher", "approver"];
pub(crate) const APPROVER: &[&str] = &["approver"];
pub(crate) const ADMIN_ONLY: &[&str] = &[];

/// What must still hold after a refused call (checked as the bootstrap admin).
pub(crate) enum Unchanged {
    /// A read: nothing to check.
    Nothing,
    ReleaseStatus(u64, ReleaseStatus),
    /// The bin still has this many releases.
    ReleaseCount(String, usize),
    /// This version of the bin was not stored.
    NoVersion(String, String),
    /// This version of the bin is still stored.
    HasVersion(String, String),
    /// No token of this name was created.
    NoToken(String),
    /// The token with this secret still works.
    TokenWorks(String),
    /// The node has no pin for the bin (the bootstrap DELETE answers 404).
    NoPin(String, String),
    /// The node's pin for the bin is still there (the bootstrap DELETE answers 200).
    Pinned(String, String),
    /// This version of the bin (no arch) still has no signature.
    NoSignature(String, String),
    /// The node with this secret is still enrolled (its keepalive answers 200).
    Enrolled(String, String),
}

/// One call, ready to send.
pub(crate) struct Call {
    pub(crate) path: String,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
    pub(crate) unchanged: Unchanged,
}

impl Call {
    pub(crate) fn read(path: String) -> Call {
        Call {
            path,
            content_type: "",
            body: Vec::new(),
            unchanged: Unchanged::Nothing,
        }
    }

    pub(crate) fn json(path: String, body: &Value, unchanged: Unchanged) -> Call {
        Call {
            path,
            content_type: "application/json",
            body: serde_json::to_vec(body).unwrap(),
            unchanged,
        }
    }

    /// A POST without a body (a release operation).
    pub(crate) fn op(path: String, unchanged: Unchanged) -> Call {
        Call {
            path,
            content_type: "",
            body: Vec::new(),
            unchanged,
        }
    }
}

/// An admin endpoint: how to call it legitimately, and who may.
pub(crate) struct Endpoint {
    pub(crate) method: &'static str,
    pub(crate) route: &'static str,
    /// Roles besides admin that may call it.
    pub(crate) allowed: &'static [&'static str],
    pub(crate) prepare: fn(&Fixtures) -> Call,
}

/// Builds what the calls need, with a named admin token of its own (so that
/// the bootstrap and the other named admin are never a release's creator,
/// and four eyes never gets in the way of the table).
pub(crate) struct Fixtures<'a> {
    pub(crate) m: &'a Manager,
    pub(crate) setup: String,
    pub(crate) next: Cell<u32>,
    /// A registered node, for `GET /api/v1/nodes/{id}`.
    pub(crate) node: String,
    /// The manager's enrollment token (node authentication is on).
    pub(crate) enroll: String,
}

/// A keepalive body for `node_id`.
fn keepalive_body(node_id: &str) -> Value {
    json!({"node_id": node_id, "cpu_arch": "x86_64", "os": "linux", "os_release": "t",
           "node_name": node_id, "bin_proxy_version": "0.1.0", "bins": {}})
}

/// `POST /api/v1/keepalive` for `node_id` with `token` (an enrollment token
/// or a node secret).
pub(crate) fn node_keepalive(m: &Manager, node_id: &str, token: &str) -> Response {
    send(
        m,
        "POST",
        "/api/v1/keepalive",
        Some(token),
        Some(&keepalive_body(node_id)),
    )
}

/// Waves that keep a release with no nodes in its first wave for an hour.
pub(crate) fn slow_waves() -> Value {
    json!([{"percent": 10, "wait": "1h"}, {"percent": 100}])
}

impl Fixtures<'_> {
    pub(crate) fn n(&self) -> u32 {
        let n = self.next.get();
        self.next.set(n + 1);
        n
    }

    pub(crate) fn post(&self, path: &str, body: &Value) -> Response {
        send(self.m, "POST", path, Some(&self.setup), Some(body))
    }

    /// A POST without a body.
    pub(crate) fn op(&self, path: &str) -> Response {
        send(self.m, "POST", path, Some(&self.setup), None)
    }

    /// A fresh bin with versions "1" and "2" uploaded.
    pub(crate) fn bin(&self) -> String {
        let bin = format!("b{}", self.n());
        for v in ["1", "2"] {
            let bytes = artifact_bytes(&format!("{bin}-{v}"), 64);
            let auth = bearer(&self.setup);
            self.m
                .request(
                    "POST",
                    &format!("/api/v1/bins/{bin}/versions?version={v}"),
                    &[
                        ("Authorization", &auth),
                        ("Content-Type", "application/octet-stream"),
                    ],
                    &bytes,
                )
                .expect(201);
        }
        bin
    }

    pub(crate) fn release(&self, body: &Value, status: ReleaseStatus) -> Release {
        let r: Release = self.post("/api/v1/releases", body).expect(201).parse();
        assert_eq!(r.status, status, "{r:?}");
        r
    }

    /// Version "2" of a fresh bin, rolling out (first wave, for an hour).
    pub(crate) fn rolling(&self) -> Release {
        let bin = self.bin();
        self.release(
            &json!({"bin_name": bin, "version": "2", "waves": slow_waves()}),
            ReleaseStatus::RollingOut,
        )
    }

    /// Version "2" of a fresh bin, awaiting approval.
    pub(crate) fn pending(&self) -> Release {
        let bin = self.bin();
        self.release(
            &json!({"bin_name": bin, "version": "2", "waves": slow_waves(), "require_approval": true}),
            ReleaseStatus::PendingApproval,
        )
    }

    pub(crate) fn paused(&self) -> Release {
        let r = self.rolling();
        let r: Release = self
            .op(&format!("/api/v1/releases/{}/pause", r.id))
            .expect(200)
            .parse();
        assert_eq!(r.status, ReleaseStatus::Paused, "{r:?}");
        r
    }

    /// Version "2" rolling out over version "1", its baseline.
    pub(crate) fn rollbackable(&self) -> Release {
        let bin = self.bin();
        self.release(
            &json!({"bin_name": bin, "version": "1"}),
            ReleaseStatus::RollingOut,
        );
        let r = self.release(
            &json!({"bin_name": bin, "version": "2", "waves": slow_waves()}),
            ReleaseStatus::RollingOut,
        );
        assert_eq!(r.baseline_version.as_deref(), Some("1"), "{r:?}");
        r
    }

    /// A fresh node id and bin with version "1" (for pins).
    pub(crate) fn pin_target(&self) -> (String, String) {
        (format!("pn-{}", self.n()), self.bin())
    }

    /// A freshly enrolled node: its id and its secret.
    pub(crate) fn enrolled(&self) -> (String, String) {
        let node = format!("en-{}", self.n());
        let r = node_keepalive(self.m, &node, &self.enroll);
        r.expect(200);
        let secret = r.json()["node_secret"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"node_secret\" string: {r}"))
            .to_owned();
        (node, secret)
    }
}

pub(crate) fn release_op(op: &str, r: &Release) -> Call {
    Call::op(
        format!("/api/v1/releases/{}/{op}", r.id),
        Unchanged::ReleaseStatus(r.id, r.status),
    )
}

pub(crate) const fn ep(
    method: &'static str,
    route: &'static str,
    allowed: &'static [&'static str],
    prepare: fn(&Fixtures) -> Call,
) -> Endpoint {
    Endpoint {
        method,
        route,
        allowed,
        prepare,
    }
}

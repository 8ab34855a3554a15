//! The contract's permission table: every admin endpoint, how to call it
//! legitimately, and which roles besides admin may.

use crate::fixtures::{
    ep, release_op, slow_waves, Call, Endpoint, Unchanged, ADMIN_ONLY, APPROVER, PAUSERS,
    PUBLISHER, READERS,
};
use binproxy_tests::artifact_bytes;
use binproxy_tests::minisign::WELL_FORMED;
use binproxy_tests::roles::{new_token, send};
use serde_json::json;

/// The contract's permission table, one row per admin endpoint.
pub(crate) fn endpoints() -> Vec<Endpoint> {
    let mut all = reads();
    all.extend(writes());
    all.extend(admin_writes());
    all
}

/// Every role may read.
fn reads() -> Vec<Endpoint> {
    vec![
        ep("GET", "/api/v1/bins", READERS, |_| {
            Call::read("/api/v1/bins".into())
        }),
        ep("GET", "/api/v1/bins/{bin}/versions", READERS, |f| {
            Call::read(format!("/api/v1/bins/{}/versions", f.bin()))
        }),
        ep("GET", "/api/v1/bins/{bin}/progress", READERS, |f| {
            Call::read(format!("/api/v1/bins/{}/progress", f.bin()))
        }),
        ep("GET", "/api/v1/releases", READERS, |_| {
            Call::read("/api/v1/releases".into())
        }),
        ep("GET", "/api/v1/releases/{id}", READERS, |f| {
            Call::read(format!("/api/v1/releases/{}", f.rolling().id))
        }),
        ep("GET", "/api/v1/nodes", READERS, |_| {
            Call::read("/api/v1/nodes".into())
        }),
        ep("GET", "/api/v1/nodes/{id}", READERS, |f| {
            Call::read(format!("/api/v1/nodes/{}", f.node))
        }),
        ep("GET", "/api/v1/audit", READERS, |_| {
            Call::read("/api/v1/audit".into())
        }),
        ep("GET", "/api/v1/tokens", READERS, |_| {
            Call::read("/api/v1/tokens".into())
        }),
        // Prometheus scrapes with a viewer token unless --metrics-public.
        ep("GET", "/metrics", READERS, |_| {
            Call::read("/metrics".into())
        }),
    ]
}

fn writes() -> Vec<Endpoint> {
    vec![
        ep("POST", "/api/v1/bins/{bin}/versions", PUBLISHER, |f| {
            let bin = f.bin();
            Call {
                path: format!("/api/v1/bins/{bin}/versions?version=3"),
                content_type: "application/octet-stream",
                body: artifact_bytes(&format!("{bin}-3"), 64),
                unchanged: Unchanged::NoVersion(bin, "3".into()),
            }
        }),
        ep("POST", "/api/v1/releases", PUBLISHER, |f| {
            let bin = f.bin();
            Call::json(
                "/api/v1/releases".into(),
                &json!({"bin_name": bin, "version": "2", "waves": slow_waves()}),
                Unchanged::ReleaseCount(bin, 0),
            )
        }),
        ep("POST", "/api/v1/releases/{id}/pause", PAUSERS, |f| {
            release_op("pause", &f.rolling())
        }),
        ep("POST", "/api/v1/releases/{id}/approve", APPROVER, |f| {
            release_op("approve", &f.pending())
        }),
        ep("POST", "/api/v1/releases/{id}/resume", APPROVER, |f| {
            release_op("resume", &f.paused())
        }),
        ep("POST", "/api/v1/releases/{id}/promote", APPROVER, |f| {
            release_op("promote", &f.rolling())
        }),
        ep("POST", "/api/v1/releases/{id}/rollback", APPROVER, |f| {
            release_op("rollback", &f.rollbackable())
        }),
        ep("POST", "/api/v1/releases/{id}/cancel", ADMIN_ONLY, |f| {
            release_op("cancel", &f.rolling())
        }),
        // A read, but of every token's and node secret's hash.
        ep("GET", "/api/v1/backup", ADMIN_ONLY, |_| {
            Call::read("/api/v1/backup".into())
        }),
        ep("PUT", "/api/v1/nodes/{node}/pins/{bin}", ADMIN_ONLY, |f| {
            let (node, bin) = f.pin_target();
            Call::json(
                format!("/api/v1/nodes/{node}/pins/{bin}"),
                &json!({"version": "1"}),
                Unchanged::NoPin(node, bin),
            )
        }),
        ep(
            "DELETE",
            "/api/v1/nodes/{node}/pins/{bin}",
            ADMIN_ONLY,
            |f| {
                let (node, bin) = f.pin_target();
                let path = format!("/api/v1/nodes/{node}/pins/{bin}");
                send(
                    f.m,
                    "PUT",
                    &path,
                    Some(&f.setup),
                    Some(&json!({"version": "1"})),
                )
                .expect(200);
                Call::op(path, Unchanged::Pinned(node, bin))
            },
        ),
        ep(
            "PUT",
            "/api/v1/bins/{bin}/versions/{version}/signature",
            PUBLISHER,
            |f| {
                let bin = f.bin();
                Call {
                    path: format!("/api/v1/bins/{bin}/versions/1/signature"),
                    content_type: "text/plain",
                    body: WELL_FORMED.as_bytes().to_vec(),
                    unchanged: Unchanged::NoSignature(bin, "1".into()),
                }
            },
        ),
    ]
}

/// Node secrets and tokens: admin only.
fn admin_writes() -> Vec<Endpoint> {
    vec![
        ep(
            "DELETE",
            "/api/v1/nodes/{node_id}/secret",
            ADMIN_ONLY,
            |f| {
                let (node, secret) = f.enrolled();
                Call::op(
                    format!("/api/v1/nodes/{node}/secret"),
                    Unchanged::Enrolled(node, secret),
                )
            },
        ),
        ep(
            "DELETE",
            "/api/v1/bins/{bin}/versions/{version}",
            ADMIN_ONLY,
            |f| {
                let bin = f.bin();
                Call::op(
                    format!("/api/v1/bins/{bin}/versions/1"),
                    Unchanged::HasVersion(bin, "1".into()),
                )
            },
        ),
        ep("DELETE", "/api/v1/nodes/{node_id}", ADMIN_ONLY, |f| {
            let (node, secret) = f.enrolled();
            Call::op(
                format!("/api/v1/nodes/{node}"),
                Unchanged::Enrolled(node, secret),
            )
        }),
        ep("POST", "/api/v1/tokens", ADMIN_ONLY, |f| {
            let name = format!("new-{}", f.n());
            Call::json(
                "/api/v1/tokens".into(),
                &json!({"name": name, "role": "viewer"}),
                Unchanged::NoToken(name),
            )
        }),
        ep("DELETE", "/api/v1/tokens/{name}", ADMIN_ONLY, |f| {
            let name = format!("doomed-{}", f.n());
            let secret = new_token(f.m, &name, "viewer");
            Call::op(
                format!("/api/v1/tokens/{name}"),
                Unchanged::TokenWorks(secret),
            )
        }),
    ]
}

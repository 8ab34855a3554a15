//! `GET /api/v1/fleet`: counts by state, arch and bin version, for any role.

use super::*;

#[test]
fn fleet_counts_nodes_by_state_arch_and_version_for_any_role() {
    let s = small_fleet(ManagerOptions::default());
    s.m.get("/api/v1/fleet").expect_error(401);
    let bad = [("Authorization", "Bearer not-a-token")];
    s.m.get_with("/api/v1/fleet", &bad).expect_error(401);

    let v = wait_fleet(&s.m, "7 nodes", |v| v["nodes"] == 7);
    assert_eq!([&v["online"], &v["offline"]], [7, 0]);
    assert_eq!(v["arches"], json!({"": 1, "aarch64": 2, "x86_64": 4}));
    assert_eq!(v["bins"].as_array().unwrap().len(), 2, "{v}");
    // 3.0.0 is uploaded but run by none: not listed.
    let svc = json!({"bin_name": "svc", "nodes": 6, "missing": 1, "unknown": 1,
        "versions": [{"version": "1.0.0", "nodes": 3}, {"version": "2.0.0", "nodes": 1}]});
    assert_eq!(*bin(&v, "svc"), svc);
    let web = json!({"bin_name": "web", "nodes": 1, "missing": 0, "unknown": 0,
        "versions": [{"version": "1.0.0", "nodes": 1}]});
    assert_eq!(*bin(&v, "web"), web);
    for role in ["admin", "publisher", "approver", "viewer"] {
        let auth = bearer(&s.m, role);
        let r = s.m.get_with("/api/v1/fleet", &[("Authorization", &auth)]);
        assert_eq!(r.expect(200).json(), v, "as a {role}");
    }

    // A node moves to 2.0.0 and a new one comes on it: 2.0.0 now leads.
    s.send(["app-02", "Web-Beta", "x86_64", "staging", "2.0.0"]);
    s.send(["new-01", "New", "aarch64", "prod", "2.0.0"]);
    let v = wait_fleet(&s.m, "8 nodes, 3 on 2.0.0", |v| {
        v["nodes"] == 8 && bin(v, "svc")["versions"][0]["nodes"] == 3
    });
    assert_eq!(v["arches"], json!({"": 1, "aarch64": 3, "x86_64": 4}));
    let svc = json!({"bin_name": "svc", "nodes": 7, "missing": 1, "unknown": 1,
        "versions": [{"version": "2.0.0", "nodes": 3}, {"version": "1.0.0", "nodes": 2}]});
    assert_eq!(*bin(&v, "svc"), svc, "most nodes first");
}

#[test]
fn offline_nodes_are_counted_and_found_by_state() {
    let s = small_fleet(ManagerOptions::default().arg("--offline-after").arg("3s"));
    wait_fleet(&s.m, "every node offline", |v| v["offline"] == 7);
    let live = ["app-03", "db-02"];
    let back = || live.iter().for_each(|id| s.touch(id));
    let v = wait_fleet(&s.m, "two nodes online again", |v| {
        back();
        v["online"] == 2 && v["offline"] == 5
    });
    assert_eq!(v["nodes"], 7);
    assert_eq!(v["arches"], json!({"": 1, "aarch64": 2, "x86_64": 4}));

    back();
    let r = s.m.admin_get("/api/v1/nodes?state=online");
    let online: Vec<Node> = r.expect(200).parse();
    assert!(online.iter().all(|n| n.online), "{r}");
    assert_eq!(ids(&r), live);
    assert_eq!(r.header("x-total-count"), Some("2"));
    let offline = "app-01 app-02 db-01 edge-01 edge-02 / 5";
    assert_eq!(s.search("state=offline"), offline);
    assert_eq!(s.search("state=offline&arch=aarch64"), "db-01 / 1");
    back();
    assert_eq!(s.search("state=online&arch=aarch64"), "app-03 / 1");
}

//! The agent over HTTPS: the real `binproxy run` talks TLS to a forwarder
//! (`binproxy_tests::tls_forward`) in front of the real `manager-lite`, with
//! certificates from a test CA. With the right `ca_file` a version installs
//! end to end, its download passing through TLS; with another CA's file, or
//! with the default webpki roots, the agent refuses the certificate, says so
//! naming the URL, and keeps its binary; a `ca_file` that is not PEM is a
//! config error naming the file. The last test does the same against the
//! manager's own HTTPS (`serve --tls-cert --tls-key`), published to with the
//! CLI's `--ca-file`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_tests::agent::{installed_hash, publish, Agent};
use binproxy_tests::tls::TestCa;
use binproxy_tests::tls_forward::TlsForwarder;
use binproxy_tests::wait_until;
use binproxy_tests::{artifact_bytes, Manager};
use serde_json::json;
use std::fs;
use std::time::Duration;

const BIN: &str = "svc";
const WAIT: Duration = Duration::from_secs(30);

/// The agent's config against `url`, with `ca_file` when given.
fn configure(a: &Agent, url: &str, ca_file: Option<&std::path::Path>) {
    let mut config = a.config_json(url, &json!({}));
    if let Some(ca) = ca_file {
        config["ca_file"] = json!(ca);
    }
    a.write_config(&config);
}

#[test]
fn with_the_right_ca_file_a_version_installs_over_https() {
    let m = Manager::new();
    let ca = TestCa::new("fleet CA");
    let fwd = TlsForwarder::start(&ca.server_cert("manager"), m.addr);
    // Large enough that its download is most of what crosses the TLS link.
    let v1 = artifact_bytes("tls-v1", 300_000);
    let s1 = publish(&m, BIN, "1.0.0", &v1);

    let a = Agent::new(BIN);
    configure(&a, &fwd.url, Some(&ca.ca_file));
    a.run().expect_code(0);

    a.assert_live(&v1, "after an update over https");
    assert_eq!(installed_hash(&m, &a.node_id, BIN).as_deref(), Some(&*s1));
    assert!(fwd.connections() >= 1, "the agent never connected over TLS");
    assert_eq!(fwd.handshakes_failed(), 0);
    assert!(
        fwd.bytes_to_clients() >= v1.len() as u64,
        "the download did not pass through TLS: {} bytes forwarded",
        fwd.bytes_to_clients()
    );
}

#[test]
fn another_ca_or_the_default_roots_refuse_the_certificate_and_keep_the_binary() {
    let m = Manager::new();
    let ca = TestCa::new("fleet CA");
    let other = TestCa::new("some other CA");
    let fwd = TlsForwarder::start(&ca.server_cert("manager"), m.addr);
    publish(&m, BIN, "1.0.0", &artifact_bytes("tls-refused", 4096));
    let old = b"#!/bin/sh\necho old\n".to_vec();

    for (what, ca_file) in [
        ("another CA's file", Some(other.ca_file.as_path())),
        ("the webpki roots", None),
    ] {
        let a = Agent::new(BIN);
        a.place(&old);
        configure(&a, &fwd.url, ca_file);
        let failed_before = fwd.handshakes_failed();
        let out = a.run();

        assert_ne!(out.code, Some(0), "{what}: {out:?}");
        assert_eq!(
            out.code,
            Some(69),
            "{what}: unreachable, nothing changed: {out:?}"
        );
        assert!(
            out.stderr.contains(&fwd.url) && out.stderr.contains("certificate"),
            "{what}: the message names the URL and the certificate:\n{}",
            out.stderr
        );
        a.assert_live(&old, what);
        assert_eq!(installed_hash(&m, &a.node_id, BIN), None, "{what}");
        wait_until("the forwarder sees the refused handshake", WAIT, || {
            fwd.handshakes_failed() > failed_before
        });
    }
}

#[test]
fn a_ca_file_that_is_not_pem_is_a_config_error_naming_the_file() {
    let a = Agent::new(BIN);
    let old = b"#!/bin/sh\necho old\n".to_vec();
    a.place(&old);
    let garbage = a.dir.join("ca.pem");
    fs::write(&garbage, b"this is not a certificate\n").unwrap();
    let missing = a.dir.join("missing-ca.pem");

    for (ca_file, why) in [(&garbage, "no PEM certificate"), (&missing, "cannot read")] {
        // The manager is never contacted: the config is refused first.
        configure(&a, "https://127.0.0.1:9", Some(ca_file));
        let out = a.run();
        out.expect_code(2);
        let name = ca_file.display().to_string();
        assert!(
            out.stderr.contains(&name) && out.stderr.contains(why),
            "the error names {name} and says {why:?}:\n{}",
            out.stderr
        );
        a.assert_live(&old, "after a config error");
    }
}

/// The manager serving HTTPS itself (`--tls-cert`/`--tls-key`), published to
/// with the CLI's `--ca-file`: the agent with that CA installs, the agent
/// with another CA refuses and keeps its binary.
#[test]
fn against_the_managers_own_tls_the_right_ca_installs_and_another_is_refused() {
    let ca = TestCa::new("manager CA");
    let other = TestCa::new("not the manager's CA");
    let cert = ca.server_cert("manager");
    let m = Manager::new_with(
        binproxy_tests::ManagerOptions::default().tls(&cert.cert_file, &cert.key_file),
    );
    assert!(m.url.starts_with("https://"), "{}", m.url);
    let tmp = binproxy_tests::TempDir::new("tls-native");
    let token_file = tmp.join("token");
    fs::write(&token_file, &m.token).unwrap();
    let v1 = artifact_bytes("tls-native-v1", 200_000);
    let file = tmp.join("svc-1.0.0");
    fs::write(&file, &v1).unwrap();
    let ca_arg = ca.ca_file.to_str().unwrap();
    let file_arg = file.to_str().unwrap();
    let out = m.cli(
        &token_file,
        &[
            "publish",
            BIN,
            "1.0.0",
            file_arg,
            "--release",
            "--ca-file",
            ca_arg,
        ],
    );
    assert!(out.status.success(), "publish over https: {out:?}");

    let old = b"#!/bin/sh\necho old\n".to_vec();
    let refused = Agent::new(BIN);
    refused.place(&old);
    configure(&refused, &m.url, Some(&other.ca_file));
    let out = refused.run();
    out.expect_code(69);
    assert!(
        out.stderr.contains(&m.url) && out.stderr.contains("certificate"),
        "the message names the URL and the certificate:\n{}",
        out.stderr
    );
    refused.assert_live(&old, "agent trusting another CA");

    let a = Agent::new(BIN);
    configure(&a, &m.url, Some(&ca.ca_file));
    a.run().expect_code(0);
    a.assert_live(&v1, "after an update from the manager's own https");
}

//! manager-lite serving HTTPS itself (`--tls-cert`/`--tls-key`), with
//! certificates from a throwaway test CA: the admin CLI talks to it with
//! `--ca-file` (or `MANAGER_CA_FILE`), a client trusting another CA is
//! refused with a certificate error, plain HTTP on the TLS port gets a clear
//! answer and the server goes on, downloads keep their ranges and lengths
//! over TLS, and bad certificate or key files stop `serve` naming the file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::many_single_char_names
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use binproxy_tests::tls::TestCa;
use binproxy_tests::{
    artifact_bytes, manager_bin, output_within, sha256_hex, Manager, ManagerOptions, TempDir,
};
use rustls::pki_types::ServerName;

/// A manager serving HTTPS with a certificate of `ca`, and a token file.
fn tls_manager(ca: &TestCa, tmp: &TempDir) -> (Manager, std::path::PathBuf) {
    let cert = ca.server_cert("manager");
    let m = Manager::new_with(ManagerOptions::default().tls(&cert.cert_file, &cert.key_file));
    assert!(m.url.starts_with("https://"), "{}", m.url);
    let token_file = tmp.join("token");
    std::fs::write(&token_file, &m.token).unwrap();
    (m, token_file)
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[track_caller]
fn succeeded(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn the_cli_talks_https_with_a_ca_file_or_its_env() {
    let tmp = TempDir::new("tls-cli");
    let ca = TestCa::new("manager test CA");
    let (m, token_file) = tls_manager(&ca, &tmp);
    let ca_file = ca.ca_file.to_str().unwrap();
    let artifact = tmp.join("tool-1.0");
    std::fs::write(&artifact, artifact_bytes("tls", 200_000)).unwrap();

    let out = m.cli(
        &token_file,
        &[
            "publish",
            "tool",
            "1.0",
            artifact.to_str().unwrap(),
            "--ca-file",
            ca_file,
        ],
    );
    assert!(succeeded(&out).contains("tool"), "{out:?}");
    succeeded(&m.cli(&token_file, &["nodes", "--ca-file", ca_file]));

    let mut cmd = Command::new(manager_bin());
    cmd.args([
        "token",
        "list",
        "--json",
        "--server",
        &m.url,
        "--token-file",
    ])
    .arg(&token_file)
    .env_remove("MANAGER_ADMIN_TOKEN")
    .env_remove("MANAGER_URL")
    .env("MANAGER_CA_FILE", &ca.ca_file);
    let listed = succeeded(&output_within(&mut cmd, Duration::from_secs(60)));
    assert!(listed.contains("admin"), "{listed}");
}

#[test]
fn a_client_trusting_another_ca_is_refused_with_a_certificate_error() {
    let tmp = TempDir::new("tls-other-ca");
    let ca = TestCa::new("manager test CA");
    let (m, token_file) = tls_manager(&ca, &tmp);
    let other = TestCa::new("some other CA");
    let refused = |args: &[&str]| {
        let out = m.cli(&token_file, args);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stderr = text(&out.stderr).to_lowercase();
        assert!(stderr.contains("certificate"), "{stderr}");
        assert!(
            !stderr.contains(&m.token.to_lowercase()),
            "token in {stderr}"
        );
    };
    refused(&["nodes", "--ca-file", other.ca_file.to_str().unwrap()]);
    // Without a CA file the built-in web roots do not know the test CA either.
    refused(&["nodes"]);
    // A CA file that is not one is a configuration error naming it.
    let junk = tmp.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let out = m.cli(&token_file, &["nodes", "--ca-file", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("junk.pem"), "{out:?}");
    // The server is unharmed by the failed handshakes.
    succeeded(&m.cli(
        &token_file,
        &["nodes", "--ca-file", ca.ca_file.to_str().unwrap()],
    ));
}

#[test]
fn plain_http_on_the_tls_port_fails_cleanly_and_the_server_goes_on() {
    let tmp = TempDir::new("tls-plain");
    let ca = TestCa::new("manager test CA");
    let (m, token_file) = tls_manager(&ca, &tmp);
    let r = m.request("GET", "/health", &[], b"");
    r.expect_error(400);
    assert!(r.text().contains("https"), "{r}");
    // Bytes that start like a TLS record and then are nonsense: closed.
    let mut s = TcpStream::connect(m.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(b"\x16\x03\x01\x00\x05garbage-garbage-garbage");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(!rest.starts_with(b"HTTP/"), "{rest:?}");
    succeeded(&m.cli(
        &token_file,
        &["nodes", "--ca-file", ca.ca_file.to_str().unwrap()],
    ));
}

/// A rustls client trusting only `ca_file`.
fn tls_connect(
    ca_file: &Path,
    addr: std::net::SocketAddr,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let config = binproxy_tests::tls::client_config(ca_file);
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Status, lower-case headers and body of one answer on a kept-alive stream.
fn answer(r: &mut impl BufRead, head_only: bool) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let Some((k, v)) = h.trim_end().split_once(':') else {
            break;
        };
        headers.push((k.to_lowercase(), v.trim().to_owned()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; if head_only { 0 } else { len }];
    r.read_exact(&mut body).unwrap();
    (status, headers, body)
}

#[test]
fn downloads_keep_length_ranges_and_keep_alive_over_tls() {
    let tmp = TempDir::new("tls-download");
    let ca = TestCa::new("manager test CA");
    let (m, token_file) = tls_manager(&ca, &tmp);
    let bytes = artifact_bytes("tls-dl", 300_000);
    let artifact = tmp.join("dl");
    std::fs::write(&artifact, &bytes).unwrap();
    succeeded(&m.cli(
        &token_file,
        &[
            "publish",
            "dl",
            "1.0",
            artifact.to_str().unwrap(),
            "--ca-file",
            ca.ca_file.to_str().unwrap(),
        ],
    ));
    let path = format!("/api/v1/download/{}", sha256_hex(&bytes));
    let mut tls = BufReader::new(tls_connect(&ca.ca_file, m.addr));
    let send = |r: &mut BufReader<_>, head: String| {
        let s: &mut rustls::StreamOwned<_, _> = r.get_mut();
        s.write_all(head.as_bytes()).unwrap();
        s.flush().unwrap();
    };
    send(&mut tls, format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
    let (status, _, body) = answer(&mut tls, false);
    assert_eq!(status, 200);
    assert_eq!(body, bytes);
    send(&mut tls, format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
    let (status, headers, _) = answer(&mut tls, true);
    assert_eq!(status, 200);
    assert!(
        headers.contains(&("content-length".into(), "300000".into())),
        "{headers:?}"
    );
    send(
        &mut tls,
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nRange: bytes=1000-\r\nConnection: close\r\n\r\n"
        ),
    );
    let (status, headers, body) = answer(&mut tls, false);
    assert_eq!(status, 206);
    assert!(
        headers.contains(&("content-range".into(), "bytes 1000-299999/300000".into())),
        "{headers:?}"
    );
    assert_eq!(body, &bytes[1000..]);
}

#[test]
fn bad_tls_files_stop_serve_naming_the_file() {
    let tmp = TempDir::new("tls-bad");
    let ca = TestCa::new("manager test CA");
    let good = ca.server_cert("good");
    let other = ca.server_cert("other");
    let garbage = tmp.join("garbage.key");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let missing = tmp.join("missing.pem");
    let serve = |cert: &Path, key: &Path| {
        let mut cmd = Command::new(manager_bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(tmp.join("data"))
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .env("MANAGER_ADMIN_TOKEN", "tls-bad-token-0123456789");
        output_within(&mut cmd, Duration::from_secs(60))
    };
    for (cert, key, named) in [
        (&good.cert_file, &garbage, "garbage.key"),
        (&good.cert_file, &good.cert_file, "good.crt"),
        (&missing, &good.key_file, "missing.pem"),
        (&good.key_file, &good.key_file, "good.key"),
        (&good.cert_file, &other.key_file, "other.key"),
    ] {
        let out = serve(cert, key);
        assert!(!out.status.success(), "{cert:?} {key:?}: {out:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(named), "{cert:?} {key:?}: {stderr}");
        assert!(!stderr.contains("listening on"), "{stderr}");
    }
    // One without the other: a usage error.
    let mut cmd = Command::new(manager_bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(tmp.join("data"))
        .arg("--tls-cert")
        .arg(&good.cert_file);
    let out = output_within(&mut cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("--tls-key"), "{out:?}");
}

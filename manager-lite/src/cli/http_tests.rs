//! Tests of [`super`] and of the commands' requests, against a one-shot
//! server on loopback.

use super::*;
use crate::cli::bins::{open_artifact, put_signature, read_signature, signed_line};
use crate::cli::render::tests::sample_release;
use crate::cli::settings::Settings;
use binproxy_protocol::{CreatedToken, NewToken, Pin, Release, Role, Version};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A file `name` in `dir`, removed with it.
fn temp_file(dir: &TempDir, name: &str, content: &str) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, content).unwrap();
    path
}

/// A well-formed signature (base64 of the right lengths), not a valid one.
const SIGNATURE: &str = "untrusted comment: signature from minisign secret key\n\
    RUS/6ARklDCuZucTpt+RnHwxPQQVoBhvNhJaitDn16AWO1o+21elY7nnfC3f6X79V2U4x7EHazg3tTD9MXtJYSzHFiD37mRcnQw=\n\
    trusted comment: bin=a version=1 timestamp=1700000000\n\
    NJa3FKs9y0AKjHaxW9fhpycmdS1ManTIIEgQXEXPXKQ7VH0nr3kLP/PUQTUdxU1IohV89S60PCSyKZRt8TuhDQ==\n";

#[test]
fn token_create_posts_name_and_role_and_reads_the_secret() {
    let json = r#"{"name":"ci","role":"publisher","token":"s3cr3t-once","created_at":"t","created_by":"admin"}"#;
    let answer = http_answer("201 Created", json);
    let (url, server) = serve_once(move |r| {
        let mut body = [0; 32];
        r.read_exact(&mut body).unwrap();
        r.get_mut().write_all(answer.as_bytes()).unwrap();
        body
    });
    let new = NewToken {
        name: "ci".into(),
        role: Role::Publisher,
    };
    let answer = client(&url).post_json("/api/v1/tokens", &new).ok().unwrap();
    assert_eq!(answer.status, 201);
    let created: CreatedToken = answer.parse().unwrap();
    assert_eq!(
        (created.token.as_str(), created.info.role),
        ("s3cr3t-once", Role::Publisher)
    );
    let (head, body) = server.join().unwrap();
    assert!(head.starts_with("POST /api/v1/tokens HTTP/1.1"), "{head}");
    assert_eq!(&body, br#"{"name":"ci","role":"publisher"}"#);
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
        roots: None,
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
    let dir = tempfile::tempdir().unwrap();
    let file = temp_file(&dir, "upload", "0123456789");
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
    // No "Expect: 100-continue": ureq cannot parse a 100 answer that has
    // headers, and would then never send the body.
    assert!(!head.to_ascii_lowercase().contains("expect:"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 10\r\n"),
        "{head}"
    );
    assert_eq!(&body, b"0123456789");
}

#[test]
fn operations_post_without_a_body() {
    let json = serde_json::to_string(&sample_release()).unwrap();
    let answer = http_answer("200 OK", &json);
    let (url, server) = serve_once(move |r| r.get_mut().write_all(answer.as_bytes()).unwrap());
    let answer = client(&url)
        .post_empty("/api/v1/releases/7/pause")
        .ok()
        .unwrap();
    assert_eq!(answer.parse::<Release>().unwrap().id, 7);
    let (head, ()) = server.join().unwrap();
    assert!(
        head.starts_with("POST /api/v1/releases/7/pause HTTP/1.1"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(
        !lower.contains("content-length") || lower.contains("content-length: 0\r\n"),
        "{head}"
    );
}

#[test]
fn pins_are_put_and_deleted() {
    let answer = http_answer(
        "200 OK",
        r#"{"node_id":"n:1","bin_name":"a","version":"1"}"#,
    );
    let (url, server) = serve_once(move |r| {
        let mut body = [0; 15];
        r.read_exact(&mut body).unwrap();
        r.get_mut().write_all(answer.as_bytes()).unwrap();
        body
    });
    let answer = client(&url)
        .put_json(
            "/api/v1/nodes/n:1/pins/a",
            &serde_json::json!({"version": "1"}),
        )
        .ok()
        .unwrap();
    assert_eq!(answer.parse::<Pin>().unwrap().version, "1");
    let (head, body) = server.join().unwrap();
    assert!(
        head.starts_with("PUT /api/v1/nodes/n:1/pins/a HTTP/1.1"),
        "{head}"
    );
    assert_eq!(&body, br#"{"version":"1"}"#);

    // An answer without a body is a success too.
    let answer = http_answer("200 OK", "");
    let (url, server) = serve_once(move |r| r.get_mut().write_all(answer.as_bytes()).unwrap());
    let answer = client(&url).delete("/api/v1/nodes/n/pins/a").ok().unwrap();
    assert_eq!(answer.body, Json::Null);
    let (head, ()) = server.join().unwrap();
    assert!(
        head.starts_with("DELETE /api/v1/nodes/n/pins/a HTTP/1.1"),
        "{head}"
    );
}

#[test]
fn signature_files_are_checked_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    let good = temp_file(&dir, "good.minisig", SIGNATURE);
    assert_eq!(read_signature(&good).unwrap(), SIGNATURE);
    let bad = temp_file(&dir, "bad.minisig", "untrusted comment: x\nnot base64\n");
    let err = read_signature(&bad).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let text = err.to_string();
    assert!(
        text.contains("bad.minisig") && text.contains("2 lines"),
        "{text}"
    );
    let big = temp_file(&dir, "big.minisig", &"x".repeat(5000));
    let text = read_signature(&big).unwrap_err().to_string();
    assert!(text.contains("over the limit of 4096"), "{text}");
    let text = read_signature(Path::new("/nonexistent/a.minisig"))
        .unwrap_err()
        .to_string();
    assert!(text.contains("/nonexistent/a.minisig"), "{text}");
}

#[test]
fn signatures_are_put_as_text_with_the_arch() {
    let version = serde_json::json!({
        "bin_name": "a", "version": "1", "arch": "aarch64", "sha256sum": "ab",
        "size": 10, "created_at": "t", "signature": SIGNATURE,
    });
    let answer = http_answer("200 OK", &version.to_string());
    let (url, server) = serve_once(move |r| {
        let mut body = vec![0; SIGNATURE.len()];
        r.read_exact(&mut body).unwrap();
        r.get_mut().write_all(answer.as_bytes()).unwrap();
        body
    });
    let answer = put_signature(&client(&url), "a", "1", Some("arm64"), SIGNATURE)
        .ok()
        .unwrap();
    let v: Version = answer.parse().unwrap();
    assert_eq!(
        signed_line(&v),
        "signature stored (trusted comment: bin=a version=1 timestamp=1700000000)\n"
    );
    let (head, body) = server.join().unwrap();
    assert!(
        head.starts_with("PUT /api/v1/bins/a/versions/1/signature?arch=arm64 HTTP/1.1"),
        "{head}"
    );
    assert_eq!(body, SIGNATURE.as_bytes());
    assert_eq!(
        signed_line(&Version {
            signature: None,
            ..v
        }),
        "no signature stored\n"
    );
}

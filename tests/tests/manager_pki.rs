//! `manager-lite tls init` and `tls renew` end to end, and what an agent says
//! about the certificates operators get wrong. `init` writes a CA and a
//! server certificate with the right modes and refuses to replace them or to
//! take a bad host list; the real manager serves with them and the real
//! agent, given only `ca_file`, installs over https, while a rustls client
//! checks the name. `renew` signs a new leaf with the same CA, which an agent
//! with its old `ca_file` still trusts. An agent facing a self-signed
//! `CA:TRUE` certificate, or a private CA without `ca_file`, says what is
//! wrong in words and what to do, and so does one facing a certificate for
//! other names. The README's openssl recipe (bring your own PKI), run as
//! written, makes files the manager serves and agents trust.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use binproxy_tests::agent::Agent;
use binproxy_tests::{
    artifact_bytes, manager_bin, output_within, Manager, ManagerOptions, TempDir,
};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use serde_json::json;

const BIN: &str = "svc";
const HOSTS: &str = "localhost,127.0.0.1,::1";

/// `manager-lite tls ARGS`, bounded in time.
fn tls(args: &[&str]) -> Output {
    let mut cmd = Command::new(manager_bin());
    cmd.arg("tls").args(args);
    output_within(&mut cmd, Duration::from_secs(60))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn expect_code(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `tls init --dir DIR --host HOSTS ARGS...`, which must succeed; its stdout.
fn init(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["init", "--dir", dir.to_str().unwrap(), "--host", HOSTS];
    args.extend_from_slice(extra);
    expect_code(&tls(&args), 0)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A manager serving HTTPS with `DIR/server.pem` and `DIR/server.key`.
fn serve(dir: &Path) -> Manager {
    let m = Manager::new_with(
        ManagerOptions::default().tls(&dir.join("server.pem"), &dir.join("server.key")),
    );
    assert!(m.url.starts_with("https://"), "{}", m.url);
    m
}

/// Publishes `bytes` as a released version over https, trusting `ca`.
fn publish(m: &Manager, tmp: &TempDir, version: &str, bytes: &[u8], ca: &Path) {
    let token_file = tmp.join("token");
    fs::write(&token_file, &m.token).unwrap();
    let file = tmp.join(&format!("{BIN}-{version}"));
    fs::write(&file, bytes).unwrap();
    let args = [
        "publish",
        BIN,
        version,
        file.to_str().unwrap(),
        "--release",
        "--ca-file",
        ca.to_str().unwrap(),
    ];
    let out = m.cli(&token_file, &args);
    assert!(out.status.success(), "publish over https: {out:?}");
}

/// Publishes a new version over https and has `a`, trusting `ca`, install it.
fn publish_and_converge(m: &Manager, tmp: &TempDir, a: &Agent, version: &str, ca: &Path) {
    let bytes = artifact_bytes(&format!("pki-{version}"), 50_000);
    publish(m, tmp, version, &bytes, ca);
    configure(a, &m.url, Some(ca));
    a.run().expect_code(0);
    a.assert_live(&bytes, &format!("after installing {version} over https"));
}

/// The agent's config against `url`, with `ca_file` when given.
fn configure(a: &Agent, url: &str, ca_file: Option<&Path>) {
    let mut config = a.config_json(url, &json!({}));
    if let Some(ca) = ca_file {
        config["ca_file"] = json!(ca);
    }
    a.write_config(&config);
}

/// A TLS handshake with `addr` by a rustls client that trusts only
/// `ca_file` and expects the certificate to name `name`.
fn handshake(ca_file: &Path, addr: SocketAddr, name: &str) -> Result<(), String> {
    let config = binproxy_tests::tls::client_config(ca_file);
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Serial number and end of validity of a PEM certificate.
fn serial_and_end(pem_file: &Path) -> (Vec<u8>, i64) {
    let params = CertificateParams::from_ca_cert_pem(&fs::read_to_string(pem_file).unwrap())
        .expect("a PEM certificate");
    let serial = params.serial_number.expect("a serial").to_bytes();
    (serial, params.not_after.unix_timestamp())
}

#[test]
fn init_makes_a_ca_and_server_certificate_an_agent_trusts_over_https() {
    let tmp = TempDir::new("pki-init");
    let dir = tmp.join("tls");
    let out = init(&dir, &[]);

    let abs = |name: &str| fs::canonicalize(&dir).unwrap().join(name);
    let flags = format!(
        "--tls-cert {} --tls-key {}",
        abs("server.pem").display(),
        abs("server.key").display()
    );
    assert!(out.contains(&flags), "the serve flags:\n{out}");
    let ca_line = format!("\"ca_file\": \"{}\"", abs("ca.pem").display());
    assert!(out.contains(&ca_line), "the agent's ca_file line:\n{out}");
    assert!(!out.contains("PRIVATE KEY"), "no key is printed:\n{out}");
    assert_eq!(mode(&dir), 0o700, "the directory");
    for (name, want) in [
        ("ca.key", 0o600),
        ("server.key", 0o600),
        ("ca.pem", 0o644),
        ("server.pem", 0o644),
    ] {
        assert_eq!(mode(&dir.join(name)), want, "{name}");
    }
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["ca.key", "ca.pem", "server.key", "server.pem"]);

    let m = serve(&dir);
    let ca = dir.join("ca.pem");
    for name in ["localhost", "127.0.0.1"] {
        handshake(&ca, m.addr, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let e = handshake(&ca, m.addr, "elsewhere.example").unwrap_err();
    assert!(e.contains("not valid for name"), "a name not given: {e}");

    publish_and_converge(&m, &tmp, &Agent::new(BIN), "1.0.0", &ca);
}

#[test]
fn init_refuses_to_replace_files_and_bad_host_lists_are_usage_errors() {
    let tmp = TempDir::new("pki-refuse");
    let dir = tmp.join("tls");
    init(&dir, &[]);
    let before: Vec<Vec<u8>> = ["ca.pem", "ca.key", "server.pem", "server.key"]
        .iter()
        .map(|n| fs::read(dir.join(n)).unwrap())
        .collect();
    let out = tls(&["init", "--dir", dir.to_str().unwrap(), "--host", HOSTS]);
    expect_code(&out, 1);
    assert!(text(&out.stderr).contains("already exists"), "{out:?}");
    for (i, n) in ["ca.pem", "ca.key", "server.pem", "server.key"]
        .iter()
        .enumerate()
    {
        assert_eq!(fs::read(dir.join(n)).unwrap(), before[i], "{n} unchanged");
    }

    // One file of the four is enough to refuse, and nothing is added.
    let partial = tmp.join("partial");
    fs::create_dir(&partial).unwrap();
    fs::write(partial.join("server.key"), b"mine").unwrap();
    let out = tls(&["init", "--dir", partial.to_str().unwrap(), "--host", "a"]);
    expect_code(&out, 1);
    assert!(!partial.join("ca.key").exists() && !partial.join("ca.pem").exists());

    for bad in ["", "bad name", "a,,b", "999.1.1.1", "*.example", "a,a"] {
        let fresh = tmp.join("fresh");
        let out = tls(&["init", "--dir", fresh.to_str().unwrap(), "--host", bad]);
        expect_code(&out, 2);
        assert!(text(&out.stderr).contains("--host"), "{bad:?}: {out:?}");
        assert!(!fresh.exists(), "{bad:?}: nothing made");
    }
    let out = tls(&[
        "init",
        "--dir",
        tmp.join("d").to_str().unwrap(),
        "--host",
        "a",
        "--days",
        "0",
    ]);
    expect_code(&out, 2);
}

#[test]
fn renew_signs_a_new_leaf_with_the_same_ca_and_old_agents_trust_it() {
    let tmp = TempDir::new("pki-renew");
    let dir = tmp.join("tls");
    init(&dir, &["--days", "30"]);
    let ca = dir.join("ca.pem");
    let ca_bytes = (
        fs::read(&ca).unwrap(),
        fs::read(dir.join("ca.key")).unwrap(),
    );
    let (old_serial, old_end) = serial_and_end(&dir.join("server.pem"));
    let old_key = fs::read(dir.join("server.key")).unwrap();

    let mut m = serve(&dir);
    let a = Agent::new(BIN);
    publish_and_converge(&m, &tmp, &a, "1.0.0", &ca);

    let out = expect_code(
        &tls(&["renew", "--dir", dir.to_str().unwrap(), "--days", "90"]),
        0,
    );
    assert!(out.contains("Restart manager-lite serve"), "{out}");
    let (new_serial, new_end) = serial_and_end(&dir.join("server.pem"));
    assert_ne!(new_serial, old_serial, "a new serial");
    assert!(new_end > old_end + 50 * 86_400, "--days 90 after --days 30");
    assert_ne!(
        fs::read(dir.join("server.key")).unwrap(),
        old_key,
        "a new key"
    );
    assert_eq!(mode(&dir.join("server.key")), 0o600);
    assert_eq!(
        (
            fs::read(&ca).unwrap(),
            fs::read(dir.join("ca.key")).unwrap()
        ),
        ca_bytes,
        "the CA is untouched"
    );

    m.restart();
    // The names of the old certificate were kept (no --host given).
    for name in ["localhost", "127.0.0.1"] {
        handshake(&ca, m.addr, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // The agent keeps the ca_file it had.
    publish_and_converge(&m, &tmp, &a, "2.0.0", &ca);
}

#[test]
fn renew_refuses_without_its_ca_or_with_another_cas_key() {
    let tmp = TempDir::new("pki-renew-refused");
    let dir = tmp.join("tls");
    let other = tmp.join("other");
    init(&dir, &[]);
    init(&other, &[]);
    let server = fs::read(dir.join("server.pem")).unwrap();
    fs::copy(other.join("ca.key"), dir.join("ca.key")).unwrap();
    let out = tls(&["renew", "--dir", dir.to_str().unwrap()]);
    expect_code(&out, 1);
    assert!(
        text(&out.stderr).contains("does ca.key belong to ca.pem?"),
        "{out:?}"
    );
    assert_eq!(
        fs::read(dir.join("server.pem")).unwrap(),
        server,
        "unchanged"
    );

    let empty = tmp.join("empty");
    let out = tls(&["renew", "--dir", empty.to_str().unwrap(), "--host", "a"]);
    expect_code(&out, 1);
    assert!(text(&out.stderr).contains("ca.pem"), "{out:?}");
}

/// Runs `a` against `url` (with `ca_file`): refused (exit 69) with all of
/// `words` on stderr.
fn refused_saying(a: &Agent, url: &str, ca_file: Option<&Path>, words: &[&str]) {
    configure(a, url, ca_file);
    let out = a.run();
    out.expect_code(69);
    for w in words {
        assert!(out.stderr.contains(w), "{w:?} in:\n{}", out.stderr);
    }
}

/// What `openssl req -x509 -subj /CN=manager` makes: a self-signed
/// certificate with CA:TRUE (here for 127.0.0.1), as PEM files in `tmp`.
fn self_signed_ca_as_server(tmp: &TempDir) -> (PathBuf, PathBuf) {
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_file, key_file) = (tmp.join("self.pem"), tmp.join("self.key"));
    fs::write(&cert_file, cert.pem()).unwrap();
    fs::write(&key_file, key.serialize_pem()).unwrap();
    (cert_file, key_file)
}

#[test]
fn an_agent_facing_a_self_signed_ca_certificate_says_what_to_do() {
    let tmp = TempDir::new("pki-ca-as-leaf");
    let (cert, key) = self_signed_ca_as_server(&tmp);
    let m = Manager::new_with(ManagerOptions::default().tls(&cert, &key));
    let a = Agent::new(BIN);
    // The operator's natural move: trust the very certificate served.
    refused_saying(
        &a,
        &m.url,
        Some(&cert),
        &[
            "CaUsedAsEndEntity",
            "is a CA certificate (CA:TRUE)",
            "refuse as a server certificate",
            "manager-lite tls init --dir DIR --host NAME",
            "set ca_file to DIR/ca.pem",
        ],
    );
    let reason = a.status_json()["backoff"]["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("CA:TRUE"),
        "binproxy status shows it: {reason}"
    );
}

#[test]
fn an_agent_without_ca_file_facing_the_private_ca_is_told_to_set_it() {
    let tmp = TempDir::new("pki-unknown-issuer");
    let dir = tmp.join("tls");
    init(&dir, &[]);
    let m = serve(&dir);
    refused_saying(
        &Agent::new(BIN),
        &m.url,
        None,
        &[
            "UnknownIssuer",
            "not signed by a CA this agent trusts",
            "set ca_file to the CA certificate that signed it",
            "DIR/ca.pem from `manager-lite tls init`",
        ],
    );
}

#[test]
fn an_agent_facing_a_certificate_for_other_names_is_told_which() {
    let tmp = TempDir::new("pki-wrong-name");
    let dir = tmp.join("tls");
    let out = tls(&[
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--host",
        "manager.example",
    ]);
    expect_code(&out, 0);
    let m = serve(&dir);
    refused_saying(
        &Agent::new(BIN),
        &m.url,
        Some(&dir.join("ca.pem")),
        &[
            "NotValidForName",
            "the manager's certificate names manager.example, not 127.0.0.1",
            "manager-lite tls renew --dir DIR --host NAME[,IP...]",
        ],
    );
}

/// The README's bring-your-own-PKI recipe, run as written with the real
/// `openssl` (the names swapped for loopback ones): the files it makes are
/// served by the manager and trusted by an agent given `ca.pem`.
#[test]
fn the_readmes_openssl_recipe_makes_files_agents_trust() {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let start = readme
        .find("# the CA: CA:TRUE")
        .expect("the README's openssl recipe");
    let end = start + readme[start..].find("```").expect("the recipe's end");
    let recipe = readme[start..end].replace(
        "DNS:manager.example, IP:10.0.0.5",
        "DNS:localhost, IP:127.0.0.1",
    );
    assert!(recipe.contains("DNS:localhost"), "{recipe}");
    let tmp = TempDir::new("pki-openssl");
    let dir = tmp.join("tls");
    fs::create_dir(&dir).unwrap();
    let out = output_within(
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &recipe])
            .current_dir(&dir),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "the recipe failed (openssl missing? tests/run.sh installs it): {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(mode(&dir.join("server.key")), 0o600);
    let m = serve(&dir);
    let ca = dir.join("ca.pem");
    handshake(&ca, m.addr, "localhost").unwrap();
    publish_and_converge(&m, &tmp, &Agent::new(BIN), "1", &ca);
}

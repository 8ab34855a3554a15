//! Tests of [`super`]: command lines through clap and the checks.

use super::*;
use crate::cli::args;
use binproxy_protocol::Selector;
use std::path::Path;

fn parse_line(command: &str, words: &[&str]) -> Result<Parsed, ClientError> {
    let line = ["manager-lite", command]
        .into_iter()
        .chain(words.iter().copied());
    let line: Vec<std::ffi::OsString> = line.map(Into::into).collect();
    let cli = args::parse(&line).map_err(|e| ClientError::Usage(e.to_string()))?;
    match cli.command {
        args::Command::Admin(admin) => check(admin),
        other => panic!("not an admin command: {other:?}"),
    }
}

/// The commands that move one release along.
const OPERATIONS: [&str; 5] = ["approve", "pause", "resume", "promote", "cancel"];

/// clap's message for a missing positional word.
fn assert_missing(err: &str, what: &str) {
    assert!(
        err.contains("not provided") && err.contains(&format!("<{what}>")),
        "{what}: {err}"
    );
}

/// A command line of words without spaces, which must parse.
fn parse_words(command: &str, line: &str) -> Parsed {
    let words: Vec<&str> = line.split(' ').collect();
    parse_line(command, &words).unwrap()
}

fn usage_error(command: &str, words: &[&str]) -> String {
    match parse_line(command, words) {
        Err(ClientError::Usage(m)) => m,
        other => panic!("expected a usage error, got {other:?}"),
    }
}

#[test]
fn publish_parses_options_anywhere() {
    let parsed = parse_words(
        "publish",
        "--json agent --arch x86_64 1.2.0 --server http://h:1/ ./a.bin --release --note=first",
    );
    assert_eq!(
        parsed.command,
        Command::Publish(Publish {
            bin: "agent".into(),
            version: "1.2.0".into(),
            file: "./a.bin".into(),
            arch: Some("x86_64".into()),
            signature: None,
            release: Some(NewRelease {
                bin_name: "agent".into(),
                version: "1.2.0".into(),
                note: Some("first".into()),
                ..NewRelease::default()
            }),
        })
    );
    assert_eq!(
        parsed.common,
        Common {
            server: Some("http://h:1/".into()),
            token_file: None,
            ca_file: None,
            json: true,
        }
    );
}

#[test]
fn missing_and_extra_words_are_usage_errors() {
    assert_missing(&usage_error("publish", &["agent", "1.0"]), "FILE");
    assert_missing(&usage_error("release", &["agent"]), "VERSION");
    assert_missing(&usage_error("progress", &[]), "BIN");
    assert!(usage_error("nodes", &["extra"]).contains("unexpected argument"));
    assert!(usage_error("release", &["a", "1", "2"]).contains("'2'"));
}

#[test]
fn options_of_other_commands_are_refused() {
    assert!(usage_error("nodes", &["--arch", "x"]).contains("--arch"));
    assert!(usage_error("release", &["a", "1", "--release"]).contains("--release"));
    assert!(usage_error("releases", &["--json=yes"]).contains("--json"));
    assert!(usage_error("nodes", &["--server"]).contains("--server"));
}

#[test]
fn names_are_checked_before_sending() {
    assert!(usage_error("publish", &["../x", "1", "f"]).contains("invalid bin name"));
    assert!(usage_error("release", &["a", "1 0"]).contains("invalid version"));
    assert!(usage_error("publish", &["a", "1", "f", "--arch", "x/y"]).contains("arch"));
    assert!(usage_error("progress", &["a", "--node", "n 1"]).contains("node"));
    assert!(usage_error("releases", &["--bin", ".."]).contains("bin name"));
}

#[test]
fn note_without_release_and_bad_limit_are_refused() {
    assert!(usage_error("publish", &["a", "1", "f", "--note", "x"]).contains("--release"));
    assert!(usage_error("progress", &["a", "--limit", "ten"]).contains("ten"));
}

#[test]
fn progress_and_help_parse() {
    let parsed = parse_line("progress", &["agent", "--node", "host:1", "--limit", "5"]);
    assert_eq!(
        parsed.unwrap().command,
        Command::Progress {
            bin: "agent".into(),
            node: Some("host:1".into()),
            limit: Some(5),
        }
    );
    // --help wins over missing words and needs no token: clap answers it.
    let help = usage_error("publish", &["--help"]);
    assert!(help.contains("Usage: manager-lite publish"), "{help}");
}

fn release_of(words: &[&str]) -> NewRelease {
    match parse_line("release", words).unwrap().command {
        Command::Release(r) => r,
        other => panic!("expected a release, got {other:?}"),
    }
}

fn wave(percent: u32, wait: Option<&str>) -> Wave {
    Wave {
        percent,
        wait: wait.map(str::to_owned),
    }
}

#[test]
fn release_takes_a_whole_plan() {
    let r = release_of(&[
        "agent",
        "1.3.0",
        "--waves",
        "1%:10m, 10%:1h 30m,100%",
        "--success-threshold",
        "99.5%",
        "--max-failures",
        "3",
        "--select",
        "env=canary,staging",
        "--select=region=eu",
        "--select",
        "env=prod,canary",
        "--node",
        "web-1",
        "--node=10.0.0.2:db",
        "--exclude-node",
        "web-9",
        "--arch",
        "amd64",
        "--arch",
        "aarch64",
        "--os",
        "linux",
        "--require-approval",
        "--note",
        "canary first",
        "--window",
        "Mon-Fri 01:00-05:00 +08:00",
        "--window=Sat 00:00-24:00 +00:00",
    ]);
    assert_eq!(
        r,
        NewRelease {
            bin_name: "agent".into(),
            version: "1.3.0".into(),
            note: Some("canary first".into()),
            selector: Selector {
                node_ids: vec!["web-1".into(), "10.0.0.2:db".into()],
                exclude_node_ids: vec!["web-9".into()],
                cpu_arch: vec!["x86_64".into(), "aarch64".into()],
                os: vec!["linux".into()],
                labels: [
                    (
                        "env".to_owned(),
                        vec!["canary".into(), "staging".into(), "prod".into()]
                    ),
                    ("region".to_owned(), vec!["eu".into()]),
                ]
                .into(),
            },
            waves: vec![
                wave(1, Some("10m")),
                wave(10, Some("1h 30m")),
                wave(100, None)
            ],
            success_threshold: Some("99.5%".into()),
            max_failures: Some("3".into()),
            require_approval: true,
            windows: vec![
                "Mon-Fri 01:00-05:00 +08:00".into(),
                "Sat 00:00-24:00 +00:00".into()
            ],
        }
    );
    let body = serde_json::to_value(&r).unwrap();
    assert_eq!(
        body["waves"][0],
        serde_json::json!({"percent": 1, "wait": "10m"})
    );
    assert_eq!(
        body["selector"]["labels"]["region"],
        serde_json::json!(["eu"])
    );
}

#[test]
fn a_bare_release_sends_no_plan() {
    let r = release_of(&["agent", "1.3.0"]);
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        serde_json::json!({"bin_name": "agent", "version": "1.3.0", "require_approval": false})
    );
}

#[test]
fn bad_windows_are_usage_errors_naming_the_entry() {
    for (bad, why) in [
        ("Mon 01:00-05:00", "expected DAYS"),
        ("Someday 01:00-05:00 +00:00", "\"Someday\" is not a day"),
        ("Mon 01:00-25:00 +00:00", "\"25:00\" is not a time"),
    ] {
        let err = usage_error("release", &["a", "1", "--window", bad]);
        assert!(err.starts_with("--window "), "{bad}: {err}");
        assert!(
            err.contains(&format!("{bad:?}")) && err.contains(why),
            "{bad}: {err}"
        );
    }
    let err = usage_error(
        "publish",
        &["a", "1", "f", "--window", "* 00:00-24:00 +00:00"],
    );
    assert!(err.contains("--window goes with --release"), "{err}");
}

#[test]
fn waves_parse() {
    assert_eq!(parse_waves("100%").unwrap(), vec![wave(100, None)]);
    assert_eq!(
        parse_waves("5:30s,100").unwrap(),
        vec![wave(5, Some("30s")), wave(100, None)]
    );
    assert_eq!(
        parse_waves("50%:1h,100%:5m").unwrap(),
        vec![wave(50, Some("1h")), wave(100, Some("5m"))]
    );
}

#[test]
fn bad_waves_are_usage_errors_naming_the_option() {
    for (bad, why) in [
        ("", "is not PERCENT%[:WAIT]"),
        ("10%,", "is not PERCENT%[:WAIT]"),
        ("ten%,100%", "is not PERCENT%[:WAIT]"),
        ("-1%,100%", "is not PERCENT%[:WAIT]"),
        ("0%,100%", "0% is not 1% to 100%"),
        ("50%,101%", "101% is not 1% to 100%"),
        ("10%,10%,100%", "does not go above the wave before (10%)"),
        ("50%,20%,100%", "20% does not go above"),
        ("1%,50%", "the last wave must be 100%"),
        ("1%:soon,100%", "wait \"soon\" after 1%"),
        ("1%:,100%", "wait \"\" after 1%"),
    ] {
        let err = usage_error("release", &["a", "1", "--waves", bad]);
        assert!(err.starts_with("--waves "), "{bad}: {err}");
        assert!(err.contains(why), "{bad}: {err}");
    }
    let err = usage_error("rollback", &["7", "--waves", "50%"]);
    assert!(err.contains("--waves"), "{err}");
    let err = usage_error("publish", &["a", "1", "f", "--release", "--waves", "0%"]);
    assert!(err.contains("--waves"), "{err}");
}

#[test]
fn thresholds_are_shares_or_counts() {
    let r = release_of(&[
        "a",
        "1",
        "--success-threshold",
        "95%",
        "--max-failures",
        "5%",
    ]);
    assert_eq!(r.success_threshold.as_deref(), Some("95%"));
    assert_eq!(r.max_failures.as_deref(), Some("5%"));
    let counts = release_of(&["a", "1", "--success-threshold", "20", "--max-failures", "3"]);
    assert_eq!(counts.success_threshold.as_deref(), Some("20"));
    assert_eq!(counts.max_failures.as_deref(), Some("3"));
    for (option, bad) in [
        ("--success-threshold", "many"),
        ("--success-threshold", "101%"),
        ("--success-threshold", "-1%"),
        ("--success-threshold", "NaN%"),
        ("--max-failures", "many"),
        ("--max-failures", "-3"),
        ("--max-failures", "3.5"),
        ("--max-failures", ""),
        ("--max-failures", "150%"),
    ] {
        let err = usage_error("release", &["a", "1", option, bad]);
        assert!(err.starts_with(option), "{option} {bad}: {err}");
    }
}

#[test]
fn bad_selectors_are_usage_errors_naming_the_option() {
    for (option, bad) in [
        ("--select", "env"),
        ("--select", "=prod"),
        ("--select", "env="),
        ("--select", "env=a,,b"),
        ("--select", "e nv=a"),
        ("--select", "env=a\nb"),
        ("--node", "a b"),
        ("--exclude-node", ".."),
        ("--arch", "x/y"),
        ("--os", "linux!"),
    ] {
        let err = usage_error("release", &["a", "1", option, bad]);
        assert!(err.starts_with(option), "{option} {bad}: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
    let err = usage_error("release", &["a", "1", "--os", "a b"]);
    assert!(err.contains("invalid os"), "{err}");
}

#[test]
fn publish_takes_the_plan_only_with_release() {
    let parsed = parse_words(
        "publish",
        "a 1 f --arch arm64 --release --waves 10%,100% --os linux",
    );
    let Command::Publish(p) = parsed.command else {
        panic!("not a publish");
    };
    // --arch is the artifact's arch here, not a selector.
    assert_eq!(p.arch.as_deref(), Some("arm64"));
    let r = p.release.unwrap();
    assert!(r.selector.cpu_arch.is_empty());
    assert_eq!(r.selector.os, ["linux"]);
    assert_eq!(r.waves, [wave(10, None), wave(100, None)]);
    for option in [
        "--waves=100%",
        "--select=a=b",
        "--require-approval",
        "--node=n",
    ] {
        let err = usage_error("publish", &["a", "1", "f", option]);
        assert!(err.ends_with("goes with --release"), "{option}: {err}");
    }
    let err = usage_error("publish", &["a", "1", "f", "--arch", "x", "--arch", "y"]);
    assert!(err.contains("--arch"), "{err}");
}

#[test]
fn operations_take_a_release_id() {
    for op in OPERATIONS {
        assert_eq!(
            parse_line(op, &["42"]).unwrap().command,
            Command::Operate { op, id: 42 }
        );
        assert_missing(&usage_error(op, &[]), "ID");
        for bad in ["0", "+1", "x", "1.0", "99999999999999999999", ""] {
            let err = usage_error(op, &[bad]);
            assert!(err.contains("positive integer"), "{op} {bad}: {err}");
        }
        assert!(usage_error(op, &["1", "2"]).contains("unexpected argument '2'"));
        assert!(usage_error(op, &["1", "--waves", "100%"]).contains("--waves"));
    }
}

#[test]
fn rollback_sends_waves_only_when_given() {
    assert_eq!(
        parse_line("rollback", &["7"]).unwrap().command,
        Command::Rollback {
            id: 7,
            waves: vec![]
        }
    );
    assert_eq!(
        parse_line("rollback", &["--waves", "50%:5m,100%", "7"])
            .unwrap()
            .command,
        Command::Rollback {
            id: 7,
            waves: vec![wave(50, Some("5m")), wave(100, None)]
        }
    );
    assert!(usage_error("rollback", &["seven"]).contains("positive integer"));
}

#[test]
fn pin_unpin_and_node_check_their_names() {
    assert_eq!(
        parse_line("pin", &["10.0.0.1:web", "agent", "1.2.0"])
            .unwrap()
            .command,
        Command::Pin {
            node: "10.0.0.1:web".into(),
            bin: "agent".into(),
            version: "1.2.0".into(),
        }
    );
    assert_eq!(
        parse_line("unpin", &["web-1", "agent"]).unwrap().command,
        Command::Unpin {
            node: "web-1".into(),
            bin: "agent".into(),
        }
    );
    assert_eq!(
        parse_line("node", &["web-1"]).unwrap().command,
        Command::Node {
            node: "web-1".into()
        }
    );
    assert_missing(&usage_error("pin", &["web-1", "agent"]), "VERSION");
    assert!(usage_error("pin", &["web 1", "agent", "1"]).contains("node_id"));
    assert!(usage_error("pin", &["web-1", "a/b", "1"]).contains("bin name"));
    assert!(usage_error("unpin", &["web-1", "a", "1"]).contains("unexpected"));
    assert!(usage_error("node", &["../x"]).contains("node_id"));
    assert_missing(&usage_error("node", &[]), "NODE");
}

#[test]
fn progress_takes_one_node() {
    let err = usage_error("progress", &["a", "--node", "x", "--node", "y"]);
    assert!(err.contains("--node"), "{err}");
}

/// The long help of `manager-lite NAME`.
fn long_help(name: &str) -> String {
    let mut cli = args::command();
    cli.find_subcommand_mut(name)
        .map(|c| c.render_long_help().to_string())
        .unwrap_or_default()
}

#[test]
fn help_shows_the_plan_options() {
    let release = long_help("release");
    assert!(release.contains("--waves <P%[:WAIT],...>"), "{release}");
    let publish = long_help("publish");
    for option in [
        "--require-approval",
        "--window <\"DAYS HH:MM-HH:MM +HH:MM\">",
        "--release",
    ] {
        assert!(publish.contains(option), "{option}: {publish}");
    }
}

#[test]
fn token_commands_parse() {
    assert_eq!(
        parse_line("token", &["create", "ci-1.x_y", "publisher", "--json"])
            .unwrap()
            .command,
        Command::TokenCreate(NewToken {
            name: "ci-1.x_y".into(),
            role: Role::Publisher,
        })
    );
    for role in ROLES {
        let parsed = parse_line("token", &["create", "t", role.as_str()]).unwrap();
        assert!(
            matches!(parsed.command, Command::TokenCreate(NewToken { role: r, .. }) if r == *role),
            "{role:?}"
        );
    }
    assert_eq!(
        parse_line("token", &["list"]).unwrap().command,
        Command::TokenList
    );
    assert_eq!(
        parse_line("token", &["revoke", "ci"]).unwrap().command,
        Command::TokenRevoke { name: "ci".into() }
    );
    assert!(usage_error("token", &["--help"]).contains("create"));
    let body = serde_json::to_value(NewToken {
        name: "ci".into(),
        role: Role::Approver,
    })
    .unwrap();
    assert_eq!(body, serde_json::json!({"name": "ci", "role": "approver"}));
}

#[test]
fn a_bad_role_is_a_usage_error_naming_it() {
    for bad in ["root", "Admin", "viewers", ""] {
        let err = parse_line("token", &["create", "ci", bad]).err().unwrap();
        assert_eq!(err.exit_code(), 2, "{bad}");
        let text = err.to_string();
        assert!(text.contains(&format!("ROLE \"{bad}\"")), "{text}");
        assert!(
            text.ends_with("must be one of admin, publisher, approver, viewer"),
            "{text}"
        );
    }
    // And through the whole command, before any token or server is needed.
    let line = ["manager-lite", "token", "create", "ci", "superuser"];
    let line: Vec<std::ffi::OsString> = line.into_iter().map(Into::into).collect();
    let args::Command::Admin(admin) = args::parse(&line).unwrap().command else {
        panic!("not an admin command");
    };
    let err = crate::cli::run(admin).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("superuser"), "{err}");
}

#[test]
fn bad_token_command_lines_are_usage_errors() {
    assert!(usage_error("token", &[]).contains("create"));
    assert!(usage_error("token", &["remove", "ci"]).contains("unrecognized subcommand 'remove'"));
    assert_missing(&usage_error("token", &["create"]), "NAME");
    assert_missing(&usage_error("token", &["create", "ci"]), "ROLE");
    assert_missing(&usage_error("token", &["revoke"]), "NAME");
    assert!(usage_error("token", &["list", "all"]).contains("unexpected argument 'all'"));
    assert!(usage_error("token", &["revoke", "a", "b"]).contains("unexpected argument 'b'"));
    assert!(usage_error("token", &["create", "a", "viewer", "x"]).contains("unexpected argument"));
    assert!(usage_error("token", &["list", "--limit", "3"]).contains("--limit"));
    for bad in ["a/b", "a b", "..", ".", "", &"x".repeat(65), "caf\u{e9}"] {
        let err = usage_error("token", &["create", bad, "viewer"]);
        assert!(err.contains("invalid token name"), "{bad:?}: {err}");
        let err = usage_error("token", &["revoke", bad]);
        assert!(err.contains("invalid token name"), "{bad:?}: {err}");
    }
    assert!(parse_line("token", &["create", &"x".repeat(64), "viewer"]).is_ok());
}

#[test]
fn audit_takes_a_bounded_limit() {
    assert_eq!(
        parse_line("audit", &[]).unwrap().command,
        Command::Audit { limit: None }
    );
    assert_eq!(
        parse_line("audit", &["--limit", "1000"]).unwrap().command,
        Command::Audit { limit: Some(1000) }
    );
    assert_eq!(
        parse_line("audit", &["--limit=1"]).unwrap().command,
        Command::Audit { limit: Some(1) }
    );
    for bad in ["0", "1001"] {
        let err = usage_error("audit", &["--limit", bad]);
        assert!(err.starts_with("--limit "), "{bad}: {err}");
    }
    for bad in ["ten", "-1", "99999999999"] {
        assert!(usage_error("audit", &["--limit", bad]).contains(bad));
    }
    assert!(usage_error("audit", &["5"]).contains("unexpected argument '5'"));
    assert!(usage_error("audit", &["--bin", "a"]).contains("--bin"));
}

#[test]
fn signature_and_publish_signature_parse() {
    let parsed = parse_line("signature", &["a", "1.0", "a.minisig", "--arch", "arm64"]).unwrap();
    assert_eq!(
        parsed.command,
        Command::Signature(Signature {
            bin: "a".into(),
            version: "1.0".into(),
            file: "a.minisig".into(),
            arch: Some("arm64".into()),
        })
    );
    let Command::Publish(p) = parse_line(
        "publish",
        &["a", "1", "f", "--signature", "f.minisig", "--release"],
    )
    .unwrap()
    .command
    else {
        panic!("not a publish");
    };
    assert_eq!(p.signature.as_deref(), Some(Path::new("f.minisig")));
    assert!(p.release.is_some());
    assert_missing(&usage_error("signature", &["a", "1"]), "FILE.minisig");
    assert!(usage_error("signature", &["a", "1", "f", "x"]).contains("unexpected"));
    assert!(usage_error("signature", &["a", "1", "f", "--release"]).contains("--release"));
    assert!(usage_error("signature", &["a/b", "1", "f"]).contains("bin name"));
    let err = usage_error("signature", &["a", "1", "f", "--arch", "x", "--arch", "y"]);
    assert!(err.contains("--arch"), "{err}");
    assert!(usage_error("release", &["a", "1", "--signature", "f"]).contains("--signature"));
}

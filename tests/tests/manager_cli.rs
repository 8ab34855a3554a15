//! The manager's command line as an operator meets it, on the real binary:
//! every command answers `--help` with its own flags (exit 0), shell
//! completions are generated, a misspelt flag or command is a one-line usage
//! error (exit 2) with clap's suggestion, and `publish` and `backup` draw a
//! progress bar only on a terminal (run under a pseudo-terminal with
//! util-linux `script`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_tests::{manager_bin, output_within, Manager, TempDir};
use std::process::{Command, Output};
use std::time::Duration;

/// `manager-lite ARGS`, with no token or server from the environment.
fn run(args: &[&str]) -> Output {
    let mut cmd = Command::new(manager_bin());
    cmd.args(args)
        .env_remove("MANAGER_ADMIN_TOKEN")
        .env_remove("MANAGER_URL");
    output_within(&mut cmd, Duration::from_secs(60))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The long help of `manager-lite WORDS... --help`, which must exit 0.
fn help(words: &[&str]) -> String {
    let mut args = words.to_vec();
    args.push("--help");
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    let usage = format!("Usage: manager-lite {}", words.join(" "));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&usage),
        "{args:?} shows its own usage: {stdout}"
    );
    stdout
}

#[test]
fn every_command_answers_help_with_its_own_flags() {
    let serve = help(&["serve"]);
    for flag in [
        "--flush-interval",
        "--max-connections",
        "--min-rate",
        "--webhook-format",
        "--tls-key",
    ] {
        assert!(serve.contains(flag), "{flag} in serve --help: {serve}");
    }
    assert!(serve.contains("[default: 5s]"), "defaults shown: {serve}");
    assert!(serve.contains("[possible values: json, slack, dingtalk]"));
    for other in ["--token-file", "token create", "--waves"] {
        assert!(!serve.contains(other), "{other} is not serve's: {serve}");
    }

    let commands: &[(&[&str], &[&str])] = &[
        (
            &["publish"],
            &["--signature", "--release", "--waves", "--arch"],
        ),
        (&["signature"], &["--arch", "SIGNATURES"]),
        (
            &["release"],
            &["--waves", "--max-failures", "--select", "--window"],
        ),
        (&["releases"], &["--bin", "--json"]),
        (&["approve"], &["<ID>", "--server"]),
        (&["pause"], &["<ID>"]),
        (&["resume"], &["<ID>"]),
        (&["promote"], &["<ID>"]),
        (&["cancel"], &["<ID>"]),
        (&["rollback"], &["--waves", "<ID>"]),
        (&["pin"], &["<NODE>", "<BIN>", "<VERSION>"]),
        (&["unpin"], &["<NODE>", "<BIN>"]),
        (&["nodes"], &["--ca-file"]),
        (&["node"], &["revoke", "<NODE>"]),
        (&["node", "revoke"], &["<NODE>"]),
        (&["progress"], &["--node", "--limit"]),
        (
            &["token"],
            &["create", "list", "revoke", "TOKENS AND ROLES"],
        ),
        (&["token", "create"], &["<NAME>", "<ROLE>", "approver"]),
        (&["token", "list"], &["--json"]),
        (&["token", "revoke"], &["<NAME>"]),
        (&["audit"], &["--limit"]),
        (&["mirror"], &["sync", "--token-file"]),
        (
            &["mirror", "sync"],
            &[
                "--to",
                "--grace",
                "[default: 24h]",
                "WHICH TARGETS",
                "--json",
            ],
        ),
        (&["tls", "init"], &["--dir", "--host", "--days"]),
        (&["tls", "renew"], &["--dir", "--host", "--days"]),
        (&["completions"], &["bash", "zsh", "fish"]),
    ];
    for (words, flags) in commands {
        let shown = help(words);
        for flag in *flags {
            assert!(shown.contains(flag), "{flag} in {words:?} --help: {shown}");
        }
    }
}

#[test]
fn help_and_version_exit_0_and_the_top_help_keeps_the_prose() {
    let top = help(&[]);
    for section in [
        "CLIENT OPTIONS",
        "MANAGER_URL",
        "http://127.0.0.1:38012",
        "EXIT CODES",
    ] {
        assert!(top.contains(section), "{section}: {top}");
    }
    for args in [
        &["-h"][..],
        &["help"],
        &["help", "publish"],
        &["publish", "-h"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(text(&out.stdout).contains("Usage:"), "{args:?}: {out:?}");
    }
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text(&out.stdout).starts_with("manager-lite "), "{out:?}");
    // No command at all: the help, on stderr, as a usage error.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("Usage:"), "{out:?}");
}

#[test]
fn completions_are_valid_scripts_that_know_the_commands() {
    let out = run(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let script = text(&out.stdout);
    for word in ["publish", "serve", "--flush-interval", "revoke"] {
        assert!(script.contains(word), "{word} in the bash completions");
    }
    let tmp = TempDir::new("completions");
    let file = tmp.join("manager-lite.bash");
    std::fs::write(&file, &script).unwrap();
    let checked = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(checked.status.success(), "bash -n: {checked:?}");
    // Sourced, it registers the completion function.
    let sourced = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p manager-lite",
            file.display()
        ))
        .output()
        .unwrap();
    assert!(sourced.status.success(), "{sourced:?}");

    for (shell, marker) in [
        ("zsh", "#compdef manager-lite"),
        ("fish", "complete -c manager-lite"),
    ] {
        let out = run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {out:?}");
        assert!(text(&out.stdout).contains(marker), "{shell}");
    }
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// A usage error: exit 2, one line on stderr that holds all of `wanted`.
fn usage_error(args: &[&str], wanted: &[&str]) {
    let out = run(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    for w in wanted {
        assert!(stderr.contains(w), "{w:?} in {args:?}: {stderr}");
    }
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn unknown_flags_and_commands_exit_2_with_a_suggestion() {
    usage_error(
        &["publish", "a", "1", "f", "--tokn-file", "t"],
        &[
            "manager-lite publish:",
            "'--tokn-file'",
            "tip: a similar argument exists: '--token-file'",
        ],
    );
    usage_error(
        &["serve", "--flush-intervl", "5s"],
        &["tip: a similar argument exists: '--flush-interval'"],
    );
    usage_error(
        &["publsh", "a", "1", "f"],
        &["unrecognized subcommand 'publsh'", "tip:", "'publish'"],
    );
    // A flag of another command is refused, and serve takes no client options.
    usage_error(&["nodes", "--waves", "100%"], &["'--waves'"]);
    usage_error(&["serve", "--json"], &["'--json'"]);
    // The checks of names and plans keep their messages, before any token.
    usage_error(
        &["release", "a", "1", "--waves", "10%,50%"],
        &[
            "--waves \"10%,50%\": the last wave must be 100%",
            "release --help",
        ],
    );
    usage_error(&["approve", "0"], &["ID \"0\" must be a release id"]);
    usage_error(&["tls", "init", "--dir", "d"], &["--host"]);
}

/// A manager, a token file and an artifact of `size` bytes to publish.
fn publish_setup(size: usize) -> (Manager, TempDir) {
    let m = Manager::new();
    let tmp = TempDir::new("cli-progress");
    std::fs::write(tmp.join("token"), &m.token).unwrap();
    std::fs::write(tmp.join("big.bin"), vec![7u8; size]).unwrap();
    (m, tmp)
}

/// Signs of a progress bar: its rate and time left, or any escape code.
fn has_bar(output: &str) -> bool {
    output.contains("MiB/s") || output.contains("eta ") || output.contains('\x1b')
}

#[test]
fn publish_draws_no_progress_bar_when_stderr_is_not_a_terminal() {
    let (m, tmp) = publish_setup(8 << 20);
    let file = tmp.join("big.bin");
    let out = m.cli(
        &tmp.join("token"),
        &["publish", "big", "1.0", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert!(!has_bar(&text(&out.stdout)), "{out:?}");
}

/// Runs the shell `line` on a pseudo-terminal (util-linux's `script`, which
/// copies what the terminal shows to stdout), with no token or URL from the
/// environment.
fn on_terminal(line: &str) -> std::process::Output {
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", line, "/dev/null"])
        .env_remove("MANAGER_ADMIN_TOKEN")
        .env_remove("MANAGER_URL");
    output_within(&mut cmd, Duration::from_secs(60))
}

#[test]
fn publish_draws_a_progress_bar_with_rate_and_eta_on_a_terminal() {
    let (m, tmp) = publish_setup(8 << 20);
    let line = format!(
        "'{}' publish big 1.0 '{}' --server {} --token-file '{}'",
        manager_bin().display(),
        tmp.join("big.bin").display(),
        m.url,
        tmp.join("token").display()
    );
    let out = on_terminal(&line);
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(shown.contains("8.00 MiB/8.00 MiB"), "{shown}");
    assert!(shown.contains("MiB/s") && shown.contains("eta "), "{shown}");
    // The bar ends its line: the table starts on a line of its own.
    assert!(
        shown.lines().any(|l| l.trim_start().starts_with("BIN")),
        "{shown}"
    );
    // A small upload draws none, even on a terminal.
    let small = tmp.join("small.bin");
    std::fs::write(&small, b"small").unwrap();
    let line = line
        .replace("big.bin", "small.bin")
        .replace(" 1.0 ", " 1.1 ");
    let out = on_terminal(&line);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!has_bar(&text(&out.stdout)), "{out:?}");
}

#[test]
fn backup_draws_a_progress_bar_on_a_terminal_and_none_in_a_pipe() {
    let (m, tmp) = publish_setup(8 << 20);
    let bytes = std::fs::read(tmp.join("big.bin")).unwrap();
    m.upload("big", "1.0", None, &bytes).expect(201);
    let to = tmp.join("b.tar");
    let out = m.cli(
        &tmp.join("token"),
        &["backup", "--to", to.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!has_bar(&text(&out.stderr)), "{out:?}");
    let line = format!(
        "'{}' backup --to '{}' --server {} --token-file '{}'",
        manager_bin().display(),
        tmp.join("tty.tar").display(),
        m.url,
        tmp.join("token").display()
    );
    let out = on_terminal(&line);
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(shown.contains("MiB/s") && shown.contains("eta "), "{shown}");
    assert!(shown.contains("backup written to"), "{shown}");
}

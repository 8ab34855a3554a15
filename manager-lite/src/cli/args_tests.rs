//! Tests of [`super`]: the clap definition and what it parses.

use super::*;

#[test]
fn the_definition_is_consistent() {
    command().debug_assert();
}

fn parsed(words: &[&str]) -> Result<Cli, clap::Error> {
    let line: Vec<std::ffi::OsString> = std::iter::once("manager-lite")
        .chain(words.iter().copied())
        .map(Into::into)
        .collect();
    parse(&line)
}

#[test]
fn an_option_given_twice_takes_its_last_value() {
    let cli = parsed(&[
        "serve",
        "--listen",
        "127.0.0.1:1",
        "--listen",
        "127.0.0.1:2",
    ]);
    let Ok(Cli {
        command: Command::Serve(serve),
    }) = cli
    else {
        panic!("not a serve line: {cli:?}");
    };
    assert_eq!(serve.listen.port(), 2);
    let cli = parsed(&[
        "nodes",
        "--json",
        "--server",
        "http://a:1",
        "--server",
        "http://b:2",
        "--json",
    ]);
    let Ok(Cli {
        command: Command::Admin(Admin::Nodes { common }),
    }) = cli
    else {
        panic!("not a nodes line: {cli:?}");
    };
    assert_eq!(common.server.as_deref(), Some("http://b:2"));
    assert!(common.json);
}

#[test]
fn the_prose_is_not_lost() {
    let top = command().render_long_help().to_string();
    assert!(top.contains("2 usage or configuration error"), "{top}");
    assert!(top.contains("MANAGER_ADMIN_TOKEN"), "{top}");
    for name in ["publish", "release", "token"] {
        let mut cli = command();
        let help = cli
            .find_subcommand_mut(name)
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(help.contains("--"), "{name}: {help}");
    }
}

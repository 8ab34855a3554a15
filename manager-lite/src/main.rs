//! `manager-lite`: `serve` runs the control plane; every other command is an
//! admin client of a running server.

use std::ffi::OsString;
use std::process::ExitCode;

const USAGE: &str = "\
manager-lite: the control plane of binproxy fleets

USAGE:
    manager-lite serve [--listen ADDR] [--data DIR] [--admin-token-file FILE]
                       [--offline-after DURATION] [--max-artifact-size BYTES]
                       [--progress-keep N] [--flush-interval DURATION]
                       [--rollout-interval DURATION]
                       [--node-enroll-token-file FILE] [--insecure-open-nodes]
                       [--tls-cert FILE --tls-key FILE] [--max-connections N]
                       [--max-connections-per-ip N] [--header-timeout DURATION]
                       [--keepalive-timeout DURATION] [--io-timeout DURATION]
                       [--min-rate BYTES/s] [--min-rate-window DURATION]
                       [--request-timeout DURATION] [--blocking-threads N]
                       [--queue-timeout DURATION] [--shutdown-timeout DURATION]
                       [--metrics-public] [--webhook URL]...
                       [--webhook-format json|slack|dingtalk]
    manager-lite publish BIN VERSION FILE [--arch A] [--signature FILE.minisig]
                         [--release [--note TEXT] PLAN...]
    manager-lite signature BIN VERSION FILE.minisig [--arch A]
    manager-lite release BIN VERSION [--note TEXT] [--arch A]... PLAN...
    manager-lite releases [--bin BIN]
    manager-lite approve|pause|resume|promote|cancel ID
    manager-lite rollback ID [--waves P%[:WAIT],...]
    manager-lite pin NODE BIN VERSION
    manager-lite unpin NODE BIN
    manager-lite nodes
    manager-lite node revoke NODE
    manager-lite node NODE
    manager-lite progress BIN [--node NODE] [--limit N]
    manager-lite token create NAME ROLE
    manager-lite token list
    manager-lite token revoke NAME
    manager-lite audit [--limit N]
    manager-lite tls init --dir DIR --host NAME[,IP...] [--days N]
    manager-lite tls renew --dir DIR [--host NAME[,IP...]] [--days N]

TOKENS AND ROLES:
    `token create` prints the new token's secret once, on stdout: the server keeps
    only its sha256 and never shows it again. NAME is 1 to 64 of A-Z a-z 0-9 . _ -,
    not . or .. (\"admin\" is the bootstrap token's). ROLE decides what it may do; every
    role may read everything (releases, nodes, progress, tokens, audit):
    admin                       everything, incl. tokens, pins and `cancel`
    publisher                   upload and sign versions (`publish`, `signature`),
                                create releases, `pause`
    approver                    `approve`, `pause`, `resume`, `promote`, `rollback`
    viewer                      read only
    A release created with --require-approval must be approved by another token.
    `token revoke NAME` refuses that token at once. `audit` lists the latest admin
    writes (default 100, at most 1000), refused ones included, newest first;
    writes refused for want of a valid token are summed up in one record a minute.

TLS:
    `tls init` makes a private CA (DIR/ca.pem, DIR/ca.key) and a server certificate
    signed by it (DIR/server.pem, DIR/server.key; keys 0600) for the names and IP
    addresses of --host, valid --days (default 397); it never replaces a file. It
    prints the `serve --tls-cert --tls-key` flags and the agents' `ca_file` line.
    `tls renew` signs a new server certificate with the same CA (the names of the
    current one unless --host); restart serve to use it. Agents need nothing new.

SIGNATURES:
    `publish --signature FILE.minisig` uploads, then stores the artifact's minisign
    signature (`minisign -S -m FILE`), before any --release. `signature` stores one for
    an uploaded artifact, replacing an earlier one (a re-signature: a fresh timestamp in
    the trusted comment, say). --arch is the signed artifact's arch; without it, the
    arch-less artifact. The manager only checks the file's shape (4 lines, at most
    4096 bytes): it holds no key, and agents verify the signature.

PLAN (options of a new release: which nodes get it, and how fast):
    --waves P%[:WAIT],...       e.g. 1%:10m,10%:30m,100%: percents rising to 100%,
                                each wave running WAIT (90s, 1h 30m) before the next
    --success-threshold N%      share of reached nodes that must succeed to go on
    --max-failures N%|N         failures (share or count) that pause the release
    --require-approval          start only on `approve ID`
    Selector (all must match; each repeatable, any of its values matches):
    --select KEY=V1,V2          label KEY is V1 or V2
    --node ID                   only these nodes
    --exclude-node ID           never these nodes
    --arch A, --os OS           only these arches, OSes (in `publish`, --arch
                                is the artifact's arch, not a selector)

CLIENT OPTIONS:
    --server URL        manager to talk to (env MANAGER_URL, default http://127.0.0.1:38012)
    --token-file FILE   admin or named token (else env MANAGER_ADMIN_TOKEN)
    --ca-file FILE      PEM CA certificate(s) to trust for an https:// server
                        (env MANAGER_CA_FILE; default: the built-in web roots)
    --json              print JSON instead of a table

EXIT CODES:
    0 done, 1 the server refused or could not be reached, 2 usage or configuration error
";

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    }
    let command = args.remove(0);
    let code = match command.to_str() {
        Some("serve") if args.iter().any(|a| a == "--help" || a == "-h") => {
            print!("{USAGE}");
            0
        }
        Some("serve") => manager_lite::serve::main(args),
        Some("tls") => manager_lite::pki::main(args),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            0
        }
        Some("-V" | "--version") => {
            println!("manager-lite {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some(cmd) if manager_lite::client::COMMANDS.contains(&cmd) => {
            manager_lite::client::main(cmd, args)
        }
        _ => {
            eprintln!(
                "manager-lite: unknown command \"{}\" (see manager-lite --help)",
                command.display()
            );
            2
        }
    };
    ExitCode::from(code)
}

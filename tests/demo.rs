//! `cargo run -p binproxy-tests --bin demo [-- --keep]`: the main job of
//! binproxy and manager-lite, end to end on this machine in seconds. It starts
//! the real `manager-lite serve` on an ephemeral loopback port with its data
//! in a temp dir, publishes three versions of a tiny shell "service" (the
//! third fails its health check) and runs the real `binproxy` agent after each
//! release: install, update, automatic rollback, quarantine. Every step checks
//! its outcome, so the demo doubles as a smoke test: exit 1 means it did not
//! turn out as it should.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::time::{Duration, Instant};

use binproxy_tests::{binproxy_bin, manager_bin, output_within, sha256_hex, unique};
use binproxy_tests::{Manager, ManagerOptions, TokenSource};

const BIN: &str = "demo-service";
/// Version, and the exit code of its `--health`.
const VERSIONS: [(&str, u8); 3] = [("1.0.0", 0), ("2.0.0", 0), ("3.0.0", 1)];

const SERVICE: &str = r#"#!/bin/sh
# demo-service VERSION: a stand-in for a real binary.
case "$1" in
  --version) echo "demo-service VERSION" ;;
  --health) exit HEALTH ;;
  *) echo "demo-service VERSION serving (pid $$)"; exec sleep 86400 ;;
esac
"#;

/// binproxy runs it as `[hook, "{path}"]`: argv, no shell of its own.
const HOOK: &str = r#"#!/bin/sh
# Restart hook: stop the running demo-service, start "$1" in the background.
run="$(dirname "$0")/run"
[ -f "$run/demo-service.pid" ] && kill "$(cat "$run/demo-service.pid")" 2>/dev/null
nohup $(command -v setsid) "$1" >>"$run/demo-service.log" 2>&1 </dev/null &
echo $! >"$run/demo-service.pid"
"#;

const CONFIG: &str = r#"{
  "manager_url": URL,
  "node_id": "demo-node",
  "labels": {"env": "demo"},
  "state_dir": NODE/state",
  "splay": "0s",
  "bins": [{
    "name": "demo-service",
    "path": NODE/bin/demo-service",
    "preflight": ["{path}", "--version"],
    "restart": [NODE/restart-demo-service", "{path}"],
    "health": {"command": ["{path}", "--health"], "retries": 3, "interval": "200ms"},
    "keep": 3
  }]
}
"#;

type Step = Result<(), String>;

struct Demo {
    dir: PathBuf,
    server: Manager,
    manager: PathBuf,
    agent: PathBuf,
    /// (sha256, version) of each published file.
    shas: Vec<(String, &'static str)>,
}

fn main() -> ExitCode {
    let keep = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => false,
        [k] if k == "--keep" => true,
        _ => {
            eprintln!("usage: demo [--keep]   (--keep: leave the temp dir to look at)");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    println!("\n== 0. Build (or find) the real binaries, as the tests do");
    let (manager, agent) = (manager_bin(), binproxy_bin());
    println!("  {}\n  {}", manager.display(), agent.display());
    let dir = std::env::temp_dir().join(unique("binproxy-demo"));
    if let Err(e) = mkdir(&dir) {
        eprintln!("demo: {e}");
        return ExitCode::FAILURE;
    }

    println!("\n== 1. Start the control plane: manager-lite serve");
    println!("  Embedded defaults, except --listen 127.0.0.1:0 (any free port) and --data in");
    println!("  a temp dir: a manager of yours on 127.0.0.1:38012 with ./manager-data is left");
    println!("  alone. The admin token is generated here and passed in MANAGER_ADMIN_TOKEN.");
    let token = TokenSource::Env(unique("demo-admin-token"));
    let opts = ManagerOptions {
        token,
        ..ManagerOptions::default()
    };
    let server = Manager::start(&dir.join("manager-data"), opts);
    println!("  => listening on {} (pid {})", server.url, server.pid());
    println!("  => data in {}", server.data_dir.display());

    let shas = Vec::new();
    let mut demo = Demo {
        dir,
        server,
        manager,
        agent,
        shas,
    };
    let outcome = demo.run();

    println!("\n== 8. Clean up: SIGTERM to the manager, stop demo-service");
    let status = demo.server.sigterm();
    println!("  => manager-lite exited ({status})");
    demo.stop_service();
    if keep {
        println!("  => left {} for you to look at", demo.dir.display());
    } else if let Err(e) = std::fs::remove_dir_all(&demo.dir) {
        eprintln!("demo: cannot remove {}: {e}", demo.dir.display());
    }
    let outcome = outcome.and_then(|()| check(status.success(), "the manager exits 0"));
    if let Err(e) = outcome {
        eprintln!(
            "\nDEMO FAILED: {e}\n--- manager log ---\n{}",
            demo.server.log()
        );
        return ExitCode::FAILURE;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("\nThe demo went as expected ({secs:.1}s).");
    ExitCode::SUCCESS
}

impl Demo {
    fn run(&mut self) -> Step {
        println!("\n== 2. Write a demo service (3 versions), its restart hook, an agent config");
        self.write_files()?;

        println!("\n== 3. Release demo-service 1.0.0: the agent installs it");
        self.publish(0)?;
        self.agent_run(0, "installed, restarted, healthy")?;
        self.facts("1.0.0", &[])?;
        self.show(&self.manager, &["progress", BIN])?;

        println!("\n== 4. Release 2.0.0: the agent updates, keeping 1.0.0 for a rollback");
        self.publish(1)?;
        self.agent_run(0, "updated")?;
        self.facts("2.0.0", &["1.0.0"])?;

        println!("\n== 5. Release 3.0.0, a bad one: its `--health` exits 1");
        self.publish(2)?;
        let why = "a bin failed or was rolled back, for cron mail or monitoring to notice";
        self.agent_run(1, why)?;
        println!("  The agent put 2.0.0 back, ran the restart hook again and checked it:");
        self.facts("2.0.0", &["1.0.0", "2.0.0"])?;
        self.show(&self.manager, &["progress", BIN])?;

        println!("\n== 6. Run the agent again: 3.0.0 is still the target, but quarantined here");
        let why = "nothing installed, but still 1 for monitoring: the target is quarantined \
                   until `binproxy unquarantine`";
        let log = self.agent_run(1, why)?;
        check(log.contains("quarantined"), "a log line on the quarantine")?;
        self.facts("2.0.0", &["1.0.0", "2.0.0"])?;
        let status = self.show(&self.agent, &["status", "--config", "agent.json"])?;
        check(status.contains("quarantined: "), "status shows it")?;

        println!("\n== 7. Summary");
        self.show(&self.manager, &["nodes"])?;
        println!("  1.0.0 was installed and 2.0.0 replaced it. 3.0.0 failed its health check, so");
        println!("  the agent rolled back to 2.0.0 on its own, told the manager (progress above),");
        println!("  exited 1, and quarantined 3.0.0 so that later runs leave the host alone");
        println!("  (and exit 1 too, until the quarantine is cleared).");
        println!("  Real agent configs: manifests/. The API and admin CLI: README.md.");
        Ok(())
    }

    fn write_files(&mut self) -> Step {
        for sub in ["releases", "node/bin", "node/run"] {
            mkdir(&self.dir.join(sub))?;
        }
        for (version, health) in VERSIONS {
            let text = SERVICE
                .replace("VERSION", version)
                .replace("HEALTH", &health.to_string());
            write_exec(&self.dir.join(format!("releases/{BIN}-{version}")), &text)?;
            let sha = sha256_hex(text.as_bytes());
            println!(
                "  releases/{BIN}-{version}  sha256 {}  --health exits {health}",
                short(&sha)
            );
            self.shas.push((sha, version));
        }
        write_exec(&self.dir.join("node/restart-demo-service"), HOOK)?;
        println!("  node/restart-demo-service (kills the old pid, starts the new file with nohup)");
        // NODE goes in as a JSON string without its closing quote.
        let node = json(&self.dir.join("node").to_string_lossy());
        let text = CONFIG
            .replace("URL", &json(&self.server.url))
            .replace("NODE", node.trim_end_matches('"'));
        std::fs::write(self.dir.join("agent.json"), &text)
            .map_err(|e| format!("agent.json: {e}"))?;
        println!("  agent.json (3 health attempts 200ms apart: a real host would wait longer)");
        indent(&text);
        Ok(())
    }

    fn publish(&self, i: usize) -> Step {
        let (version, _) = VERSIONS[i];
        let file = format!("releases/{BIN}-{version}");
        let args = ["publish", BIN, version, &file, "--release"];
        self.show(&self.manager, &args).map(drop)
    }

    /// `binproxy run --now` with its log condensed; fails unless it exits `want`.
    fn agent_run(&self, want: i32, meaning: &str) -> Result<String, String> {
        let out = self.exec(&self.agent, &["run", "--config", "agent.json", "--now"]);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        log.lines().for_each(|l| println!("    {}", condense(l)));
        let code = out.status.code().unwrap_or(-1);
        check(code == want, &format!("exit code {want}, not {code}"))?;
        println!("  => exit code {code}: {meaning}");
        Ok(log)
    }

    /// Checks and shows what is on disk, running, and kept for a rollback.
    fn facts(&self, want: &str, kept: &[&str]) -> Step {
        let live = std::fs::read(self.dir.join("node/bin").join(BIN))
            .map_err(|e| format!("reading the installed {BIN}: {e}"))?;
        let sha = sha256_hex(&live);
        let on_disk = self.version_of(&sha);
        println!("  => on disk: {BIN} {on_disk} (sha256 {})", short(&sha));
        check(on_disk == want, &format!("{want} is on disk"))?;
        println!("  => running: {}", self.running(want)?);
        let kept_dir = self.dir.join("node/state/kept").join(BIN);
        let files = std::fs::read_dir(kept_dir).into_iter().flatten().flatten();
        let mut got: Vec<&str> = files
            .map(|e| self.version_of(&e.file_name().to_string_lossy()))
            .collect();
        got.sort_unstable();
        println!("  => kept:    {}", got.join(", "));
        check(got == kept, &format!("the kept versions are {kept:?}"))
    }

    /// The service log's last line, once it names `want` (the hook starts the
    /// service in the background: it may take a moment).
    fn running(&self, want: &str) -> Result<String, String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = std::fs::read_to_string(self.dir.join("node/run/demo-service.log"));
            let log = log.unwrap_or_default();
            let last = log.lines().last().unwrap_or("-").to_owned();
            if last.starts_with(&format!("{BIN} {want} serving")) {
                return Ok(last);
            }
            if Instant::now() > deadline {
                return Err(format!("{BIN} {want} is not running; its log ends: {last}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn version_of(&self, sha: &str) -> &'static str {
        self.shas
            .iter()
            .find(|(s, _)| s == sha)
            .map_or("?", |(_, v)| v)
    }

    /// Runs a command, shows its stdout, fails when it exits non-zero.
    fn show(&self, program: &Path, args: &[&str]) -> Result<String, String> {
        let out = self.exec(program, args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        indent(&text);
        let err = String::from_utf8_lossy(&out.stderr);
        check(
            out.status.success(),
            &format!("{} succeeds: {}", args[0], err.trim()),
        )?;
        Ok(text)
    }

    /// Runs a command in the demo dir, as shown after `$`.
    fn exec(&self, program: &Path, args: &[&str]) -> Output {
        let name = program.file_name().unwrap_or_default().to_string_lossy();
        println!("$ {name} {}", args.join(" "));
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(&self.dir)
            .env("RUST_LOG", "info");
        if program == self.manager {
            cmd.env("MANAGER_URL", &self.server.url)
                .env("MANAGER_ADMIN_TOKEN", &self.server.token);
        }
        output_within(&mut cmd, Duration::from_secs(60))
    }

    fn stop_service(&self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("node/run/demo-service.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
            println!("  => demo-service (pid {}) stopped", pid.trim());
        }
    }
}

/// `Err("expected: what")` unless `ok`.
fn check(ok: bool, what: &str) -> Step {
    if ok {
        Ok(())
    } else {
        Err(format!("expected: {what}"))
    }
}

fn indent(text: &str) {
    text.lines()
        .filter(|l| !l.is_empty())
        .for_each(|l| println!("    {l}"));
}

/// `s` as a JSON string, quoted and escaped.
fn json(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// `[2026-01-02T03:04:05Z INFO  binproxy::cycle] message` -> `INFO  message`.
fn condense(line: &str) -> String {
    if let (true, Some(end)) = (line.starts_with('['), line.find("] ")) {
        if let [_, level, _] = line[1..end].split_whitespace().collect::<Vec<_>>()[..] {
            return format!("{level:<5} {}", &line[end + 2..]);
        }
    }
    line.to_owned()
}

fn mkdir(path: &Path) -> Step {
    std::fs::create_dir_all(path).map_err(|e| format!("create {}: {e}", path.display()))
}

fn write_exec(path: &Path, text: &str) -> Step {
    std::fs::write(path, text)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)))
        .map_err(|e| format!("write {}: {e}", path.display()))
}

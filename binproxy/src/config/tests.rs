//! The config parser: full and minimal files, defaults, and an error naming
//! the field for each kind of mistake.

use super::*;

fn parse_str(text: &str) -> Result<Config> {
    parse(text, Path::new("test.json"))
}

const FULL: &str = r#"{
  "manager_url": "http://127.0.0.1:38012/",
  "node_id": "web-01",
  "labels": {"env": "prod"},
  "state_dir": "/var/lib/binproxy",
  "splay": "30s",
  "timeout": "30s",
  "bins": [{
    "name": "streamd",
    "path": "/usr/local/bin/streamd",
    "mode": "0755",
    "preflight": ["{path}", "--version"],
    "restart": ["systemctl", "restart", "streamd"],
    "health": {"command": ["/usr/local/bin/streamd", "--check"],
               "http": "http://127.0.0.1:8080/health",
               "timeout": "5s", "retries": 10, "interval": "1s"},
    "keep": 3
  }]
}"#;

#[test]
fn full_example_parses() {
    let c = parse_str(FULL).unwrap();
    assert_eq!(c.manager_url, "http://127.0.0.1:38012");
    assert_eq!(c.bins[0].mode, Some(0o755));
    assert_eq!(c.bins[0].keep, 3);
    let h = c.bins[0].health.as_ref().unwrap();
    assert_eq!(h.retries, 10);
    assert_eq!(h.timeout, Duration::from_secs(5));
}

#[test]
fn defaults() {
    let c = parse_str(
        r#"{"manager_url":"http://m:1","state_dir":"/s","bins":[{"name":"a","path":"/a"}]}"#,
    )
    .unwrap();
    assert!(!c.node_id.is_empty());
    assert_eq!(c.splay, DEFAULT_SPLAY);
    assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    assert_eq!(c.cycle_timeout, Duration::from_secs(1800));
    assert_eq!(c.download_min_rate, 16384);
    assert_eq!(c.download_min_rate_window, Duration::from_secs(30));
    assert_eq!(c.bins[0].keep, DEFAULT_KEEP);
    assert_eq!(c.bins[0].mode, None);
    assert_eq!(c.enroll_token_file, None);
    assert!(c.windows.is_empty() && !c.prestage);
    assert!(c.mirrors.is_empty());
}

#[test]
fn windows_and_prestage() {
    let c = parse_str(
        r#"{"manager_url":"http://m:1","node_id":"n","state_dir":"/s","windows":["Mon-Fri 01:00-05:00 +08:00","Sat 00:00-24:00 +00:00"],"prestage":true,"bins":[{"name":"a","path":"/a"}]}"#,
    )
    .unwrap();
    assert!(c.prestage);
    // Monday 2024-01-01 18:00 UTC is Tuesday 02:00 at +08:00.
    assert!(c.windows.is_open(1_704_067_200 + 18 * 3600));
    assert!(!c.windows.is_open(1_704_067_200 + 12 * 3600));
}

fn with_mirrors(mirrors: &str) -> Result<Config> {
    parse_str(&format!(
        r#"{{"manager_url":"http://m:1","node_id":"n","state_dir":"/s","mirrors":{mirrors},"bins":[{{"name":"a","path":"/a"}}]}}"#
    ))
}

#[test]
fn mirrors_are_base_urls_ending_in_a_slash() {
    let c = with_mirrors(
        r#"["https://m1.example/fleet", "http://10.0.0.1:8080/", "http://[::1]:81/m/"]"#,
    )
    .unwrap();
    assert_eq!(
        c.mirrors,
        [
            "https://m1.example/fleet/",
            "http://10.0.0.1:8080/",
            "http://[::1]:81/m/"
        ]
    );
    let many: Vec<String> = (0..MAX_MIRRORS).map(|i| format!("http://m{i}/")).collect();
    let c = with_mirrors(&serde_json::to_string(&many).unwrap()).unwrap();
    assert_eq!(c.mirrors, many);
}

#[test]
fn a_bad_mirror_is_refused_naming_its_index() {
    let cases = [
        (r#"["ftp://m/"]"#, "mirrors[0]", "http:// or https://"),
        (
            r#"["http://ok/", "m1.example/"]"#,
            "mirrors[1]",
            "http:// or https://",
        ),
        (
            r#"["https://user:pw@m/"]"#,
            "mirrors[0]",
            "never gets a credential",
        ),
        (
            r#"["https://token@m/"]"#,
            "mirrors[0]",
            "never gets a credential",
        ),
        (r#"["https://m/?sig=abc"]"#, "mirrors[0]", "no query"),
        (r#"["https://m/#frag"]"#, "mirrors[0]", "fragment"),
        (r#"["https:///path/"]"#, "mirrors[0]", "no host"),
        (r#"["http://:80/"]"#, "mirrors[0]", "no host"),
        (r#"["http://m:http/"]"#, "mirrors[0]", "port"),
        (r#"["http://[::1/"]"#, "mirrors[0]", "unclosed"),
        (r#"["http://m /"]"#, "mirrors[0]", "space"),
        (
            r#"["http://m/a", "http://m/a/"]"#,
            "mirrors[1]",
            "listed twice",
        ),
    ];
    for (mirrors, field, why) in cases {
        let e = with_mirrors(mirrors).unwrap_err().to_string();
        assert!(e.contains(field) && e.contains(why), "{mirrors} -> {e}");
    }
    let many: Vec<String> = (0..=MAX_MIRRORS).map(|i| format!("http://m{i}/")).collect();
    let e = with_mirrors(&serde_json::to_string(&many).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("mirrors: 17 listed, at most 16"), "{e}");
}

#[test]
fn enroll_token_file_is_an_absolute_path() {
    let c = parse_str(
        r#"{"manager_url":"http://m:1","node_id":"n","state_dir":"/s","enroll_token_file":"/etc/binproxy/enroll.token","bins":[{"name":"a","path":"/a"}]}"#,
    )
    .unwrap();
    assert_eq!(
        c.enroll_token_file.as_deref(),
        Some(Path::new("/etc/binproxy/enroll.token"))
    );
    for bad in [r#""enroll.token""#, r#""""#] {
        let e = error_of(&format!(
            r#"{{"manager_url":"http://m:1","node_id":"n","state_dir":"/s","enroll_token_file":{bad},"bins":[{{"name":"a","path":"/a"}}]}}"#
        ));
        assert!(e.contains("enroll_token_file"), "{bad} -> {e}");
    }
}

fn error_of(text: &str) -> String {
    parse_str(text).unwrap_err().to_string()
}

#[test]
fn rates() {
    assert_eq!(rate("r", Some("0")), Ok(0));
    assert_eq!(rate("r", Some("500")), Ok(500));
    assert_eq!(rate("r", Some("16KiB")), Ok(16384));
    assert_eq!(rate("r", Some("1MiB/s")), Ok(1 << 20));
    for bad in ["", "fast", "1GiB", "-1", "1.5KiB"] {
        assert!(
            rate("r", Some(bad)).unwrap_err().starts_with("r: "),
            "{bad}"
        );
    }
}

#[test]
fn errors_name_the_field() {
    let base = |bin: &str| {
        format!(r#"{{"manager_url":"http://m:1","node_id":"n","state_dir":"/s","bins":[{bin}]}}"#)
    };
    let cases = [
        (base(r#"{"name":"a","path":"/a","colour":"red"}"#), "unknown field `colour`"),
        (base(r#"{"name":"../a","path":"/a"}"#), "bins[0].name"),
        (base(r#"{"name":"a","path":"rel/a"}"#), "bins[0].path"),
        (base(r#"{"name":"a","path":"/a","mode":"999"}"#), "bins[0].mode"),
        (base(r#"{"name":"a","path":"/a","restart":[]}"#), "bins[0].restart"),
        (base(r#"{"name":"a","path":"/a","keep":0}"#), "bins[0].keep"),
        (base(r#"{"name":"a","path":"/a","health":{}}"#), "bins[0].health"),
        (base(r#"{"name":"a","path":"/a","health":{"http":"ftp://x"}}"#), "bins[0].health.http"),
        (base(r#"{"name":"a","path":"/a","health":{"http":"http://x","timeout":"soon"}}"#), "bins[0].health.timeout"),
        (base(r#"{"name":"a","path":"/a"},{"name":"a","path":"/b"}"#), "listed twice"),
        (base(""), "bins: list at least one"),
        (r#"{"manager_url":"m:1","state_dir":"/s","bins":[]}"#.into(), "manager_url"),
        (r#"{"manager_url":"http://m","node_id":"a/b","state_dir":"/s","bins":[]}"#.into(), "node_id"),
        (r#"{"manager_url":"http://m","node_id":"n","state_dir":"/s","splay":"x","bins":[{"name":"a","path":"/a"}]}"#.into(), "splay"),
        (r#"{"manager_url":"http://m","state_dir":"/s"}"#.into(), "missing field `bins`"),
        (
            r#"{"manager_url":"http://m","node_id":"n","state_dir":"/s","trusted_keys":["RWnope"],"bins":[{"name":"a","path":"/a"}]}"#.into(),
            "trusted_keys[0]",
        ),
        (
            r#"{"manager_url":"http://m","node_id":"n","state_dir":"/s","windows":["* 00:00-24:00 +00:00","Mon 01:00-05:00"],"bins":[{"name":"a","path":"/a"}]}"#.into(),
            "windows[1]: \"Mon 01:00-05:00\": expected DAYS",
        ),
        ("{not json".into(), "test.json"),
        (r#"{"manager_url":"https://m","node_id":"n","state_dir":"/s","ca_file":"ca.pem","bins":[{"name":"a","path":"/a"}]}"#.into(), "ca_file"),
    ];
    for (text, want) in cases {
        let e = error_of(&text);
        assert!(e.contains(want), "{text}\n -> {e}\n wanted {want}");
    }
}

#[test]
fn a_ca_file_is_read_by_load_and_a_bad_one_is_a_config_error_naming_it() {
    let dir = std::env::temp_dir().join(format!("binproxy-config-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.json");
    let ca = dir.join("ca.pem");
    let text = format!(
        r#"{{"manager_url":"https://m","node_id":"n","state_dir":"/s","ca_file":{},"bins":[{{"name":"a","path":"/a"}}]}}"#,
        serde_json::to_string(&ca).unwrap()
    );
    std::fs::write(&config, &text).unwrap();
    let parsed = parse(&text, &config).unwrap();
    assert_eq!(parsed.ca_file.as_deref(), Some(ca.as_path()));
    assert!(parsed.ca_roots.is_empty(), "parse alone reads no file");
    for (content, want) in [
        (None, "cannot read"),
        (Some("garbage"), "no PEM certificate"),
    ] {
        if let Some(c) = content {
            std::fs::write(&ca, c).unwrap();
        }
        let e = load(&config).unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.contains(&ca.display().to_string()) && e.contains(want),
            "{e}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

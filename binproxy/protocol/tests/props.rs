//! Property tests of the wire protocol, with a fixed budget of cases each so
//! a run is bounded: the name rules never panic, accept every name of their
//! alphabet and refuse `.`/`..`, `/`, NUL, empty and overlong names; every
//! JSON body type survives arbitrary bytes and arbitrary JSON without a
//! panic, and generated values round-trip through serialize → deserialize.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use binproxy_protocol::*;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;

const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(CASES)
}

// ---------------------------------------------------------------------------
// Names

type Check = fn(&str) -> Result<(), NameError>;

/// (rule, longest accepted length, extra allowed characters)
const RULES: [(&str, Check, usize, &str); 4] = [
    ("bin name", check_bin_name, 64, ""),
    ("version", check_version, 128, ""),
    ("arch", check_arch, 64, ""),
    ("node_id", check_node_id, 128, ":"),
];

fn valid_name(max: usize, extra: &'static str) -> impl Strategy<Value = String> {
    let alphabet: Vec<char> = ('a'..='z')
        .chain('A'..='Z')
        .chain('0'..='9')
        .chain("._-".chars())
        .chain(extra.chars())
        .collect();
    vec(proptest::sample::select(alphabet), 1..=max)
        .prop_map(|cs| cs.into_iter().collect::<String>())
        .prop_filter("not . or ..", |s| s != "." && s != "..")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn name_checks_never_panic_and_errors_stay_short(s in any::<String>()) {
        for (_, check, _, _) in RULES {
            if let Err(e) = check(&s) {
                let text = e.to_string();
                prop_assert!(text.len() < 400, "{}", text);
                prop_assert!(!text.contains('\n'), "{}", text);
            }
        }
        let _ = check_sha256("sha256sum", &s);
    }

    #[test]
    fn generated_valid_names_are_accepted(
        bin in valid_name(64, ""),
        version in valid_name(128, ""),
        node in valid_name(128, ":"),
    ) {
        prop_assert!(check_bin_name(&bin).is_ok(), "{:?}", bin);
        prop_assert!(check_arch(&bin).is_ok(), "{:?}", bin);
        prop_assert!(check_version(&version).is_ok(), "{:?}", version);
        prop_assert!(check_node_id(&node).is_ok(), "{:?}", node);
    }

    #[test]
    fn names_with_a_slash_nul_or_other_byte_are_refused(
        prefix in "[a-z]{0,10}",
        bad in prop_oneof![Just('/'), Just('\0'), Just('\\'), Just(' '), Just('%'), Just('\n'), any::<char>()],
        suffix in "[a-z]{0,10}",
    ) {
        let name = format!("{prefix}{bad}{suffix}");
        for (rule, check, _, extra) in RULES {
            let allowed = bad.is_ascii_alphanumeric() || "._-".contains(bad) || extra.contains(bad);
            prop_assert_eq!(check(&name).is_ok(), allowed, "{} {:?}", rule, name);
        }
    }

    #[test]
    fn sha256_accepts_hex_and_lowercases(hex in "[0-9a-fA-F]{64}", short in "[0-9a-f]{0,63}") {
        prop_assert_eq!(check_sha256("f", &hex).unwrap(), hex.to_ascii_lowercase());
        prop_assert!(check_sha256("f", &short).is_err());
        let long = format!("{hex}0");
        prop_assert!(check_sha256("f", &long).is_err());
    }
}

#[test]
fn empty_dots_and_overlong_names_are_refused() {
    for (rule, check, max, _) in RULES {
        for bad in [String::new(), ".".into(), "..".into(), "x".repeat(max + 1)] {
            assert!(check(&bad).is_err(), "{rule} accepted {bad:?}");
        }
        assert!(
            check(&"x".repeat(max)).is_ok(),
            "{rule} refused {max} chars"
        );
    }
}

// ---------------------------------------------------------------------------
// JSON bodies: arbitrary input never panics

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
        // The field names of the protocol, so objects sometimes half-fit.
        proptest::sample::select(FIELDS).prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            btree_map(key(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(FIELDS).prop_map(str::to_owned),
        1 => ".{0,12}",
    ]
}

const FIELDS: &[&str] = &[
    "node_id",
    "nodeId",
    "cpu_arch",
    "cpuArch",
    "os",
    "os_release",
    "labels",
    "bins",
    "node",
    "server_time",
    "targets",
    "reasons",
    "node_secret",
    "bin_name",
    "version",
    "sha256sum",
    "size",
    "url",
    "reason",
    "signature",
    "targetHash",
    "target_hash",
    "status",
    "processingTime",
    "fromHash",
    "message",
    "id",
    "received_at",
    "arch",
    "created_at",
    "versions",
    "selector",
    "waves",
    "percent",
    "wait",
    "success_threshold",
    "max_failures",
    "require_approval",
    "node_ids",
    "exclude_node_ids",
    "counts",
    "history",
    "at",
    "actor",
    "action",
    "name",
    "role",
    "token",
    "error",
    "registered_at",
    "last_seen",
    "online",
    "in_progress",
    "rolled_back",
    "admin",
    "viewer",
    "success",
];

/// Deserializes `bytes` as every wire type; only `Ok`/`Err`, never a panic.
fn parse_all(bytes: &[u8]) {
    fn one<T: DeserializeOwned>(bytes: &[u8]) {
        let _ = serde_json::from_slice::<T>(bytes);
    }
    one::<Health>(bytes);
    one::<Keepalive>(bytes);
    one::<KeepaliveReply>(bytes);
    one::<Node>(bytes);
    one::<Target>(bytes);
    one::<Installed>(bytes);
    one::<ProgressStatus>(bytes);
    one::<Progress>(bytes);
    one::<ProgressRecord>(bytes);
    one::<Version>(bytes);
    one::<BinVersions>(bytes);
    one::<NewRelease>(bytes);
    one::<Selector>(bytes);
    one::<Wave>(bytes);
    one::<ReleaseCounts>(bytes);
    one::<ReleaseStatus>(bytes);
    one::<Release>(bytes);
    one::<ReleaseEvent>(bytes);
    one::<Pin>(bytes);
    one::<NodeView>(bytes);
    one::<BinView>(bytes);
    one::<Role>(bytes);
    one::<NewToken>(bytes);
    one::<TokenInfo>(bytes);
    one::<CreatedToken>(bytes);
    one::<AuditRecord>(bytes);
    one::<ErrorBody>(bytes);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        parse_all(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(v in json_value()) {
        parse_all(&serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn cut_or_flipped_valid_bodies_never_panic(
        k in keepalive(), r in release(), at in any::<prop::sample::Index>(), byte in any::<u8>()
    ) {
        for mut body in [serde_json::to_vec(&k).unwrap(), serde_json::to_vec(&r).unwrap()] {
            let i = at.index(body.len());
            parse_all(&body[..i]);
            body[i] = byte;
            parse_all(&body);
        }
    }
}

// ---------------------------------------------------------------------------
// JSON bodies: generated values round-trip

fn text() -> impl Strategy<Value = String> {
    ".{0,16}"
}

fn map() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(text(), text(), 0..4)
}

fn keepalive() -> impl Strategy<Value = Keepalive> {
    (
        text(),
        text(),
        text(),
        text(),
        text(),
        text(),
        map(),
        option::of(map()),
    )
        .prop_map(
            |(node_id, cpu_arch, os, os_release, node_name, bin_proxy_version, labels, bins)| {
                Keepalive {
                    node_id,
                    cpu_arch,
                    os,
                    os_release,
                    node_name,
                    bin_proxy_version,
                    labels,
                    bins,
                    proposed_secret: None,
                }
            },
        )
}

fn node() -> impl Strategy<Value = Node> {
    (keepalive(), map(), text(), text(), any::<bool>()).prop_map(
        |(k, bins, registered_at, last_seen, online)| Node {
            node_id: k.node_id,
            cpu_arch: k.cpu_arch,
            os: k.os,
            os_release: k.os_release,
            node_name: k.node_name,
            bin_proxy_version: k.bin_proxy_version,
            labels: k.labels,
            bins,
            registered_at,
            last_seen,
            online,
        },
    )
}

fn target() -> impl Strategy<Value = Target> {
    (
        text(),
        text(),
        text(),
        any::<u64>(),
        text(),
        option::of(text()),
        option::of(text()),
        (vec(delta(), 0..3), option::of(packed())),
    )
        .prop_map(
            |(bin_name, version, sha256sum, size, url, reason, signature, (deltas, zst))| Target {
                bin_name,
                version,
                sha256sum,
                size,
                url,
                reason,
                signature,
                deltas,
                zst,
            },
        )
}

fn delta() -> impl Strategy<Value = Delta> {
    (text(), text(), any::<u64>(), text()).prop_map(|(from, sha256, size, url)| Delta {
        from,
        sha256,
        size,
        url,
    })
}

fn packed() -> impl Strategy<Value = Packed> {
    (text(), any::<u64>(), text()).prop_map(|(sha256, size, url)| Packed { sha256, size, url })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![Just(Method::Delta), Just(Method::Zst), Just(Method::Full)]
}

fn status() -> impl Strategy<Value = ProgressStatus> {
    prop_oneof![
        Just(ProgressStatus::InProgress),
        Just(ProgressStatus::Success),
        Just(ProgressStatus::Failed),
        Just(ProgressStatus::RolledBack),
    ]
}

fn progress() -> impl Strategy<Value = Progress> {
    (
        text(),
        text(),
        status(),
        any::<u64>(),
        option::of(text()),
        option::of(text()),
        (option::of(any::<u64>()), option::of(method())),
    )
        .prop_map(
            |(
                node_id,
                target_hash,
                status,
                processing_time_ms,
                from_hash,
                message,
                (bytes, method),
            )| Progress {
                node_id,
                target_hash,
                status,
                processing_time_ms,
                from_hash,
                message,
                bytes,
                method,
            },
        )
}

fn version() -> impl Strategy<Value = Version> {
    (
        text(),
        text(),
        option::of(text()),
        text(),
        any::<u64>(),
        text(),
        option::of(text()),
    )
        .prop_map(
            |(bin_name, version, arch, sha256sum, size, created_at, signature)| Version {
                bin_name,
                version,
                arch,
                sha256sum,
                size,
                created_at,
                signature,
                deltas: Vec::new(),
                zst: None,
            },
        )
}

fn selector() -> impl Strategy<Value = Selector> {
    let list = || vec(text(), 0..3);
    (
        list(),
        list(),
        list(),
        list(),
        btree_map(text(), list(), 0..3),
    )
        .prop_map(
            |(node_ids, exclude_node_ids, cpu_arch, os, labels)| Selector {
                node_ids,
                exclude_node_ids,
                cpu_arch,
                os,
                labels,
            },
        )
}

fn waves() -> impl Strategy<Value = Vec<Wave>> {
    vec(
        (any::<u32>(), option::of(text())).prop_map(|(percent, wait)| Wave { percent, wait }),
        0..4,
    )
}

fn new_release() -> impl Strategy<Value = NewRelease> {
    (
        text(),
        text(),
        option::of(text()),
        selector(),
        waves(),
        option::of(text()),
        option::of(text()),
        any::<bool>(),
        vec(text(), 0..3),
    )
        .prop_map(
            |(
                bin_name,
                version,
                note,
                selector,
                waves,
                success_threshold,
                max_failures,
                require_approval,
                windows,
            )| {
                NewRelease {
                    bin_name,
                    version,
                    note,
                    selector,
                    waves,
                    success_threshold,
                    max_failures,
                    require_approval,
                    windows,
                }
            },
        )
}

fn release_status() -> impl Strategy<Value = ReleaseStatus> {
    prop_oneof![
        Just(ReleaseStatus::PendingApproval),
        Just(ReleaseStatus::RollingOut),
        Just(ReleaseStatus::Paused),
        Just(ReleaseStatus::Completed),
        Just(ReleaseStatus::Cancelled),
        Just(ReleaseStatus::Superseded),
        Just(ReleaseStatus::RolledBack),
    ]
}

fn counts() -> impl Strategy<Value = ReleaseCounts> {
    let wave = any::<(u32, [u64; 6])>().prop_map(
        |(percent, [target, reached, in_progress, success, failed, rolled_back])| WaveCounts {
            percent,
            target,
            reached,
            in_progress,
            success,
            failed,
            rolled_back,
        },
    );
    (any::<[u64; 7]>(), vec(wave, 0..4)).prop_map(
        |(
            [targeted, in_progress, success, failed, rolled_back, bytes_downloaded, bytes_full],
            waves,
        )| {
            ReleaseCounts {
                targeted,
                in_progress,
                success,
                failed,
                rolled_back,
                bytes_downloaded,
                bytes_full,
                waves,
            }
        },
    )
}

fn event() -> impl Strategy<Value = ReleaseEvent> {
    (text(), text(), text(), option::of(text())).prop_map(|(at, actor, action, detail)| {
        ReleaseEvent {
            at,
            actor,
            action,
            detail,
        }
    })
}

fn release() -> impl Strategy<Value = Release> {
    let head = (
        any::<u64>(),
        new_release(),
        release_status(),
        any::<u32>(),
        any::<usize>(),
    );
    let tail = (
        option::of(text()),
        option::of(text()),
        option::of(text()),
        counts(),
        any::<u64>(),
        (text(), text(), text()),
        vec(event(), 0..3),
    );
    (head, tail).prop_map(|((id, n, status, percent, wave), tail)| {
        let (
            baseline_version,
            paused_reason,
            wave_started_at,
            counts,
            failure_baseline,
            (created_at, created_by, updated_at),
            history,
        ) = tail;
        Release {
            id,
            bin_name: n.bin_name,
            version: n.version,
            note: n.note,
            status,
            percent,
            wave,
            selector: n.selector,
            waves: n.waves,
            success_threshold: n.success_threshold,
            max_failures: n.max_failures,
            require_approval: n.require_approval,
            windows: n.windows,
            baseline_version,
            paused_reason,
            wave_started_at,
            counts,
            failure_baseline,
            created_at,
            created_by,
            updated_at,
            history,
        }
    })
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Admin),
        Just(Role::Publisher),
        Just(Role::Approver),
        Just(Role::Viewer)
    ]
}

fn token_info() -> impl Strategy<Value = TokenInfo> {
    (text(), role(), text(), text()).prop_map(|(name, role, created_at, created_by)| TokenInfo {
        name,
        role,
        created_at,
        created_by,
    })
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    v: &T,
) -> Result<(), TestCaseError> {
    let bytes = serde_json::to_vec(v).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: T = serde_json::from_slice(&bytes)
        .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
    prop_assert_eq!(&back, v);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn agent_bodies_round_trip(
        k in keepalive(), n in node(), t in option::of(target()), p in progress(),
        secret in option::of(text()), reasons in map(), sha in text(), enrolled in any::<bool>(),
    ) {
        round_trip(&k)?;
        round_trip(&Keepalive { proposed_secret: secret.clone().map(Secret), ..k.clone() })?;
        round_trip(&Installed { node_id: k.node_id.clone(), sha256sum: sha })?;
        round_trip(&p)?;
        round_trip(&p.status)?;
        let targets: BTreeMap<String, Option<Target>> = [("a".to_owned(), t.clone())].into();
        round_trip(&KeepaliveReply { node: n.clone(), server_time: k.os, targets, reasons: reasons.clone(), node_secret: secret, enrolled })?;
        let bins = reasons.into_iter().map(|(bin, reason)| (bin, BinView { target: t.clone(), reason })).collect();
        round_trip(&NodeView { node: n, bins })?;
    }

    #[test]
    fn admin_bodies_round_trip(
        v in version(), nr in new_release(), r in release(), ti in token_info(),
        secret in text(), id in any::<u64>(), status in any::<u16>(), addr in option::of(text()),
    ) {
        round_trip(&v)?;
        round_trip(&BinVersions { bin_name: v.bin_name.clone(), bytes: v.size, versions: vec![v.clone()] })?;
        round_trip(&nr)?;
        round_trip(&r)?;
        round_trip(&r.status)?;
        round_trip(&Pin { node_id: v.bin_name.clone(), bin_name: v.version.clone(), version: v.sha256sum.clone() })?;
        round_trip(&NewToken { name: ti.name.clone(), role: ti.role })?;
        round_trip(&CreatedToken { info: ti.clone(), token: secret.clone() })?;
        round_trip(&ti)?;
        round_trip(&AuditRecord { id, at: ti.created_at, actor: addr.clone(), method: secret.clone(), path: v.version, status, remote_addr: addr })?;
        round_trip(&ProgressRecord {
            id, node_id: secret.clone(), bin_name: v.bin_name, target_hash: v.sha256sum,
            from_hash: v.arch, status: ProgressStatus::Failed, processing_time_ms: id,
            message: v.signature, bytes: Some(id), method: Some(Method::Delta), received_at: v.created_at,
        })?;
        round_trip(&ErrorBody { error: secret.clone() })?;
        round_trip(&Health { status: secret, version: ti.created_by })?;
    }
}

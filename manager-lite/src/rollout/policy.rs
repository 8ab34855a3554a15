//! What a change to a release means: a new release and the older ones it
//! supersedes, a change of state (an operator's [`super::operate`] or the
//! tick's step), and a rollback to the baseline version. Each runs in one
//! transaction of the store ([`Store::write_releases`]), which only
//! persists the records this decides.

use binproxy_protocol::{NewRelease, Release, ReleaseCounts, ReleaseEvent, ReleaseStatus, Wave};
use std::fmt;
use std::time::SystemTime;

use super::targets::closed_until;
use super::{plan, DEFAULT_SUCCESS};
use crate::store::{ReleaseTable, Store, StoreError};
use crate::time::{rfc3339, rfc3339_millis};

/// Why a release was not created or changed.
#[derive(Debug)]
pub enum ReleaseError {
    /// No artifact of that version was uploaded.
    UnknownVersion,
    /// No release with that id.
    NotFound,
    /// Not allowed in the release's current state; says why.
    Conflict(String),
    Store(StoreError),
}

impl From<StoreError> for ReleaseError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownVersion => f.write_str("no artifact of that version was uploaded"),
            Self::NotFound => f.write_str("no release with that id"),
            Self::Conflict(why) => f.write_str(why),
            Self::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReleaseError {}

/// What an operation on a release did.
pub enum Change {
    /// Nothing: no write.
    Nothing,
    /// Bookkeeping (counts): written without a history entry.
    Quiet,
    /// A change of state: written with this history entry (action, detail).
    Event(String, Option<String>),
}

/// Creates a release. Unless it waits for approval it starts at once and
/// supersedes the older live releases of the bin it covers.
pub fn create_release(
    store: &Store,
    new: &NewRelease,
    actor: &str,
    now: SystemTime,
) -> Result<Release, ReleaseError> {
    if store
        .versions(&new.bin_name, Some(&new.version))?
        .is_empty()
    {
        return Err(ReleaseError::UnknownVersion);
    }
    let release =
        store.write_releases("creating release", |t| insert_release(t, new, actor, now))?;
    Ok(release)
}

/// Changes one release in a transaction: `op` sees the stored record and
/// says what it changed, or why the change is not allowed. Approval
/// starts the release (and supersedes).
pub fn update_release(
    store: &Store,
    id: u64,
    actor: &str,
    now: SystemTime,
    op: impl FnOnce(&mut Release) -> Result<Change, super::Refused>,
) -> Result<Release, ReleaseError> {
    let at = rfc3339(now);
    store.write_releases("updating release", |t| {
        let Some(mut release) = t.get(id)? else {
            return Ok(Err(ReleaseError::NotFound));
        };
        let before = release.status;
        match op(&mut release) {
            Err(why) => return Ok(Err(ReleaseError::Conflict(why.to_string()))),
            Ok(Change::Nothing) => return Ok(Ok(release)),
            Ok(Change::Quiet) => {}
            Ok(Change::Event(action, detail)) => {
                push_event(&mut release, &at, actor, &action, detail);
            }
        }
        if before == ReleaseStatus::PendingApproval && release.status == ReleaseStatus::RollingOut {
            release.wave_started_at = Some(rfc3339_millis(now));
        }
        supersede(t, &release, actor, now)?;
        t.put(&release, "updating release")?;
        Ok(Ok(release))
    })?
}

/// Rolls a release back: it becomes `rolled_back`, and a new release of
/// its baseline version, for the same selector, takes its place.
pub fn rollback_release(
    store: &Store,
    id: u64,
    waves: Vec<Wave>,
    actor: &str,
    now: SystemTime,
) -> Result<Release, ReleaseError> {
    let at = rfc3339(now);
    store.write_releases("rolling back release", |t| {
        let Some(mut old) = t.get(id)? else {
            return Ok(Err(ReleaseError::NotFound));
        };
        if let Some(why) = rollback_refusal(&old) {
            return Ok(Err(ReleaseError::Conflict(why)));
        }
        let Some(baseline) = old.baseline_version.clone() else {
            return Ok(Err(ReleaseError::Conflict("no baseline".into())));
        };
        old.status = ReleaseStatus::RolledBack;
        push_event(
            &mut old,
            &at,
            actor,
            "rolled_back",
            Some(format!("back to {baseline}")),
        );
        t.put(&old, "rolling back release")?;
        let new = NewRelease {
            bin_name: old.bin_name.clone(),
            version: baseline,
            note: Some(format!("rollback of release {id}")),
            selector: old.selector.clone(),
            waves,
            ..NewRelease::default()
        };
        insert_release(t, &new, actor, now).map(Ok)
    })?
}

/// Why `r` cannot be rolled back, or `None` when it can: only a live
/// release with an earlier version to go back to.
pub fn rollback_refusal(r: &Release) -> Option<String> {
    if !r.status.is_live() {
        return Some(format!(
            "release {} is {}: only a live release can be rolled back",
            r.id,
            r.status.as_str()
        ));
    }
    if r.baseline_version.is_none() {
        return Some(format!(
            "release {} has no earlier version of {} to roll back to",
            r.id, r.bin_name
        ));
    }
    None
}

/// A new release record, in its first state, with its baseline (the version
/// the bin's newest live release hands out) and its "created" event.
fn insert_release(
    t: &mut ReleaseTable,
    new: &NewRelease,
    actor: &str,
    now: SystemTime,
) -> Result<Release, StoreError> {
    let at = rfc3339(now);
    let id = t.next_id()?;
    let baseline_version = t
        .all()?
        .into_iter()
        .rev()
        .find(|r| r.bin_name == new.bin_name && r.status.is_live())
        .map(|r| r.version);
    let waves = plan(new);
    let pending = new.require_approval;
    let mut release = Release {
        id,
        bin_name: new.bin_name.clone(),
        version: new.version.clone(),
        note: new.note.clone(),
        status: if pending {
            ReleaseStatus::PendingApproval
        } else {
            ReleaseStatus::RollingOut
        },
        percent: if pending { 0 } else { waves[0].percent },
        wave: 0,
        selector: new.selector.clone(),
        waves,
        success_threshold: Some(
            new.success_threshold
                .clone()
                .unwrap_or_else(|| DEFAULT_SUCCESS.to_owned()),
        ),
        max_failures: new.max_failures.clone(),
        require_approval: new.require_approval,
        windows: new.windows.clone(),
        baseline_version,
        paused_reason: None,
        wave_started_at: (!pending).then(|| rfc3339_millis(now)),
        counts: ReleaseCounts::default(),
        failure_baseline: 0,
        created_at: at.clone(),
        created_by: actor.to_owned(),
        updated_at: at.clone(),
        history: Vec::new(),
    };
    push_event(&mut release, &at, actor, "created", new.note.clone());
    supersede(t, &release, actor, now)?;
    t.put(&release, "creating release")?;
    Ok(release)
}

/// Once `by` is live at 100%, marks as superseded the older live
/// releases of the same bin that it covers (every node they could reach,
/// `by` reaches too). Before that, an older release still gives its
/// target to the nodes `by` has not reached. While `by`'s maintenance
/// windows are closed the older releases stay live (their nodes keep
/// their targets); `by` supersedes them at its first change while open.
fn supersede(
    t: &mut ReleaseTable,
    by: &Release,
    actor: &str,
    now: SystemTime,
) -> Result<(), StoreError> {
    let open = matches!(closed_until(by, now), Ok(None));
    if by.percent < 100 || !by.status.is_live() || !open {
        return Ok(());
    }
    let at = &rfc3339(now);
    for mut old in t.all()? {
        let covered = by.selector.is_empty() || by.selector == old.selector;
        if old.id >= by.id || old.bin_name != by.bin_name || !old.status.is_live() || !covered {
            continue;
        }
        old.status = ReleaseStatus::Superseded;
        push_event(
            &mut old,
            at,
            actor,
            "superseded",
            Some(format!("by release {}", by.id)),
        );
        t.put(&old, "superseding release")?;
    }
    Ok(())
}

fn push_event(release: &mut Release, at: &str, actor: &str, action: &str, detail: Option<String>) {
    at.clone_into(&mut release.updated_at);
    release.history.push(ReleaseEvent {
        at: at.to_owned(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        detail,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use binproxy_protocol::Version;

    use crate::store::test_support::{opts, TempDir};
    use crate::store::PutVersion;

    #[test]
    fn versions_and_release_supersede() {
        let dir = TempDir::new("rel");
        let store = Store::open(&dir.db(), opts(3)).unwrap();
        let version = |v: &str, arch: Option<&str>, sha: &str| Version {
            bin_name: "streamd".into(),
            version: v.into(),
            arch: arch.map(Into::into),
            sha256sum: sha.repeat(64),
            size: 1,
            created_at: String::new(),
            signature: None,
            deltas: Vec::new(),
            zst: None,
        };
        assert!(matches!(
            store.put_version(&version("1", None, "a")).unwrap(),
            PutVersion::Created(_)
        ));
        assert!(matches!(
            store.put_version(&version("1", None, "a")).unwrap(),
            PutVersion::Existing(_)
        ));
        assert!(matches!(
            store.put_version(&version("1", None, "b")).unwrap(),
            PutVersion::Conflict(_)
        ));
        store
            .put_version(&version("2", Some("aarch64"), "c"))
            .unwrap();
        store.put_version(&version("2", None, "d")).unwrap();
        assert_eq!(
            store
                .artifact("streamd", "2", "aarch64")
                .unwrap()
                .unwrap()
                .sha256sum,
            "c".repeat(64)
        );
        assert_eq!(
            store
                .artifact("streamd", "2", "x86_64")
                .unwrap()
                .unwrap()
                .sha256sum,
            "d".repeat(64)
        );
        assert!(store.artifact("streamd", "3", "x86_64").unwrap().is_none());

        let new = |v: &str| NewRelease {
            bin_name: "streamd".into(),
            version: v.into(),
            note: None,
            ..NewRelease::default()
        };
        // The id of the live release of streamd.
        let live = |store: &Store| {
            store
                .live_releases()
                .iter()
                .find(|r| r.bin_name == "streamd" && r.status.is_live())
                .unwrap()
                .id
        };
        let now = SystemTime::now();
        assert!(matches!(
            create_release(&store, &new("9"), "t", now),
            Err(ReleaseError::UnknownVersion)
        ));
        let r1 = create_release(&store, &new("1"), "t", now).unwrap();
        let r2 = create_release(&store, &new("2"), "t", now).unwrap();
        assert_eq!(live(&store), r2.id);
        let old = store.release(r1.id).unwrap().unwrap();
        assert_eq!(old.status, ReleaseStatus::Superseded);
        assert_eq!(
            old.history.last().unwrap().detail.as_deref(),
            Some("by release 2")
        );
        drop(store);
        let store = Store::open(&dir.db(), opts(3)).unwrap();
        assert_eq!(live(&store), r2.id);
        assert_eq!(store.releases(Some("streamd")).unwrap().len(), 2);
    }
}

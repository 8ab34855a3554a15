//! Versions: the VERSIONS table, (bin, version, arch or "") → the uploaded
//! artifact's [`Version`] record (its hash, size and signature). An upload
//! is stored once; the same bytes again are found, other bytes refused.
//! Deleting versions is in `deletion.rs`.

use binproxy_protocol::{download_path, Release, Version};
use redb::ReadableTable;
use std::collections::{BTreeMap, HashSet};

use super::{to_json, Context, Result, Store, VERSIONS};

/// What [`Store::put_version`] found.
#[derive(Debug)]
pub enum PutVersion {
    /// Stored now.
    Created(Version),
    /// The same bin, version and arch was already stored with these bytes.
    Existing(Version),
    /// The same bin, version and arch is stored with other bytes.
    Conflict(Version),
}

impl Store {
    /// Stores a version unless the same (bin, version, arch) exists.
    pub fn put_version(&self, v: &Version) -> Result<PutVersion> {
        let arch = v.arch.clone().unwrap_or_default();
        self.write("storing version", |txn| {
            let mut t = txn.open_table(VERSIONS).at(&self.path, "versions")?;
            let key = (v.bin_name.as_str(), v.version.as_str(), arch.as_str());
            let existing = t
                .get(key)
                .at(&self.path, "versions")?
                .map(|found| self.decode::<Version>(found.value(), "version"))
                .transpose()?;
            if let Some(found) = existing {
                return Ok(if found.sha256sum == v.sha256sum {
                    PutVersion::Existing(found)
                } else {
                    PutVersion::Conflict(found)
                });
            }
            t.insert(key, to_json(&v).as_slice())
                .at(&self.path, "storing version")?;
            Ok(PutVersion::Created(v.clone()))
        })
    }

    /// Stores `text` as the signature of the artifact of `bin` `version`
    /// uploaded for `arch` (`None`: the arch-less one), replacing any earlier
    /// one. `None` when there is no such artifact.
    pub fn set_signature(
        &self,
        bin: &str,
        version: &str,
        arch: Option<&str>,
        text: &str,
    ) -> Result<Option<Version>> {
        let key = (bin, version, arch.unwrap_or(""));
        self.write("storing signature", |txn| {
            let mut t = txn.open_table(VERSIONS).at(&self.path, "versions")?;
            let found = t
                .get(key)
                .at(&self.path, "versions")?
                .map(|v| self.decode::<Version>(v.value(), "version"))
                .transpose()?;
            let Some(mut v) = found else {
                return Ok(None);
            };
            v.signature = Some(text.to_owned());
            t.insert(key, to_json(&v).as_slice())
                .at(&self.path, "storing signature")?;
            Ok(Some(v))
        })
    }

    /// Versions of `bin` (every arch), in key order; `version` narrows to one.
    pub fn versions(&self, bin: &str, version: Option<&str>) -> Result<Vec<Version>> {
        let txn = self.read("reading versions")?;
        let t = txn.open_table(VERSIONS).at(&self.path, "versions")?;
        let start = (bin, version.unwrap_or(""), "");
        let mut out = Vec::new();
        for row in t.range(start..).at(&self.path, "versions")? {
            let (key, value) = row.at(&self.path, "versions")?;
            let (b, v, _) = key.value();
            if b != bin || version.is_some_and(|want| want != v) {
                break;
            }
            out.push(self.decode(value.value(), "version")?);
        }
        Ok(out)
    }

    /// Every bin with its versions, by bin name.
    pub fn bins(&self) -> Result<BTreeMap<String, Vec<Version>>> {
        let txn = self.read("reading versions")?;
        let t = txn.open_table(VERSIONS).at(&self.path, "versions")?;
        let mut out: BTreeMap<String, Vec<Version>> = BTreeMap::new();
        for row in t.iter().at(&self.path, "versions")? {
            let (_, value) = row.at(&self.path, "versions")?;
            let v: Version = self.decode(value.value(), "version")?;
            out.entry(v.bin_name.clone()).or_default().push(v);
        }
        Ok(out)
    }

    /// The artifact of `bin` `version` for `arch`: the one uploaded for that
    /// arch, else the one uploaded without an arch; with the forms made for
    /// it (at the manager's download paths).
    pub fn artifact(&self, bin: &str, version: &str, arch: &str) -> Result<Option<Version>> {
        let txn = self.read("reading versions")?;
        let t = txn.open_table(VERSIONS).at(&self.path, "versions")?;
        // An artifact uploaded for this arch wins over one uploaded for all.
        let keys = if arch.is_empty() {
            vec![""]
        } else {
            vec![arch, ""]
        };
        for a in keys {
            if let Some(hit) = t.get((bin, version, a)).at(&self.path, "versions")? {
                let mut v: Version = self.decode(hit.value(), "version")?;
                self.offer_forms(&mut v, download_path);
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// The hashes of every stored artifact file: the versions' and their
    /// forms'.
    pub fn artifact_hashes(&self) -> Result<HashSet<String>> {
        let mut out = self.form_files()?;
        out.extend(self.bins()?.into_values().flatten().map(|v| v.sha256sum));
        Ok(out)
    }

    /// The artifact hashes of a release's version, every arch.
    pub fn release_hashes(&self, r: &Release) -> Result<HashSet<String>> {
        Ok(self
            .versions(&r.bin_name, Some(&r.version))?
            .into_iter()
            .map(|v| v.sha256sum)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{opts, TempDir};

    #[test]
    fn a_signature_goes_to_the_artifact_of_exactly_its_arch() {
        let dir = TempDir::new("sig");
        let store = Store::open(&dir.db(), opts(3)).unwrap();
        let version = |arch: Option<&str>, sha: &str| Version {
            bin_name: "streamd".into(),
            version: "2".into(),
            arch: arch.map(Into::into),
            sha256sum: sha.repeat(64),
            size: 1,
            created_at: String::new(),
            signature: None,
            deltas: Vec::new(),
            zst: None,
        };
        store.put_version(&version(Some("aarch64"), "c")).unwrap();
        store.put_version(&version(None, "d")).unwrap();

        // A signature goes to the artifact of exactly that arch.
        assert!(store
            .set_signature("streamd", "2", Some("x86_64"), "sig")
            .unwrap()
            .is_none());
        assert!(store
            .set_signature("streamd", "3", None, "sig")
            .unwrap()
            .is_none());
        let signed = store
            .set_signature("streamd", "2", Some("aarch64"), "sig-1")
            .unwrap()
            .unwrap();
        assert_eq!(signed.signature.as_deref(), Some("sig-1"));
        store
            .set_signature("streamd", "2", Some("aarch64"), "sig-2")
            .unwrap()
            .unwrap();
        store
            .set_signature("streamd", "2", None, "sig-any")
            .unwrap();
        let sig = |arch| {
            store
                .artifact("streamd", "2", arch)
                .unwrap()
                .unwrap()
                .signature
        };
        assert_eq!(sig("aarch64").as_deref(), Some("sig-2"));
        assert_eq!(sig("x86_64").as_deref(), Some("sig-any"));
        // The same bytes uploaded again keep the signature.
        assert!(matches!(
            store.put_version(&version(Some("aarch64"), "c")).unwrap(),
            PutVersion::Existing(v) if v.signature.as_deref() == Some("sig-2")
        ));
        drop(store);
        let store = Store::open(&dir.db(), opts(3)).unwrap();
        assert_eq!(
            store
                .artifact("streamd", "2", "aarch64")
                .unwrap()
                .unwrap()
                .signature
                .as_deref(),
            Some("sig-2")
        );
    }
}

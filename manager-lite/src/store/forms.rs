//! Forms: the FORMS table, an artifact's sha256 → the other files that make
//! it ([`Forms`]): its zst form and patches to it from earlier builds, made
//! by [`crate::deltas`]. A row exists once the forms were made, even when
//! none was worth keeping, so nothing is made twice.
//!
//! The files are artifacts like any other (`DATA/artifacts/<sha256>`,
//! downloadable, backed up, copied by `mirror sync`); they go when the
//! version they make is deleted, and a patch also goes when its base is.

use binproxy_protocol::{Delta, Packed, Version};
use redb::{ReadableTable, Table};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

use super::{to_json, Context, Result, Store, FORMS, VERSIONS};
use std::collections::HashMap;

/// One file of a form: its sha256 and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormFile {
    pub sha256: String,
    pub size: u64,
}

/// A patch from the build `from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaFile {
    pub from: String,
    pub sha256: String,
    pub size: u64,
}

/// What was made for one artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forms {
    #[serde(default)]
    pub zst: Option<FormFile>,
    #[serde(default)]
    pub deltas: Vec<DeltaFile>,
}

impl Forms {
    /// The hashes of its files.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.zst
            .iter()
            .map(|z| z.sha256.as_str())
            .chain(self.deltas.iter().map(|d| d.sha256.as_str()))
    }

    /// Fills `v`'s `deltas` and `zst`, each at `url(sha256)`.
    pub fn offer(&self, v: &mut Version, url: impl Fn(&str) -> String) {
        v.zst = self.zst.as_ref().map(|z| Packed {
            sha256: z.sha256.clone(),
            size: z.size,
            url: url(&z.sha256),
        });
        v.deltas = self
            .deltas
            .iter()
            .map(|d| Delta {
                from: d.from.clone(),
                sha256: d.sha256.clone(),
                size: d.size,
                url: url(&d.sha256),
            })
            .collect();
    }
}

impl Store {
    pub(super) fn load_forms(&self) -> Result<()> {
        self.forms.load(
            self,
            FORMS,
            ("loading forms", "forms"),
            |map: &mut HashMap<_, _>, sha, value| {
                map.insert(sha.to_owned(), self.decode(value, "forms")?);
                Ok(())
            },
        )
    }

    /// Whether the forms of the artifact `sha256` were made (from memory).
    pub fn has_forms(&self, sha256: &str) -> bool {
        self.forms.read().contains_key(sha256)
    }

    /// Offers the forms of `v`'s artifact in it, at `url(sha256)`.
    pub fn offer_forms(&self, v: &mut Version, url: impl Fn(&str) -> String) {
        if let Some(f) = self.forms.read().get(&v.sha256sum) {
            f.offer(v, url);
        }
    }

    /// Stores the forms of `sha256`, unless no version has that artifact any
    /// more (deleted while they were made): `false` then, and the caller
    /// removes the files.
    pub fn put_forms(&self, sha256: &str, forms: &Forms) -> Result<bool> {
        let write = |txn: &redb::WriteTransaction| {
            let versions = txn.open_table(VERSIONS).at(&self.path, "versions")?;
            let mut live = false;
            for row in versions.iter().at(&self.path, "versions")? {
                let (_, value) = row.at(&self.path, "versions")?;
                live |= self.decode::<Version>(value.value(), "version")?.sha256sum == sha256;
            }
            if !live {
                return Ok(false);
            }
            let mut t = txn.open_table(FORMS).at(&self.path, "forms")?;
            t.insert(sha256, to_json(forms).as_slice())
                .at(&self.path, "storing forms")?;
            Ok(true)
        };
        self.forms
            .write_through(self, "storing forms", write, |map, stored| {
                if *stored {
                    map.insert(sha256.to_owned(), forms.clone());
                }
            })
    }

    /// Every file of every stored form.
    pub fn form_files(&self) -> Result<HashSet<String>> {
        let map = self.forms.read();
        Ok(map
            .values()
            .flat_map(Forms::files)
            .map(str::to_owned)
            .collect())
    }

    /// Runs a deletion's `write` with the forms mirror held, and reloads it
    /// after the commit (the deletion may have dropped forms).
    pub(super) fn with_forms_reloaded<T>(&self, write: impl FnOnce() -> Result<T>) -> Result<T> {
        let mut map = self.forms.lock();
        let out = write()?;
        let txn = self.read("reloading forms")?;
        let t = txn.open_table(FORMS).at(&self.path, "forms")?;
        map.clear();
        for row in t.iter().at(&self.path, "forms")? {
            let (key, value) = row.at(&self.path, "forms")?;
            map.insert(key.value().to_owned(), self.decode(value.value(), "forms")?);
        }
        Ok(out)
    }

    /// Within a deletion: drops the forms of the artifacts `gone` and the
    /// patches from them; returns the files that leaves unreferenced by any
    /// form (the caller checks them against the versions too).
    pub(super) fn drop_forms(
        &self,
        t: &mut Table<&str, &[u8]>,
        gone: &HashSet<String>,
    ) -> Result<HashSet<String>> {
        let mut freed = HashSet::new();
        let mut kept = HashSet::new();
        let mut rewrite = Vec::new();
        for row in t.iter().at(&self.path, "forms")? {
            let (key, value) = row.at(&self.path, "forms")?;
            let mut forms: Forms = self.decode(value.value(), "forms")?;
            if gone.contains(key.value()) {
                freed.extend(forms.files().map(str::to_owned));
                rewrite.push((key.value().to_owned(), None));
                continue;
            }
            let (dropped, left): (Vec<_>, Vec<_>) = forms
                .deltas
                .into_iter()
                .partition(|d| gone.contains(&d.from));
            freed.extend(dropped.iter().map(|d| d.sha256.clone()));
            forms.deltas = left;
            kept.extend(forms.files().map(str::to_owned));
            if !dropped.is_empty() {
                rewrite.push((key.value().to_owned(), Some(forms)));
            }
        }
        for (key, forms) in rewrite {
            match forms {
                None => t.remove(key.as_str()).map(|_| ()),
                Some(f) => t.insert(key.as_str(), to_json(&f).as_slice()).map(|_| ()),
            }
            .at(&self.path, "dropping forms")?;
        }
        Ok(freed.difference(&kept).cloned().collect())
    }
}

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
    /// The forms made for the artifact `sha256`, if they were.
    pub fn forms(&self, sha256: &str) -> Result<Option<Forms>> {
        let txn = self.read("reading forms")?;
        let t = txn.open_table(FORMS).at(&self.path, "forms")?;
        let found = t.get(sha256).at(&self.path, "forms")?;
        found.map(|v| self.decode(v.value(), "forms")).transpose()
    }

    /// Stores the forms of `sha256`, unless no version has that artifact any
    /// more (deleted while they were made): `false` then, and the caller
    /// removes the files.
    pub fn put_forms(&self, sha256: &str, forms: &Forms) -> Result<bool> {
        self.write("storing forms", |txn| {
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
        })
    }

    /// Every file of every stored form.
    pub fn form_files(&self) -> Result<HashSet<String>> {
        let txn = self.read("reading forms")?;
        let t = txn.open_table(FORMS).at(&self.path, "forms")?;
        let mut out = HashSet::new();
        for row in t.iter().at(&self.path, "forms")? {
            let (_, value) = row.at(&self.path, "forms")?;
            let forms: Forms = self.decode(value.value(), "forms")?;
            out.extend(forms.files().map(str::to_owned));
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

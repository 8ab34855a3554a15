//! Pins: the PINS table ((node, bin) → version) and its mirror. A pin
//! overrides every release for that node and bin ([`crate::rollout::targets`]);
//! retention keeps a pinned version ([`crate::retention`]).

use std::collections::HashMap;

use super::{Context, Result, Store, PINS};

impl Store {
    pub(super) fn load_pins(&self) -> Result<()> {
        self.pins.load(
            self,
            PINS,
            ("loading pins", "pins"),
            |map: &mut HashMap<_, _>, (node, bin), version| {
                map.insert((node.to_owned(), bin.to_owned()), version.to_owned());
                Ok(())
            },
        )
    }

    /// Pins a node's bin to a version (`Some`) or removes the pin (`None`);
    /// returns whether a pin was there before.
    pub fn set_pin(&self, node: &str, bin: &str, version: Option<&str>) -> Result<bool> {
        self.pins.write_through(
            self,
            "storing pin",
            |txn| {
                let mut t = txn.open_table(PINS).at(&self.path, "pins")?;
                let existed = match version {
                    Some(v) => t
                        .insert((node, bin), v)
                        .at(&self.path, "storing pin")?
                        .is_some(),
                    None => t
                        .remove((node, bin))
                        .at(&self.path, "removing pin")?
                        .is_some(),
                };
                Ok(existed)
            },
            |pins, _| {
                let key = (node.to_owned(), bin.to_owned());
                match version {
                    Some(v) => pins.insert(key, v.to_owned()),
                    None => pins.remove(&key),
                };
            },
        )
    }

    pub fn pin(&self, node: &str, bin: &str) -> Option<String> {
        self.pins
            .read()
            .get(&(node.to_owned(), bin.to_owned()))
            .cloned()
    }

    /// Bins pinned on a node.
    pub fn pinned_bins(&self, node: &str) -> Vec<String> {
        self.pins
            .read()
            .keys()
            .filter(|(n, _)| n == node)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

//! The node-offline watch: each rollout tick walks the fleet and alerts
//! once for every node seen online before and offline now.

use super::{Alerts, Event};
use crate::store::Seen;
use crate::time::rfc3339;
use std::sync::PoisonError;

impl Alerts {
    /// Alerts once for each node that was online at the last watch and is
    /// offline now. Nodes offline at the first watch (after a restart) were
    /// not seen to go: no alert.
    ///
    /// `scan` calls its argument for every node (`Store::scan_nodes`): the
    /// fleet is walked, not copied.
    pub fn watch_nodes(&self, scan: impl FnOnce(&mut dyn FnMut(&Seen))) {
        if !self.enabled() {
            return;
        }
        let mut guard = self.online.lock().unwrap_or_else(PoisonError::into_inner);
        let (watch, online) = &mut *guard;
        *watch += 1;
        let mut gone = Vec::new();
        scan(&mut |n: &Seen| {
            let id = n.node.id;
            if n.online {
                match online.get_mut(id) {
                    Some(last) => *last = *watch,
                    None => {
                        online.insert(id.to_owned(), *watch);
                    }
                }
            } else if online.remove(id).is_some() {
                gone.push((id.to_owned(), rfc3339(n.last_seen)));
            }
        });
        // Deleted nodes were not seen: forget them.
        online.retain(|_, last| *last == *watch);
        drop(guard);
        for (node, last_seen) in gone {
            self.send(&Event::NodeOffline { node, last_seen });
        }
    }
}

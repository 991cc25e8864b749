//! Pure polling logic of the `sftp` kind: what changed between two listings of a directory, as
//! upstream decides it. No I/O.

use std::collections::BTreeMap;

use crate::clients::files::FileOp;

/// What a listing records of one file: enough to tell a changed file from the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Size in bytes, when the server reported it.
    pub size: Option<u64>,
    /// Modification time in seconds since the epoch, when the server reported it.
    pub mtime: Option<u32>,
}

/// One listing: file name (not a path) → its stat. Directories are left out.
pub type Listing = BTreeMap<String, Stat>;

/// The changes from `before` to `after`, in upstream's order: every removed name, then every
/// created one; each group sorted by name. A name in both listings whose size or modification
/// time differs counts as created again (upstream reports it as `CREATE` too).
pub fn diff(before: &Listing, after: &Listing) -> Vec<(FileOp, String)> {
    let removed = before
        .keys()
        .filter(|name| !after.contains_key(*name))
        .map(|name| (FileOp::Remove, name.clone()));
    let created = after
        .iter()
        .filter(|(name, stat)| before.get(*name) != Some(stat))
        .map(|(name, _)| (FileOp::Create, name.clone()));
    removed.chain(created).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(entries: &[(&str, u64, u32)]) -> Listing {
        entries
            .iter()
            .map(|(n, size, mtime)| {
                (
                    n.to_string(),
                    Stat {
                        size: Some(*size),
                        mtime: Some(*mtime),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn new_changed_and_vanished_names_are_reported_removes_first() {
        let before = listing(&[("a.txt", 1, 10), ("b.txt", 2, 10), ("c.txt", 3, 10)]);
        let after = listing(&[
            ("a.txt", 1, 10),
            ("b.txt", 5, 10),
            ("d.txt", 1, 11),
            ("c2", 3, 12),
        ]);
        assert_eq!(
            diff(&before, &after),
            vec![
                (FileOp::Remove, "c.txt".to_string()),
                (FileOp::Create, "b.txt".to_string()),
                (FileOp::Create, "c2".to_string()),
                (FileOp::Create, "d.txt".to_string()),
            ]
        );
    }

    #[test]
    fn a_touched_file_is_created_again_and_an_unchanged_listing_is_quiet() {
        let before = listing(&[("a.txt", 1, 10)]);
        assert!(diff(&before, &before).is_empty());
        assert_eq!(
            diff(&before, &listing(&[("a.txt", 1, 11)])),
            vec![(FileOp::Create, "a.txt".to_string())]
        );
        assert_eq!(
            diff(&Listing::new(), &before),
            vec![(FileOp::Create, "a.txt".to_string())]
        );
    }
}

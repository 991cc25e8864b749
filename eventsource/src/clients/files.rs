//! Upstream's file event, shared by the `file` and `sftp` kinds: the operation names and numbers of
//! upstream's `fsevent.Op` (and the mapping of file-system notifications to them) and the path
//! matching of `watchPathConfig`. Pure, no I/O.

use std::path::Path;

use notify::event::{MetadataKind, ModifyKind, RenameMode};
use notify::EventKind;
use regex::Regex;

/// One of upstream's five file operations. The event data carries the number (upstream marshals
/// its `Op` bit set as an integer); `eventType` names one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOp {
    /// `CREATE` (1): created, or renamed into the directory.
    Create,
    /// `WRITE` (2): content written.
    Write,
    /// `REMOVE` (4): deleted.
    Remove,
    /// `RENAME` (8): renamed away (the old name).
    Rename,
    /// `CHMOD` (16): attributes changed.
    Chmod,
}

impl FileOp {
    /// Upstream's bit value, as it appears in the event data's `op`.
    pub fn number(self) -> u32 {
        match self {
            Self::Create => 1,
            Self::Write => 2,
            Self::Remove => 4,
            Self::Rename => 8,
            Self::Chmod => 16,
        }
    }

    /// The name used in `eventType`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Write => "WRITE",
            Self::Remove => "REMOVE",
            Self::Rename => "RENAME",
            Self::Chmod => "CHMOD",
        }
    }

    /// Parses an `eventType`.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Create, Self::Write, Self::Remove, Self::Rename, Self::Chmod]
            .into_iter()
            .find(|op| op.name() == s)
    }

    /// The operation a notification stands for, as fsnotify reports it (a rename is `RENAME` on the
    /// old name and `CREATE` on the new one; a modification time change seen by the poller is a
    /// write). `None` for notifications with no upstream operation (reads, closes, the combined
    /// rename notice that repeats the two above).
    pub fn of(kind: &EventKind) -> Option<Self> {
        match kind {
            EventKind::Create(_) => Some(Self::Create),
            EventKind::Remove(_) => Some(Self::Remove),
            EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => Some(Self::Write),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::WriteTime)) => Some(Self::Write),
            EventKind::Modify(ModifyKind::Metadata(_)) => Some(Self::Chmod),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Some(Self::Create),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => None,
            EventKind::Modify(ModifyKind::Name(_)) => Some(Self::Rename),
            EventKind::Modify(ModifyKind::Other) => None,
            EventKind::Access(_) | EventKind::Any | EventKind::Other => None,
        }
    }
}

/// Which paths of the directory are watched: one relative path or a regular expression matched
/// (unanchored, as upstream) against the relative path.
#[derive(Clone, Debug)]
pub enum PathMatch {
    /// `path`.
    Exact(String),
    /// `pathRegexp`.
    Regexp(Regex),
}

impl PathMatch {
    /// Reads `watchPathConfig` (shared by the file and sftp kinds): its directory and which of its
    /// paths are watched; the error is the reason, with the field path.
    pub fn from_config(
        config: Option<&sluice_crds::eventsource::WatchPathConfig>,
    ) -> Result<(&str, PathMatch), String> {
        let config = config.ok_or("watchPathConfig is required")?;
        if config.directory.is_empty() {
            return Err("watchPathConfig.directory is required".into());
        }
        let path_match = match (
            config.path.as_deref().filter(|p| !p.is_empty()),
            config.path_regexp.as_deref().filter(|p| !p.is_empty()),
        ) {
            (Some(p), _) => PathMatch::Exact(p.to_owned()),
            (None, Some(re)) => {
                PathMatch::Regexp(Regex::new(re).map_err(|e| format!("watchPathConfig.pathRegexp: {e}"))?)
            }
            (None, None) => return Err("watchPathConfig: set `path` or `pathRegexp`".into()),
        };
        Ok((&config.directory, path_match))
    }

    /// True when `path` (a notification's path) is watched, relative to `directory`.
    pub fn matches(&self, directory: &Path, path: &Path) -> bool {
        let rel = path.strip_prefix(directory).unwrap_or(path);
        let Some(rel) = rel.to_str() else {
            return false;
        };
        match self {
            Self::Exact(p) => p.trim_start_matches("./") == rel,
            Self::Regexp(re) => re.is_match(rel),
        }
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, CreateKind, DataChange, RemoveKind};

    use super::*;

    #[test]
    fn operations_have_upstream_names_and_numbers() {
        let all = ["CREATE", "WRITE", "REMOVE", "RENAME", "CHMOD"].map(|n| FileOp::parse(n).expect(n));
        assert_eq!(all.map(FileOp::number), [1, 2, 4, 8, 16]);
        assert_eq!(
            all.map(FileOp::name),
            ["CREATE", "WRITE", "REMOVE", "RENAME", "CHMOD"]
        );
        assert_eq!(FileOp::parse("create"), None);
    }

    #[test]
    fn notifications_map_as_fsnotify_reports_them() {
        use EventKind as K;
        assert_eq!(FileOp::of(&K::Create(CreateKind::File)), Some(FileOp::Create));
        assert_eq!(FileOp::of(&K::Remove(RemoveKind::Any)), Some(FileOp::Remove));
        assert_eq!(
            FileOp::of(&K::Modify(ModifyKind::Data(DataChange::Any))),
            Some(FileOp::Write)
        );
        assert_eq!(
            FileOp::of(&K::Modify(ModifyKind::Metadata(MetadataKind::Permissions))),
            Some(FileOp::Chmod)
        );
        assert_eq!(
            FileOp::of(&K::Modify(ModifyKind::Metadata(MetadataKind::WriteTime))),
            Some(FileOp::Write)
        );
        assert_eq!(
            FileOp::of(&K::Modify(ModifyKind::Name(RenameMode::From))),
            Some(FileOp::Rename)
        );
        assert_eq!(
            FileOp::of(&K::Modify(ModifyKind::Name(RenameMode::To))),
            Some(FileOp::Create)
        );
        assert_eq!(FileOp::of(&K::Modify(ModifyKind::Name(RenameMode::Both))), None);
        assert_eq!(FileOp::of(&K::Access(AccessKind::Any)), None);
    }

    #[test]
    fn paths_match_relative_to_the_directory() {
        let dir = Path::new("/data/in/");
        let exact = PathMatch::Exact("a.txt".into());
        assert!(exact.matches(dir, Path::new("/data/in/a.txt")));
        assert!(!exact.matches(dir, Path::new("/data/in/a.txt.swp")));
        assert!(exact.matches(Path::new("/data/in"), Path::new("/data/in/a.txt")));
        let re = PathMatch::Regexp(Regex::new(r"\.csv$").expect("regex"));
        assert!(re.matches(dir, Path::new("/data/in/x/report.csv")));
        assert!(!re.matches(dir, Path::new("/data/in/report.csv.tmp")));
    }
}

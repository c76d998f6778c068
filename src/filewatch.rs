//! Change detection for files we reload (config, certificates, GeoIP
//! database): poll the metadata. Polling instead of inotify survives editors
//! that replace files and Kubernetes' symlink swaps of mounted ConfigMaps and
//! Secrets, at the cost of noticing a change within one poll period.

use std::path::Path;
use std::time::SystemTime;

/// What we compare: modification time, length and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    /// The stamp of `path` (following symlinks), or `None` when it cannot be read.
    pub fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: m.modified().ok(),
            len: m.len(),
            inode: m.ino(),
        })
    }

    /// The combined stamp of several files; `None` if any is unreadable.
    pub fn of_all(paths: &[&Path]) -> Option<Vec<FileStamp>> {
        paths.iter().map(|p| FileStamp::of(p)).collect()
    }
}

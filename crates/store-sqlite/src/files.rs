//! Who may read the data dir. It holds every workspace's prompts and results, so batchd creates
//! the directory `0700` and the files it makes there `0600`: the database and the lock file
//! directly, and SQLite gives the `-wal` and `-shm` files the permissions of the database file.
//! The modes are set per file, not through the umask, which belongs to the whole process.
//!
//! A directory or file the operator made is left as it is: [`loose_permissions`] reports the
//! ones that others may read, so the server can warn at start-up.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Owner-only modes for what batchd creates.
#[cfg(unix)]
const DIR_MODE: u32 = 0o700;
#[cfg(unix)]
const FILE_MODE: u32 = 0o600;

/// Creates the data dir (and its missing parents) if needed. The data dir itself, when batchd
/// creates it, is owner-only; parents get the usual permissions, as `mkdir -p` gives them.
pub(crate) fn create_dir(data_dir: &Path) -> io::Result<()> {
    if data_dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    match builder.create(data_dir) {
        // The mode given at creation only loses bits to the umask; set it exactly, so the owner
        // can always use the directory it just made.
        Ok(()) => make_owner_only(data_dir),
        // Another process (a `keys` command beside a first start) made it meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && data_dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens `path` for writing without truncating it, creating it owner-only if it is missing.
pub(crate) fn open_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    options.open(path)
}

#[cfg(unix)]
fn make_owner_only(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
}

#[cfg(not(unix))]
fn make_owner_only(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// The data dir and the files in it that users other than the owner may read, write or enter,
/// with their permission bits (e.g. `0o755`). Always empty off Unix.
pub fn loose_permissions(data_dir: &Path) -> io::Result<Vec<(PathBuf, u32)>> {
    let mut loose = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mut check = |path: PathBuf, meta: std::fs::Metadata| {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                loose.push((path, mode));
            }
        };
        check(data_dir.to_path_buf(), std::fs::metadata(data_dir)?);
        for entry in std::fs::read_dir(data_dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_file() {
                check(entry.path(), meta);
            }
        }
    }
    #[cfg(not(unix))]
    let _ = data_dir;
    loose.sort();
    Ok(loose)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn created_dir_is_owner_only_and_an_existing_one_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let made = root.path().join("a/b/data");
        create_dir(&made).unwrap();
        let mode = std::fs::metadata(&made).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(loose_permissions(&made).unwrap().is_empty());

        let theirs = root.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        set_mode(&theirs, 0o755);
        create_dir(&theirs).unwrap();
        let mode = std::fs::metadata(&theirs).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "a directory the operator made is not changed");
        open_private(&theirs.join("f")).unwrap();
        let file = theirs.join("g");
        std::fs::write(&file, "x").unwrap();
        set_mode(&file, 0o644);
        let loose = loose_permissions(&theirs).unwrap();
        assert_eq!(loose, vec![(theirs.clone(), 0o755), (file, 0o644)]);
    }
}

//! The data-dir lock: one batchd server per data dir.
//!
//! Leases live in the server's memory (see [`crate::leases`]), which is only sound while no other
//! process hands out the same requests. An OS file lock is released by the kernel when the
//! process dies, so a crash never leaves a stale lock behind.

use std::fs::{File, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use batchd_store::StoreError;

pub(crate) const LOCK_FILE: &str = "batchd.lock";

/// Another process holds the data dir.
#[derive(Debug, thiserror::Error)]
#[error("data dir {} is in use by another batchd process", .0.display())]
pub struct DataDirInUse(pub PathBuf);

/// Held for the store's lifetime; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(LOCK_FILE);
        let mut file =
            crate::files::open_private(&path).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Unavailable(Box::new(DataDirInUse(
                    data_dir.to_path_buf(),
                ))));
            }
            Err(TryLockError::Error(e)) => return Err(StoreError::Unavailable(Box::new(e))),
        }
        // Only for the operator wondering who holds the dir; failing to write it is harmless.
        let _ = file
            .set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(Self { _file: file })
    }
}

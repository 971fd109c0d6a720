//! The data dir holds every workspace's prompts and results: only batchd's user may read it.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use crate::helpers::*;

/// The permission bits in octal, as `ls` and `chmod` speak of them.
fn mode(path: &Path) -> String {
    format!(
        "{:o}",
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    )
}

#[tokio::test]
async fn data_dir_and_its_files_are_owner_only() {
    if skip_on_postgres(
        "data_dir_and_its_files_are_owner_only",
        "the data dir holds no database",
    ) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    // A path that does not exist yet, so batchd creates it.
    let data_dir = root.path().join("new").join("data");
    let app = start_in(data_dir.clone(), |_| {}).await;
    let id = app.create_n(3).await["id"].as_str().unwrap().to_owned();
    app.wait_ended(&id, Duration::from_secs(20)).await;
    assert_eq!(app.results(&id).await.len(), 3);

    assert_eq!(mode(&data_dir), "700", "{}", data_dir.display());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&data_dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), "600", "{}", path.display());
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    names.sort();
    // The WAL and its index exist while the server runs: they hold the prompts too.
    for expected in [
        "batchd.lock",
        "batchd.sqlite3",
        "batchd.sqlite3-shm",
        "batchd.sqlite3-wal",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    app.stop().await;
}

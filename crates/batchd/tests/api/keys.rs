//! Durable API keys: `batchd keys create/list/revoke` against a data dir a server is using, the
//! key a first start creates when none is configured, and the minimum length of keys given at
//! start-up.

use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;

use crate::helpers::*;

/// Runs the CLI without blocking the test's runtime: the server under test runs on that same
/// runtime, and a blocking wait would freeze it mid-transaction while the CLI waits for its lock.
async fn batchd(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_batchd"))
        .args(storage_args(data_dir))
        .args(args)
        .output()
        .await
        .expect("run batchd")
}

#[tokio::test]
async fn stored_keys_authenticate_until_revoked() {
    let app = spawn().await;
    let out = batchd(&app.data_dir, &["keys", "create", "--workspace", "team-x"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("sk-batchd-"), "{key}");

    let call = |key: String| {
        let app = &app;
        async move {
            app.client
                .get(format!("{}/v1/messages/batches", app.base))
                .header("x-api-key", key)
                .header("anthropic-version", "2023-06-01")
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(call(key.clone()).await.status(), 200);

    let list = batchd(&app.data_dir, &["keys", "list"]).await;
    let listing = String::from_utf8(list.stdout).unwrap();
    assert!(listing.contains("team-x"), "{listing}");
    assert!(!listing.contains(&key), "keys list must never show a key");
    let id = listing
        .lines()
        .find(|l| l.contains("team-x"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();

    let out = batchd(&app.data_dir, &["keys", "revoke", &id]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_error(
        call(key).await,
        401,
        "authentication_error",
        "invalid x-api-key",
    )
    .await;
}

#[tokio::test]
async fn first_start_without_keys_creates_one() {
    let dir = tempfile::tempdir().unwrap();
    let app = start_in(dir.path().to_path_buf(), |o| o.api_keys.clear()).await;
    // The static test keys are gone, and the generated key was printed, not returned; what we can
    // check from outside is that exactly one key now exists and the test key does not work.
    let resp = app
        .request(Method::GET, "/v1/messages/batches")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let listing = String::from_utf8(batchd(&app.data_dir, &["keys", "list"]).await.stdout).unwrap();
    assert_eq!(
        listing.lines().filter(|l| l.contains("default")).count(),
        1,
        "{listing}"
    );
    app.stop().await;
    // A second start does not create another.
    let app = start_in(dir.path().to_path_buf(), |o| o.api_keys.clear()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let listing = String::from_utf8(batchd(&app.data_dir, &["keys", "list"]).await.stdout).unwrap();
    assert_eq!(
        listing.lines().filter(|l| l.contains("default")).count(),
        1,
        "{listing}"
    );
    app.stop().await;
}

#[tokio::test]
async fn migrate_prepares_the_storage_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    // A server first (so on PostgreSQL the data dir has its database), then migrate beside it:
    // migrations already applied are a no-op, and the server keeps answering.
    let app = start_in(dir.path().to_path_buf(), |_| {}).await;
    let out = batchd(&app.data_dir, &["migrate"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("is migrated and ready"), "{stderr}");
    assert_eq!(app.get("/v1/messages/batches").await.status(), 200);
    app.stop().await;

    // On a fresh data dir it creates the database file without starting a server.
    if !on_postgres() {
        let fresh = tempfile::tempdir().unwrap();
        let out = batchd(fresh.path(), &["migrate"]).await;
        assert!(out.status.success());
        assert!(fresh.path().join("batchd.sqlite3").exists());
    }
}

#[tokio::test]
async fn short_configured_keys_stop_start_up_without_echoing_them() {
    let dir = tempfile::tempdir().unwrap();
    for how in ["flag", "env"] {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_batchd"));
        cmd.args(storage_args(dir.path()))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_remove("BATCHD_API_KEYS")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if how == "flag" {
            cmd.args(["--api-key", "short-secret@ws"]);
        } else {
            cmd.env(
                "BATCHD_API_KEYS",
                "sk-long-enough-key-0123456789@ws,short-secret@ws",
            );
        }
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .expect("batchd exits")
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{how}: {text}");
        assert!(
            text.contains("the key is shorter than 20 characters"),
            "{how}: {text}"
        );
        assert!(!text.contains("short-secret"), "{how}: {text}");
    }
}

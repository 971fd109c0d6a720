//! Fresh databases for tests (feature `testkit`), on the PostgreSQL server named by
//! `BATCHD_TEST_DATABASE_URL` (an admin URL: its user may create and drop databases).
//!
//! Each test gets its own database, `batchd_t_<pid>_<n>`, so tests run in parallel without
//! seeing each other. A database outlives its test (a test may restart a server on it); the
//! first use in a process drops those left by processes that are gone, so runs do not pile up.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection as _, PgConnection};
use tokio::sync::OnceCell;

/// The environment variable naming the test server.
pub const ENV: &str = "BATCHD_TEST_DATABASE_URL";

/// The admin URL, or `None` after printing why PostgreSQL tests are skipped.
pub fn admin_url(test: &str) -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            println!(
                "skipped {test}: PostgreSQL tests need {ENV}=postgres://USER@HOST:PORT/DB \
                 (a user that may create databases); see README \"Running with PostgreSQL\""
            );
            None
        }
    }
}

/// Creates an empty database and returns its URL, or `None` (printing why) when no test server
/// is configured. Panics if the server is configured but unusable: that is a failed test, not a
/// skipped one.
pub async fn fresh_database(test: &str) -> Option<String> {
    let admin = admin_url(test)?;
    static SWEPT: OnceCell<()> = OnceCell::const_new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("{ENV}: cannot connect: {e}"));
    SWEPT.get_or_init(|| sweep(&admin)).await;
    let name = format!(
        "batchd_t_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
    Some(database_url(&admin, &name))
}

/// `admin` with its database replaced by `name`.
pub fn database_url(admin: &str, name: &str) -> String {
    let mut url = url::Url::parse(admin).unwrap_or_else(|e| panic!("{ENV}: {e}"));
    url.set_path(name);
    url.to_string()
}

/// Drops the test databases of processes that no longer run.
async fn sweep(admin: &str) {
    let Ok(mut conn) = PgConnection::connect(admin).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'batchd\\_t\\_%'")
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    for name in names {
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// Selects PostgreSQL for the suites that run on either engine (the API and crash suites).
pub const STORE_ENV: &str = "BATCHD_TEST_STORE";

/// Whether those suites run on PostgreSQL in this process (`BATCHD_TEST_STORE=postgres`).
pub fn selected() -> bool {
    std::env::var(STORE_ENV).is_ok_and(|v| v == "postgres")
}

/// Databases of this process, by the data dir each stands for.
static DATABASES: std::sync::Mutex<Vec<(std::path::PathBuf, String)>> =
    std::sync::Mutex::new(Vec::new());

/// When PostgreSQL is [`selected`], the database that stands for `data_dir` (created on first
/// use, the same for every server a test starts on that data dir); `None` on SQLite.
pub async fn database_for(data_dir: &std::path::Path) -> Option<String> {
    if !selected() {
        return None;
    }
    if let Some(url) = database_of(data_dir) {
        return Some(url);
    }
    let url = fresh_database("a suite run with BATCHD_TEST_STORE=postgres")
        .await
        .unwrap_or_else(|| panic!("{STORE_ENV}=postgres needs {ENV}"));
    let mut map = DATABASES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, existing)) = map.iter().find(|(dir, _)| dir == data_dir) {
        return Some(existing.clone());
    }
    map.push((data_dir.to_path_buf(), url.clone()));
    Some(url)
}

/// The database a data dir already stands for, if any.
pub fn database_of(data_dir: &std::path::Path) -> Option<String> {
    DATABASES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(dir, _)| dir == data_dir)
        .map(|(_, url)| url.clone())
}

//! Which storage engine a process uses, chosen from its options: PostgreSQL when a database URL
//! is given (`--database-url`, `BATCHD_DATABASE_URL`, `database_url` in the config file),
//! otherwise the embedded SQLite database in the data dir. `serve`, `keys` and `migrate` all
//! open storage through here.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use batchd_store::Store;
use batchd_store_postgres::PostgresStore;
use batchd_store_sqlite::SqliteStore;

/// An open store, with what only its engine can do (closing cleanly).
#[derive(Debug, Clone)]
pub enum Storage {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

/// Where the data lives: the data dir, unless a PostgreSQL URL is given.
#[derive(Debug, Clone, Copy)]
pub struct Location<'a> {
    pub data_dir: &'a Path,
    pub database_url: Option<&'a str>,
}

impl Location<'_> {
    /// For logs and errors: never the password of a database URL.
    pub fn describe(&self) -> String {
        match self.database_url {
            Some(url) => format!("PostgreSQL database {}", redact(url)),
            None => format!("data dir {}", self.data_dir.display()),
        }
    }

    fn postgres_url(&self) -> anyhow::Result<Option<&str>> {
        let Some(url) = self.database_url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            bail!(
                "--database-url / BATCHD_DATABASE_URL: only PostgreSQL URLs \
                 (postgres://USER:PASSWORD@HOST:PORT/DATABASE) are supported, got {}",
                redact(url)
            );
        }
        Ok(Some(url))
    }
}

impl Storage {
    /// Opens storage for a server (migrating it first). On SQLite this takes the data dir's
    /// lock; on PostgreSQL it joins the processes already serving from the database.
    pub async fn open(at: Location<'_>) -> anyhow::Result<Self> {
        let opened = match at.postgres_url()? {
            Some(url) => PostgresStore::open(url)
                .await
                .map(|s| Self::Postgres(Arc::new(s))),
            None => SqliteStore::open(at.data_dir)
                .await
                .map(|s| Self::Sqlite(Arc::new(s))),
        };
        let opened = opened.with_context(|| format!("opening the {}", at.describe()))?;
        if let Self::Sqlite(_) = opened {
            warn_if_readable_by_others(at.data_dir);
        }
        Ok(opened)
    }

    /// Opens storage for the `keys` and `migrate` commands, beside any running server.
    pub async fn open_for_admin(at: Location<'_>) -> anyhow::Result<Self> {
        let opened = match at.postgres_url()? {
            Some(url) => PostgresStore::open_for_admin(url)
                .await
                .map(|s| Self::Postgres(Arc::new(s))),
            None => SqliteStore::open_for_admin(at.data_dir)
                .await
                .map(|s| Self::Sqlite(Arc::new(s))),
        };
        opened.with_context(|| format!("opening the {}", at.describe()))
    }

    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    /// Closes the connections; on PostgreSQL also hands this process's claims back at once
    /// rather than when its heartbeat goes stale.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        }
    }
}

/// The data dir holds every workspace's prompts and results. batchd makes what it creates
/// owner-only, but leaves a directory or file the operator made as it is: it only says so.
fn warn_if_readable_by_others(data_dir: &Path) {
    match batchd_store_sqlite::loose_permissions(data_dir) {
        Ok(loose) => {
            for (path, mode) in loose {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:04o}"),
                    "other users may access this part of the data dir; 0700 for the directory \
                     and 0600 for its files keep every workspace's data to batchd's user"
                );
            }
        }
        Err(e) => tracing::warn!(
            data_dir = %data_dir.display(),
            error = %e,
            "could not check the data dir's permissions"
        ),
    }
}

/// A database URL without its password.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_described_without_passwords_and_checked() {
        let at = Location {
            data_dir: Path::new("/d"),
            database_url: Some("postgres://u:secret@db:5432/batchd"),
        };
        let shown = at.describe();
        assert!(
            !shown.contains("secret") && shown.contains("db:5432/batchd"),
            "{shown}"
        );
        assert_eq!(at.postgres_url().unwrap(), at.database_url);
        let sqlite = Location {
            data_dir: Path::new("/d"),
            database_url: Some(" "),
        };
        assert_eq!(sqlite.postgres_url().unwrap(), None);
        let bad = Location {
            data_dir: Path::new("/d"),
            database_url: Some("mysql://u:secret@db/x"),
        };
        let err = bad.postgres_url().unwrap_err().to_string();
        assert!(
            err.contains("only PostgreSQL") && !err.contains("secret"),
            "{err}"
        );
    }
}

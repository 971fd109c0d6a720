//! Shared by the build scripts of the storage engines (each includes it with `#[path]`): embeds
//! `migrations/*.sql` of the crate being built into `OUT_DIR/migrations.rs`, the way
//! `sqlx::migrate!` would, without sqlx's `macros` feature (which would build a second copy of
//! sqlx for the host just to read a directory).

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

/// Writes `MIGRATIONS` (version, description, SQL, in order) and `fn migrator()`, which the
/// crate `include!`s.
pub fn embed() {
    println!("cargo:rerun-if-changed=migrations");
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("migrations");
    let mut files: Vec<(i64, String, String)> = Vec::new();
    for entry in fs::read_dir(&dir).expect("migrations directory") {
        let path = entry.expect("readable directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let Some(stem) = name.strip_suffix(".sql") else {
            continue;
        };
        println!("cargo:rerun-if-changed={}", path.display());
        let (version, description) = stem
            .split_once('_')
            .unwrap_or_else(|| panic!("migration {name} must be named VERSION_description.sql"));
        let version: i64 = version
            .parse()
            .unwrap_or_else(|_| panic!("migration {name} must start with a number"));
        files.push((
            version,
            description.replace('_', " "),
            path.display().to_string(),
        ));
    }
    files.sort();
    for pair in files.windows(2) {
        assert!(
            pair[0].0 != pair[1].0,
            "two migrations have version {}",
            pair[0].0
        );
    }
    let mut out = String::from("/// (version, description, SQL) of every migration, in order.\n");
    out.push_str("const MIGRATIONS: &[(i64, &str, &str)] = &[\n");
    for (version, description, path) in &files {
        writeln!(
            out,
            "    ({version}, {description:?}, include_str!({path:?})),"
        )
        .expect("string write");
    }
    out.push_str("];\n");
    out.push_str(MIGRATOR);
    let dest = Path::new(&env::var("OUT_DIR").expect("set by cargo")).join("migrations.rs");
    fs::write(dest, out).expect("write migrations.rs");
}

const MIGRATOR: &str = r#"
fn migrator() -> sqlx::migrate::Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|&(version, description, sql)| {
            sqlx::migrate::Migration::new(
                version,
                std::borrow::Cow::Borrowed(description),
                sqlx::migrate::MigrationType::Simple,
                sqlx::SqlStr::from_static(sql),
                false,
            )
        })
        .collect();
    sqlx::migrate::Migrator::with_migrations(migrations)
}
"#;

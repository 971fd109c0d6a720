//! Embeds `migrations/*.sql` into the crate, the way `sqlx::migrate!` would, without enabling
//! sqlx's `macros` feature (which would build a second copy of sqlx and of the bundled SQLite
//! for the host just to read a directory).

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn main() {
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
    let dest = Path::new(&env::var("OUT_DIR").expect("set by cargo")).join("migrations.rs");
    fs::write(dest, out).expect("write migrations.rs");
}

//! Embeds `migrations/*.sql` into the crate without sqlx's `macros` feature (see
//! `crates/store/build/embed_migrations.rs`, shared with the SQLite engine).

#[path = "../store/build/embed_migrations.rs"]
mod embed_migrations;

fn main() {
    embed_migrations::embed();
}

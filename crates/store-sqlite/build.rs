//! Embeds `migrations/*.sql` into the crate, the way `sqlx::migrate!` would, without enabling
//! sqlx's `macros` feature (which would build a second copy of sqlx and of the bundled SQLite
//! for the host just to read a directory). The logic is shared with the other engines.

#[path = "../store/build/embed_migrations.rs"]
mod embed_migrations;

fn main() {
    embed_migrations::embed();
}

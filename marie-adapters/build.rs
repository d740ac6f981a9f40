//! `sqlx::migrate!` embeds `migrations/` when the crate compiles: compile again when a
//! migration is added or changed.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

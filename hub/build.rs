//! Rebuild when a migration is added (embedded with `embed_migrations!`).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}

// `sqlx::migrate!` embeds the migration files at compile time, but cargo does not know it reads
// them: without this, a new migration would not rebuild the crate (sqlx's documented remedy).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

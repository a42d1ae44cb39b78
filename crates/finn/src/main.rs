//! The `finn` command-line tool. Not built yet: it prints what exists.

fn main() {
    println!("finn {}: the command-line tool is not built yet", env!("CARGO_PKG_VERSION"));
}

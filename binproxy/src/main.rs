//! binproxy: the node agent (the update cycle lands with issue #3).

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") => println!("binproxy {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!(
                "binproxy {}: the update cycle is not built yet",
                env!("CARGO_PKG_VERSION")
            );
            std::process::exit(2);
        }
    }
}

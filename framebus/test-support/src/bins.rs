//! The workspace's binaries, for tests of another package than the one
//! that builds them (`CARGO_BIN_EXE_*` only names the package's own).
//! A test binary runs from `target/<profile>/deps/`; the binaries are in
//! `target/<profile>/` (`make test` builds every binary first:
//! `cargo build --workspace --bins --tests`, the features `cargo test` uses).

use std::path::PathBuf;

/// `target/<profile>/`, derived from the running test binary.
pub fn dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a directory");
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps has a parent").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// The binary `name` in [`dir`], if it was built.
pub fn built(name: &str) -> Option<PathBuf> {
    let p = dir().join(name);
    p.is_file().then_some(p)
}

/// The binary `name` in [`dir`]; panics with the command that builds it.
pub fn path(name: &str) -> PathBuf {
    built(name).unwrap_or_else(|| {
        panic!(
            "{} is not built (run `cargo build --release --workspace --bins --tests` or `make test`)",
            dir().join(name).display()
        )
    })
}

/// The binary `name` if built; otherwise prints `SKIP: ...` (for tests
/// that then return) and gives `None`.
pub fn or_skip(name: &str) -> Option<PathBuf> {
    let b = built(name);
    if b.is_none() {
        eprintln!(
            "SKIP: {} is not built (run `cargo build --release --workspace --bins --tests` or `make test`)",
            dir().join(name).display()
        );
    }
    b
}

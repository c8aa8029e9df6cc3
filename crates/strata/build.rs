//! Link options of the `strata` binary.
//!
//! - `-z pack-relative-relocs` stores the binary's relative relocations as DT_RELR
//!   bitmaps (glibc ≥ 2.36, binutils ≥ 2.38) instead of one 24-byte `Elf64_Rela` each.
//!   The dynamic loader reads every relocation at each start, so with ~100,000 of them
//!   the plain table alone made 2.3 MB of every `strata` process resident — most of the
//!   memory of a short-lived `strata-runc create`. Linkers without the option are
//!   detected and left alone.
//! - `--symbol-ordering-file=oci.order` links the functions the runc-compatible entry
//!   point runs first and together (the list is recorded by `make oci-order`), so a
//!   `strata-runc` process maps little more code than it runs instead of a 64 KiB block
//!   around each function. Only rustc's own lld (the default linker of
//!   x86_64-unknown-linux-gnu since Rust 1.90) is given the option; names the binary
//!   no longer has are skipped silently.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=oci.order");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("linux-gnu") && linker_packs_relocations() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let order =
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("oci.order");
    if links_with_rust_lld(&target)
        && let Some(order) = versioned_copy(&order)
    {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Copies the ordering file into OUT_DIR under a name that carries a hash of its
/// content. Cargo relinks only when the link arguments change, not when a file they
/// name does, so a new `oci.order` must give a new argument.
fn versioned_copy(order: &Path) -> Option<PathBuf> {
    use std::hash::{Hash, Hasher};
    let content = std::fs::read(order).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    content.hash(&mut hasher);
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR")?);
    let copy = out_dir.join(format!("oci-{:016x}.order", hasher.finish()));
    std::fs::write(&copy, content).ok()?;
    Some(copy)
}

/// Whether the system linker knows `-z pack-relative-relocs` (ld prints a warning for
/// unknown `-z` options rather than failing, so look at what it says).
fn linker_packs_relocations() -> bool {
    let Ok(output) = Command::new("ld")
        .args(["-z", "pack-relative-relocs", "--version"])
        .output()
    else {
        return false;
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    output.status.success() && !stderr.contains("warning") && !stderr.contains("unknown")
}

/// Whether the binary is linked by rustc's bundled lld: x86_64-unknown-linux-gnu with
/// rustc ≥ 1.90 and no linker chosen in RUSTFLAGS. GNU ld would reject
/// `--symbol-ordering-file`.
fn links_with_rust_lld(target: &str) -> bool {
    if target != "x86_64-unknown-linux-gnu" {
        return false;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker") || flags.contains("fuse-ld") {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(output) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&output.stdout);
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}

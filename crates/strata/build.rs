//! Link options of the `strata` binary.
//!
//! `-z pack-relative-relocs` stores the binary's relative relocations as DT_RELR
//! bitmaps (glibc ≥ 2.36, binutils ≥ 2.38) instead of one 24-byte `Elf64_Rela` each. The
//! dynamic loader reads every relocation at each start, so with ~100,000 of them the
//! plain table alone made 2.3 MB of every `strata` process resident — most of the
//! memory of a short-lived `strata-runc create`. Linkers without the option are detected
//! and left alone.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.contains("linux-gnu") && linker_packs_relocations() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
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

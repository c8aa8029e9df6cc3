//! WebAssembly test inputs: the `examples/functions/hello-http` `wasi:http` component,
//! built for wasm32-wasip2 once per test process (cargo caches it across runs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The `hello-http` example component's bytes, or `None` after printing
/// `SKIP <test>: <reason>` when the wasm32-wasip2 target is not installed.
pub fn hello_http(test: &str) -> Option<&'static [u8]> {
    static WASM: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    match WASM.get_or_init(build_hello_http) {
        Ok(bytes) => Some(bytes),
        Err(reason) => {
            println!("SKIP {test}: {reason}");
            None
        }
    }
}

/// Builds the example with the toolchain running the tests; a missing target is a reason
/// to skip, a failing build is a failure.
fn build_hello_http() -> Result<Vec<u8>, String> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("running rustc: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if !sysroot.join("lib/rustlib/wasm32-wasip2").is_dir() {
        return Err(
            "the wasm32-wasip2 target is not installed (rustup target add wasm32-wasip2)".into(),
        );
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/functions/hello-http/Cargo.toml");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("hello-http");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    assert!(status.success(), "building the hello-http example failed");
    let wasm = target_dir.join("wasm32-wasip2/release/hello_http.wasm");
    std::fs::read(&wasm).map_err(|e| format!("reading {}: {e}", wasm.display()))
}

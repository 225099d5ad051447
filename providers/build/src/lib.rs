//! Compiles provider crates of this workspace into WebAssembly components
//! from a build script, so `cargo build` and `cargo test` need no manual
//! step (the pattern of wasmtime's test-programs artifacts).
//!
//! The components are built by a nested `cargo build --target
//! wasm32-wasip2 --profile plugin` with its own target directory, so the
//! outer build's lock is never contended. The wasm target is installed with
//! rustup when it is missing, because cargo does not install targets listed
//! in `rust-toolchain.toml` by itself.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target provider components are compiled for.
pub const WASM_TARGET: &str = "wasm32-wasip2";
/// The cargo profile used for components (see the workspace Cargo.toml).
pub const PROFILE: &str = "plugin";

/// One nested build of some provider crates.
pub struct ComponentBuild<'a> {
    /// Workspace root (holds the workspace Cargo.toml).
    pub workspace: &'a Path,
    /// Target directory of the nested build.
    pub target_dir: PathBuf,
    /// Package names to build.
    pub packages: &'a [&'a str],
    /// Extra environment for the nested build.
    pub env: &'a [(&'a str, &'a str)],
}

impl ComponentBuild<'_> {
    /// Builds the packages and returns the path of each component, in the
    /// order of `packages`. Panics with a readable message on failure, as
    /// build scripts do.
    pub fn run(&self) -> Vec<PathBuf> {
        ensure_wasm_target(&self.workspace.join("target"));
        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .current_dir(self.workspace)
            .arg("build")
            .arg("--manifest-path")
            .arg(self.workspace.join("Cargo.toml"))
            .arg("--target")
            .arg(WASM_TARGET)
            .arg("--profile")
            .arg(PROFILE)
            .arg("--target-dir")
            .arg(&self.target_dir);
        for package in self.packages {
            command.arg("-p").arg(package);
        }
        // The outer build's flags and wrappers (clippy, coverage, native
        // RUSTFLAGS) do not apply to wasm components.
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "CARGO_BUILD_RUSTFLAGS",
            "CLIPPY_ARGS",
        ] {
            command.env_remove(var);
        }
        // Build-time knobs of the providers are the caller's choice only.
        for (var, _) in env::vars_os() {
            if var.to_string_lossy().starts_with("LLMHOST_") {
                command.env_remove(var);
            }
        }
        for (key, value) in self.env {
            command.env(key, value);
        }
        let status = command.status().unwrap_or_else(|err| {
            panic!("could not run cargo to build provider components: {err}")
        });
        assert!(
            status.success(),
            "building provider components ({}) failed; see the errors above",
            self.packages.join(", ")
        );
        self.packages
            .iter()
            .map(|package| {
                let path = self
                    .target_dir
                    .join(WASM_TARGET)
                    .join(PROFILE)
                    .join(format!("{}.wasm", package.replace('-', "_")));
                assert!(path.is_file(), "expected component at {}", path.display());
                path
            })
            .collect()
    }
}

/// The workspace root, found from a crate directory inside it.
pub fn workspace_root(manifest_dir: &Path) -> PathBuf {
    manifest_dir
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .map(|text| text.contains("[workspace]"))
                .unwrap_or(false)
        })
        .unwrap_or(manifest_dir)
        .to_path_buf()
}

/// Makes sure the wasm target's standard library is installed, adding it
/// with rustup when it is not. Several build scripts may ask at once, so
/// the check and the installation happen under a file lock in `lock_dir`.
pub fn ensure_wasm_target(lock_dir: &Path) {
    let _ = std::fs::create_dir_all(lock_dir);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_dir.join(".wasm-target.lock"));
    // Without a lock file (read-only tree) the check still works; only
    // concurrent installs could then collide.
    if let Ok(file) = &lock {
        let _ = file.lock();
    }
    install_wasm_target_if_missing();
}

fn install_wasm_target_if_missing() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if let Some(sysroot) = &sysroot
        && sysroot
            .join("lib/rustlib")
            .join(WASM_TARGET)
            .join("lib")
            .is_dir()
    {
        return;
    }
    println!(
        "cargo:warning=installing the {WASM_TARGET} target with rustup (needed to build provider components)"
    );
    let mut command = Command::new("rustup");
    command.args(["target", "add", WASM_TARGET]);
    if let Ok(toolchain) = env::var("RUSTUP_TOOLCHAIN") {
        command.args(["--toolchain", &toolchain]);
    }
    let status = command.status().unwrap_or_else(|err| {
        panic!("the {WASM_TARGET} target is missing and rustup could not be run ({err}); install it with `rustup target add {WASM_TARGET}`")
    });
    assert!(
        status.success(),
        "`rustup target add {WASM_TARGET}` failed; install the target by hand and build again"
    );
}

/// Tells cargo to rebuild when anything under these paths changes.
pub fn rerun_if_changed(paths: &[&Path]) {
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

//! Compiles the built-in provider components and embeds them: writes
//! `$OUT_DIR/builtin_providers.rs` with one `include_bytes!` per provider.

use llmhost_component_build::{ComponentBuild, rerun_if_changed, workspace_root};
use std::path::PathBuf;

/// (provider id, crate name) of every built-in provider.
const BUILTIN: &[(&str, &str)] = &[
    ("openai", "llmhost-provider-openai"),
    ("deepseek", "llmhost-provider-deepseek"),
    ("grok", "llmhost-provider-grok"),
    ("claude", "llmhost-provider-claude"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let root = workspace_root(&manifest_dir);
    rerun_if_changed(&[
        &root.join("wit"),
        &root.join("providers"),
        &root.join("Cargo.lock"),
        &root.join("Cargo.toml"),
    ]);

    let packages: Vec<&str> = BUILTIN.iter().map(|(_, package)| *package).collect();
    let paths = ComponentBuild {
        workspace: &root,
        target_dir: root.join("target").join("providers"),
        packages: &packages,
        env: &[],
    }
    .run();

    let mut code = String::from(
        "/// Built-in provider components: (provider id, component bytes).\n\
         pub const BUILTIN_PROVIDERS: &[(&str, &[u8])] = &[\n",
    );
    for ((id, _), path) in BUILTIN.iter().zip(&paths) {
        code.push_str(&format!(
            "    ({id:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("builtin_providers.rs"), code).expect("write builtin_providers.rs");
}

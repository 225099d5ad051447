//! Builds the test plugins: the OpenAI provider under another id (to load
//! from a plugin directory beside the built-in one) and the misbehaving
//! and hostile plugins. Tests find them through `$OUT_DIR/test_plugins.rs`.

use llmhost_component_build::{ComponentBuild, rerun_if_changed, workspace_root};
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let root = workspace_root(&manifest_dir);
    rerun_if_changed(&[
        &root.join("wit"),
        &root.join("providers"),
        &manifest_dir.join("plugins"),
    ]);

    let misbehave = ComponentBuild {
        workspace: &root,
        target_dir: root.join("target").join("test-plugins"),
        packages: &[
            "llmhost-test-plugin-misbehave",
            "llmhost-test-plugin-hostile",
        ],
        env: &[],
    }
    .run();
    let renamed = ComponentBuild {
        workspace: &root,
        target_dir: root.join("target").join("test-plugins-renamed"),
        packages: &["llmhost-provider-openai"],
        env: &[("LLMHOST_OPENAI_PROVIDER_ID", "acme-openai")],
    }
    .run();
    let code = format!(
        "/// The misbehaving test plugin.\n\
         pub const MISBEHAVE: &str = {:?};\n\
         /// The hostile test plugin (provider id `tinyllm`).\n\
         pub const HOSTILE: &str = {:?};\n\
         /// The OpenAI provider built under the id `acme-openai`.\n\
         pub const OPENAI_RENAMED: &str = {:?};\n",
        misbehave[0].display().to_string(),
        misbehave[1].display().to_string(),
        renamed[0].display().to_string()
    );
    std::fs::write(out_dir.join("test_plugins.rs"), code).expect("write test_plugins.rs");
}

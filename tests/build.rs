//! Builds the test plugins: the OpenAI provider under another id (to load
//! from a plugin directory beside the built-in one), the misbehaving and
//! hostile plugins and the OpenAI fixture (contract 0.1), and the leaking
//! plugin (in its two builds) and the unruly plugin (contract 0.2). Tests find them through `$OUT_DIR/test_plugins.rs`.

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
            "llmhost-test-plugin-openai-v0-1",
            "llmhost-test-plugin-leaky",
            "llmhost-test-plugin-unruly",
        ],
        env: &[],
    }
    .run();
    let signer = ComponentBuild {
        workspace: &root,
        target_dir: root.join("target").join("test-plugins-signer"),
        packages: &["llmhost-test-plugin-leaky"],
        env: &[("LLMHOST_LEAKY_SIGNS", "1")],
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
         pub const OPENAI_RENAMED: &str = {:?};\n\
         /// The contract 0.1 fixture: the OpenAI provider as written for\n\
         /// 0.1 (id `openai-v01`).\n\
         pub const OPENAI_V0_1: &str = {:?};\n\
         /// The leaking 0.2 plugin (id `leaky`, the host authenticates).\n\
         pub const LEAKY: &str = {:?};\n\
         /// The same built to sign its own requests (id `leaky-signer`).\n\
         pub const LEAKY_SIGNER: &str = {:?};\n\
         /// The misbehaving 0.2 plugin (id `unruly`).\n\
         pub const UNRULY: &str = {:?};\n",
        misbehave[0].display().to_string(),
        misbehave[1].display().to_string(),
        renamed[0].display().to_string(),
        misbehave[2].display().to_string(),
        misbehave[3].display().to_string(),
        signer[0].display().to_string(),
        misbehave[4].display().to_string()
    );
    std::fs::write(out_dir.join("test_plugins.rs"), code).expect("write test_plugins.rs");
}

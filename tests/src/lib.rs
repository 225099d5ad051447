//! Shared set-up of the end-to-end tests: paths of the test plugins and a
//! host configured for tests.

/// Paths of the test plugin components built by `build.rs`.
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/test_plugins.rs"));
}

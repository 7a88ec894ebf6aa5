//! What this binary is: version, git commit and build date (stamped by
//! `build.rs`), for `--version` and the `streamgate_build_info` metric.

/// The crate version, `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The short git commit the binary was built from, or `unknown` (a build
/// without `.git`, as in the container image, unless `STREAMGATE_COMMIT` is set).
pub const COMMIT: &str = env!("STREAMGATE_COMMIT");

/// The build time, RFC 3339 UTC (`2026-11-30T07:30:00Z`), from
/// `SOURCE_DATE_EPOCH` when the build set it.
pub const BUILD_DATE: &str = env!("STREAMGATE_BUILD_DATE");

/// `--version`'s text after the program name: `0.1.0 (commit 1a2b3c4, built 2026-11-30T07:30:00Z)`.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STREAMGATE_COMMIT"),
    ", built ",
    env!("STREAMGATE_BUILD_DATE"),
    ")"
);

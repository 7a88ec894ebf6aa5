//! Stamps the binary with the git commit and the build date, for
//! `streamgate --version` and the `streamgate_build_info` metric.
//!
//! The commit is `STREAMGATE_COMMIT` when set (a container build passes it,
//! having no `.git`), else `git rev-parse --short HEAD`, else `unknown`. The
//! date is `SOURCE_DATE_EPOCH` when set (reproducible builds), else now.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=STREAMGATE_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let commit = std::env::var("STREAMGATE_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // Rebuild the stamp when HEAD moves (a commit, a checkout), and only then:
    // a date that changed on every build would relink the binary every time.
    for file in head_files() {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or_else(SystemTime::now, |secs| {
            UNIX_EPOCH + Duration::from_secs(secs)
        });
    println!("cargo:rustc-env=STREAMGATE_COMMIT={}", commit.trim());
    println!(
        "cargo:rustc-env=STREAMGATE_BUILD_DATE={}",
        humantime::format_rfc3339_seconds(date)
    );
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

/// The files whose change means HEAD moved: HEAD itself, the branch's ref
/// and packed-refs (in a worktree, the ref is in the common directory).
/// Only files that exist: a missing one would rerun the script every build.
fn head_files() -> Vec<PathBuf> {
    let (Some(git_dir), Some(common)) = (
        git(&["rev-parse", "--git-dir"]),
        git(&["rev-parse", "--git-common-dir"]),
    ) else {
        return Vec::new();
    };
    let mut files = vec![Path::new(&git_dir).join("HEAD")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        files.push(Path::new(&common).join(branch));
    }
    files.push(Path::new(&common).join("packed-refs"));
    files.into_iter().filter(|f| f.exists()).collect()
}

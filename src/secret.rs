//! The Stream API secret: inline in the configuration, or in a file that is
//! watched so that a rotated Secret takes effect without a restart.
//!
//! Kubernetes updates a mounted Secret by writing a new timestamped directory
//! and atomically renaming the `..data` symlink (kubernetes#50345); a watch on
//! the file itself misses that, because the file never changes. So the whole
//! directory is watched and, on any event, the path is simply read again. A new
//! key goes into the [`SignerSlot`] in one swap. A file that became unreadable or
//! empty keeps the last good key: rotating to nothing is never what was meant.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use crate::signing::SignerSlot;

pub struct SecretFile {
    path: PathBuf,
    slot: Arc<SignerSlot>,
    metrics: Arc<Metrics>,
    /// Fingerprint of the secret in use, to tell a real change from noise.
    current: Mutex<Option<[u8; 32]>>,
}

/// Reads a secret file: one trailing newline (as editors and
/// `kubectl create secret --from-file` leave) is not part of the secret.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let mut bytes =
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(bytes)
}

impl SecretFile {
    pub fn new(path: PathBuf, slot: Arc<SignerSlot>, metrics: Arc<Metrics>) -> Arc<SecretFile> {
        Arc::new(SecretFile {
            path,
            slot,
            metrics,
            current: Mutex::new(None),
        })
    }

    /// Loads the file if its content changed and is usable.
    pub fn reload(&self) {
        let Ok(mut current) = self.current.lock() else {
            return;
        };
        match read_secret(&self.path) {
            Ok(secret) => {
                let fingerprint: [u8; 32] = Sha256::digest(&secret).into();
                if *current == Some(fingerprint) {
                    return;
                }
                self.slot.replace(&secret);
                *current = Some(fingerprint);
                self.metrics.secret_reloads.inc();
                self.metrics.secret_loaded.set(1);
                log::info!("loaded the Stream API secret from {}", self.path.display());
            }
            Err(reason) => {
                self.metrics.secret_reload_failures.inc();
                if self.slot.is_loaded() {
                    log::error!(
                        "Stream API secret file: {reason}; still signing with the last good secret"
                    );
                } else {
                    log::error!("Stream API secret file: {reason}; token routes answer 503 until it holds a secret");
                }
            }
        }
    }

    /// Loads the secret now and keeps reloading it whenever its directory
    /// changes. The returned watcher must be kept alive.
    pub fn watch(self: &Arc<Self>) -> notify::Result<notify::RecommendedWatcher> {
        self.reload();
        let directory = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let this = Arc::clone(self);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) if event.kind.is_access() => {}
                Ok(_) => this.reload(),
                Err(e) => log::error!("watching the Stream API secret file failed: {e}"),
            })?;
        watcher.watch(&directory, RecursiveMode::NonRecursive)?;
        Ok(watcher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_keeps_the_last_good_secret_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api_secret");
        let slot = Arc::new(SignerSlot::default());
        let metrics = Arc::new(Metrics::new());
        let file = SecretFile::new(path.clone(), Arc::clone(&slot), Arc::clone(&metrics));

        file.reload();
        assert!(!slot.is_loaded());
        assert_eq!(metrics.secret_reload_failures.get(), 1);

        std::fs::write(&path, "first\n").unwrap();
        file.reload();
        file.reload();
        assert!(slot.is_loaded());
        assert_eq!(
            metrics.secret_reloads.get(),
            1,
            "unchanged content is not a reload"
        );

        std::fs::write(&path, "").unwrap();
        file.reload();
        assert!(slot.is_loaded(), "an empty file keeps the last key");
        assert_eq!(metrics.secret_reload_failures.get(), 2);
    }

    #[test]
    fn trailing_newlines_are_not_part_of_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "abc\r\n").unwrap();
        assert_eq!(read_secret(&path).unwrap(), b"abc");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_secret(&path).unwrap_err().contains("is empty"));
    }
}

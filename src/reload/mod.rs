//! One way to follow a mounted file and keep the last good value: the Stream
//! API secret and JWKS files today; TLS certificates and per-app secrets next.
//!
//! Kubernetes updates a mounted Secret or ConfigMap by writing a new timestamped
//! directory and atomically renaming the `..data` symlink (kubernetes#50345); a
//! watch on the file itself misses that, because the file never changes. So
//! the file's *directory* is watched (inotify through `notify`) and, on any
//! event there, the path is simply read again. A read that yields the same
//! bytes as the value in use changes nothing; new bytes go through the owner's
//! `apply` (parse, then swap in one step). A file that became unreadable,
//! empty or invalid keeps the last good value: rotating to nothing is never
//! what was meant.
//!
//! Nothing here knows what the file holds: each owner passes a parse-and-store
//! function, so this module imports no other module of the crate.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};

/// Parses a file's new content and, when it is usable, makes it current.
/// `Err` carries the reason, which must not include the content (it may be a
/// secret).
pub type Apply = Box<dyn Fn(&[u8]) -> Result<(), String> + Send + Sync>;

/// What one reading of a watched file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Same bytes as the value in use.
    Unchanged,
    /// New content, parsed and now current.
    Loaded,
    /// Unreadable or invalid; the last good value (if any) stays current.
    Failed(String),
}

type Observer = Box<dyn Fn(&Reload) + Send + Sync>;

/// A file whose content feeds a value that must follow it.
pub struct WatchedFile {
    path: PathBuf,
    /// "Stream API secret", "JWKS": how log lines name it.
    what: &'static str,
    apply: Apply,
    observer: Option<Observer>,
    /// SHA-256 of the bytes in use, to tell a real change from noise without
    /// keeping the content (a secret) around.
    in_use: Mutex<Option<[u8; 32]>>,
}

impl fmt::Debug for WatchedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WatchedFile({}: {})", self.what, self.path.display())
    }
}

impl WatchedFile {
    pub fn new(path: impl Into<PathBuf>, what: &'static str, apply: Apply) -> Self {
        WatchedFile {
            path: path.into(),
            what,
            apply,
            observer: None,
            in_use: Mutex::new(None),
        }
    }

    /// Calls `observer` after every reading (metrics).
    pub fn observe(mut self, observer: impl Fn(&Reload) + Send + Sync + 'static) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// Reads the file now and applies it if its content changed.
    pub fn reload(&self) -> Reload {
        let outcome = self.read_and_apply();
        match &outcome {
            Reload::Unchanged => {}
            Reload::Loaded => log::info!("loaded the {} from {}", self.what, self.path.display()),
            Reload::Failed(reason) => {
                let loaded = self.in_use.lock().is_ok_and(|in_use| in_use.is_some());
                let consequence = if loaded {
                    "keeping the last good one"
                } else {
                    "none is loaded yet"
                };
                log::error!(
                    "{} file {}: {reason}; {consequence}",
                    self.what,
                    self.path.display()
                );
            }
        }
        if let Some(observer) = &self.observer {
            observer(&outcome);
        }
        outcome
    }

    fn read_and_apply(&self) -> Reload {
        let Ok(mut in_use) = self.in_use.lock() else {
            return Reload::Failed("an earlier reload panicked".into());
        };
        let content = match std::fs::read(&self.path) {
            Ok(content) => content,
            Err(e) => return Reload::Failed(format!("unreadable: {e}")),
        };
        let fingerprint: [u8; 32] = Sha256::digest(&content).into();
        if *in_use == Some(fingerprint) {
            return Reload::Unchanged;
        }
        match (self.apply)(&content) {
            Ok(()) => {
                *in_use = Some(fingerprint);
                Reload::Loaded
            }
            Err(reason) => Reload::Failed(reason),
        }
    }

    /// The directory whose entries change when the file is replaced.
    fn directory(&self) -> PathBuf {
        self.path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    }
}

/// Keeps the watches alive; dropping it stops following the files.
pub struct FileWatcher {
    _watcher: Option<RecommendedWatcher>,
}

/// Reads every file now, then again whenever its directory changes. When the
/// watch cannot be set up, the files are read once and the error is logged:
/// streamgate runs with what it has rather than not at all.
pub fn watch(files: Vec<Arc<WatchedFile>>) -> FileWatcher {
    for file in &files {
        file.reload();
    }
    if files.is_empty() {
        return FileWatcher { _watcher: None };
    }
    let directories: BTreeSet<PathBuf> = files.iter().map(|f| f.directory()).collect();
    let watched = Arc::new(files);
    let on_event = {
        let watched = Arc::clone(&watched);
        move |event: notify::Result<notify::Event>| match event {
            Ok(event) if event.kind.is_access() => {}
            Ok(_) => {
                for file in watched.iter() {
                    file.reload();
                }
            }
            Err(e) => log::error!("watching mounted files failed: {e}"),
        }
    };
    let watcher = notify::recommended_watcher(on_event).and_then(|mut watcher| {
        for directory in &directories {
            watcher.watch(directory, RecursiveMode::NonRecursive)?;
        }
        Ok(watcher)
    });
    match watcher {
        Ok(watcher) => FileWatcher {
            _watcher: Some(watcher),
        },
        Err(e) => {
            for file in watched.iter() {
                log::error!(
                    "cannot watch {} for changes ({e}); the {} is read once",
                    file.path.display(),
                    file.what
                );
            }
            FileWatcher { _watcher: None }
        }
    }
}

/// A secret as a file holds it: trailing CR and LF (as editors and
/// `kubectl create secret --from-file` leave them) are not part of it, and
/// nothing left is an error.
pub fn secret_from_file_content(content: &[u8]) -> Result<&[u8], &'static str> {
    let end = content
        .iter()
        .rposition(|b| *b != b'\n' && *b != b'\r')
        .map_or(0, |last| last + 1);
    match &content[..end] {
        [] => Err("is empty"),
        secret => Ok(secret),
    }
}

/// Reads a secret file once (see [`secret_from_file_content`]).
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let content =
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    secret_from_file_content(&content)
        .map(<[u8]>::to_vec)
        .map_err(|reason| format!("{} {reason}", path.display()))
}

#[cfg(test)]
mod tests;

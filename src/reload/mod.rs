//! One way to follow a mounted file and keep the last good value: the Stream
//! API secret file and JWKS files use it; so should any other mounted file.
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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};

/// Parses a file's new content and, when it is usable, makes it current.
/// `Err` carries the reason, which must not include the content (it may be a
/// secret).
pub type Apply = Box<dyn Fn(&[u8]) -> Result<Applied, String> + Send + Sync>;

/// What [`Apply`] did with content that parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new value is current.
    Changed,
    /// Other bytes, same value (a secret that only gained a trailing newline).
    Same,
}

/// What one reading of a watched file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Same value as the one in use.
    Unchanged,
    /// New content, parsed and now current.
    Loaded,
    /// Unreadable or invalid; the last good value (if any) stays current.
    Failed(String),
}

type Observer = Box<dyn Fn(&Reload) + Send + Sync>;

/// How often files whose directory cannot be watched are read again.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// A file whose content feeds a value that must follow it.
pub struct WatchedFile {
    path: PathBuf,
    /// "Stream API secret", "JWKS": how log lines name it.
    what: Cow<'static, str>,
    /// What it means while no value was ever loaded, for the error log.
    unloaded: &'static str,
    apply: Apply,
    observer: Option<Observer>,
    /// SHA-256 of the bytes in use, to tell a real change from noise without
    /// keeping the content (a secret) around; `None` until a value is loaded.
    in_use: Mutex<Option<[u8; 32]>>,
}

impl fmt::Debug for WatchedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WatchedFile({}: {})", self.what, self.path.display())
    }
}

impl WatchedFile {
    pub fn new(path: impl Into<PathBuf>, what: impl Into<Cow<'static, str>>, apply: Apply) -> Self {
        WatchedFile {
            path: path.into(),
            what: what.into(),
            unloaded: "none is loaded yet",
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

    /// What the error log says while no value was ever loaded (e.g. "token
    /// routes answer 503 until it holds a secret").
    pub fn while_unloaded(mut self, consequence: &'static str) -> Self {
        self.unloaded = consequence;
        self
    }

    /// Marks `content` as already applied: the owner read and parsed the file
    /// itself (a configuration check), so the first watch reading is not news.
    pub fn applied(self, content: &[u8]) -> Self {
        if let Ok(mut in_use) = self.in_use.lock() {
            *in_use = Some(Sha256::digest(content).into());
        }
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
                    self.unloaded
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
            Ok(applied) => {
                *in_use = Some(fingerprint);
                match applied {
                    Applied::Changed => Reload::Loaded,
                    Applied::Same => Reload::Unchanged,
                }
            }
            Err(reason) => Reload::Failed(reason),
        }
    }

    /// The directory whose entries change when the file is replaced, resolved
    /// so that it compares equal to the parent of a path an event names.
    fn directory(&self) -> PathBuf {
        let parent = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        canonical(parent)
    }
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Keeps the watches (and any polling) alive; dropping it stops following
/// the files.
pub struct FileWatcher {
    _watcher: Option<RecommendedWatcher>,
    /// Polling threads hold a `Weak` of this and stop when it is gone.
    _alive: Arc<()>,
}

/// Reads every file now, then again whenever an entry of its directory
/// changes. A directory that cannot be watched (no inotify, a watch limit
/// reached) has its files read every [`POLL_INTERVAL`] instead: streamgate
/// follows them less promptly rather than not at all.
pub fn watch(files: Vec<Arc<WatchedFile>>) -> FileWatcher {
    let alive = Arc::new(());
    let mut by_directory: BTreeMap<PathBuf, Vec<Arc<WatchedFile>>> = BTreeMap::new();
    for file in files {
        file.reload();
        by_directory.entry(file.directory()).or_default().push(file);
    }
    if by_directory.is_empty() {
        return FileWatcher {
            _watcher: None,
            _alive: alive,
        };
    }
    let by_directory = Arc::new(by_directory);
    let on_event = {
        let by_directory = Arc::clone(&by_directory);
        move |event: notify::Result<notify::Event>| match event {
            Ok(event) if event.kind.is_access() => {}
            Ok(event) => {
                let directories = event
                    .paths
                    .iter()
                    .filter_map(|path| path.parent().map(canonical));
                for files in directories.filter_map(|d| by_directory.get(&d)) {
                    for file in files {
                        file.reload();
                    }
                }
            }
            Err(e) => log::error!("watching mounted files failed: {e}"),
        }
    };
    let mut unwatched = Vec::new();
    let watcher = match notify::recommended_watcher(on_event) {
        Ok(mut watcher) => {
            for (directory, files) in by_directory.iter() {
                if let Err(e) = watcher.watch(directory, RecursiveMode::NonRecursive) {
                    unwatched.extend(files.iter().map(|file| (file, e.to_string())));
                }
            }
            Some(watcher)
        }
        Err(e) => {
            let files = by_directory.values().flatten();
            unwatched.extend(files.map(|file| (file, e.to_string())));
            None
        }
    };
    if !unwatched.is_empty() {
        for (file, reason) in &unwatched {
            log::warn!(
                "cannot watch {} for changes ({reason}); the {} is read every {}s instead",
                file.path.display(),
                file.what,
                POLL_INTERVAL.as_secs()
            );
        }
        let polled = unwatched
            .into_iter()
            .map(|(file, _)| Arc::clone(file))
            .collect();
        poll(polled, Arc::downgrade(&alive));
    }
    FileWatcher {
        _watcher: watcher,
        _alive: alive,
    }
}

/// Reads `files` every [`POLL_INTERVAL`] until `alive` is gone.
fn poll(files: Vec<Arc<WatchedFile>>, alive: Weak<()>) {
    let spawned = std::thread::Builder::new()
        .name("streamgate-file-poll".into())
        .spawn(move || loop {
            std::thread::sleep(POLL_INTERVAL);
            if alive.upgrade().is_none() {
                return;
            }
            for file in &files {
                file.reload();
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start polling mounted files ({e}); they are read once");
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

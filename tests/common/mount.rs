//! A file laid out the way the kubelet mounts a Secret or a ConfigMap key:
//! `<name>` is a symlink to `..data/<name>`, `..data` a symlink to a versioned
//! directory, and an update writes a new directory then swaps `..data` with
//! an atomic rename. What streamgate must see through when it watches a file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Mount {
    dir: tempfile::TempDir,
    name: String,
    version: AtomicUsize,
}

impl Mount {
    /// An empty mount for a key `name`: the link is there, dangling, until
    /// the first [`write`](Mount::write).
    pub fn new(name: &str) -> Mount {
        let mount = Mount {
            dir: tempfile::tempdir().unwrap(),
            name: name.to_string(),
            version: AtomicUsize::new(0),
        };
        std::os::unix::fs::symlink(format!("..data/{name}"), mount.path()).unwrap();
        mount
    }

    /// The path to configure: the top-level link.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join(&self.name)
    }

    /// Publishes `contents` as a new version, atomically.
    pub fn write(&self, contents: impl AsRef<[u8]>) {
        let version = format!("..v{}", self.version.fetch_add(1, Ordering::SeqCst));
        let target = self.dir.path().join(&version);
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join(&self.name), contents).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }
}

//! Files laid out the way the kubelet mounts a Secret or a ConfigMap:
//! each key `<name>` is a symlink to `..data/<name>`, `..data` a symlink to a
//! versioned directory, and an update writes a new directory with every key
//! then swaps `..data` with an atomic rename. What streamgate must see
//! through when it watches a file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Mount {
    dir: tempfile::TempDir,
    names: Vec<String>,
    version: AtomicUsize,
}

impl Mount {
    /// An empty mount for a key `name`: the link is there, dangling, until
    /// the first [`write`](Mount::write).
    pub fn new(name: &str) -> Mount {
        Mount::with_keys(&[name])
    }

    /// An empty mount for several keys (a `kubernetes.io/tls` Secret:
    /// `tls.crt` and `tls.key`), updated together by [`publish`](Mount::publish).
    pub fn with_keys(names: &[&str]) -> Mount {
        let mount = Mount {
            dir: tempfile::tempdir().unwrap(),
            names: names.iter().map(ToString::to_string).collect(),
            version: AtomicUsize::new(0),
        };
        for name in names {
            std::os::unix::fs::symlink(format!("..data/{name}"), mount.path_of(name)).unwrap();
        }
        mount
    }

    /// The path to configure: the top-level link (of the first key).
    pub fn path(&self) -> PathBuf {
        self.path_of(&self.names[0])
    }

    /// The top-level link of key `name`.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Publishes `contents` as a new version of the first key, atomically.
    pub fn write(&self, contents: impl AsRef<[u8]>) {
        self.publish(&[(self.names[0].as_str(), contents.as_ref())]);
    }

    /// Publishes a new version holding `files` (key, content), atomically:
    /// every key changes in the same instant.
    pub fn publish(&self, files: &[(&str, &[u8])]) {
        let version = format!("..v{}", self.version.fetch_add(1, Ordering::SeqCst));
        let target = self.dir.path().join(&version);
        std::fs::create_dir(&target).unwrap();
        for (name, contents) in files {
            std::fs::write(target.join(name), contents).unwrap();
        }
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }
}

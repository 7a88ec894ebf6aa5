use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A watched file that stores what it parsed, refusing empty secrets.
fn secret_file(path: &Path) -> (Arc<Mutex<Option<Vec<u8>>>>, WatchedFile) {
    let current = Arc::new(Mutex::new(None));
    let store = Arc::clone(&current);
    let file = WatchedFile::new(
        path,
        "test secret",
        Box::new(move |content| {
            let secret = secret_from_file_content(content)?;
            let mut current = store.lock().unwrap();
            if current.as_deref() == Some(secret) {
                return Ok(Applied::Same);
            }
            *current = Some(secret.to_vec());
            Ok(Applied::Changed)
        }),
    );
    (current, file)
}

#[test]
fn reload_keeps_the_last_good_value_and_reports_each_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api_secret");
    let (current, file) = secret_file(&path);
    let failures = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&failures);
    let file = file.observe(move |outcome| {
        if matches!(outcome, Reload::Failed(_)) {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });

    assert!(matches!(file.reload(), Reload::Failed(_)), "missing file");
    assert_eq!(*current.lock().unwrap(), None);

    std::fs::write(&path, "first\n").unwrap();
    assert_eq!(file.reload(), Reload::Loaded);
    assert_eq!(
        file.reload(),
        Reload::Unchanged,
        "same bytes are not a reload"
    );
    assert_eq!(current.lock().unwrap().as_deref(), Some(&b"first"[..]));

    std::fs::write(&path, "").unwrap();
    assert_eq!(file.reload(), Reload::Failed("is empty".into()));
    assert_eq!(
        current.lock().unwrap().as_deref(),
        Some(&b"first"[..]),
        "an empty file keeps the last value"
    );
    assert_eq!(failures.load(Ordering::SeqCst), 2);

    std::fs::write(&path, "second").unwrap();
    assert_eq!(file.reload(), Reload::Loaded);
    assert_eq!(current.lock().unwrap().as_deref(), Some(&b"second"[..]));
}

/// The way Kubernetes updates a mounted Secret: a new directory, then an atomic
/// rename of the `..data` symlink the file's path goes through.
#[test]
fn a_swapped_data_symlink_is_followed() {
    let mount = tempfile::tempdir().unwrap();
    let install = |version: &str, content: &str| {
        let dir = mount.path().join(version);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("secret"), content).unwrap();
        let tmp = mount.path().join("..data_tmp");
        std::os::unix::fs::symlink(version, &tmp).unwrap();
        std::fs::rename(&tmp, mount.path().join("..data")).unwrap();
    };
    install("..v1", "one");
    std::os::unix::fs::symlink("..data/secret", mount.path().join("secret")).unwrap();
    let (current, file) = secret_file(&mount.path().join("secret"));
    let _watcher = watch(vec![Arc::new(file)]);
    assert_eq!(current.lock().unwrap().as_deref(), Some(&b"one"[..]));

    install("..v2", "two");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while current.lock().unwrap().as_deref() != Some(&b"two"[..]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the swap was not picked up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn trailing_newlines_are_not_part_of_the_secret() {
    assert_eq!(secret_from_file_content(b"abc\r\n\n"), Ok(&b"abc"[..]));
    assert_eq!(secret_from_file_content(b"a\nb\n"), Ok(&b"a\nb"[..]));
    assert_eq!(secret_from_file_content(b"\r\n"), Err("is empty"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    std::fs::write(&path, "\n").unwrap();
    assert!(read_secret(&path).unwrap_err().contains("is empty"));
}

/// A file read by its owner first (a configuration check) is not reported
/// as loaded again when the watch starts.
#[test]
fn content_applied_by_the_owner_is_not_news() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(&path, "v1").unwrap();
    let (_, file) = secret_file(&path);
    let file = file.applied(b"v1");
    assert_eq!(file.reload(), Reload::Unchanged);
    std::fs::write(&path, "v2").unwrap();
    assert_eq!(file.reload(), Reload::Loaded);
}

/// Only the files of the directory an event names are read again: a busy
/// directory does not make another file's reload fail over and over.
#[test]
fn an_event_reloads_only_the_files_of_its_directory() {
    let (quiet_dir, busy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let quiet_path = quiet_dir.path().join("missing-secret");
    let busy_path = busy_dir.path().join("secret");
    std::fs::write(&busy_path, "one").unwrap();
    let readings = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&readings);
    let (_, quiet) = secret_file(&quiet_path);
    let quiet = quiet.observe(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let (busy_value, busy) = secret_file(&busy_path);
    let _watcher = watch(vec![Arc::new(quiet), Arc::new(busy)]);
    assert_eq!(readings.load(Ordering::SeqCst), 1, "read once at start");
    std::fs::write(&busy_path, "two").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while busy_value.lock().unwrap().as_deref() != Some(&b"two"[..]) {
        assert!(
            std::time::Instant::now() < deadline,
            "busy file not reloaded"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(
        readings.load(Ordering::SeqCst),
        1,
        "the quiet file was not read again"
    );
}

/// Without a directory to watch, the file is polled.
#[test]
fn a_directory_that_cannot_be_watched_is_polled() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("later");
    let path = dir.join("secret");
    let (value, file) = secret_file(&path);
    let _watcher = watch(vec![Arc::new(file)]);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(&path, "arrived").unwrap();
    let deadline = std::time::Instant::now() + POLL_INTERVAL * 3;
    while value.lock().unwrap().as_deref() != Some(&b"arrived"[..]) {
        assert!(std::time::Instant::now() < deadline, "never polled");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

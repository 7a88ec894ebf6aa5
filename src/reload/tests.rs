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
            *store.lock().unwrap() = Some(secret.to_vec());
            Ok(())
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

//! Starting on a busy port fails at once and says why (issue 10): exit status
//! 1 within seconds, one line on stderr naming the address and the reason,
//! no claim to be listening before it, and no probe answered meanwhile.

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// What a streamgate started on `config` did: its exit code (`None` if it
/// was still running after 5 s, then killed), how long it took, and stderr;
/// meanwhile, `probe` is tried every few milliseconds.
fn start_and_wait(config: &str, mut probe: impl FnMut()) -> (Option<i32>, Duration, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("streamgate.yaml");
    std::fs::write(&config_path, config).expect("write config");
    let stderr_path = dir.path().join("stderr.log");
    let started = Instant::now();
    let mut child = Command::new(binary())
        .arg("-c")
        .arg(&config_path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("spawn streamgate");
    let status = poll(Duration::from_secs(5), || {
        probe();
        child.try_wait().ok().flatten()
    });
    let elapsed = started.elapsed();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    (status.map(|s| s.code().unwrap_or(-1)), elapsed, stderr)
}

/// The default config with `port` and `admin_port` filled in.
fn config(port: u16, admin_port: u16) -> String {
    let dir = std::env::temp_dir();
    default_config("127.0.0.1:9".parse().unwrap())
        .replace("{port}", &port.to_string())
        .replace("{admin_port}", &admin_port.to_string())
        .replace("{dir}", dir.to_str().expect("utf-8 temp dir"))
        .replace("streamgate.pid", &format!("streamgate-startup-{port}.pid"))
        .replace("upgrade.sock", &format!("streamgate-startup-{port}.sock"))
}

fn assert_fails_fast_naming(address: &str, status: Option<i32>, elapsed: Duration, stderr: &str) {
    assert_eq!(status, Some(1), "exit status; stderr:\n{stderr}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    let failures: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("cannot listen"))
        .collect();
    assert_eq!(failures.len(), 1, "one line says why:\n{stderr}");
    let line = lines[failures[0]];
    assert!(
        line.starts_with(&format!("streamgate: cannot listen on {address} "))
            && line.contains("Address already in use"),
        "{line}"
    );
    assert!(
        !lines[..failures[0]].iter().any(|l| l.contains("listening")),
        "claimed to listen first:\n{stderr}"
    );
}

#[test]
fn a_busy_proxy_port_fails_at_once_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("address").port();
    let admin_port = free_port();
    let mut probes_answered = 0;
    let (status, elapsed, stderr) = start_and_wait(&config(port, admin_port), || {
        if std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_ok() {
            probes_answered += 1;
        }
    });
    assert_fails_fast_naming(&format!("127.0.0.1:{port}"), status, elapsed, &stderr);
    assert_eq!(probes_answered, 0, "the admin listener took probes");
}

#[test]
fn a_busy_admin_port_fails_at_once_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let admin_port = taken.local_addr().expect("address").port();
    let port = free_port();
    let (status, elapsed, stderr) = start_and_wait(&config(port, admin_port), || {});
    assert_fails_fast_naming(&format!("127.0.0.1:{admin_port}"), status, elapsed, &stderr);
    // The proxy port it had bound first is released with the process.
    assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
}

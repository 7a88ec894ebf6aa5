//! `make demo` end to end. `make demo DEMO_CHECK=1` starts the demo app and
//! streamgate (demo/run.sh), runs every command it prints (a token and a
//! refused impersonation in each identity mode, proxying, the admin
//! endpoints), loads the demo page in headless Chromium (installed from
//! Debian's packages when missing), asserts each answer, and stops what it
//! started. The interactive `make demo` stops both processes on Ctrl-C.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The demo on free loopback ports with the streamgate `cargo test` built (the
/// demo app is built by the script: `cargo test --test demo` builds no example).
/// Its stderr goes to a file, which a pipe nobody reads would block on.
fn demo(args: &[&str]) -> (Child, [u16; 3], tempfile::NamedTempFile) {
    let ports = [(); 3].map(|()| common::free_port());
    let [port, admin, app] = ports;
    let stderr = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new("make");
    // What `cargo test` sets for this process is no part of a shell's
    // environment, and the script's `cargo build` would take it for a change
    // (ring's build script reads CARGO_MANIFEST_DIR) and rebuild half the tree.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&&*name)
        {
            command.env_remove(&*name);
        }
    }
    let child = command
        .args(["--no-print-directory", "demo"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("LISTEN", format!("127.0.0.1:{port}"))
        .env("ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
        .env("APP_ADDRESS", format!("127.0.0.1:{app}"))
        .env("STREAMGATE_BIN", common::binary())
        .env_remove("STREAM_API_KEY")
        .env_remove("STREAM_API_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr.reopen().unwrap())
        // Its own process group, as a terminal's foreground job: what Ctrl-C reaches.
        .process_group(0)
        .spawn()
        .expect("run make demo");
    (child, ports, stderr)
}

/// `signal` to make and everything it started, as a terminal sends Ctrl-C.
fn signal_group(child: &Child, signal: &str) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args([signal, "--", &group]).status();
}

fn assert_stopped(ports: [u16; 3], report: &str) {
    for port in ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still listens after the demo stopped\n{report}"
        );
    }
}

#[test]
fn the_demo_check_runs_every_command_it_prints() {
    let (mut child, ports, stderr) = demo(&["DEMO_CHECK=1"]);
    // Generous: a first run may build the demo app and install Chromium.
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            signal_group(&child, "-KILL");
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let stderr = std::fs::read_to_string(stderr.path()).unwrap();
    let report = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    let status =
        status.unwrap_or_else(|| panic!("make demo DEMO_CHECK=1 ran past 600 s\n{report}"));
    assert!(status.success(), "{report}");
    // Every step answered as expected: 15 commands and the browser's.
    assert_eq!(stdout.matches("\n  ok\n").count(), 16, "{report}");
    assert!(stdout.contains("demo check: 16 ok, 0 failed"), "{report}");
    assert!(stdout.contains("--dump-dom"), "{report}");
    assert_stopped(ports, &report);
}

/// Interactive: it prints the script and keeps running, proxying, until
/// SIGINT (Ctrl-C), then stops the app and streamgate.
#[test]
fn the_demo_runs_until_ctrl_c_and_stops_what_it_started() {
    let (mut child, ports, stderr) = demo(&[]);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("Ctrl-C stops the demo") {
        if stdout.read_line(&mut printed).unwrap() == 0 {
            let _ = child.wait();
            let stderr = std::fs::read_to_string(stderr.path()).unwrap();
            panic!("make demo ended before it was ready:\n{printed}\n{stderr}");
        }
    }
    let proxied = common::curl(&[&format!("http://127.0.0.1:{}/api/hello", ports[0])]);
    assert_eq!(proxied.status(), Some(200), "{}", proxied.body);
    assert!(
        proxied.body.contains("streamgate demo app"),
        "{}",
        proxied.body
    );

    signal_group(&child, "-INT");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "make demo still runs 15 s after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_stopped(ports, &printed);
}

//! The `streamgate` process under test: started from the binary cargo built,
//! on free loopback ports, with its own temporary directory for the config,
//! pid file, upgrade socket and captured output; killed when dropped.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait::{eventually, poll};

/// A port that was free a moment ago, for configs that need a fixed address.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("ephemeral port")
        .port()
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_streamgate"))
}

/// A running `streamgate` process; killed when dropped.
pub struct Streamgate {
    pub port: u16,
    pub admin_port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

/// `config` with its placeholders filled in.
fn fill(config: &str, port: u16, admin_port: u16, dir: &Path) -> String {
    config
        .replace("{port}", &port.to_string())
        .replace("{admin_port}", &admin_port.to_string())
        .replace("{dir}", dir.to_str().expect("utf-8 temp dir"))
}

/// Runs the binary with `args` and `-c config_path`, its stdout and stderr
/// captured in `stdout.log` and `stderr.log` under `log_dir`.
fn spawn(args: &[&str], config_path: &Path, log_dir: &Path, env: &[(&str, &str)]) -> Child {
    let stdout = std::fs::File::create(log_dir.join("stdout.log")).expect("log file");
    let stderr = std::fs::File::create(log_dir.join("stderr.log")).expect("log file");
    let mut command = Command::new(binary());
    command
        .args(args)
        .arg("-c")
        .arg(config_path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    for (name, value) in env {
        command.env(name, value);
    }
    command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn streamgate {args:?}: {e}"))
}

impl Streamgate {
    /// Starts streamgate with `config`, where `{port}`, `{admin_port}` and
    /// `{dir}` are replaced by free ports and a private temporary directory.
    pub fn start(config: &str) -> Streamgate {
        Streamgate::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Streamgate {
        // The port is chosen before streamgate binds it; if another process
        // takes it in between, try again with a new one.
        let mut last_logs = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            let admin_port = free_port();
            let config_path = dir.path().join("streamgate.yaml");
            std::fs::write(&config_path, fill(config, port, admin_port, dir.path()))
                .expect("write config");
            let child = spawn(&[], &config_path, dir.path(), env);
            let mut gate = Streamgate {
                port,
                admin_port,
                child,
                dir,
            };
            if gate.wait_until_listening() {
                return gate;
            }
            last_logs = gate.logs();
        }
        panic!("streamgate did not start; last logs:\n{last_logs}");
    }

    /// Whether both ports accept connections within 15 s; false at once if
    /// the process exits first.
    fn wait_until_listening(&mut self) -> bool {
        let up = |port: u16| TcpStream::connect(("127.0.0.1", port)).is_ok();
        poll(Duration::from_secs(15), || {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Some(false);
            }
            (up(self.port) && up(self.admin_port)).then_some(true)
        })
        .unwrap_or(false)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`"TERM"`, `"QUIT"`…) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `limit` for the process to exit; its exit code if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Option<i32>> {
        poll(limit, || {
            self.child
                .try_wait()
                .ok()
                .flatten()
                .map(|status| status.code())
        })
    }

    /// Starts a second streamgate with `config` (placeholders as in `start`,
    /// filled with this one's ports and directory) that takes over this one's
    /// listening sockets: Pingora's graceful upgrade. Returns once the new
    /// process waits on the upgrade socket; send this one SIGQUIT next.
    pub fn start_upgrade(&self, config: &str) -> Streamgate {
        let config_path = self.dir().join("streamgate-v2.yaml");
        std::fs::write(
            &config_path,
            fill(config, self.port, self.admin_port, self.dir()),
        )
        .expect("write config");
        let new_dir = tempfile::tempdir().expect("temp dir");
        let child = spawn(&["-u"], &config_path, new_dir.path(), &[]);
        let socket = self.dir().join("upgrade.sock");
        poll(Duration::from_secs(10), || socket.exists().then_some(()));
        assert!(
            socket.exists(),
            "the new process never opened the upgrade socket"
        );
        Streamgate {
            port: self.port,
            admin_port: self.admin_port,
            child,
            dir: new_dir,
        }
    }

    /// Everything streamgate wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for name in ["stdout.log", "stderr.log"] {
            if let Ok(mut file) = std::fs::File::open(self.dir.path().join(name)) {
                let _ = file.read_to_string(&mut all);
            }
        }
        all
    }

    /// What streamgate wrote to stdout: the access log.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// The JSON access-log line of the request sent with `X-Request-Id:
    /// request_id`, waiting for it: lines are written just after the answer.
    pub async fn access_line(&self, request_id: &str) -> serde_json::Value {
        let find = || {
            self.stdout()
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|line| line["request_id"] == request_id)
        };
        assert!(
            eventually(|| async { find().is_some() }).await,
            "no access-log line for {request_id}:\n{}",
            self.stdout()
        );
        find().expect("the line just found")
    }

    /// Peak resident memory of the process so far, in KiB (Linux `VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status")
    }
}

impl Drop for Streamgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A real `redis-server` for the shared rate limits: started on a free
//! loopback port with a password and no persistence (`--save ""`), killed by
//! its pid when dropped or when a test takes Redis away mid-run; or serving
//! TLS only, with a certificate from a test CA. A machine without it gets the
//! Debian package first, as `make test` does.

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::process::free_port;
use super::tls::TestCa;
use super::wait::poll;

pub const REDIS_PASSWORD: &str = "test-redis-pa55word";

/// A running `redis-server`; killed when dropped.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Serving TLS only, with a certificate from this CA (its PEM file).
    tls_ca: Option<std::path::PathBuf>,
}

impl Redis {
    /// Starts one on a free port (trying another if it was taken meanwhile).
    pub fn start() -> Redis {
        Redis::start_with(None)
    }

    /// Starts one that speaks TLS only, its certificate (for `127.0.0.1`)
    /// issued by `ca`.
    pub fn start_tls(ca: &TestCa) -> Redis {
        Redis::start_with(Some(ca))
    }

    fn start_with(ca: Option<&TestCa>) -> Redis {
        install_once();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let tls_ca = ca.map(|ca| {
                let pair = ca.server(1);
                std::fs::write(dir.path().join("server.pem"), &pair.cert).expect("write cert");
                std::fs::write(dir.path().join("server.key"), &pair.key).expect("write key");
                let path = dir.path().join("ca.pem");
                std::fs::write(&path, &ca.pem).expect("write CA");
                path
            });
            let mut redis = Redis {
                port: free_port(),
                child: None,
                dir,
                tls_ca,
            };
            if redis.spawn() {
                return redis;
            }
        }
        panic!("redis-server did not start");
    }

    /// `redis://:password@127.0.0.1:port/0` (`rediss://` for TLS), as a
    /// config names it.
    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://:{REDIS_PASSWORD}@127.0.0.1:{}/0", self.port)
    }

    /// The CA file a TLS server's certificate chains to.
    pub fn ca_file(&self) -> &std::path::Path {
        self.tls_ca.as_deref().expect("a TLS redis-server")
    }

    /// Kills the server (SIGKILL, by pid): its data is gone with it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "redis-server did not start again on {}",
            self.port
        );
    }

    /// One command's reply as `redis-cli` prints it (`PTTL key` → `"14876"`).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command.args([
            "-p",
            &self.port.to_string(),
            "-a",
            REDIS_PASSWORD,
            "--no-auth-warning",
        ]);
        if let Some(ca) = &self.tls_ca {
            command.arg("--tls").arg("--cacert").arg(ca);
        }
        let output = command.args(args).output().expect("run redis-cli");
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Starts `redis-server` on `self.port`; whether it answers PING
    /// (authenticated) within 10 s.
    fn spawn(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("log file");
        let mut command = Command::new("redis-server");
        match &self.tls_ca {
            None => command.args(["--port", &self.port.to_string()]),
            Some(ca) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(self.dir.path().join("server.pem"))
                .arg("--tls-key-file")
                .arg(self.dir.path().join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .args(["--tls-auth-clients", "no"]),
        };
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args([
                "--requirepass",
                REDIS_PASSWORD,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let up = poll(Duration::from_secs(10), || {
            (self.cli(&["PING"]) == "PONG").then_some(())
        })
        .is_some();
        if !up {
            self.kill();
        }
        up
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Installs the Debian package when `redis-server` is not on the PATH, once
/// per test binary.
fn install_once() {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *installed
        || Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok()
    {
        *installed = true;
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    let sudo = if root { "" } else { "sudo " };
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{sudo}apt-get update -qq && {sudo}apt-get install -y -qq redis-server"
        ))
        .status()
        .expect("run apt-get");
    assert!(status.success(), "could not install redis-server");
    *installed = true;
}

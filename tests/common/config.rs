//! The Stream credentials and the configs the tests start streamgate with.
//! Placeholders `{port}`, `{admin_port}` and `{dir}` are filled in by
//! [`Streamgate::start`](super::Streamgate::start).

use std::net::SocketAddr;

pub const API_KEY: &str = "test-api-key";
pub const API_SECRET: &str = "test-secret-0123456789abcdefghijklmnopqrstuvwxyz";

/// The config used by most tests: the default routes in front of `upstream`.
pub fn default_config(upstream: SocketAddr) -> String {
    format!(
        r#"
listen: ["127.0.0.1:{{port}}"]
upstreams:
  app: {{ address: "{upstream}", connect_timeout: 1s, read_timeout: 1s }}
stream:
  api_key: "{API_KEY}"
  api_secret: "{API_SECRET}"
admin: {{ listen: "127.0.0.1:{{admin_port}}" }}
access_log: {{ format: json }}
server: {{ threads: 2, pid_file: "{{dir}}/streamgate.pid", upgrade_sock: "{{dir}}/upgrade.sock", drain_seconds: 1, grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1 }}
"#
    )
}

/// The default config with extra top-level YAML spliced in before `server:`.
pub fn config_with(upstream: SocketAddr, extra: &str) -> String {
    default_config(upstream).replace("server:", &format!("{extra}\nserver:"))
}

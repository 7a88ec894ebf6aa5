//! The floor of the pass-through rows in `make bench`: a bare Pingora proxy
//! with nothing of streamgate's (no routing, head limits, header rules, token
//! routes, metrics or logs), built with the same Pingora, allocator (the
//! system's) and release profile, on one worker thread. What streamgate costs above it is
//! what streamgate's own work costs; what it costs above nginx and this both
//! is Pingora's. The upstream peer has the timeouts of
//! `bench/streamgate-bench.yaml` (connect 2 s, read 30 s, write and idle 60 s,
//! streamgate's defaults for the last two): a proxy in production sets them,
//! and each upstream read and write under a timeout pays for one of Pingora's
//! timers, which is Pingora's cost, not streamgate's.
//!
//!     cargo run --release --example pingora-floor -- LISTEN UPSTREAM
//!     cargo run --release --example pingora-floor -- 127.0.0.1:18085 127.0.0.1:18081

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct Floor {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(2));
        peer.options.read_timeout = Some(Duration::from_secs(30));
        peer.options.write_timeout = Some(Duration::from_secs(60));
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Ok(Box::new(peer))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: pingora-floor LISTEN_ADDRESS UPSTREAM_ADDRESS");
        std::process::exit(2);
    };
    let Ok(upstream) = upstream.parse::<SocketAddr>() else {
        eprintln!("pingora-floor: {upstream:?} is not an IP:port address");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Floor { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}

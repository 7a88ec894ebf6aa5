//! The connection an HTTP/1 upgrade (WebSocket) is proxied on, shaped so the
//! tunnel survives Pingora 0.9's teardown race (cloudflare/pingora#946, fix
//! proposed in #947, not in any release yet).
//!
//! Pingora proxies an HTTP/1 exchange with two halves joined in one task. The
//! downstream half queues the upgrade request's empty body end into a pipe at
//! its first poll; the upstream half then `select!`s, in random order,
//! between that pipe and the app's response. When the app's `101` is already
//! in the socket at that first poll (a fast app, a preempted proxy thread),
//! half of the time the `101` is read first, and the empty body end that
//! follows is taken for the end of the upgraded tunnel: the client gets its
//! `101`, then EOF. Measured before this module: 1 in 60 WebSocket handshakes
//! on a loaded 2-core machine; about 1 in 2 against an app that answers
//! before reading the request (`tests/proxying.rs`).
//!
//! The fix without forking Pingora: an upgrade request reaches the app over a
//! connection whose first read after each write returns `Pending` once (and
//! wakes its task at once), so the upstream half always takes the queued body
//! end before it can see the `101`. Only upgrade requests use it, on a pool of
//! their own (`group_key`), so ordinary requests keep Pingora's plain TCP
//! stream. After the upgrade the cost is one extra wake per message the
//! client sends. Delete this module when a Pingora release carries #947.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::connectors::L4Connect;
use pingora::prelude::*;
use pingora::protocols::l4::ext::{self, TcpKeepalive};
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::l4::stream::Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora::ErrorType;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Separates upgrade connections from ordinary ones in Pingora's pool: part
/// of the peer's reuse hash. Any constant other than 0 (the default) will do.
const UPGRADE_POOL: u64 = u64::from_be_bytes(*b"upgrade1");

/// `peer`, made to carry HTTP/1 upgrade requests: connections from
/// [`UpgradeConnector`], pooled apart from `peer`'s own.
pub fn upgrade_peer(peer: &HttpPeer, connect_timeout: Duration) -> HttpPeer {
    let mut upgrade = peer.clone();
    upgrade.group_key = UPGRADE_POOL;
    upgrade.options.custom_l4 = Some(Arc::new(UpgradeConnector { connect_timeout }));
    upgrade
}

/// Opens TCP connections as Pingora does (its own `connect`, so errors keep
/// their types: refused, no route, timed out) and wraps them in
/// [`YieldAfterWrite`].
#[derive(Debug)]
struct UpgradeConnector {
    connect_timeout: Duration,
}

#[async_trait]
impl L4Connect for UpgradeConnector {
    async fn connect(&self, address: &SocketAddr) -> Result<Stream> {
        let SocketAddr::Inet(inet) = address else {
            return Error::e_explain(
                ErrorType::ConnectError,
                format!("upgrade connections are TCP only, not {address}"),
            );
        };
        let tcp = tokio::time::timeout(self.connect_timeout, ext::connect(inet, None))
            .await
            .map_err(|_| {
                Error::explain(
                    ErrorType::ConnectTimedout,
                    format!(
                        "timeout {:?} connecting to server {inet}",
                        self.connect_timeout
                    ),
                )
            })??;
        Ok(Stream::from(VirtualSocketStream::new(Box::new(
            YieldAfterWrite::new(tcp),
        ))))
    }
}

/// A TCP stream whose first read after a write yields once (see the module
/// doc for why).
#[derive(Debug)]
struct YieldAfterWrite {
    tcp: TcpStream,
    wrote: bool,
}

impl YieldAfterWrite {
    fn new(tcp: TcpStream) -> Self {
        YieldAfterWrite { tcp, wrote: false }
    }
}

impl VirtualSocket for YieldAfterWrite {
    fn set_socket_option(&self, option: VirtualSockOpt) -> io::Result<()> {
        match option {
            VirtualSockOpt::NoDelay => self.tcp.set_nodelay(true),
            VirtualSockOpt::KeepAlive(keepalive) => set_keepalive(&self.tcp, &keepalive),
            _ => Ok(()),
        }
    }
}

fn set_keepalive(tcp: &TcpStream, keepalive: &TcpKeepalive) -> io::Result<()> {
    ext::set_tcp_keepalive(tcp, keepalive).map_err(io::Error::other)
}

impl AsyncRead for YieldAfterWrite {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.wrote) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for YieldAfterWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.tcp).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote = true;
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn the_first_read_after_a_write_yields_once_then_reads() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(b"early").await.unwrap();
            let mut request = [0u8; 3];
            socket.read_exact(&mut request).await.unwrap();
            socket.write_all(b"reply").await.unwrap();
        });
        let mut stream = YieldAfterWrite::new(TcpStream::connect(address).await.unwrap());
        stream.write_all(b"req").await.unwrap();
        let mut early = [0u8; 5];
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        // The app's bytes are there, yet the first read after a write yields.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut buf = ReadBuf::new(&mut early);
        assert!(Pin::new(&mut stream)
            .poll_read(&mut cx, &mut buf)
            .is_pending());
        stream.read_exact(&mut early).await.unwrap();
        assert_eq!(&early, b"early");
        let mut reply = [0u8; 5];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"reply");
        server.await.unwrap();
    }
}

//! Listening sockets bound before anything starts, then handed to Pingora.
//!
//! Pingora binds a listener inside its service's thread when the service
//! starts: on a busy port it retries for 30 s, then panics in that thread,
//! while the rest of the process (the admin listener and its probes) keeps
//! running and answering 200. A sidecar must instead fail at once and say why.
//! So streamgate binds every address itself first and, on failure, exits 1
//! with one line naming the address, before it says it is listening (exit 1,
//! not 2: the configuration is fine, the machine is not). Binding reserves the
//! address; `listen` waits until the service starts, so that a port does not
//! accept connections before streamgate can serve them or handle a signal.
//! A service tells Pingora it is ready only once its sockets listen, and the
//! admin listener waits for the proxy listener's: `/readyz` cannot answer
//! while the proxy port is not listening yet.
//!
//! The sockets reach Pingora through the table of listening sockets its
//! graceful upgrade uses, as if an older streamgate had handed them over: a
//! service finding its address there takes that socket instead of binding, and
//! a later upgrade hands it on as usual. During an upgrade (`-u`) the running
//! streamgate holds the ports, so a busy port is expected then and the socket
//! comes from it; only an address it did not hand over is an error.

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::IntoRawFd;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::listening::Service as Listening;
use pingora::services::{Service, ServiceReadyNotifier, ServiceWithDependents};
use tokio::net::TcpSocket;

/// Pingora's listen backlog (it listens again with it on taking a socket).
const BACKLOG: u32 = 65_535;

/// Which of streamgate's listeners an address is, for messages.
#[derive(Debug, Clone, Copy)]
pub(super) enum Role {
    Proxy,
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Proxy => "proxy",
            Role::Admin => "admin",
        })
    }
}

/// An address streamgate cannot listen on, and why.
#[derive(Debug)]
pub(super) struct CannotListen {
    address: SocketAddr,
    role: Role,
    reason: std::io::Error,
}

impl fmt::Display for CannotListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot listen on {} ({} listener): {}",
            self.address, self.role, self.reason
        )
    }
}

/// Says why and exits 1; the one line an operator needs, on stderr like a
/// configuration error.
pub(super) fn exit_cannot_listen(error: &CannotListen) -> ! {
    eprintln!("streamgate: {error}");
    std::process::exit(1)
}

/// One listening address, bound (or, during an upgrade, expected from the
/// running streamgate).
#[derive(Debug)]
pub(super) struct Bound {
    address: SocketAddr,
    role: Role,
    socket: Option<TcpSocket>,
}

impl Bound {
    /// Binds `address` as Pingora would (a non-blocking socket with
    /// `SO_REUSEADDR`), without listening yet.
    pub(super) fn bind(
        address: SocketAddr,
        role: Role,
        upgrade: bool,
    ) -> Result<Bound, CannotListen> {
        let bound = match address {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .and_then(|socket| {
            socket.set_reuseaddr(true)?;
            socket.bind(address)?;
            Ok(socket)
        });
        match bound {
            Ok(socket) => Ok(Bound {
                address,
                role,
                socket: Some(socket),
            }),
            Err(e) if upgrade && e.kind() == std::io::ErrorKind::AddrInUse => Ok(Bound {
                address,
                role,
                socket: None,
            }),
            Err(reason) => Err(CannotListen {
                address,
                role,
                reason,
            }),
        }
    }

    /// The address as Pingora names it in its table (what `add_tcp` got).
    pub(super) fn key(&self) -> String {
        self.address.to_string()
    }

    /// Listens, and puts the socket in Pingora's table, unless the running
    /// streamgate handed one over for this address (then ours, if any, is
    /// closed). Must run inside the service's runtime.
    fn hand_over(self, table: &ListenFds) -> Result<(), CannotListen> {
        let key = self.key();
        let mut table = table.lock();
        if table.get(&key).is_some() {
            return Ok(());
        }
        let (address, role) = (self.address, self.role);
        let listening = match self.socket {
            Some(socket) => socket
                .listen(BACKLOG)
                .and_then(tokio::net::TcpListener::into_std),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "address in use, and not among the sockets the running streamgate handed over",
            )),
        };
        let listener = listening.map_err(|reason| CannotListen {
            address,
            role,
            reason,
        })?;
        table.add(key, listener.into_raw_fd());
        Ok(())
    }
}

/// A Pingora listening service that starts on sockets already bound, is
/// ready once they listen, and takes the process down if it dies: a listener
/// that stopped must not leave a process whose probes still say it is fine.
pub(super) struct OnBoundSockets<A> {
    service: Option<Listening<A>>,
    sockets: Vec<Bound>,
    name: String,
    addresses: Vec<String>,
}

impl<A: ServerApp + Send + Sync + 'static> OnBoundSockets<A> {
    /// `service` must listen on exactly the addresses of `sockets`, as keyed
    /// by [`Bound::key`].
    pub(super) fn new(service: Listening<A>, sockets: Vec<Bound>) -> Self {
        OnBoundSockets {
            name: Service::name(&service).to_string(),
            addresses: sockets.iter().map(Bound::key).collect(),
            service: Some(service),
            sockets,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServiceWithDependents for OnBoundSockets<A> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready: ServiceReadyNotifier,
    ) {
        let Some(mut service) = self.service.take() else {
            return;
        };
        // Pingora always passes its table on Unix; without one, the service
        // would bind by itself, which is exactly what must not happen.
        let Some(fds) = fds else {
            eprintln!("streamgate: no listening socket table for {}", self.name);
            std::process::exit(1);
        };
        for bound in self.sockets.drain(..) {
            if let Err(e) = bound.hand_over(&fds) {
                exit_cannot_listen(&e);
            }
        }
        ready.notify_ready();
        let running = tokio::spawn(async move {
            Service::start_service(&mut service, Some(fds), shutdown, listeners_per_fd).await;
        });
        if let Err(e) = running.await {
            if e.is_panic() {
                eprintln!(
                    "streamgate: the {} listener on {} failed: {}",
                    self.name,
                    self.addresses.join(", "),
                    panic_message(e.into_panic())
                );
                std::process::exit(1);
            }
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn threads(&self) -> Option<usize> {
        self.service.as_ref().and_then(|service| service.threads)
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        Some(self.addresses.clone())
    }
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(message) => *message,
        Err(panic) => panic
            .downcast_ref::<&str>()
            .map_or_else(|| "panicked".to_string(), |s| (*s).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::TcpListener;

    #[test]
    fn a_busy_address_is_an_error_naming_it_except_during_an_upgrade() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap();
        let error = Bound::bind(address, Role::Admin, false).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("cannot listen on {address} (admin listener): ")),
            "{message}"
        );
        assert_eq!(error.reason.kind(), std::io::ErrorKind::AddrInUse);
        let expected = Bound::bind(address, Role::Proxy, true).unwrap();
        assert!(expected.socket.is_none());
    }

    #[test]
    fn a_free_address_is_bound_but_accepts_nothing_before_pingora_listens() {
        let bound = Bound::bind("127.0.0.1:0".parse().unwrap(), Role::Proxy, false).unwrap();
        let address = bound.socket.as_ref().unwrap().local_addr().unwrap();
        assert_ne!(address.port(), 0);
        assert!(std::net::TcpStream::connect(address).is_err());
    }
}

//! Trusted peers and the client address: whose forwarding headers are
//! believed, and which address a request really comes from.

use std::net::IpAddr;

use ipnet::IpNet;

/// Peers whose forwarding headers are believed: the auth proxy or ingress in
/// front of streamgate. Default: loopback only, i.e. another container of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedNetworks(Vec<IpNet>);

impl Default for TrustedNetworks {
    fn default() -> Self {
        TrustedNetworks(vec![
            "127.0.0.0/8".parse().expect("valid CIDR"),
            "::1/128".parse().expect("valid CIDR"),
        ])
    }
}

impl TrustedNetworks {
    pub fn new(networks: Vec<IpNet>) -> Self {
        TrustedNetworks(networks)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The address a request really comes from: the socket peer, unless that
    /// peer is trusted, in which case `X-Forwarded-For` is read from the right
    /// and the first address not itself trusted is the client. Reading from the
    /// right matters: everything left of the last trusted hop was written by the
    /// client and can be anything.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a [u8]>,
    ) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = forwarded_for
            .filter_map(|value| std::str::from_utf8(value).ok())
            .flat_map(|value| value.split(','))
            .map(|hop| hop.trim().parse::<IpAddr>())
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        hops.iter()
            .rev()
            .copied()
            .find(|hop| !self.contains(*hop))
            .unwrap_or(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_reads_forwarded_for_only_behind_trusted_peers() {
        let trusted = TrustedNetworks::default();
        let xff = [b"198.51.100.1, 203.0.113.9".as_slice()];
        let external: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(trusted.client_ip(external, xff.into_iter()), external);
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            trusted.client_ip(loopback, xff.into_iter()),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(trusted.client_ip(loopback, std::iter::empty()), loopback);
        assert_eq!(
            trusted.client_ip(loopback, [b"garbage".as_slice()].into_iter()),
            loopback
        );
        assert!(
            trusted.contains("::ffff:127.0.0.1".parse().unwrap()),
            "IPv4-mapped loopback"
        );
    }
}

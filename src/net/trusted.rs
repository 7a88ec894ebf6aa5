//! Trusted peers and the client address: whose forwarding headers are
//! believed, and which address a request really comes from.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

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

    /// The networks, in CIDR notation (`127.0.0.1/32`).
    pub fn cidrs(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The address a request really comes from: the socket peer, unless that
    /// peer is trusted, in which case `X-Forwarded-For` (every line, in order,
    /// as one list) is walked from the right: trusted hops are skipped and the
    /// first untrusted one is the client. Reading from the right matters:
    /// everything left of it was written by the client and can be anything,
    /// so it is never looked at (nginx's `real_ip_recursive`, Envoy's
    /// `xff_num_trusted_hops` by address).
    ///
    /// A hop that is not an address, met before any untrusted one, ends the
    /// walk at the last address walked (the nearest trusted hop, or the peer):
    /// a trusted proxy never writes junk, so only a malformed chain gets there,
    /// and the address then is that of a proxy, never one a client chose.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        let hops: Vec<&[u8]> = forwarded_for
            .flat_map(|line| line.split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            // An empty element of a list is no element (RFC 9110 §5.6.1).
            .filter(|hop| !hop.is_empty())
            .collect();
        for hop in hops.into_iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` element: an address, bare or with a port, IPv6 with
/// or without brackets (`192.0.2.1`, `192.0.2.1:443`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:443`), as proxies in the wild write them.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(hop).ok()?;
    let ip = text
        .parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .or_else(|| {
            let inner = text.strip_prefix('[')?.strip_suffix(']')?;
            inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn client_ip_reads_forwarded_for_only_behind_trusted_peers() {
        let trusted = TrustedNetworks::default();
        let xff = [b"198.51.100.1, 203.0.113.9".as_slice()];
        let external = ip("192.0.2.1");
        assert_eq!(trusted.client_ip(external, xff.into_iter()), external);
        let loopback = ip("127.0.0.1");
        assert_eq!(
            trusted.client_ip(loopback, xff.into_iter()),
            ip("203.0.113.9")
        );
        assert_eq!(trusted.client_ip(loopback, std::iter::empty()), loopback);
        assert!(
            trusted.contains(ip("::ffff:127.0.0.1")),
            "IPv4-mapped loopback"
        );
    }

    /// Behind a trusted peer, the chain as received (lines in order) and the
    /// client it names. Trusted: loopback and 10.0.0.0/8.
    #[test]
    fn client_ip_walks_the_chain_from_the_right() {
        let trusted = TrustedNetworks::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ]);
        let peer = ip("127.0.0.1");
        let table: &[(&[&str], &str)] = &[
            (&[], "127.0.0.1"),
            (&["203.0.113.9"], "203.0.113.9"),
            (&["198.51.100.1, 203.0.113.9"], "203.0.113.9"),
            // What is left of the client is never read, junk included.
            (&["junk, 203.0.113.9"], "203.0.113.9"),
            (&["junk", "203.0.113.9"], "203.0.113.9"),
            (&["unknown, 203.0.113.9, 10.0.0.2"], "203.0.113.9"),
            // Trusted hops are skipped.
            (&["203.0.113.9, 10.0.0.1, 10.0.0.2"], "203.0.113.9"),
            (&["203.0.113.9", "10.0.0.1", "10.0.0.2"], "203.0.113.9"),
            // Several lines are one list, in order: the last line is nearest.
            (&["203.0.113.9, 10.0.0.1", "198.51.100.1"], "198.51.100.1"),
            // Ports and IPv6 forms.
            (&["203.0.113.9:51234"], "203.0.113.9"),
            (&["2001:db8::1"], "2001:db8::1"),
            (&["[2001:db8::1]"], "2001:db8::1"),
            (&["[2001:db8::1]:443, 10.0.0.1"], "2001:db8::1"),
            (&["::ffff:203.0.113.9"], "203.0.113.9"),
            (&["  203.0.113.9\t,, 10.0.0.1 ,"], "203.0.113.9"),
            // Junk before any untrusted hop: the nearest address walked.
            (&["garbage"], "127.0.0.1"),
            (&["203.0.113.9, junk"], "127.0.0.1"),
            (&["203.0.113.9, junk, 10.0.0.2"], "10.0.0.2"),
            (&["203.0.113.9, 10.0.0.1:notaport"], "127.0.0.1"),
            (&["[2001:db8::1"], "127.0.0.1"),
            (&["fe80::1%eth0"], "127.0.0.1"),
            // Only trusted hops: the farthest one.
            (&["10.0.0.1, 10.0.0.2"], "10.0.0.1"),
        ];
        for (lines, client) in table {
            let bytes = lines.iter().map(|l| l.as_bytes());
            assert_eq!(
                trusted.client_ip(peer, bytes),
                ip(client),
                "X-Forwarded-For {lines:?}"
            );
        }
        let not_utf8 = [b"203.0.113.9, \xff\xfe".as_slice()];
        assert_eq!(trusted.client_ip(peer, not_utf8.into_iter()), peer);
        let not_utf8_left = [b"\xff\xfe, 203.0.113.9".as_slice()];
        assert_eq!(
            trusted.client_ip(peer, not_utf8_left.into_iter()),
            ip("203.0.113.9")
        );
    }
}

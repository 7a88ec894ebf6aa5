//! What the app is told about the connection a request came on: the
//! `X-Forwarded-*` headers (the de facto standard that RFC 7239 `Forwarded`
//! formalized; apps read these), and the other headers proxies write about
//! the client.
//!
//! Such a header is only as good as whoever wrote it. From a trusted peer (the
//! ingress or auth proxy in front, [`super::trusted`]) it is kept: that peer
//! saw the original scheme, host and client, where streamgate sees only plain
//! HTTP from it. From any other peer it was written by the client, who can
//! claim any address, scheme or host; so streamgate states what it saw itself
//! and removes the rest. `X-Forwarded-For` follows nginx's
//! `$proxy_add_x_forwarded_for` behind a trusted peer (the peer appended to the
//! chain) and is the peer alone otherwise: nothing left of an untrusted peer
//! was vouched for by anyone streamgate trusts, and apps that take the leftmost
//! entry would believe it (Traefik and oauth2-proxy drop it too).
//!
//! Each of these headers is matched in every spelling that CGI-style apps read
//! as the same name ([`super::headers`]); a trusted proxy writes the plain
//! spelling, so any other one came from behind it and is removed from every
//! peer.

use std::net::IpAddr;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

use super::headers::{cgi_starts_with, is_plain, same_cgi_name};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The scheme the client spoke to streamgate: `https` on a TLS listener.
fn scheme(tls: bool) -> HeaderValue {
    HeaderValue::from_static(if tls { "https" } else { "http" })
}

/// `X-Forwarded-Prefix`, `-Server`, `-Ssl`, `-Scheme` (Rack), oauth2-proxy's
/// `-User`, `-Email`, `-Groups`…: by convention every `X-Forwarded-*` header
/// was written by a proxy in front, so from an untrusted peer none is genuine.
const X_FORWARDED_PREFIX: &str = "x-forwarded-";

/// Client-address headers outside the `X-Forwarded-*` family that CDNs and
/// proxies write and that apps and their libraries read (nginx's realip,
/// Rails' `Client-IP`, the npm `request-ip` order, ingress-nginx's copy of the
/// original chain).
const CLIENT_ADDRESS: [HeaderName; 8] = [
    header::FORWARDED,
    X_REAL_IP,
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("fastly-client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("client-ip"),
];

const X_ORIGINAL_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-original-forwarded-for");

/// Headers by which a proxy in front tells the app to serve another path,
/// method or host than the request line says (IIS/Zend/Symfony's
/// `X-Original-URL`, method overrides): from an untrusted client they would
/// walk around routes matched on the request line.
const REWRITES: [HeaderName; 7] = [
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
    HeaderName::from_static("x-host"),
    HeaderName::from_static("x-original-host"),
];

/// `Proxy` is no request header anyone sends on purpose, and CGI-style apps
/// expose it as `HTTP_PROXY`, which many HTTP client libraries take as their
/// outgoing proxy (httpoxy, CVE-2016-5385): removed from every peer.
const PROXY: HeaderName = HeaderName::from_static("proxy");

/// What streamgate knows of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    /// The socket peer; `None` on a listener without addresses.
    pub peer: Option<IpAddr>,
    /// Whether the peer is in `trusted_cidrs`.
    pub trusted: bool,
    /// The local port the client connected to.
    pub port: Option<u16>,
    /// Whether the client connected over TLS (a `tls` listener).
    pub tls: bool,
}

/// How the client's request headers become the app's: remove every line of
/// each name in `remove`, then replace each name in `set` by its one value.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Edits {
    pub remove: Vec<HeaderName>,
    pub set: Vec<(HeaderName, HeaderValue)>,
}

/// The edits for the app. `vouched` are further headers only a trusted peer
/// may set, each in its exact spelling (the identity headers of `header`
/// mode); `authority` is the host the client asked for (`Host`, or the
/// HTTP/2 `:authority`).
pub fn for_app(
    headers: &HeaderMap,
    authority: Option<&HeaderValue>,
    connection: &Connection,
    vouched: &[HeaderName],
) -> Edits {
    let mut edits = Edits {
        remove: headers
            .keys()
            .filter(|name| !kept(name, connection.trusted, vouched))
            .cloned()
            .collect(),
        set: Vec::with_capacity(4),
    };
    // What survives is what a trusted peer wrote: only that is appended to or
    // kept. Nothing survives from an untrusted one.
    let received = |name: &HeaderName| headers.contains_key(name) && !edits.remove.contains(name);
    if let Some(peer) = connection.peer {
        let chain = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter(|_| received(&X_FORWARDED_FOR));
        if let Some(value) = forwarded_for(chain, peer) {
            edits.set.push((X_FORWARDED_FOR, value));
        }
    }
    let ours = [
        (X_FORWARDED_PROTO, Some(scheme(connection.tls))),
        (X_FORWARDED_HOST, authority.cloned()),
        (X_FORWARDED_PORT, connection.port.map(HeaderValue::from)),
    ];
    for (name, value) in ours {
        if let Some(value) = value.filter(|_| !received(&name)) {
            edits.set.push((name, value));
        }
    }
    edits
}

/// Whether header `name` reaches the app as sent.
fn kept(name: &HeaderName, trusted: bool, vouched: &[HeaderName]) -> bool {
    if let Some(exact) = vouched.iter().find(|v| same_cgi_name(name, v)) {
        return trusted && name == exact;
    }
    if same_cgi_name(name, &PROXY) {
        return false;
    }
    let from_a_proxy = cgi_starts_with(name, X_FORWARDED_PREFIX)
        || CLIENT_ADDRESS
            .iter()
            .chain(&REWRITES)
            .chain([&X_ORIGINAL_FORWARDED_FOR])
            .any(|known| same_cgi_name(name, known));
    !from_a_proxy || (trusted && is_plain(name))
}

/// The `X-Forwarded-For` value for the app: the values received, in order,
/// joined with `", "`, then `peer`. Always `Some`: received values were valid
/// header values, and so is an address.
fn forwarded_for<'a>(
    received: impl Iterator<Item = &'a HeaderValue>,
    peer: IpAddr,
) -> Option<HeaderValue> {
    let ip = peer.to_canonical().to_string();
    let mut joined = Vec::new();
    for value in received {
        joined.extend_from_slice(value.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(ip.as_bytes());
    HeaderValue::from_bytes(&joined).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "192.0.2.7";

    fn request(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        headers
    }

    fn connection(trusted: bool) -> Connection {
        Connection {
            peer: Some(PEER.parse().unwrap()),
            trusted,
            port: Some(3000),
            tls: false,
        }
    }

    /// What the app receives: `headers` with the edits applied, as
    /// `name: value` lines in a stable order.
    fn for_app_lines(pairs: &[(&str, &str)], trusted: bool, vouched: &[&str]) -> Vec<String> {
        let mut headers = request(pairs);
        let vouched: Vec<HeaderName> = vouched.iter().map(|v| v.parse().unwrap()).collect();
        let edits = for_app(
            &headers,
            headers.get(header::HOST).cloned().as_ref(),
            &connection(trusted),
            &vouched,
        );
        for name in &edits.remove {
            headers.remove(name);
        }
        for (name, value) in edits.set {
            headers.insert(name, value);
        }
        let mut lines: Vec<String> = headers
            .iter()
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        lines.sort();
        lines
    }

    const SPOOFED: [(&str, &str); 14] = [
        ("host", "shop.example"),
        ("x-forwarded-for", "203.0.113.1"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-port", "443"),
        ("forwarded", "for=203.0.113.1;proto=https"),
        ("x-real-ip", "203.0.113.1"),
        ("x_forwarded_for", "198.51.100.9"),
        ("X_Forwarded_Host", "evil.example"),
        ("x-forwarded-prefix", "/admin"),
        ("x-forwarded-ssl", "on"),
        ("true-client-ip", "203.0.113.1"),
        ("x_real_ip", "203.0.113.1"),
        ("x-custom", "kept"),
    ];

    #[test]
    fn a_tls_listener_is_https_to_the_app_whatever_the_client_claims() {
        let headers = request(&[("x-forwarded-proto", "http")]);
        let over_tls = Connection {
            tls: true,
            ..connection(false)
        };
        let edits = for_app(&headers, None, &over_tls, &[]);
        assert!(edits
            .set
            .contains(&(X_FORWARDED_PROTO, HeaderValue::from_static("https"))));
    }

    #[test]
    fn from_an_untrusted_peer_only_what_streamgate_saw() {
        assert_eq!(
            for_app_lines(&SPOOFED, false, &[]),
            [
                "host: shop.example",
                "x-custom: kept",
                "x-forwarded-for: 192.0.2.7",
                "x-forwarded-host: shop.example",
                "x-forwarded-port: 3000",
                "x-forwarded-proto: http",
            ]
        );
    }

    #[test]
    fn from_a_trusted_peer_its_plain_spellings_are_kept_and_the_chain_grows() {
        assert_eq!(
            for_app_lines(&SPOOFED, true, &[]),
            [
                "forwarded: for=203.0.113.1;proto=https",
                "host: shop.example",
                "true-client-ip: 203.0.113.1",
                "x-custom: kept",
                "x-forwarded-for: 203.0.113.1, 192.0.2.7",
                "x-forwarded-host: evil.example",
                "x-forwarded-port: 443",
                "x-forwarded-prefix: /admin",
                "x-forwarded-proto: https",
                "x-forwarded-ssl: on",
                "x-real-ip: 203.0.113.1",
            ]
        );
    }

    #[test]
    fn a_trusted_peer_gets_what_it_did_not_send() {
        let pairs = [
            ("host", "shop.example"),
            ("x-forwarded-for", "203.0.113.1"),
            ("x-forwarded-for", "10.0.0.1, 10.0.0.2"),
            ("x-forwarded-proto", "https"),
        ];
        assert_eq!(
            for_app_lines(&pairs, true, &[]),
            [
                "host: shop.example",
                "x-forwarded-for: 203.0.113.1, 10.0.0.1, 10.0.0.2, 192.0.2.7",
                "x-forwarded-host: shop.example",
                "x-forwarded-port: 3000",
                "x-forwarded-proto: https",
            ]
        );
    }

    #[test]
    fn vouched_headers_only_from_trusted_peers_and_only_in_their_exact_spelling() {
        let pairs = [
            ("x-auth-user", "alice"),
            ("x_auth_user", "admin"),
            ("X.Auth.User", "admin"),
            ("x-auth-groups", "staff"),
            ("X_AUTH-GROUPS", "admin"),
        ];
        let vouched = ["x-auth-user", "x-auth-groups"];
        let forwarded = [
            "x-forwarded-for: 192.0.2.7",
            "x-forwarded-port: 3000",
            "x-forwarded-proto: http",
        ];
        assert_eq!(for_app_lines(&pairs, false, &vouched), forwarded);
        let mut expected = vec!["x-auth-groups: staff", "x-auth-user: alice"];
        expected.extend(forwarded);
        assert_eq!(for_app_lines(&pairs, true, &vouched), expected);
    }

    #[test]
    fn a_configured_name_with_an_underscore_is_its_own_exact_spelling() {
        let pairs = [("x_remote_user", "alice"), ("x-remote-user", "admin")];
        let lines = for_app_lines(&pairs, true, &["x_remote_user"]);
        assert!(
            lines.contains(&"x_remote_user: alice".to_string()),
            "{lines:?}"
        );
        assert!(
            !lines.iter().any(|l| l.starts_with("x-remote-user")),
            "{lines:?}"
        );
    }

    #[test]
    fn without_a_peer_address_no_chain_is_made_up() {
        let headers = request(&[("x-forwarded-for", "203.0.113.1")]);
        let edits = for_app(
            &headers,
            None,
            &Connection {
                peer: None,
                trusted: false,
                port: None,
                tls: false,
            },
            &[],
        );
        assert_eq!(edits.remove, [X_FORWARDED_FOR]);
        assert_eq!(
            edits.set,
            [(X_FORWARDED_PROTO, HeaderValue::from_static("http"))]
        );
    }

    #[test]
    fn rewrite_headers_come_only_from_trusted_peers_and_proxy_from_none() {
        let pairs = [
            ("host", "shop.example"),
            ("x-original-url", "/admin"),
            ("x_rewrite_url", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("x-method-override", "DELETE"),
            ("x-host", "evil.example"),
            ("proxy", "http://evil.example:8080"),
        ];
        let untrusted = for_app_lines(&pairs, false, &[]);
        assert!(
            untrusted.iter().all(|line| !line.starts_with("x-original")
                && !line.starts_with("x_rewrite")
                && !line.contains("override")
                && !line.starts_with("x-host")
                && !line.starts_with("proxy")),
            "{untrusted:?}"
        );
        let trusted = for_app_lines(&pairs, true, &[]);
        assert!(
            trusted.contains(&"x-original-url: /admin".to_string()),
            "{trusted:?}"
        );
        assert!(trusted.contains(&"x-http-method-override: DELETE".to_string()));
        assert!(
            !trusted
                .iter()
                .any(|l| l.starts_with("x_rewrite") || l.starts_with("proxy")),
            "{trusted:?}"
        );
    }

    #[test]
    fn an_ipv4_mapped_peer_is_written_as_ipv4() {
        let value = forwarded_for(std::iter::empty(), "::ffff:192.0.2.7".parse().unwrap());
        assert_eq!(value, Some(HeaderValue::from_static("192.0.2.7")));
    }
}

//! Routing: which requests streamgate answers itself and which go to an upstream.
//!
//! Routes are tried in order and the first match wins, like nginx `location`
//! blocks written in sequence; there is no longest-prefix magic to reason about.
//! The table is built once from the configuration and only read afterwards.
//!
//! The table is generic over what a route leads to: the configuration fills it
//! with settings (`config::RouteAction`), the proxy with the runtime state of
//! each token route and upstream, so that a match hands over everything the
//! request needs with no index into a second table.

/// Which paths a route takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

/// A fixed answer, like Envoy's `direct_response`: for probes of the proxy
/// layer itself and for measuring its ceiling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectResponse {
    pub status: u16,
    pub content_type: http::HeaderValue,
    pub body: bytes::Bytes,
}

/// Which hosts a route takes (`match.host`): one sidecar in front of
/// `eu.example.com` and `us.example.com` can mint for a different Stream app
/// on each. Host names compare without case, as DNS does; the request's port
/// is not part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `eu.example.com`, stored in lower case.
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: any name ending so, with
    /// one label or more before it (`a.example.com`, `a.b.example.com`), but
    /// not `example.com` itself (Envoy's and nginx's reading).
    Suffix(String),
}

impl HostMatch {
    /// `eu.example.com` or `*.example.com`. Errors say why: empty, a port,
    /// or a `*` other than one leading `*.`.
    pub fn parse(text: &str) -> Result<HostMatch, String> {
        let lower = text.to_ascii_lowercase();
        let (name, wildcard) = match lower.strip_prefix("*.") {
            Some(rest) => (rest, true),
            None => (lower.as_str(), false),
        };
        if name.is_empty() || name.contains(['*', ':', '/', ' ']) || name.starts_with('.') {
            return Err(format!(
                "{text:?} is not a host name or a wildcard like \"*.example.com\" \
                 (no port, no scheme, a '*' only as the first label)"
            ));
        }
        Ok(if wildcard {
            HostMatch::Suffix(format!(".{name}"))
        } else {
            HostMatch::Exact(name.to_string())
        })
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(name) => host.eq_ignore_ascii_case(name),
            HostMatch::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }

    /// A host the pattern takes (`*.example.com`: `any.example.com`), to
    /// ask a table which route a request for it reaches.
    pub fn sample(&self) -> String {
        match self {
            HostMatch::Exact(name) => name.clone(),
            HostMatch::Suffix(suffix) => format!("any{suffix}"),
        }
    }

    fn describe(&self) -> String {
        match self {
            HostMatch::Exact(name) => name.clone(),
            HostMatch::Suffix(suffix) => format!("*{suffix}"),
        }
    }
}

/// The host a request names (its `Host` header or HTTP/2 `:authority`)
/// without the port and a trailing dot: `Eu.Example.com:8443` →
/// `Eu.Example.com`, `[::1]:80` → `[::1]`.
pub fn request_host(authority: &str) -> &str {
    let host = match authority.rfind(':') {
        // A colon inside brackets belongs to an IPv6 address.
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    };
    host.strip_suffix('.').unwrap_or(host)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<A> {
    /// `None` matches every method.
    pub method: Option<http::Method>,
    /// `None` matches every host (and a request without one).
    pub host: Option<HostMatch>,
    pub path: PathMatch,
    pub action: A,
}

impl<A> Route<A> {
    fn matches(&self, method: &http::Method, host: Option<&str>, path: &str) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        if let Some(wanted) = &self.host {
            if !host.is_some_and(|host| wanted.matches(host)) {
                return false;
            }
        }
        match &self.path {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        }
    }

    /// The path pattern, OpenTelemetry's `http.route`: the path itself, or
    /// the prefix followed by `*`.
    pub fn template(&self) -> std::borrow::Cow<'_, str> {
        match &self.path {
            PathMatch::Exact(p) => std::borrow::Cow::Borrowed(p),
            PathMatch::Prefix(p) => std::borrow::Cow::Owned(format!("{p}*")),
        }
    }

    /// `POST /api/tokens/user`, `* /static/*`, `POST eu.example.com/api/tokens/user`:
    /// how the route reads in logs and metric labels.
    pub fn describe(&self) -> String {
        let method = self.method.as_ref().map_or("*", http::Method::as_str);
        let host = self
            .host
            .as_ref()
            .map_or_else(String::new, HostMatch::describe);
        match &self.path {
            PathMatch::Exact(p) => format!("{method} {host}{p}"),
            PathMatch::Prefix(p) => format!("{method} {host}{p}*"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable<A> {
    routes: Vec<Route<A>>,
}

impl<A> RouteTable<A> {
    pub fn new(routes: Vec<Route<A>>) -> Self {
        RouteTable { routes }
    }

    pub fn routes(&self) -> &[Route<A>] {
        &self.routes
    }

    /// The first route matching the request, if any; `host` as
    /// [`request_host`] reads it.
    pub fn find(&self, method: &http::Method, host: Option<&str>, path: &str) -> Option<&Route<A>> {
        self.routes.iter().find(|r| r.matches(method, host, path))
    }

    /// The same routes, each leading to `f(description, action)` instead of
    /// `action` (see [`Route::describe`]); the first error stops it.
    pub fn try_map<B, E>(
        self,
        mut f: impl FnMut(String, A) -> Result<B, E>,
    ) -> Result<RouteTable<B>, E> {
        let routes = self
            .routes
            .into_iter()
            .map(|route| {
                let description = route.describe();
                Ok(Route {
                    method: route.method,
                    host: route.host,
                    path: route.path,
                    action: f(description, route.action)?,
                })
            })
            .collect::<Result<_, E>>()?;
        Ok(RouteTable { routes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn table() -> RouteTable<&'static str> {
        let route = |method: Option<Method>, path: PathMatch, action| Route {
            method,
            host: None,
            path,
            action,
        };
        RouteTable::new(vec![
            route(
                Some(Method::POST),
                PathMatch::Exact("/api/tokens/user".into()),
                "user",
            ),
            route(None, PathMatch::Prefix("/ws".into()), "ws"),
            route(None, PathMatch::Prefix("/w".into()), "w"),
            route(None, PathMatch::Prefix("/api/".into()), "app"),
        ])
    }

    #[test]
    fn exact_paths_match_only_their_method_and_path() {
        let table = table();
        let action = |m: Method, p: &str| table.find(&m, None, p).map(|r| r.action);
        assert_eq!(action(Method::POST, "/api/tokens/user"), Some("user"));
        assert_eq!(action(Method::GET, "/api/tokens/user"), Some("app"));
        assert_eq!(action(Method::POST, "/api/tokens/user/x"), Some("app"));
        assert_eq!(action(Method::POST, "/api/tokens/users"), Some("app"));
    }

    #[test]
    fn first_match_wins_and_unmatched_is_none() {
        let table = table();
        assert_eq!(
            table.find(&Method::GET, None, "/ws/chat").map(|r| r.action),
            Some("ws")
        );
        assert_eq!(
            table.find(&Method::GET, None, "/web").map(|r| r.action),
            Some("w")
        );
        assert_eq!(table.find(&Method::GET, None, "/other"), None);
    }

    #[test]
    fn describe_reads_like_a_request_line_and_try_map_keeps_it() {
        let table = table()
            .try_map(|description, action| Ok::<_, ()>((description, action.len())))
            .unwrap();
        assert_eq!(
            table.routes()[0].action,
            ("POST /api/tokens/user".to_string(), 4)
        );
        assert_eq!(table.routes()[1].describe(), "* /ws*");
    }

    #[test]
    fn hosts_match_exactly_or_by_suffix_without_case_or_port() {
        let route = |host: &str, action| Route {
            method: None,
            host: Some(HostMatch::parse(host).unwrap()),
            path: PathMatch::Prefix("/".into()),
            action,
        };
        let table = RouteTable::new(vec![
            route("EU.example.com", "eu"),
            route("*.us.example.com", "us"),
            Route {
                method: None,
                host: None,
                path: PathMatch::Prefix("/".into()),
                action: "any",
            },
        ]);
        let action = |authority: Option<&str>| {
            table
                .find(&Method::GET, authority.map(request_host), "/x")
                .map(|r| r.action)
        };
        assert_eq!(action(Some("eu.example.com")), Some("eu"));
        assert_eq!(action(Some("Eu.Example.COM:8443")), Some("eu"));
        assert_eq!(action(Some("eu.example.com.")), Some("eu"));
        assert_eq!(
            action(Some("a.eu.example.com")),
            Some("any"),
            "exact is exact"
        );
        assert_eq!(action(Some("a.us.example.com")), Some("us"));
        assert_eq!(action(Some("a.b.US.example.com:80")), Some("us"));
        assert_eq!(
            action(Some("us.example.com")),
            Some("any"),
            "a wildcard needs a label"
        );
        assert_eq!(action(Some("xus.example.com")), Some("any"));
        assert_eq!(action(Some("[::1]:3000")), Some("any"));
        assert_eq!(action(None), Some("any"), "a host route needs a host");
        assert_eq!(request_host("[::1]:3000"), "[::1]");
        assert_eq!(request_host("[::1]"), "[::1]");
        assert_eq!(
            table.routes()[1].describe(),
            "* *.us.example.com/*",
            "metric labels tell host routes apart"
        );
    }

    #[test]
    fn host_patterns_are_names_or_one_leading_wildcard() {
        for bad in [
            "",
            "*",
            "*.",
            "a.*.com",
            "example.com:443",
            "https://a.com",
            ".a.com",
            "**.a.com",
        ] {
            assert!(HostMatch::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            HostMatch::parse("*.Example.com"),
            Ok(HostMatch::Suffix(".example.com".into()))
        );
    }
}

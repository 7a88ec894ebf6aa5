//! Routing: which requests streamgate answers itself and which go to an upstream.
//!
//! Routes are tried in order and the first match wins, like nginx `location`
//! blocks written in sequence; there is no longest-prefix magic to reason about.
//! The table is built once from the configuration and only read afterwards.

use serde::Deserialize;

/// What streamgate can mint. The YAML names are the `mint:` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MintKind {
    UserToken,
    CallToken,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer in the request filter, no upstream hop. `access` indexes the
    /// per-route access settings (identity, CORS) kept beside the table.
    Mint { kind: MintKind, access: usize },
    /// Proxy to `upstreams[upstream]` of the configuration.
    Proxy { upstream: usize },
    /// A fixed answer, like Envoy's `direct_response`: for probes of the proxy
    /// layer itself and for measuring its ceiling.
    Respond(DirectResponse),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectResponse {
    pub status: u16,
    pub content_type: String,
    pub body: bytes::Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `None` matches every method.
    pub method: Option<http::Method>,
    pub path: PathMatch,
    pub action: Action,
}

impl Route {
    fn matches(&self, method: &http::Method, path: &str) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        match &self.path {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        }
    }

    /// `POST /api/tokens/user`, `* /static/*`: how the route reads in logs.
    pub fn describe(&self) -> String {
        let method = self.method.as_ref().map_or("*", http::Method::as_str);
        match &self.path {
            PathMatch::Exact(p) => format!("{method} {p}"),
            PathMatch::Prefix(p) => format!("{method} {p}*"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        RouteTable { routes }
    }

    /// The table used when the configuration has no `routes`: user tokens at
    /// `POST /api/tokens/user`, call tokens at `POST /api/tokens/call` (access
    /// settings 0 and 1), everything else to the given upstream.
    pub fn default_for(upstream: usize) -> Self {
        RouteTable::new(vec![
            Route {
                method: Some(http::Method::POST),
                path: PathMatch::Exact("/api/tokens/user".into()),
                action: Action::Mint {
                    kind: MintKind::UserToken,
                    access: 0,
                },
            },
            Route {
                method: Some(http::Method::POST),
                path: PathMatch::Exact("/api/tokens/call".into()),
                action: Action::Mint {
                    kind: MintKind::CallToken,
                    access: 1,
                },
            },
            Route {
                method: None,
                path: PathMatch::Prefix("/".into()),
                action: Action::Proxy { upstream },
            },
        ])
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first route matching the request, if any.
    pub fn find(&self, method: &http::Method, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(method, path))
    }

    /// The token route a CORS preflight (`OPTIONS` asking about `method`) is for.
    pub fn find_mint(&self, method: &http::Method, path: &str) -> Option<(MintKind, usize)> {
        match self.find(method, path).map(|r| &r.action) {
            Some(Action::Mint { kind, access }) => Some((*kind, *access)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn default_table_mints_only_post_on_exact_path() {
        let table = RouteTable::default_for(0);
        let action = |m: Method, p: &str| table.find(&m, p).map(|r| r.action.clone());
        assert_eq!(
            action(Method::POST, "/api/tokens/user"),
            Some(Action::Mint {
                kind: MintKind::UserToken,
                access: 0
            })
        );
        assert_eq!(
            action(Method::POST, "/api/tokens/call"),
            Some(Action::Mint {
                kind: MintKind::CallToken,
                access: 1
            })
        );
        assert_eq!(
            table.find_mint(&Method::POST, "/api/tokens/call"),
            Some((MintKind::CallToken, 1))
        );
        assert_eq!(table.find_mint(&Method::GET, "/api/tokens/call"), None);
        assert_eq!(
            action(Method::GET, "/api/tokens/user"),
            Some(Action::Proxy { upstream: 0 })
        );
        assert_eq!(
            action(Method::POST, "/api/tokens/user/x"),
            Some(Action::Proxy { upstream: 0 })
        );
        assert_eq!(
            action(Method::POST, "/api/tokens/users"),
            Some(Action::Proxy { upstream: 0 })
        );
        assert_eq!(
            action(Method::DELETE, "/anything"),
            Some(Action::Proxy { upstream: 0 })
        );
    }

    #[test]
    fn first_match_wins_and_unmatched_is_none() {
        let table = RouteTable::new(vec![
            Route {
                method: None,
                path: PathMatch::Prefix("/ws".into()),
                action: Action::Proxy { upstream: 1 },
            },
            Route {
                method: None,
                path: PathMatch::Prefix("/w".into()),
                action: Action::Proxy { upstream: 0 },
            },
        ]);
        assert_eq!(
            table
                .find(&Method::GET, "/ws/chat")
                .map(|r| r.action.clone()),
            Some(Action::Proxy { upstream: 1 })
        );
        assert_eq!(
            table.find(&Method::GET, "/web").map(|r| r.action.clone()),
            Some(Action::Proxy { upstream: 0 })
        );
        assert_eq!(table.find(&Method::GET, "/other"), None);
    }

    #[test]
    fn describe_reads_like_a_request_line() {
        let table = RouteTable::default_for(0);
        assert_eq!(table.routes()[0].describe(), "POST /api/tokens/user");
        assert_eq!(table.routes()[2].describe(), "* /*");
    }
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<A> {
    /// `None` matches every method.
    pub method: Option<http::Method>,
    pub path: PathMatch,
    pub action: A,
}

impl<A> Route<A> {
    fn matches(&self, method: &http::Method, path: &str) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        match &self.path {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        }
    }

    /// `POST /api/tokens/user`, `* /static/*`: how the route reads in logs and
    /// metric labels.
    /// The path pattern, OpenTelemetry's `http.route`: the path itself, or
    /// the prefix followed by `*`.
    pub fn template(&self) -> std::borrow::Cow<'_, str> {
        match &self.path {
            PathMatch::Exact(p) => std::borrow::Cow::Borrowed(p),
            PathMatch::Prefix(p) => std::borrow::Cow::Owned(format!("{p}*")),
        }
    }

    pub fn describe(&self) -> String {
        let method = self.method.as_ref().map_or("*", http::Method::as_str);
        match &self.path {
            PathMatch::Exact(p) => format!("{method} {p}"),
            PathMatch::Prefix(p) => format!("{method} {p}*"),
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

    /// The first route matching the request, if any.
    pub fn find(&self, method: &http::Method, path: &str) -> Option<&Route<A>> {
        self.routes.iter().find(|r| r.matches(method, path))
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
        let action = |m: Method, p: &str| table.find(&m, p).map(|r| r.action);
        assert_eq!(action(Method::POST, "/api/tokens/user"), Some("user"));
        assert_eq!(action(Method::GET, "/api/tokens/user"), Some("app"));
        assert_eq!(action(Method::POST, "/api/tokens/user/x"), Some("app"));
        assert_eq!(action(Method::POST, "/api/tokens/users"), Some("app"));
    }

    #[test]
    fn first_match_wins_and_unmatched_is_none() {
        let table = table();
        assert_eq!(
            table.find(&Method::GET, "/ws/chat").map(|r| r.action),
            Some("ws")
        );
        assert_eq!(
            table.find(&Method::GET, "/web").map(|r| r.action),
            Some("w")
        );
        assert_eq!(table.find(&Method::GET, "/other"), None);
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
}

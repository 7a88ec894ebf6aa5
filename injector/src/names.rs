//! Kubernetes names, checked by the API server's own rules, so that a value
//! the injector accepts can never make the patched pod invalid.

use std::fmt;

/// Why a value is not a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(String);

/// A container port name (IANA_SVC_NAME): 1-15 of `a-z0-9-`, at least one
/// letter, no `-` at either end and no `--`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortName(String);

impl PortName {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NameError(
                "is a port number, and a Service that targets a port by number sends traffic \
                 to it around streamgate: give the app's container port a name (ports: \
                 [{name: http, containerPort: ...}]), set the Service's targetPort to that \
                 name, and put the name here"
                    .into(),
            ));
        }
        let valid = (1..=15).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && value.bytes().any(|b| b.is_ascii_lowercase())
            && !value.starts_with('-')
            && !value.ends_with('-')
            && !value.contains("--");
        if valid {
            Ok(PortName(value.to_owned()))
        } else {
            Err(NameError(
                "is not a port name (1-15 characters of a-z, 0-9 and '-', at least one letter, \
                 no '-' at either end or twice in a row)"
                    .into(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name the app's port takes when streamgate takes its name: `app-`
    /// and as much of the old name as fits in 15 characters.
    pub fn for_app(&self) -> Result<PortName, NameError> {
        let mut name = format!("app-{}", self.0);
        name.truncate(15);
        PortName::parse(name.trim_end_matches('-'))
    }
}

impl fmt::Display for PortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a ConfigMap or Secret (a DNS-1123 subdomain): at most 253 of
/// `a-z0-9-.`, starting and ending with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName(String);

impl ObjectName {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let valid = (1..=253).contains(&value.len())
            && value.bytes().all(|b| alnum(b) || b == b'-' || b == b'.')
            && value.bytes().next().is_some_and(alnum)
            && value.bytes().last().is_some_and(alnum);
        if valid {
            Ok(ObjectName(value.to_owned()))
        } else {
            Err(NameError(
                "is not an object name (at most 253 characters of a-z, 0-9, '-' and '.', \
                 starting and ending with a letter or digit)"
                    .into(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_follow_iana_svc_name() {
        for good in ["http", "web-8080", "h2c", "a"] {
            assert!(PortName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "HTTP",
            "-http",
            "http-",
            "ht--tp",
            "1234-5",
            "sixteen-chars-xx",
            "h_ttp",
        ] {
            assert!(PortName::parse(bad).is_err(), "{bad}");
        }
        let numeric = PortName::parse("8080").expect_err("a number");
        assert!(numeric.to_string().contains("targetPort"));
    }

    #[test]
    fn the_app_port_name_fits() {
        let name = |s: &str| PortName::parse(s).expect("valid");
        assert_eq!(name("http").for_app(), Ok(name("app-http")));
        assert_eq!(
            name("metrics-public").for_app(),
            Ok(name("app-metrics-pub"))
        );
        // A cut that ends on '-' drops it rather than producing an invalid name.
        assert_eq!(
            name("web-a-bc-defgh").for_app(),
            Ok(name("app-web-a-bc-de"))
        );
        assert_eq!(name("webapp-1-xy").for_app(), Ok(name("app-webapp-1-xy")));
        assert_eq!(name("webapp-12-xy").for_app(), Ok(name("app-webapp-12-x")));
        assert_eq!(
            name("webapp-1234-xy").for_app(),
            Ok(name("app-webapp-1234"))
        );
        assert_eq!(name("webappxx-1-xy").for_app(), Ok(name("app-webappxx-1")));
    }

    #[test]
    fn object_names_are_dns_subdomains() {
        for good in ["streamgate-config", "a", "shop.stream", "9lives"] {
            assert!(ObjectName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Config", "-x", "x-", "a_b", &"x".repeat(254)] {
            assert!(ObjectName::parse(bad).is_err(), "{bad}");
        }
    }
}

//! The pod's `streamgate.getstream.io/*` annotations, read once into
//! [`PodAnnotations`].
//!
//! Every value is checked here, and every problem is reported at once with the
//! annotation's name, because the webhook's only way to tell a user is the
//! denial message the API server passes on (a ReplicaSet's `FailedCreate`
//! event). An unknown key under the prefix is a problem too: a misspelled
//! `streamgate.getstream.io/inject` would otherwise leave the pod without
//! streamgate, silently.

use std::collections::BTreeMap;
use std::fmt;

use crate::names::{ObjectName, PortName};

pub const PREFIX: &str = "streamgate.getstream.io/";
/// `"true"` asks for streamgate, `"false"` opts out.
pub const INJECT: &str = "streamgate.getstream.io/inject";
/// Written by the injector on the pods it changed; never read from users.
pub const STATUS: &str = "streamgate.getstream.io/status";
/// `native` (an init container with `restartPolicy: Always`) or `classic`.
pub const SIDECAR: &str = "streamgate.getstream.io/sidecar";
/// The name of the app's container port that the Service targets.
pub const APP_PORT: &str = "streamgate.getstream.io/app-port";
/// The ConfigMap holding streamgate's configuration.
pub const CONFIG: &str = "streamgate.getstream.io/config";
/// The Secret holding the Stream credentials (`api_key`, `api_secret`).
pub const SECRET: &str = "streamgate.getstream.io/secret";
/// Which identity mode's configuration file of the ConfigMap to load.
pub const IDENTITY: &str = "streamgate.getstream.io/identity";

/// The value of [`STATUS`] on an injected pod.
pub const INJECTED: &str = "injected";

const KNOWN: [&str; 7] = [INJECT, STATUS, SIDECAR, APP_PORT, CONFIG, SECRET, IDENTITY];

/// What [`INJECT`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    Requested,
    OptedOut,
}

/// How streamgate joins the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarKind {
    /// An init container with `restartPolicy: Always` (Kubernetes >= 1.29):
    /// started, and through its startup probe, before the app; stopped after it.
    Native,
    /// A second entry of `containers`: started and stopped with the app.
    Classic,
}

/// The identity modes of streamgate's `identity.mode`; each selects the
/// ConfigMap key `identity-<mode>.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityMode {
    Header,
    ForwardAuth,
    Jwt,
}

impl IdentityMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityMode::Header => "header",
            IdentityMode::ForwardAuth => "forward_auth",
            IdentityMode::Jwt => "jwt",
        }
    }
}

/// One problem with one annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationError {
    pub annotation: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for AnnotationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "annotation {}: {:?} {}",
            self.annotation, self.value, self.reason
        )
    }
}

/// The pod's annotations under [`PREFIX`], each checked; `None` where absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodAnnotations {
    pub injection: Option<Injection>,
    /// [`STATUS`] is set: an earlier admission injected the pod already.
    pub injected: bool,
    pub sidecar: Option<SidecarKind>,
    pub app_port: Option<PortName>,
    pub config: Option<ObjectName>,
    pub secret: Option<ObjectName>,
    pub identity: Option<IdentityMode>,
}

impl PodAnnotations {
    /// Reads every `streamgate.getstream.io/` annotation; all problems at once.
    pub fn parse(annotations: &BTreeMap<String, String>) -> Result<Self, Vec<AnnotationError>> {
        let mut out = PodAnnotations::default();
        let mut errors = Vec::new();
        for (key, value) in annotations.range(PREFIX.to_owned()..) {
            if !key.starts_with(PREFIX) {
                break;
            }
            let error = |reason: String| AnnotationError {
                annotation: key.clone(),
                value: value.clone(),
                reason,
            };
            let parsed = match key.as_str() {
                INJECT => parse_injection(value).map(|v| out.injection = Some(v)),
                STATUS => {
                    out.injected = true;
                    Ok(())
                }
                SIDECAR => parse_sidecar(value).map(|v| out.sidecar = Some(v)),
                APP_PORT => PortName::parse(value)
                    .map(|v| out.app_port = Some(v))
                    .map_err(|e| e.to_string()),
                CONFIG => ObjectName::parse(value)
                    .map(|v| out.config = Some(v))
                    .map_err(|e| e.to_string()),
                SECRET => ObjectName::parse(value)
                    .map(|v| out.secret = Some(v))
                    .map_err(|e| e.to_string()),
                IDENTITY => parse_identity(value).map(|v| out.identity = Some(v)),
                _ => Err(format!(
                    "is not a streamgate annotation (known: {})",
                    KNOWN.join(", ")
                )),
            };
            if let Err(reason) = parsed {
                errors.push(error(reason));
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

fn parse_injection(value: &str) -> Result<Injection, String> {
    match value {
        "true" => Ok(Injection::Requested),
        "false" => Ok(Injection::OptedOut),
        _ => Err("must be \"true\" (add streamgate) or \"false\" (opt out)".into()),
    }
}

fn parse_sidecar(value: &str) -> Result<SidecarKind, String> {
    match value {
        "native" => Ok(SidecarKind::Native),
        "classic" => Ok(SidecarKind::Classic),
        _ => Err(
            "must be \"native\" (init container with restartPolicy: Always, Kubernetes >= 1.29) \
                  or \"classic\" (a second app container)"
                .into(),
        ),
    }
}

fn parse_identity(value: &str) -> Result<IdentityMode, String> {
    match value {
        "header" => Ok(IdentityMode::Header),
        "forward_auth" => Ok(IdentityMode::ForwardAuth),
        "jwt" => Ok(IdentityMode::Jwt),
        _ => Err("must be one of header, forward_auth, jwt (streamgate's identity.mode)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<PodAnnotations, Vec<AnnotationError>> {
        let map = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        PodAnnotations::parse(&map)
    }

    #[test]
    fn other_annotations_are_not_ours() {
        let parsed = parse(&[("example.com/inject", "yes"), ("streamgate.example/x", "1")]);
        assert_eq!(parsed, Ok(PodAnnotations::default()));
    }

    #[test]
    fn every_setting_is_read() {
        let parsed = parse(&[
            (INJECT, "true"),
            (SIDECAR, "classic"),
            (APP_PORT, "web"),
            (CONFIG, "shop-streamgate"),
            (SECRET, "shop.stream"),
            (IDENTITY, "jwt"),
        ])
        .expect("valid");
        assert_eq!(parsed.injection, Some(Injection::Requested));
        assert_eq!(parsed.sidecar, Some(SidecarKind::Classic));
        assert_eq!(parsed.app_port.as_ref().map(PortName::as_str), Some("web"));
        assert_eq!(
            parsed.config.as_ref().map(ObjectName::as_str),
            Some("shop-streamgate")
        );
        assert_eq!(
            parsed.secret.as_ref().map(ObjectName::as_str),
            Some("shop.stream")
        );
        assert_eq!(parsed.identity, Some(IdentityMode::Jwt));
        assert!(!parsed.injected);
    }

    #[test]
    fn all_problems_are_reported_with_their_annotation() {
        let errors = parse(&[
            (INJECT, "yes"),
            (APP_PORT, "8080"),
            (SECRET, "Not_A_Name"),
            ("streamgate.getstream.io/injcet", "true"),
        ])
        .expect_err("invalid");
        let named: Vec<&str> = errors.iter().map(|e| e.annotation.as_str()).collect();
        assert_eq!(
            named,
            [APP_PORT, "streamgate.getstream.io/injcet", INJECT, SECRET]
        );
        assert!(errors[0].reason.contains("port number"), "{}", errors[0]);
        assert!(errors[1].reason.contains("not a streamgate annotation"));
    }
}

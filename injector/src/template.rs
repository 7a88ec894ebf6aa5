//! The streamgate container the injector adds: a Kubernetes `Container` read
//! from a file (the chart renders it from its values, the tests take the
//! kustomize component's), checked once at start.
//!
//! The file owns what is the same for every pod: image, probes, resources,
//! securityContext, preStop, volume mounts. The injector fills in what each pod
//! decides (see `inject`): name, restartPolicy, `-c`, `APP_ADDRESS`, the Secret
//! of `STREAM_API_KEY`, the proxy port's name, and the volumes' sources.

use std::path::Path;

use k8s_openapi::api::core::v1::Container;
use serde_json::Value;

/// The volumes the container mounts; the injector adds them to the pod.
pub const CONFIG_VOLUME: &str = "streamgate-config";
pub const SECRET_VOLUME: &str = "streamgate-stream";
pub const TMP_VOLUME: &str = "streamgate-tmp";
/// The template's name for the proxy port; it takes the app port's name.
pub const PROXY_PORT: &str = "sg-http";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a Kubernetes Container: {source}")]
    Parse {
        path: String,
        source: serde_yaml_ng::Error,
    },
    #[error("{path}: {key}: unknown or misspelled field (a Container has no such key)")]
    UnknownField { path: String, key: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Debug, Clone)]
pub struct SidecarTemplate {
    pub container: Container,
    /// Where [`CONFIG_VOLUME`] is mounted: the config files are read there.
    pub config_dir: String,
    /// The proxy port's number (the app must not use it).
    pub proxy_port: i32,
}

impl SidecarTemplate {
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_yaml(&text, &shown)
    }

    pub fn from_yaml(text: &str, path: &str) -> Result<Self, TemplateError> {
        let parse = |source| TemplateError::Parse {
            path: path.to_owned(),
            source,
        };
        let raw: Value = serde_yaml_ng::from_str(text).map_err(parse)?;
        let container: Container = serde_yaml_ng::from_str(text).map_err(parse)?;
        // k8s-openapi skips fields it does not know; a typo in the template
        // would vanish from every injected pod. What the typed container does
        // not give back was not understood.
        let typed = serde_json::to_value(&container).unwrap_or(Value::Null);
        if let Some(key) = first_unknown(&raw, &typed, String::new()) {
            return Err(TemplateError::UnknownField {
                path: path.to_owned(),
                key,
            });
        }
        let invalid = |reason: String| TemplateError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let mounts = container.volume_mounts.as_deref().unwrap_or_default();
        let known = [CONFIG_VOLUME, SECRET_VOLUME, TMP_VOLUME];
        if let Some(m) = mounts.iter().find(|m| !known.contains(&m.name.as_str())) {
            return Err(invalid(format!(
                "volumeMounts: {}: the injector adds only the volumes {}",
                m.name,
                known.join(", ")
            )));
        }
        for volume in known {
            if !mounts.iter().any(|m| m.name == volume) {
                return Err(invalid(format!("volumeMounts: {volume} is not mounted")));
            }
        }
        let config_dir = mounts
            .iter()
            .find(|m| m.name == CONFIG_VOLUME)
            .map(|m| m.mount_path.trim_end_matches('/').to_owned())
            .unwrap_or_default();
        let proxy_port = container
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|p| p.name.as_deref() == Some(PROXY_PORT))
            .map(|p| p.container_port)
            .ok_or_else(|| invalid(format!("ports: no port named {PROXY_PORT} (the proxy)")))?;
        Ok(SidecarTemplate {
            container,
            config_dir,
            proxy_port,
        })
    }

    /// Every port number streamgate listens on in the pod.
    pub fn port_numbers(&self) -> impl Iterator<Item = i32> + '_ {
        self.container
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|p| p.container_port)
    }
}

/// The path of the first key of `raw` that `typed` lacks.
fn first_unknown(raw: &Value, typed: &Value, at: String) -> Option<String> {
    match (raw, typed) {
        (Value::Object(raw), Value::Object(typed)) => raw.iter().find_map(|(k, v)| {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            match typed.get(k) {
                Some(t) => first_unknown(v, t, path),
                None if v.is_null() => None,
                None => Some(path),
            }
        }),
        (Value::Array(raw), Value::Array(typed)) => raw
            .iter()
            .zip(typed)
            .enumerate()
            .find_map(|(i, (r, t))| first_unknown(r, t, format!("{at}[{i}]"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "
name: streamgate
image: streamgate:0.1.0
ports: [{name: sg-http, containerPort: 3000}, {name: sg-admin, containerPort: 9901}]
volumeMounts:
  - {name: streamgate-config, mountPath: /etc/streamgate/}
  - {name: streamgate-stream, mountPath: /var/run/secrets/stream}
  - {name: streamgate-tmp, mountPath: /tmp}
";

    #[test]
    fn a_template_is_read() {
        let t = SidecarTemplate::from_yaml(MINIMAL, "t.yaml").expect("valid");
        assert_eq!(t.config_dir, "/etc/streamgate");
        assert_eq!(t.proxy_port, 3000);
        assert_eq!(t.port_numbers().collect::<Vec<_>>(), [3000, 9901]);
    }

    #[test]
    fn a_misspelled_field_is_named() {
        let text = format!("{MINIMAL}readinessProbe: {{httpGet: {{path: /readyz, port: 9901}}, periodSecond: 5}}\n");
        let err = SidecarTemplate::from_yaml(&text, "t.yaml").expect_err("typo");
        assert_eq!(
            err.to_string(),
            "t.yaml: readinessProbe.periodSecond: unknown or misspelled field (a Container has no such key)"
        );
    }

    #[test]
    fn mounts_and_the_proxy_port_are_required() {
        let other = MINIMAL.replace("streamgate-tmp", "scratch");
        let err = SidecarTemplate::from_yaml(&other, "t.yaml").expect_err("unknown volume");
        assert!(err.to_string().contains("volumeMounts: scratch"), "{err}");
        let no_proxy = MINIMAL.replace("sg-http", "web");
        let err = SidecarTemplate::from_yaml(&no_proxy, "t.yaml").expect_err("no proxy port");
        assert!(err.to_string().contains("no port named sg-http"), "{err}");
    }
}

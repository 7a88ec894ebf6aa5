//! The `tracing:` section: where spans go and how many are kept, parsed
//! once into types (an endpoint is a URL without credentials, a ratio is a
//! share).

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

/// The `tracing:` section of the configuration: W3C trace context is always
/// propagated (continued from `trusted_cidrs` only); spans are sent when
/// `otlp` is set.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Tracing")]
pub struct TracingSettings {
    /// Where spans are sent; without it, trace context is still propagated
    /// and logged, and no span is recorded.
    #[serde(default)]
    pub otlp: Option<OtlpSettings>,
    /// The share of new traces recorded, 0.0 to 1.0 (default 1.0); a
    /// continued trace follows its caller's `sampled` flag.
    #[serde(default = "all", deserialize_with = "ratio")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sampling_ratio: f64,
    /// The `service.name` resource attribute of the exported spans (default
    /// `streamgate`).
    #[serde(default = "streamgate")]
    pub service_name: String,
}

impl Default for TracingSettings {
    fn default() -> Self {
        TracingSettings {
            otlp: None,
            sampling_ratio: all(),
            service_name: streamgate(),
        }
    }
}

fn all() -> f64 {
    1.0
}

fn streamgate() -> String {
    "streamgate".into()
}

fn ratio<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(format!(
            "must be between 0.0 and 1.0, got {value}"
        )))
    }
}

/// `tracing.otlp`: the collector's OTLP/HTTP traces endpoint and the
/// exporter's bounds.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Otlp")]
pub struct OtlpSettings {
    /// The full URL spans are POSTed to (protobuf), `http` or `https`,
    /// without credentials, e.g. `http://127.0.0.1:4318/v1/traces`.
    #[schemars(with = "String", regex(pattern = "^https?://"))]
    pub endpoint: OtlpEndpoint,
    /// Each export's limit, connecting included (default `10s`).
    #[serde(default = "export_timeout", with = "humantime_serde")]
    #[schemars(with = "String", extend("examples" = ["5s", "500ms"]))]
    pub timeout: Duration,
    /// Finished spans waiting to be sent, at most (default 2048); more are
    /// dropped.
    #[serde(default = "queue_size", deserialize_with = "at_least_one")]
    #[schemars(range(min = 1))]
    pub max_queue_size: usize,
}

fn at_least_one<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    match usize::deserialize(deserializer)? {
        0 => Err(serde::de::Error::custom("must be at least 1")),
        n => Ok(n),
    }
}

fn export_timeout() -> Duration {
    Duration::from_secs(10)
}

fn queue_size() -> usize {
    2048
}

/// An `http` or `https` URL without credentials (it is logged and shown by
/// `/config_dump`; a collector's credentials belong in a header, which
/// streamgate does not send).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct OtlpEndpoint(url::Url);

impl TryFrom<String> for OtlpEndpoint {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let url = url::Url::parse(&text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{text:?}: the scheme must be http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "{}: a URL with credentials would be logged; the collector must accept \
                 spans without them",
                url.host_str().unwrap_or("the endpoint")
            ));
        }
        Ok(OtlpEndpoint(url))
    }
}

impl OtlpEndpoint {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for OtlpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

//! `stream` and `stream_apps`: the Stream apps token routes sign for. One
//! app is `stream:` (named `default`); several are `stream_apps:`, by name,
//! each with its own key and secret, and each token route picks one.

use std::collections::BTreeMap;

use crate::config::error::{ConfigError, Errors};
use crate::config::raw::RawStream;
use crate::config::{SecretSource, StreamApp, StreamCredentials};

/// The name `stream:` gives its one app: in metrics' `app` label and the
/// per-user rate-limit keys.
pub const DEFAULT_APP: &str = "default";

/// The apps, in name order (`stream:`'s one first); `None` once the
/// problems are in `errors`. `stream` and `stream_apps` are each `None`
/// when absent.
pub(super) fn apps(
    stream: Option<RawStream>,
    stream_apps: Option<BTreeMap<String, RawStream>>,
    errors: &mut Errors,
) -> Option<Vec<StreamApp>> {
    match (stream, stream_apps) {
        (Some(_), Some(_)) => {
            errors.push(ConfigError::new(
                "stream_apps",
                "set either stream (one app) or stream_apps (several, by name), not both",
            ));
            None
        }
        (None, None) => {
            errors.push(ConfigError::new(
                "stream",
                "is required (or stream_apps, for several Stream apps)",
            ));
            None
        }
        (Some(raw), None) => Some(vec![errors.keep(app(DEFAULT_APP, "stream".into(), raw))?]),
        (None, Some(map)) if map.is_empty() => {
            errors.push(ConfigError::new(
                "stream_apps",
                "must name at least one app",
            ));
            None
        }
        (None, Some(map)) => {
            let count = map.len();
            let apps: Vec<StreamApp> = map
                .into_iter()
                .filter_map(|(name, raw)| {
                    let key = format!("stream_apps.{name}");
                    errors.keep(app_name(&key, &name).and_then(|()| app(&name, key, raw)))
                })
                .collect();
            (apps.len() == count).then_some(apps)
        }
    }
}

/// Names become metric labels and Redis keys: kept to a plain alphabet.
fn app_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
        return Err(ConfigError::new(
            key,
            "an app name is 1 to 64 letters, digits, '-' or '_'",
        ));
    }
    Ok(())
}

fn app(name: &str, key: String, raw: RawStream) -> Result<StreamApp, ConfigError> {
    if raw.api_key.trim().is_empty() {
        return Err(ConfigError::new(
            format!("{key}.api_key"),
            "must not be empty",
        ));
    }
    let api_secret = match (raw.api_secret, raw.api_secret_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                key,
                "set either api_secret or api_secret_file, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                format!("{key}.api_secret"),
                format!("is required (or {key}.api_secret_file)"),
            ))
        }
        (Some(secret), None) if secret.is_empty() => {
            return Err(ConfigError::new(
                format!("{key}.api_secret"),
                "must not be empty",
            ))
        }
        (Some(secret), None) => SecretSource::Inline(secret),
        (None, Some(file)) => SecretSource::File(file),
    };
    Ok(StreamApp {
        name: name.to_string(),
        key,
        credentials: StreamCredentials {
            api_key: raw.api_key,
            api_secret,
        },
    })
}

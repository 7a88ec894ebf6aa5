//! Configuration errors: each names the dotted key path it concerns
//! (`upstreams.app.address`) and the reason, because the person reading them
//! is a platform engineer looking at a crash-looping pod, not at our source.

/// A configuration problem, located by the dotted key path it concerns; an
/// empty key means the file as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", if key.is_empty() { String::new() } else { format!("{key}: ") })]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Every problem found in a configuration, so that one `streamgate -t` run
/// lists them all instead of one per edit-and-retry cycle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

/// The errors recorded so far while checking a file.
#[derive(Debug, Default)]
pub(super) struct Errors(Vec<ConfigError>);

impl Errors {
    /// Records `error` once: a block several routes inherit (the top-level
    /// `identity` of both default token routes) is checked for each, and
    /// the same line twice only reads as two problems.
    pub fn push(&mut self, error: ConfigError) {
        if !self.0.contains(&error) {
            self.0.push(error);
        }
    }

    /// Keeps the value of a check that passed, records the error of one that failed.
    pub fn keep<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_inner(self) -> Vec<ConfigError> {
        self.0
    }
}

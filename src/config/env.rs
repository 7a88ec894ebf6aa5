//! `${VAR}` and `${VAR:-default}` in configuration values.
//!
//! Expansion happens inside string values after the YAML is parsed, never in
//! the raw text: a secret containing `"`, `#` or `: ` cannot change the
//! structure of the document it is substituted into. Only strings are
//! expanded, so numbers and booleans cannot come from the environment.

use serde_yaml_ng::Value;

use super::error::{ConfigError, Errors};

/// Expands `${…}` in every string value of `value`; `key` is the path so far,
/// for error messages.
pub(super) fn expand_env(
    value: &mut Value,
    key: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Errors,
) {
    match value {
        Value::String(s) if s.contains("${") => match expand_string(s, env) {
            Ok(expanded) => *s = expanded,
            Err(reason) => errors.push(ConfigError::new(key.clone(), reason)),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = key.len();
                key.push_str(&format!("[{i}]"));
                expand_env(item, key, env, errors);
                key.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (k, item) in map.iter_mut() {
                let len = key.len();
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k.as_str().unwrap_or("?"));
                expand_env(item, key, env, errors);
                key.truncate(len);
            }
        }
        _ => {}
    }
}

/// Shell-style expansion of `${VAR}` and `${VAR:-default}`; like the shell, the
/// default also applies when the variable is set but empty.
fn expand_string(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated '${{' in {input:?}"))?;
        let expression = &after[..end];
        let (name, default) = match expression.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expression, None),
        };
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid_name {
            return Err(format!(
                "'${{{expression}}}' is not a valid environment variable reference"
            ));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                "environment variable {name} is not set (use ${{{name}:-default}} for a fallback)"
            ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cr3t \"#: value".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn env_expansion_follows_shell_rules() {
        assert_eq!(
            expand_string("a${SECRET:-x}b", &env).unwrap(),
            "as3cr3t \"#: valueb"
        );
        assert_eq!(expand_string("${MISSING:-dev}", &env).unwrap(), "dev");
        assert_eq!(expand_string("${EMPTY:-dev}", &env).unwrap(), "dev");
        assert_eq!(expand_string("plain", &env).unwrap(), "plain");
        assert!(expand_string("${MISSING}", &env)
            .unwrap_err()
            .contains("MISSING is not set"));
        assert!(expand_string("${OPEN", &env)
            .unwrap_err()
            .contains("unterminated"));
        assert!(expand_string("${1BAD}", &env)
            .unwrap_err()
            .contains("not a valid"));
    }
}

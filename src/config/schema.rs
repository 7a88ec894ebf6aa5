//! The JSON Schema of `streamgate.yaml`: `streamgate schema` prints it, and
//! `conf/streamgate.schema.json` is its checked-in copy (a test keeps the two
//! equal), for editors (`# yaml-language-server: $schema=…`) and CI.
//!
//! Derived with `schemars` from the serde shapes of [`super::raw`], so a key
//! added to a shape is in the schema without a second list to keep; the doc
//! comments of the shapes are its descriptions.
//!
//! The schema never refuses a file streamgate accepts: what it cannot say
//! (one of two keys, a route naming a defined upstream, an address that
//! resolves) is left to `streamgate -t`. In particular `${VAR}` expansion
//! ([`super::env`]) happens inside string values before they are typed, so a
//! string that names a closed set (`mode: jwt`, `protocol: h2c`) or follows a
//! pattern (a call role) may also be `"${IDENTITY_MODE:-jwt}"`: such a string
//! also admits any string holding `${`. Numbers, booleans, lists and maps are never expanded, so a port
//! list or a number given as `"${…}"` is refused by the schema as by the
//! loader.

use schemars::generate::SchemaSettings;
use schemars::transform::{transform_subschemas, Transform};
use schemars::Schema;
use serde_json::{json, Map, Value};

use super::raw::RawConfig;

/// The schema document, draft 2020-12, as `streamgate schema` prints it.
pub fn schema() -> Schema {
    SchemaSettings::draft2020_12()
        .with_transform(AcceptSubstitutions)
        .into_generator()
        .into_root_schema_for::<RawConfig>()
}

/// What a string holding a `${…}` reference must match: the loader expands
/// it (or says why it cannot) before the value is typed.
const SUBSTITUTION_PATTERN: &str = r"\$\{";

/// Wraps each narrowed string (an `enum` or `const` of strings, a `oneOf` of
/// them, a `pattern`) in `anyOf: [it, string holding ${]`, keeping its
/// description outside; see the module doc.
#[derive(Clone)]
struct AcceptSubstitutions;

impl Transform for AcceptSubstitutions {
    fn transform(&mut self, schema: &mut Schema) {
        if !is_narrowed_string(schema.as_value()) {
            // Not a set: its subschemas may hold one.
            transform_subschemas(self, schema);
            return;
        }
        let Some(set) = schema.as_object_mut() else {
            return;
        };
        let mut outer = Map::new();
        for key in ["title", "description", "default", "examples"] {
            if let Some(value) = set.remove(key) {
                outer.insert(key.to_string(), value);
            }
        }
        let substitution = json!({ "type": "string", "pattern": SUBSTITUTION_PATTERN });
        outer.insert(
            "anyOf".to_string(),
            json!([Value::Object(std::mem::take(set)), substitution]),
        );
        *set = outer;
    }
}

/// An `enum` or `const` of strings only, a `oneOf` of such sets (an enum
/// whose variants have doc comments), or a string `pattern`.
fn is_narrowed_string(schema: &Value) -> bool {
    let all_strings = |values: &Value| {
        values
            .as_array()
            .is_some_and(|values| !values.is_empty() && values.iter().all(Value::is_string))
    };
    if let Some(values) = schema.get("enum") {
        return all_strings(values);
    }
    if let Some(value) = schema.get("const") {
        return value.is_string();
    }
    if schema.get("pattern").is_some() {
        return true;
    }
    schema
        .get("oneOf")
        .and_then(Value::as_array)
        .is_some_and(|alternatives| {
            !alternatives.is_empty() && alternatives.iter().all(is_narrowed_string)
        })
}

#[cfg(test)]
mod tests;

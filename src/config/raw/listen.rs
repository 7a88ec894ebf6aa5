//! The `listen:` entries of the file: a string, or a map with TLS settings.

use std::fmt;
use std::path::PathBuf;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// One `listen` entry: `"IP:port"` (plaintext), or a map with the address
/// and what the listener speaks (`tls`).
pub(in crate::config) enum RawListen {
    Plain(String),
    Listener(RawListener),
}

// By hand rather than `#[serde(untagged)]`: an untagged enum answers every
// mistake with "did not match any variant", where a map must report its
// unknown or missing key by name, like every other section.
impl<'de> Deserialize<'de> for RawListen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> Visitor<'de> for Entry {
            type Value = RawListen;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an \"IP:port\" string or a map { address, tls }")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<RawListen, E> {
                Ok(RawListen::Plain(text.to_string()))
            }

            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<RawListen, M::Error> {
                RawListener::deserialize(MapAccessDeserializer::new(map)).map(RawListen::Listener)
            }
        }
        deserializer.deserialize_any(Entry)
    }
}

// By hand, as its `Deserialize` is: either form.
impl JsonSchema for RawListen {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Listen".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A listener: \"IP:port\" (plaintext), or a map { address, tls }.",
            "anyOf": [
                { "type": "string", "examples": ["0.0.0.0:3000"] },
                generator.subschema_for::<RawListener>(),
            ],
        })
    }
}

/// A listener as a map: a plaintext one without `tls`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Listener")]
pub(in crate::config) struct RawListener {
    /// `IP:port` to listen on.
    pub address: String,
    /// Serve TLS on this address.
    pub tls: Option<RawListenerTls>,
}

/// A TLS listener's files, read at start and followed when they change;
/// relative paths are relative to the configuration file's directory.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ListenerTls")]
pub(in crate::config) struct RawListenerTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key_file: PathBuf,
    /// PEM CA certificates for mutual TLS: a client must present a
    /// certificate signed by one of them.
    pub client_ca_file: Option<PathBuf>,
}

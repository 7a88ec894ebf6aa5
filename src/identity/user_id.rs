//! From the user id a mode established to a Stream user id: `user_id_map`
//! (for ids Stream refuses, such as `auth0|123` or `a.b@example.com`), then
//! `user_id_template`, then Stream's rule ([`crate::token::is_user_id`]).

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use super::{Identity, IdentityError, Reason};
use crate::token::{is_user_id, is_user_id_char, USER_ID_MAX_LEN, USER_ID_RULE};

/// The longest `replace_invalid` replacement, in characters.
pub const MAX_REPLACEMENT_LEN: usize = 8;

/// Length of a `hash: sha256` id: 32 bytes in lowercase hex.
const SHA256_HEX_LEN: usize = 64;

/// `identity.user_id_map`: how the provider's user id is rewritten before the
/// template is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UserIdMap {
    /// No `user_id_map`: the id as the provider gave it.
    #[default]
    Verbatim,
    /// `{ replace_invalid: "_" }`: each character Stream refuses (anything but
    /// `A-Z a-z 0-9 @ _ -`, counted in Unicode characters, not bytes) becomes
    /// the replacement. Not one-to-one: `a.b@x.com` and `a_b@x.com` become the
    /// same Stream user, so it is safe only when the identity provider cannot
    /// issue two ids that differ only in replaced characters; otherwise use
    /// [`UserIdMap::Sha256`].
    ReplaceInvalid(String),
    /// `{ hash: sha256 }`: the lowercase hex SHA-256 of the id's UTF-8 bytes,
    /// 64 characters, for opaque or overlong ids. One-way but not secret:
    /// whoever sees the Stream user id can check a guessed provider id.
    Sha256,
}

impl UserIdMap {
    /// `{ replace_invalid: replacement }`. The replacement stands in for
    /// characters Stream refuses, so it must be 1 to [`MAX_REPLACEMENT_LEN`]
    /// characters Stream accepts; the error says so.
    pub fn replace_invalid(replacement: &str) -> Result<UserIdMap, String> {
        let length = replacement.chars().count();
        if (1..=MAX_REPLACEMENT_LEN).contains(&length) && replacement.chars().all(is_user_id_char) {
            Ok(UserIdMap::ReplaceInvalid(replacement.to_string()))
        } else {
            Err(format!(
                "{replacement:?} must be 1 to {MAX_REPLACEMENT_LEN} characters from A-Z a-z 0-9 \
                 @ _ - (it stands in for each character Stream refuses, so Stream must accept it)"
            ))
        }
    }

    /// Whether two different provider ids can become one Stream user (see
    /// [`UserIdMap::ReplaceInvalid`]).
    pub fn merges_ids(&self) -> bool {
        matches!(self, UserIdMap::ReplaceInvalid(_))
    }

    fn apply<'a>(&self, id: &'a str) -> Cow<'a, str> {
        match self {
            UserIdMap::Verbatim => Cow::Borrowed(id),
            UserIdMap::ReplaceInvalid(replacement) => {
                let mut mapped = String::with_capacity(id.len());
                for c in id.chars() {
                    if is_user_id_char(c) {
                        mapped.push(c);
                    } else {
                        mapped.push_str(replacement);
                    }
                }
                Cow::Owned(mapped)
            }
            UserIdMap::Sha256 => Cow::Owned(sha256_hex(id)),
        }
    }
}

fn sha256_hex(id: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(SHA256_HEX_LEN);
    for byte in Sha256::digest(id.as_bytes()) {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

/// `"tenant-{id}"`: text around the (mapped) id, for teams that namespace
/// their Stream users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserIdTemplate {
    prefix: String,
    suffix: String,
}

impl UserIdTemplate {
    /// Parses a template with exactly one `{id}` and, around it, only
    /// characters Stream allows in a user id (any other would refuse every
    /// user, so it is an error at load).
    pub fn parse(template: &str) -> Result<Self, String> {
        let Some((prefix, suffix)) = template
            .split_once("{id}")
            .filter(|(_, suffix)| !suffix.contains("{id}"))
        else {
            return Err(format!(
                "{template:?} must contain {{id}} exactly once, e.g. \"tenant-{{id}}\""
            ));
        };
        if let Some(c) = prefix
            .chars()
            .chain(suffix.chars())
            .find(|c| !is_user_id_char(*c))
        {
            return Err(format!(
                "{template:?} has {c:?} around {{id}}, which Stream does not allow in a user id \
                 (A-Z a-z 0-9 @ _ -)"
            ));
        }
        Ok(UserIdTemplate {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    /// Characters the template adds around the id.
    fn added(&self) -> usize {
        self.prefix.len() + self.suffix.len()
    }

    fn apply(&self, id: &str) -> String {
        format!("{}{id}{}", self.prefix, self.suffix)
    }
}

/// The whole way from a provider's user id to a Stream user id:
/// `user_id_map`, then `user_id_template`, then Stream's rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserIdMapping {
    map: UserIdMap,
    template: UserIdTemplate,
}

impl UserIdMapping {
    /// What the mapping does, as the configuration says it (`/config_dump`).
    pub fn describe(&self) -> serde_json::Value {
        let map = match &self.map {
            UserIdMap::Verbatim => serde_json::Value::Null,
            UserIdMap::ReplaceInvalid(with) => serde_json::json!({ "replace_invalid": with }),
            UserIdMap::Sha256 => serde_json::json!({ "hash": "sha256" }),
        };
        let template = format!("{}{{id}}{}", self.template.prefix, self.template.suffix);
        serde_json::json!({ "user_id_map": map, "user_id_template": template })
    }

    /// Refuses a combination that could never give a valid id: a template that
    /// leaves no room for an id, or one too long for a 64-character hash.
    pub fn new(map: UserIdMap, template: UserIdTemplate) -> Result<Self, String> {
        let shortest_id = if map == UserIdMap::Sha256 {
            SHA256_HEX_LEN
        } else {
            1
        };
        if template.added() + shortest_id > USER_ID_MAX_LEN {
            return Err(format!(
                "adds {} characters around {{id}}, so with {} the Stream user id would be longer \
                 than the {USER_ID_MAX_LEN} Stream allows",
                template.added(),
                if shortest_id == 1 {
                    "even a 1-character id".to_string()
                } else {
                    format!("user_id_map's {shortest_id}-character hash")
                }
            ));
        }
        Ok(UserIdMapping { map, template })
    }

    pub fn map(&self) -> &UserIdMap {
        &self.map
    }

    /// The identity for the provider's user id `id`, or 403 `invalid_user_id`
    /// with what would fix it.
    pub(super) fn apply(&self, id: &str, roles: Vec<String>) -> Result<Identity, IdentityError> {
        if id.is_empty() {
            return Err(IdentityError::new(
                Reason::InvalidUserId,
                "the authenticated user id is empty",
            ));
        }
        let mapped = self.map.apply(id);
        let user_id = self.template.apply(&mapped);
        if is_user_id(&user_id) {
            return Ok(Identity {
                user_id,
                roles,
                expires_at: None,
            });
        }
        Err(IdentityError::new(
            Reason::InvalidUserId,
            self.why_refused(&mapped),
        ))
    }

    /// Why `mapped` (the id after `user_id_map`) did not make a valid Stream
    /// user id, and the setting that would fix it.
    fn why_refused(&self, mapped: &str) -> String {
        let length = mapped.chars().count();
        let added = self.template.added();
        let fits = length + added <= USER_ID_MAX_LEN;
        if let Some(c) = mapped.chars().find(|c| !is_user_id_char(*c)) {
            // Only an unmapped id can get here: both maps leave allowed
            // characters only, and the template's were checked at load.
            let fix = if fits {
                "set identity.user_id_map: {replace_invalid: \"_\"} or {hash: sha256}"
            } else {
                "set identity.user_id_map: {hash: sha256} (the id is also too long)"
            };
            return format!(
                "the authenticated user id contains {c:?}, which Stream does not allow in a \
                 user id (a user id {USER_ID_RULE}): {fix}"
            );
        }
        let after = match self.map {
            UserIdMap::Verbatim => "",
            UserIdMap::ReplaceInvalid(_) => " after replace_invalid",
            UserIdMap::Sha256 => " after hashing",
        };
        let hash_fix = if self.map == UserIdMap::Sha256 {
            ""
        } else {
            ", or set identity.user_id_map: {hash: sha256}"
        };
        if length > USER_ID_MAX_LEN {
            format!(
                "the authenticated user id is {length} characters long{after}, and Stream \
                 allows at most {USER_ID_MAX_LEN}: set identity.user_id_map: {{hash: sha256}} \
                 (64 characters)"
            )
        } else {
            format!(
                "identity.user_id_template adds {added} characters to the {length}-character \
                 user id{after}, over the {USER_ID_MAX_LEN} Stream allows: shorten the \
                 template{hash_fix}"
            )
        }
    }
}

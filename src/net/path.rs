//! Request paths: one request, one meaning.
//!
//! A route that refuses `/internal/` protects nothing if `//internal/x`,
//! `/%69nternal/x` or `/public/../internal/x` reach an app that reads each of
//! them as `/internal/x`. So the path is put in one canonical spelling before
//! routing, and the app receives that same spelling: what was matched is what
//! is served. The canonical spelling is RFC 3986's (§6.2.2: percent-encoded
//! unreserved characters decoded, the hex of every other escape in upper case,
//! dot segments removed as §5.2.4 does, `..` above the root dropped), plus
//! merged slashes (as nginx and Envoy's `merge_slashes`) and bytes RFC 3986
//! does not allow in a path percent-encoded, so that a raw `é` and `%C3%A9`
//! are one path too.
//!
//! Some spellings cannot be made to mean one thing: an app may read `%2F` and
//! `%5C` as separators or as characters, and a backslash as a separator
//! (Windows, IIS, WHATWG URLs) or as a character; a NUL ends a path in C.
//! What they get is the operator's choice, as Envoy's
//! `path_with_escaped_slashes_action`, refused by default; a NUL always is.
//!
//! Path parameters (`;name=value` at the end of a segment, RFC 3986 §3.3)
//! are a third such spelling: Java servlet containers (Tomcat, Jetty, and
//! Spring on them) drop them before they read the path, so that
//! `/internal;x/secret` is `/internal/secret` and `/public/..;/internal` is
//! `/internal` to them, while other apps read `;x` as part of the name. The
//! app still receives the parameters (a `;jsessionid=` session is one), but
//! routing matches the path without them ([`PathRules::route_key`]), so a
//! route for `/internal/` takes both spellings; and a dot segment with
//! parameters (`..;`, `.;x`), which would walk up in one app and name a file
//! in another, is refused.
//!
//! Hand-written, as Envoy's and nginx's are: this is the core of what a
//! request means, and a decoder that decodes one escape too many or too few is
//! the bypass.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a path with `%2F`, `%5C` or a raw `\\` gets (a NUL, `%00`, is always
/// refused): Envoy's `path_with_escaped_slashes_action`, less its redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EscapedSlashesAction {
    /// Refused with 400: the safe default (one request, one meaning).
    RejectRequest,
    /// Routed and forwarded with `%2F`, `%5C` and `\` as is.
    KeepUnchanged,
    /// `%2F`, `%5C` and `\` are all `/` for routing and for the app.
    UnescapeAndForward,
}

/// How a request path is read before routing: the `http:` section's
/// `normalize_path`, `merge_slashes` and `path_with_escaped_slashes_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRules {
    normalize: bool,
    merge_slashes: bool,
    escaped_slashes: EscapedSlashesAction,
}

/// Why a path is refused; its text is the 400's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    #[error("Bad request: the path contains an encoded slash (%2F)")]
    EncodedSlash,
    #[error("Bad request: the path contains an encoded backslash (%5C)")]
    EncodedBackslash,
    #[error("Bad request: the path contains a backslash")]
    Backslash,
    #[error("Bad request: the path contains a NUL (%00)")]
    Nul,
    #[error("Bad request: the path contains a '%' that is not followed by two hex digits")]
    InvalidEscape,
    #[error("Bad request: the path contains a dot segment with parameters (such as '..;')")]
    DotSegmentWithParameters,
}

/// The three spellings an app may read as a separator.
#[derive(Clone, Copy)]
enum SlashLike {
    EncodedSlash,
    EncodedBackslash,
    Backslash,
}

impl PathRules {
    pub fn new(
        normalize: bool,
        merge_slashes: bool,
        escaped_slashes: EscapedSlashesAction,
    ) -> Self {
        PathRules {
            normalize,
            merge_slashes,
            escaped_slashes,
        }
    }

    /// `raw` (a request's path, without its query) as routing reads it and
    /// the app receives it, borrowed when it already is. A target that is not
    /// a path (`*` of `OPTIONS *`) is returned as is.
    pub fn normalize<'a>(&self, raw: &'a str) -> Result<Cow<'a, str>, PathRefusal> {
        let normalized = self.normalize_spelling(raw)?;
        if self.normalize && has_dot_segment_with_parameters(&normalized) {
            return Err(PathRefusal::DotSegmentWithParameters);
        }
        Ok(normalized)
    }

    /// A normalized path (what [`Self::normalize`] gave) as routes match it:
    /// without each segment's parameters (`;…`), its slashes merged again
    /// where that left an empty segment. Borrowed when it has none, as nearly
    /// every path; `path` itself when paths are not normalized.
    pub fn route_key<'a>(&self, path: &'a str) -> Cow<'a, str> {
        if !self.normalize || !path.starts_with('/') || !path.contains(';') {
            return Cow::Borrowed(path);
        }
        let segments: Vec<&str> = path
            .split('/')
            .map(|segment| segment.split(';').next().unwrap_or_default())
            .collect();
        let last = segments.len() - 1;
        let mut key = String::with_capacity(path.len());
        for (i, segment) in segments.iter().enumerate() {
            if i == 0 {
                continue;
            }
            let merged = self.merge_slashes && segment.is_empty() && i != last;
            if !merged {
                key.push('/');
                key.push_str(segment);
            }
        }
        Cow::Owned(key)
    }

    /// [`Self::normalize`] less the check of dot segments with parameters.
    fn normalize_spelling<'a>(&self, raw: &'a str) -> Result<Cow<'a, str>, PathRefusal> {
        if !raw.starts_with('/') || self.is_normal(raw.as_bytes()) {
            return Ok(Cow::Borrowed(raw));
        }
        let bytes = raw.as_bytes();
        let mut path = Builder::new(self, bytes.len());
        let mut i = 1;
        while let Some(&byte) = bytes.get(i) {
            i += 1;
            match byte {
                b'/' => path.end_segment(),
                b'\\' => self.slash_like(SlashLike::Backslash, b"\\", &mut path)?,
                b'%' => match bytes.get(i..i + 2).and_then(decode_hex) {
                    Some(decoded) => {
                        self.escape(decoded, &bytes[i - 1..i + 2], &mut path)?;
                        i += 2;
                    }
                    None if self.normalize => return Err(PathRefusal::InvalidEscape),
                    // Not normalizing: a stray '%' is passed on as received.
                    None => path.push(b'%'),
                },
                _ if self.normalize && !is_pchar(byte) => path.push_escape(byte),
                _ => path.push(byte),
            }
        }
        let normalized = path.finish();
        if normalized == raw {
            return Ok(Cow::Borrowed(raw));
        }
        Ok(Cow::Owned(normalized))
    }

    /// Whether `raw` is already in the form [`Self::normalize`] gives, checked
    /// without allocating: the spelling nearly every request uses.
    fn is_normal(&self, raw: &[u8]) -> bool {
        raw.iter().enumerate().all(|(i, &byte)| match byte {
            b'/' => {
                let rest = &raw[i + 1..];
                let merges = self.merge_slashes && rest.first() == Some(&b'/');
                let dots = self.normalize && starts_with_dot_segment(rest);
                !merges && !dots
            }
            b'%' | b'\\' => false,
            _ => !self.normalize || is_pchar(byte),
        })
    }

    /// A valid escape, `original` as received (`%2f`), decoding to `decoded`.
    fn escape(&self, decoded: u8, original: &[u8], path: &mut Builder) -> Result<(), PathRefusal> {
        match decoded {
            0 => return Err(PathRefusal::Nul),
            b'/' => return self.slash_like(SlashLike::EncodedSlash, original, path),
            b'\\' => return self.slash_like(SlashLike::EncodedBackslash, original, path),
            _ if !self.normalize => path.extend(original),
            _ if is_unreserved(decoded) => path.push(decoded),
            _ => path.push_escape(decoded),
        }
        Ok(())
    }

    /// `%2F`, `%5C` or `\` (`original` as received), as the operator chose.
    fn slash_like(
        &self,
        kind: SlashLike,
        original: &[u8],
        path: &mut Builder,
    ) -> Result<(), PathRefusal> {
        match (self.escaped_slashes, kind) {
            (EscapedSlashesAction::RejectRequest, SlashLike::EncodedSlash) => {
                return Err(PathRefusal::EncodedSlash)
            }
            (EscapedSlashesAction::RejectRequest, SlashLike::EncodedBackslash) => {
                return Err(PathRefusal::EncodedBackslash)
            }
            (EscapedSlashesAction::RejectRequest, SlashLike::Backslash) => {
                return Err(PathRefusal::Backslash)
            }
            (EscapedSlashesAction::UnescapeAndForward, _) => path.end_segment(),
            (EscapedSlashesAction::KeepUnchanged, SlashLike::EncodedSlash) if self.normalize => {
                path.push_escape(b'/');
            }
            (EscapedSlashesAction::KeepUnchanged, SlashLike::EncodedBackslash)
                if self.normalize =>
            {
                path.push_escape(b'\\');
            }
            (EscapedSlashesAction::KeepUnchanged, _) => path.extend(original),
        }
        Ok(())
    }
}

/// The normalized path, written segment by segment: each segment is written
/// after its `/` and then kept, dropped (`.`, an empty one being merged) or
/// taken back with the one before it (`..`), as RFC 3986 §5.2.4's output
/// buffer.
struct Builder {
    out: Vec<u8>,
    /// Where each kept segment starts in `out`, for `..` to take back.
    kept: Vec<usize>,
    /// Where the segment being written starts.
    current: usize,
    dot_segments: bool,
    merge_slashes: bool,
}

impl Builder {
    fn new(rules: &PathRules, capacity: usize) -> Builder {
        let mut out = Vec::with_capacity(capacity + 8);
        out.push(b'/');
        Builder {
            out,
            kept: Vec::new(),
            current: 1,
            dot_segments: rules.normalize,
            merge_slashes: rules.merge_slashes,
        }
    }

    fn push(&mut self, byte: u8) {
        self.out.push(byte);
    }

    fn extend(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn push_escape(&mut self, byte: u8) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        self.out.extend_from_slice(&[
            b'%',
            HEX[usize::from(byte >> 4)],
            HEX[usize::from(byte & 0xF)],
        ]);
    }

    /// Removes the segment being written if it is a dot segment (taking back
    /// the one before it for `..`); true if it was one.
    fn resolve_dots(&mut self) -> bool {
        if !self.dot_segments {
            return false;
        }
        match &self.out[self.current..] {
            b"." => self.out.truncate(self.current),
            b".." => {
                // Above the root, `..` is dropped (RFC 3986 §5.2.4).
                self.current = self.kept.pop().unwrap_or(1);
                self.out.truncate(self.current);
            }
            _ => return false,
        }
        true
    }

    /// A separator: the segment being written is complete.
    fn end_segment(&mut self) {
        if self.resolve_dots() || (self.merge_slashes && self.out.len() == self.current) {
            return;
        }
        self.kept.push(self.current);
        self.out.push(b'/');
        self.current = self.out.len();
    }

    /// The path; a dot segment at the end leaves its `/` (`/a/.` is `/a/`).
    fn finish(mut self) -> String {
        self.resolve_dots();
        // Bytes are only added or removed at ASCII positions, so a UTF-8
        // input stays UTF-8; the lossy branch is never taken.
        String::from_utf8(self.out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

fn decode_hex(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    match pair {
        [high, low] => Some(digit(*high)? << 4 | digit(*low)?),
        _ => None,
    }
}

/// RFC 3986 §2.3: `ALPHA DIGIT - . _ ~`, whose escapes mean the same as the
/// characters.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §3.3 `pchar` less `pct-encoded`: what a path segment may hold
/// unencoded.
fn is_pchar(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// Whether a segment of `path` is `.` or `..` followed by parameters: with
/// the parameters dropped, as a servlet container drops them, it is a dot
/// segment.
fn has_dot_segment_with_parameters(path: &str) -> bool {
    path.contains(';')
        && path
            .split('/')
            .any(|segment| segment.starts_with(".;") || segment.starts_with("..;"))
}

/// Whether a segment that starts `rest` is `.` or `..`.
fn starts_with_dot_segment(rest: &[u8]) -> bool {
    let segment = rest.split(|&b| b == b'/').next().unwrap_or_default();
    segment == b"." || segment == b".."
}

#[cfg(test)]
mod tests;

//! Path normalization against an independent reading of what a path means,
//! over generated spellings: segments the route table cares about, dot
//! segments, empty ones, every character raw or percent-encoded in either
//! case, and slashes spelled `/`, `%2F`, `%2f`, `%5C`, `%5c` or `\`.
//!
//! The oracle is what an app that decodes the path would serve: every escape
//! decoded once, a backslash a separator (Windows, IIS, WHATWG URLs), empty
//! segments ignored, dot segments resolved. With the default rules (and with
//! `unescape_and_forward`), no spelling the oracle reads as under `/internal/`
//! may route anywhere but to the route blocking `/internal/`.

use std::borrow::Cow;

use http::Method;
use proptest::prelude::*;
use streamgate::net::path::{EscapedSlashesAction, PathRules};
use streamgate::routing::{PathMatch, Route, RouteTable};

fn table() -> RouteTable<&'static str> {
    let route = |method, path, action| Route {
        method,
        host: None,
        path,
        action,
    };
    RouteTable::new(vec![
        route(None, PathMatch::Prefix("/internal/".into()), "block"),
        route(
            Some(Method::POST),
            PathMatch::Exact("/api/tokens/user".into()),
            "mint",
        ),
        route(None, PathMatch::Prefix("/".into()), "app"),
    ])
}

/// One character: mostly raw (so that whole words are often spelled
/// plainly), else percent-encoded with each hex digit in either case.
fn spelled(byte: u8) -> impl Strategy<Value = String> {
    let raw = char::from(byte).to_string();
    let encoded = (any::<bool>(), any::<bool>()).prop_map(move |(high, low)| {
        let case = |digit: u8, lower: bool| {
            let digit = char::from_digit(u32::from(digit), 16)
                .unwrap_or('0')
                .to_ascii_uppercase();
            if lower {
                digit.to_ascii_lowercase()
            } else {
                digit
            }
        };
        format!("%{}{}", case(byte >> 4, high), case(byte & 0xF, low))
    });
    prop_oneof![4 => Just(raw), 1 => encoded]
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("internal"),
        2 => Just("secret"),
        1 => Just("public"),
        2 => Just("."),
        2 => Just(".."),
        2 => Just(""),
        1 => Just("a;b"),
        1 => Just("~u-1_"),
        1 => Just("%"),
        1 => Just("x{y"),
    ]
    .prop_flat_map(|word| {
        word.bytes()
            .map(spelled)
            .collect::<Vec<_>>()
            .prop_map(|parts| parts.concat())
    })
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        12 => Just("/"),
        1 => Just("%2F"),
        1 => Just("%2f"),
        1 => Just("%5C"),
        1 => Just("%5c"),
        1 => Just("\\"),
    ]
}

/// `/` then segments and separators, a separator possibly last.
fn path() -> impl Strategy<Value = String> {
    (
        segment(),
        prop::collection::vec((separator(), segment()), 0..7),
    )
        .prop_map(|(first, rest)| {
            let mut path = format!("/{first}");
            for (separator, segment) in rest {
                path.push_str(separator);
                path.push_str(&segment);
            }
            path
        })
}

/// What an app that decodes the path serves: a separate, simple reading.
fn meaning(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let pair = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], pair) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    let text = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing = false;
    for segment in text.split('/').skip(1) {
        trailing = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            name => kept.push(name),
        }
    }
    let mut meaning = format!("/{}", kept.join("/"));
    if trailing && !kept.is_empty() {
        meaning.push('/');
    }
    meaning
}

fn rules(merge_slashes: bool, action: EscapedSlashesAction) -> PathRules {
    PathRules::new(true, merge_slashes, action)
}

const ACTIONS: [EscapedSlashesAction; 3] = [
    EscapedSlashesAction::RejectRequest,
    EscapedSlashesAction::KeepUnchanged,
    EscapedSlashesAction::UnescapeAndForward,
];

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// (c): the canonical form has nothing left to normalize.
fn assert_canonical(normalized: &str, merge_slashes: bool) {
    assert!(normalized.starts_with('/'), "{normalized}");
    if merge_slashes {
        assert!(!normalized.contains("//"), "{normalized}");
    }
    for segment in normalized.split('/') {
        assert!(segment != "." && segment != "..", "{normalized}");
    }
    let bytes = normalized.as_bytes();
    for (i, _) in normalized.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3).expect("a complete escape");
        assert!(
            hex.iter()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)),
            "{normalized}: upper-case hex"
        );
        let value = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .expect("hex");
        assert!(
            !is_unreserved(value),
            "{normalized}: {value:#x} left encoded"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// (a) and (c), under every combination of the rules.
    #[test]
    fn normalization_is_idempotent_and_canonical(raw in path()) {
        for merge_slashes in [true, false] {
            for action in ACTIONS {
                let rules = rules(merge_slashes, action);
                let Ok(normalized) = rules.normalize(&raw) else { continue };
                let again = rules.normalize(&normalized);
                prop_assert!(
                    matches!(again, Ok(Cow::Borrowed(n)) if n == normalized),
                    "{raw:?} → {normalized:?} → {again:?} ({rules:?})"
                );
                assert_canonical(&normalized, merge_slashes);
            }
        }
    }

    /// (b): the app serves what routing matched. A refused spelling reaches
    /// nobody; an accepted one means what it meant, and routes as its meaning.
    #[test]
    fn no_spelling_walks_around_a_blocked_prefix(raw in path()) {
        let table = table();
        let route = |path: &str| table.find(&Method::GET, None, path).map(|r| r.action);
        let meant = meaning(&raw);
        for action in [EscapedSlashesAction::RejectRequest, EscapedSlashesAction::UnescapeAndForward] {
            let Ok(normalized) = rules(true, action).normalize(&raw) else { continue };
            prop_assert_eq!(meaning(&normalized), meant.clone(), "{:?} → {:?}", raw, normalized);
            prop_assert_eq!(route(&normalized), route(&meant), "{:?} → {:?}", raw, normalized);
            if meant.starts_with("/internal/") {
                prop_assert_eq!(route(&normalized), Some("block"), "{:?} → {:?}", raw, normalized);
            }
        }
    }
}

#[test]
fn the_generator_reaches_the_blocked_prefix_through_odd_spellings() {
    // The properties above are only as good as the spellings they see: make
    // sure blocked meanings are generated, and through non-canonical spellings.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = path();
    let rules = rules(true, EscapedSlashesAction::UnescapeAndForward);
    let odd_and_blocked = (0..2000)
        .map(|_| strategy.new_tree(&mut runner).expect("a path").current())
        .filter(|raw| meaning(raw).starts_with("/internal/") && !raw.starts_with("/internal/"))
        .filter(|raw| rules.normalize(raw).is_ok())
        .count();
    assert!(
        odd_and_blocked > 50,
        "only {odd_and_blocked} odd spellings of /internal/"
    );
}

use super::*;
use EscapedSlashesAction::{KeepUnchanged, RejectRequest, UnescapeAndForward};

const DEFAULT: PathRules = PathRules {
    normalize: true,
    merge_slashes: true,
    escaped_slashes: RejectRequest,
};

fn with(escaped_slashes: EscapedSlashesAction) -> PathRules {
    PathRules {
        escaped_slashes,
        ..DEFAULT
    }
}

fn check(rules: PathRules, cases: &[(&str, Result<&str, PathRefusal>)]) {
    for (raw, expected) in cases {
        let got = rules.normalize(raw);
        assert_eq!(
            got.as_deref().map_err(|e| *e),
            *expected,
            "{raw:?} with {rules:?}"
        );
    }
}

#[test]
fn the_default_rules_give_one_spelling_per_path() {
    check(
        DEFAULT,
        &[
            ("/", Ok("/")),
            ("/a/b", Ok("/a/b")),
            ("/a/b/", Ok("/a/b/")),
            // Empty segments merged.
            ("//internal/secret", Ok("/internal/secret")),
            ("/a///b//", Ok("/a/b/")),
            ("//", Ok("/")),
            // Escapes of unreserved characters decoded, any case of hex.
            ("/%69nternal/secret", Ok("/internal/secret")),
            ("/%49%6e%54ernal", Ok("/InTernal")),
            ("/%7Euser/%2D%2e%5F", Ok("/~user/-._")),
            // Other escapes kept, hex in upper case; `%25` is decoded once, never twice.
            ("/a%3fb%3Bc", Ok("/a%3Fb%3Bc")),
            ("/%252e%252e/x", Ok("/%252e%252e/x")),
            ("/caf%c3%a9", Ok("/caf%C3%A9")),
            // Dot segments, decoded ones included (RFC 3986 §5.2.4).
            ("/public/../internal/secret", Ok("/internal/secret")),
            ("/./internal/secret", Ok("/internal/secret")),
            ("/%2e%2e/internal", Ok("/internal")),
            ("/a/%2E%2e/b", Ok("/b")),
            ("/a/.%2e/b", Ok("/b")),
            ("/a/b/../../c", Ok("/c")),
            ("/../x", Ok("/x")),
            ("/../../..", Ok("/")),
            ("/a/.", Ok("/a/")),
            ("/a/..", Ok("/")),
            ("/a/b/..", Ok("/a/")),
            ("/.", Ok("/")),
            // Slashes merged before dot segments, as a file system reads them.
            ("/a//../b", Ok("/b")),
            ("/a/.//b", Ok("/a/b")),
            // Not dot segments.
            ("/a/.../b", Ok("/a/.../b")),
            ("/a/..b/.c/d.", Ok("/a/..b/.c/d.")),
            // Bytes RFC 3986 does not allow in a path are percent-encoded.
            ("/café", Ok("/caf%C3%A9")),
            ("/a{b}|c^d\"e[f]", Ok("/a%7Bb%7D%7Cc%5Ed%22e%5Bf%5D")),
            // Sub-delimiters, ':' and '@' are kept.
            ("/a:b@c!$&'()*+,;=", Ok("/a:b@c!$&'()*+,;=")),
            // Refused: the app might read them otherwise than routing did.
            ("/internal%2Fsecret", Err(PathRefusal::EncodedSlash)),
            ("/internal%2fsecret", Err(PathRefusal::EncodedSlash)),
            ("/internal%5Csecret", Err(PathRefusal::EncodedBackslash)),
            ("/internal%5csecret", Err(PathRefusal::EncodedBackslash)),
            ("/internal\\secret", Err(PathRefusal::Backslash)),
            ("/a%00b", Err(PathRefusal::Nul)),
            ("/a%zz", Err(PathRefusal::InvalidEscape)),
            ("/a%4", Err(PathRefusal::InvalidEscape)),
            ("/a%", Err(PathRefusal::InvalidEscape)),
            ("/a%%41", Err(PathRefusal::InvalidEscape)),
            // Not a path: left to the caller.
            ("*", Ok("*")),
        ],
    );
}

#[test]
fn normal_paths_are_borrowed() {
    for raw in ["/", "/a/b/", "/api/tokens/user", "/a.b/..c/~x", "*"] {
        assert!(
            matches!(DEFAULT.normalize(raw), Ok(Cow::Borrowed(_))),
            "{raw}"
        );
    }
    // Slow path, same result: still borrowed.
    let keep = with(KeepUnchanged);
    assert!(matches!(keep.normalize("/a%2Fb"), Ok(Cow::Borrowed(_))));
    assert!(matches!(DEFAULT.normalize("/a%3F"), Ok(Cow::Borrowed(_))));
}

#[test]
fn keep_unchanged_routes_and_forwards_slash_escapes_as_received() {
    check(
        with(KeepUnchanged),
        &[
            ("/internal%2Fsecret", Ok("/internal%2Fsecret")),
            // Upper-case hex like any other kept escape.
            ("/internal%2fsecret", Ok("/internal%2Fsecret")),
            ("/a%5cb", Ok("/a%5Cb")),
            ("/a\\b", Ok("/a\\b")),
            // Not a dot segment: `..%2F` is one segment here.
            ("/a/..%2Fb", Ok("/a/..%2Fb")),
            // A NUL never is.
            ("/a%00", Err(PathRefusal::Nul)),
        ],
    );
}

#[test]
fn unescape_and_forward_makes_every_slash_spelling_a_separator() {
    check(
        with(UnescapeAndForward),
        &[
            ("/internal%2Fsecret", Ok("/internal/secret")),
            ("/internal%5csecret", Ok("/internal/secret")),
            ("/internal\\secret", Ok("/internal/secret")),
            ("/a/..%2Finternal", Ok("/internal")),
            ("/a\\..\\internal", Ok("/internal")),
            ("/a%2F%2Fb", Ok("/a/b")),
            ("/a%00", Err(PathRefusal::Nul)),
        ],
    );
}

#[test]
fn merge_slashes_off_keeps_empty_segments() {
    let rules = PathRules {
        merge_slashes: false,
        ..DEFAULT
    };
    check(
        rules,
        &[
            ("//a", Ok("//a")),
            ("/a//b/", Ok("/a//b/")),
            // `..` takes back the empty segment, as RFC 3986 §5.2.4 does.
            ("/a//../b", Ok("/a/b")),
            ("/%2e//x", Ok("//x")),
        ],
    );
}

#[test]
fn without_normalization_only_the_slash_rules_apply() {
    let rules = PathRules {
        normalize: false,
        ..DEFAULT
    };
    check(
        rules,
        &[
            ("/a/../%69/%7e/%zz/é", Ok("/a/../%69/%7e/%zz/é")),
            ("//a//b", Ok("/a/b")),
            ("/a%2Fb", Err(PathRefusal::EncodedSlash)),
            ("/a\\b", Err(PathRefusal::Backslash)),
            ("/a%00", Err(PathRefusal::Nul)),
        ],
    );
    let as_received = PathRules::new(false, false, KeepUnchanged);
    check(
        as_received,
        &[
            ("//a/./b/%2f/\\", Ok("//a/./b/%2f/\\")),
            ("/a%00", Err(PathRefusal::Nul)),
        ],
    );
}

#[test]
fn refusals_read_as_the_400_message() {
    assert_eq!(
        PathRefusal::EncodedSlash.to_string(),
        "Bad request: the path contains an encoded slash (%2F)"
    );
}

#[test]
fn dot_segments_with_parameters_are_refused() {
    let refused = Err(PathRefusal::DotSegmentWithParameters);
    check(
        DEFAULT,
        &[
            ("/public/..;/internal/secret", refused),
            ("/public/..;x=1/internal", refused),
            ("/.;/internal/secret", refused),
            ("/public/%2e%2e;/internal", refused),
            ("/public/.%2E;x/internal", refused),
            ("/..;", refused),
            // Parameters on other segments, and encoded ';', are names.
            ("/a;x/b", Ok("/a;x/b")),
            ("/...;x/b", Ok("/...;x/b")),
            ("/a/..%3B/b", Ok("/a/..%3B/b")),
            ("/app/;jsessionid=1", Ok("/app/;jsessionid=1")),
        ],
    );
    // Without normalization the path is the operator's to trust.
    let raw = PathRules {
        normalize: false,
        ..DEFAULT
    };
    assert_eq!(
        raw.normalize("/public/..;/internal").as_deref(),
        Ok("/public/..;/internal")
    );
}

#[test]
fn routes_match_the_path_without_its_parameters() {
    for (path, key) in [
        ("/internal;x/secret", "/internal/secret"),
        ("/internal/secret;jsessionid=1", "/internal/secret"),
        ("/a;x=1;y=2/b;z", "/a/b"),
        ("/app/;jsessionid=1", "/app/"),
        ("/a/;x/b", "/a/b"),
        ("/;x", "/"),
    ] {
        assert_eq!(DEFAULT.route_key(path), key, "{path}");
    }
    assert!(matches!(DEFAULT.route_key("/a/b"), Cow::Borrowed("/a/b")));
    let unmerged = PathRules {
        merge_slashes: false,
        ..DEFAULT
    };
    assert_eq!(unmerged.route_key("/a/;x/b"), "/a//b");
    let raw = PathRules {
        normalize: false,
        ..DEFAULT
    };
    assert_eq!(raw.route_key("/internal;x/secret"), "/internal;x/secret");
}

//! `user_id_map` then `user_id_template`: provider ids Stream refuses, made
//! into Stream ids or refused with the setting that would fix them.

use crate::identity::*;

/// `printf %s 'auth0|123' | sha256sum`
const AUTH0_123_SHA256: &str = "4043445eadeeeb2a5d885af3c133f60ef57523a1ff87ba20edcc5b6de392eb6c";
/// `printf %s 'zoë' | sha256sum` (UTF-8 bytes)
const ZOE_SHA256: &str = "2752b88686847fa5c86f47b94ce652b7b3f22a91c37617d451a4db9afa431450";

fn mapping(map: UserIdMap, template: &str) -> UserIdMapping {
    UserIdMapping::new(map, UserIdTemplate::parse(template).unwrap()).unwrap()
}

fn replace(with: &str) -> UserIdMap {
    UserIdMap::replace_invalid(with).unwrap()
}

fn stream_id(mapping: &UserIdMapping, id: &str) -> Result<String, IdentityError> {
    mapping.apply(id, vec![]).map(|identity| identity.user_id)
}

fn refusal(mapping: &UserIdMapping, id: &str) -> String {
    let error = stream_id(mapping, id).expect_err(id);
    assert_eq!(error.reason(), Reason::InvalidUserId, "{id}");
    assert_eq!((error.reason().status(), error.challenge()), (403, None));
    error.message().to_string()
}

/// Every ASCII character Stream refuses (punctuation but `@ _ -`, space,
/// the controls), and characters of 2, 3 and 4 UTF-8 bytes.
fn refused_characters() -> Vec<char> {
    let ascii = (0u8..=127)
        .map(char::from)
        .filter(|c| !c.is_ascii_alphanumeric() && !matches!(c, '@' | '_' | '-'));
    ascii.chain(['é', 'ë', '€', '😀', '\u{a0}']).collect()
}

#[test]
fn ids_stream_accepts_pass_unchanged_by_either_map_but_the_hash() {
    let id = "Az09@_-";
    assert_eq!(stream_id(&UserIdMapping::default(), id).unwrap(), id);
    assert_eq!(stream_id(&mapping(replace("_"), "{id}"), id).unwrap(), id);
}

#[test]
fn without_a_map_each_refused_character_names_itself_and_the_fix() {
    let verbatim = UserIdMapping::default();
    let characters = refused_characters();
    assert!(characters.contains(&'|') && characters.contains(&'.') && characters.contains(&'+'));
    assert!(characters.contains(&' ') && characters.contains(&'\u{7}'));
    for c in characters {
        let message = refusal(&verbatim, &format!("a{c}b"));
        assert_eq!(
            message,
            format!(
                "the authenticated user id contains {c:?}, which Stream does not allow in a user \
                 id (a user id must be 1 to 255 characters from A-Z a-z 0-9 @ _ -): set \
                 identity.user_id_map: {{replace_invalid: \"_\"}} or {{hash: sha256}}"
            )
        );
    }
    assert!(refusal(&verbatim, "auth0|123").contains("contains '|'"));
    assert!(refusal(&verbatim, "a.b@example.com").contains("contains '.'"));
}

#[test]
fn replace_invalid_replaces_each_refused_character_once() {
    let underscore = mapping(replace("_"), "{id}");
    for c in refused_characters() {
        assert_eq!(
            stream_id(&underscore, &format!("a{c}b")).unwrap(),
            "a_b",
            "{c:?} ({} UTF-8 bytes) is one character",
            c.len_utf8()
        );
    }
    assert_eq!(stream_id(&underscore, "auth0|123").unwrap(), "auth0_123");
    assert_eq!(
        stream_id(&underscore, "google-oauth2|1041").unwrap(),
        "google-oauth2_1041"
    );
    assert_eq!(
        stream_id(&underscore, "a.b+tag@example.com").unwrap(),
        "a_b_tag@example_com"
    );
    // Not one-to-one, as documented.
    assert_eq!(
        stream_id(&underscore, "a.b@x.com").unwrap(),
        stream_id(&underscore, "a_b@x.com").unwrap()
    );
    assert!(replace("_").merges_ids() && !UserIdMap::Sha256.merges_ids());
    assert_eq!(
        stream_id(&mapping(replace("x-"), "{id}"), "a|b c").unwrap(),
        "ax-bx-c"
    );
}

#[test]
fn length_is_checked_after_mapping_at_255() {
    let verbatim = UserIdMapping::default();
    let underscore = mapping(replace("_"), "{id}");
    let a = |n: usize| "a".repeat(n);
    assert_eq!(stream_id(&verbatim, &a(255)).unwrap().len(), 255);
    assert_eq!(
        refusal(&verbatim, &a(256)),
        "the authenticated user id is 256 characters long, and Stream allows at most 255: set \
         identity.user_id_map: {hash: sha256} (64 characters)"
    );
    // A 2-byte character counts as one and becomes one.
    assert_eq!(
        stream_id(&underscore, &format!("{}é", a(254)))
            .unwrap()
            .len(),
        255
    );
    assert_eq!(
        refusal(&underscore, &format!("{}é", a(255))),
        "the authenticated user id is 256 characters long after replace_invalid, and Stream \
         allows at most 255: set identity.user_id_map: {hash: sha256} (64 characters)"
    );
    // A longer replacement can push an id over.
    assert!(
        refusal(&mapping(replace("__"), "{id}"), &format!("{}.", a(254)))
            .contains("256 characters long after replace_invalid")
    );
    // Too long and refused characters: only the hash would do.
    assert!(refusal(&verbatim, &format!("auth0|{}", a(260)))
        .ends_with("set identity.user_id_map: {hash: sha256} (the id is also too long)"));
}

#[test]
fn an_empty_id_is_refused_whatever_the_map() {
    for map in [UserIdMap::Verbatim, replace("_"), UserIdMap::Sha256] {
        assert_eq!(
            refusal(&mapping(map, "tenant-{id}"), ""),
            "the authenticated user id is empty"
        );
    }
}

#[test]
fn sha256_is_the_lowercase_hex_of_the_utf8_id() {
    let hash = mapping(UserIdMap::Sha256, "{id}");
    assert_eq!(stream_id(&hash, "auth0|123").unwrap(), AUTH0_123_SHA256);
    assert_eq!(stream_id(&hash, "zoë").unwrap(), ZOE_SHA256);
    let long = stream_id(&hash, &"x".repeat(10_000)).unwrap();
    assert_eq!(long.len(), 64);
    assert!(long
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
}

#[test]
fn the_map_comes_before_the_template() {
    assert_eq!(
        stream_id(&mapping(UserIdMap::Sha256, "tenant-{id}"), "auth0|123").unwrap(),
        format!("tenant-{AUTH0_123_SHA256}"),
        "the provider id is hashed, not the templated one"
    );
    assert_eq!(
        stream_id(&mapping(replace("_"), "acme-{id}-x"), "auth0|123").unwrap(),
        "acme-auth0_123-x"
    );
    assert_eq!(
        stream_id(&mapping(UserIdMap::Verbatim, "tenant-{id}"), "42").unwrap(),
        "tenant-42"
    );
}

#[test]
fn when_the_template_makes_it_too_long_the_message_says_so() {
    let id = "a".repeat(250);
    assert_eq!(
        refusal(&mapping(replace("_"), "tenant-{id}"), &id),
        "identity.user_id_template adds 7 characters to the 250-character user id after \
         replace_invalid, over the 255 Stream allows: shorten the template, or set \
         identity.user_id_map: {hash: sha256}"
    );
    assert!(stream_id(
        &mapping(UserIdMap::Verbatim, "tenant-{id}"),
        &"a".repeat(248)
    )
    .is_ok());
}

#[test]
fn templates_and_maps_that_could_never_work_are_refused_at_load() {
    assert!(UserIdTemplate::parse("no-placeholder").is_err());
    assert!(UserIdTemplate::parse("{id}-{id}").is_err());
    assert_eq!(
        UserIdTemplate::parse("tenant.{id}").unwrap_err(),
        "\"tenant.{id}\" has '.' around {id}, which Stream does not allow in a user id \
         (A-Z a-z 0-9 @ _ -)"
    );
    assert!(UserIdTemplate::parse("{id}|x").is_err());

    let template = |n: usize| UserIdTemplate::parse(&format!("{}{{id}}", "t".repeat(n))).unwrap();
    assert!(UserIdMapping::new(UserIdMap::Sha256, template(191)).is_ok());
    assert_eq!(
        UserIdMapping::new(UserIdMap::Sha256, template(192)).unwrap_err(),
        "adds 192 characters around {id}, so with user_id_map's 64-character hash the Stream \
         user id would be longer than the 255 Stream allows"
    );
    assert!(UserIdMapping::new(UserIdMap::Verbatim, template(254)).is_ok());
    assert!(UserIdMapping::new(replace("_"), template(255)).is_err());

    for good in ["_", "-", "@", "x", "12345678"] {
        assert_eq!(
            UserIdMap::replace_invalid(good),
            Ok(UserIdMap::ReplaceInvalid(good.into()))
        );
    }
    for bad in ["", ".", " ", "é", "a|", "123456789"] {
        let error = UserIdMap::replace_invalid(bad).unwrap_err();
        assert!(
            error.contains("must be 1 to 8 characters from A-Z a-z 0-9 @ _ -"),
            "{bad:?}: {error}"
        );
    }
}

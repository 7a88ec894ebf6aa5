use super::*;

fn document() -> Value {
    schema().to_value()
}

#[test]
fn the_sections_are_the_files_sections_and_listen_upstreams_and_one_app_form_are_required() {
    let document = document();
    let properties = document["properties"].as_object().expect("properties");
    let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
    let mut sections = crate::config::raw::SECTIONS.to_vec();
    names.sort_unstable();
    sections.sort_unstable();
    assert_eq!(names, sections);
    assert_eq!(document["required"], json!(["listen", "upstreams"]));
    // One Stream app (`stream`) or several (`stream_apps`), never both.
    assert_eq!(
        document["oneOf"],
        json!([{ "required": ["stream"] }, { "required": ["stream_apps"] }])
    );
    assert_eq!(document["additionalProperties"], json!(false));
}

#[test]
fn closed_string_sets_also_accept_a_substitution() {
    let document = document();
    let mode = &document["$defs"]["Identity"]["properties"]["mode"];
    let mode = match mode.get("$ref") {
        Some(reference) => {
            let name = reference.as_str().and_then(|r| r.strip_prefix("#/$defs/"));
            &document["$defs"][name.expect("a local reference")]
        }
        None => mode,
    };
    let alternatives = mode["anyOf"].as_array().expect("anyOf");
    assert_eq!(alternatives.len(), 2, "{mode:#}");
    assert!(is_narrowed_string(&alternatives[0]), "{mode:#}");
    assert_eq!(
        alternatives[1],
        json!({ "type": "string", "pattern": SUBSTITUTION_PATTERN })
    );
    assert!(
        mode["description"].is_string(),
        "the description stays outside: {mode:#}"
    );
}

#[test]
fn numbers_booleans_and_lists_are_left_alone() {
    let mut schema = schemars::json_schema!({
        "type": "object",
        "properties": {
            "n": { "type": "integer" },
            "b": { "type": "boolean" },
            "l": { "type": "array", "items": { "type": "string", "enum": ["a"] } },
            "mixed": { "enum": ["a", 1] },
        },
    });
    AcceptSubstitutions.transform(&mut schema);
    let value = schema.to_value();
    assert_eq!(value["properties"]["n"], json!({ "type": "integer" }));
    assert_eq!(value["properties"]["b"], json!({ "type": "boolean" }));
    assert_eq!(value["properties"]["mixed"], json!({ "enum": ["a", 1] }));
    assert_eq!(
        value["properties"]["l"]["items"]["anyOf"][0],
        json!({ "type": "string", "enum": ["a"] })
    );
}

#[test]
fn the_description_of_a_key_comes_from_its_doc_comment() {
    let document = document();
    let description = document["$defs"]["Upstream"]["properties"]["read_timeout"]["description"]
        .as_str()
        .expect("a description");
    assert!(
        description.starts_with("Longest wait for the app"),
        "{description}"
    );
}

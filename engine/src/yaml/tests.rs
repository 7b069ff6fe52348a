//! The table of YAML that Kubernetes reads differently from a YAML 1.2 library: each case is a
//! test of its own. The expected JSON in the table is what k8s.io/apimachinery's decoder (the
//! one Helm and kubectl use) produced for the same text; the real-cluster suite checks the table
//! against that decoder again, so the table cannot drift from it.

use serde_json::Value;

use super::decode_stream;

const TABLE: &str = include_str!("../../../tests/fixtures/yaml/kubernetes-reads-yaml.json");

fn check(name: &str) {
    let table: Vec<Value> = serde_json::from_str(TABLE).expect("the table is JSON");
    let case = table
        .iter()
        .find(|c| c["case"] == name)
        .unwrap_or_else(|| panic!("no case {name} in the table"));
    let yaml = case["yaml"].as_str().expect("yaml is a string");
    let got = decode_stream(yaml);
    match (&case["docs"], got) {
        (Value::Array(expected), Ok(docs)) => assert_eq!(&docs, expected, "{name}: {yaml:?}"),
        (Value::Null, Err(_)) => {}
        (Value::Null, Ok(docs)) => panic!(
            "{name}: Kubernetes refuses {yaml:?} ({}), but it decoded to {docs:?}",
            case["error"]
        ),
        (_, Err(e)) => panic!("{name}: {yaml:?} should decode, but: {e}"),
        (other, _) => panic!("{name}: bad table entry {other}"),
    }
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name));
            }
        )*

        #[test]
        fn every_case_in_the_table_is_a_test() {
            let table: Vec<Value> = serde_json::from_str(TABLE).expect("the table is JSON");
            let listed = [$(stringify!($name)),*];
            for case in &table {
                let name = case["case"].as_str().unwrap_or_default();
                assert!(listed.contains(&name), "case {name} has no test: add it to cases!");
            }
        }
    };
}

cases! {
    octal_file_mode,
    octal_with_0o_prefix,
    octal_digits_8_and_9_make_a_float,
    decimal_mode_stays_decimal,
    hex_and_binary_integers,
    underscores_in_numbers,
    signed_and_zero_integers,
    floats_that_are_whole_are_integers_in_json,
    leading_dot_floats,
    exponents_and_float_forms,
    integers_beyond_int64,
    yaml_1_1_booleans,
    not_quite_booleans_stay_strings,
    nulls,
    infinity_and_nan_cannot_be_json,
    nan_cannot_be_json,
    infinity_words_are_strings,
    timestamps_stay_strings,
    sexagesimal_is_not_supported,
    versions_and_identifiers,
    quoted_scalars_are_strings,
    block_scalars_are_strings,
    double_quoted_escapes,
    escaped_slash_is_yaml_1_2_only,
    escaped_single_quote_is_yaml_1_1,
    dash_alone_is_a_sequence_entry,
    core_tags,
    unknown_tags_keep_the_text,
    int_tag_on_text_fails,
    keys_of_other_types_become_strings,
    null_key_fails,
    uint64_key_fails,
    collection_key_fails,
    later_duplicate_key_wins,
    anchors_and_aliases,
    merge_keys_fill_in_order,
    merge_of_a_scalar_fails,
    recursive_anchor_fails,
    unknown_alias_fails,
    empty_and_comment_only_documents,
    separator_with_comment,
    separator_with_content_fails,
    four_dashes_fail,
    dashes_inside_a_line_are_not_separators,
    document_end_marker,
    crlf_line_ends,
    json_stream,
    flow_json_style_document,
    unicode_and_emoji,
    equals_and_special_plain_scalars,
    multiline_plain_scalar,
    nested_sequences_and_empty_collections,
    long_integers_and_negative_octal,
    k8s_resource_quantities_and_ports,
}

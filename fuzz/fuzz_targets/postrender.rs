//! Arbitrary YAML streams (as UTF-8 text) to the Helm post-renderer, held to "first, do no
//! harm": whatever it hands back, every document it did not fix is the input's bytes, the text
//! between documents too, and every document it fixed, read as Kubernetes reads YAML, is the
//! input document plus exactly its fixes, which touch nothing but what a rule means to change
//! (restart policy, Job TTL, delete and output-log policy annotations, hookguard's label and
//! annotation). A fix that cannot be written faithfully is an error, never a changed object.
#![no_main]

use std::sync::LazyLock;

use hookguard::policy::Policy;
use hookguard::postrender::{PostRenderError, post_render};
use hookguard::yaml::{EditError, decode_document, split_stream};
use json_patch::PatchOperation;
use libfuzzer_sys::fuzz_target;

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::default);

/// The members the fixes may add or replace (after `/items/N` in a List).
fn intended(op: &PatchOperation) -> bool {
    let PatchOperation::Add(add) = op else {
        return false;
    };
    let tokens: Vec<String> = add
        .path
        .tokens()
        .map(|t| t.decoded().into_owned())
        .collect();
    let mut t: Vec<&str> = tokens.iter().map(String::as_str).collect();
    if t.len() > 2 && t[0] == "items" && t[1].parse::<usize>().is_ok() {
        t.drain(..2);
    }
    matches!(
        t.as_slice(),
        ["spec", "restartPolicy"]
            | ["spec", "template", "spec", "restartPolicy"]
            | ["spec", "ttlSecondsAfterFinished"]
            | ["metadata", "labels"]
            | ["metadata", "labels", "hookguard.io/hook"]
            | ["metadata", "annotations", "helm.sh/hook-delete-policy"]
            | ["metadata", "annotations", "helm.sh/hook-output-log-policy"]
            | ["metadata", "annotations", "hookguard.io/mutated"]
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let namespace = (data.len() % 2 == 0).then_some("default");
    let rendered = match post_render(&POLICY, text, namespace) {
        Ok(r) => r,
        Err(PostRenderError::Edit {
            error: EditError::NotFaithful { path },
            ..
        }) => panic!("a fix could not be written faithfully at {path}"),
        // Streams Kubernetes' reader refuses, and patches that do not apply.
        Err(_) => return,
    };
    let input = split_stream(text).expect("post_render split it");
    let output = split_stream(&rendered.manifests).expect("the output splits as the input did");
    assert_eq!(input.len(), output.len(), "the number of documents changed");
    let mut previous = (0, 0);
    for (i, (a, b)) in input.iter().zip(&output).enumerate() {
        // The text between documents (separators) is the input's.
        assert_eq!(
            &text[previous.0..a.start],
            &rendered.manifests[previous.1..b.start],
            "the text before document {} changed",
            i + 1
        );
        previous = (a.start + a.text.len(), b.start + b.text.len());
        match rendered.edited.iter().find(|e| e.document == i + 1) {
            None => assert_eq!(
                a.text,
                b.text,
                "document {} was not fixed, yet changed",
                i + 1
            ),
            Some(edit) => {
                assert!(!edit.fixes.is_empty());
                for op in &edit.fixes {
                    assert!(intended(op), "a fix no rule means: {op:?}");
                }
                let mut expected = decode_document(a.text).expect("a fixed document was read");
                json_patch::patch(&mut expected, &edit.fixes).expect("the fixes apply");
                let got = decode_document(b.text).expect("a fixed document reads back");
                assert_eq!(
                    got,
                    expected,
                    "document {} is not the input plus its fixes",
                    i + 1
                );
            }
        }
    }
    assert_eq!(&text[previous.0..], &rendered.manifests[previous.1..]);
});

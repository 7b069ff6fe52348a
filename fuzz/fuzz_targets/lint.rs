//! Arbitrary multi-document YAML (as UTF-8 text) to `hookguard lint`'s parser and engine
//! (`lint::lint_text`), then its text and JSON renderings, and to the Helm post-renderer.
//! Invariants: no panic; a parse error names the source; every finding names a registered rule and
//! a known action (`mutate` only from mutating rules, `deny` only from
//! validating ones); both renderings succeed and the text report counts every object; the
//! post-renderer judges the same objects, its output is YAML, and post-rendering that output
//! again changes nothing (what it wrote is what the engine asks for).
#![no_main]

use std::sync::LazyLock;

use hookguard::lint::{lint_text, render_text};
use hookguard::policy::{Policy, RULES};
use hookguard::postrender::post_render;
use libfuzzer_sys::fuzz_target;

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::default);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let namespace = (data.len() % 2 == 0).then_some("default");
    let objects = match lint_text(&POLICY, "fuzz.yaml", text, namespace) {
        Err(e) => {
            assert!(
                e.to_string().starts_with("fuzz.yaml: not valid YAML"),
                "{e}"
            );
            return;
        }
        Ok(objects) => objects,
    };
    for o in &objects {
        for f in &o.findings {
            let rule = RULES
                .iter()
                .map(|r| r.info())
                .find(|r| r.id == f.rule)
                .unwrap_or_else(|| panic!("unregistered rule {}", f.rule));
            // Enforced mutating rules mutate; enforced validating rules deny.
            match f.action {
                "mutate" => assert!(rule.mutates, "{} mutates", f.rule),
                "deny" => assert!(!rule.mutates, "{} denies", f.rule),
                "warn" => {}
                other => panic!("unknown action {other}"),
            }
        }
    }
    let report = render_text(&objects);
    let n = objects.len();
    let noun = if n == 1 { "object" } else { "objects" };
    assert!(
        report.contains(&format!("{n} hook {noun} checked")),
        "{report}"
    );
    serde_json::to_string(&objects).expect("lint output serializes");

    let Ok(rendered) = post_render(&POLICY, text, namespace) else {
        // Only the writer can fail after a successful parse (a value YAML cannot hold).
        return;
    };
    assert_eq!(
        rendered.objects.len(),
        n,
        "post-render judged other objects"
    );
    if rendered.denied().next().is_none() {
        let again = post_render(&POLICY, &rendered.manifests, namespace)
            .expect("the post-renderer's output is YAML it reads");
        assert_eq!(
            again.manifests, rendered.manifests,
            "a second pass changed the output"
        );
    }
});

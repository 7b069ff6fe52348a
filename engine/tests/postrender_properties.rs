//! "First, do no harm", as a property: hook documents written in the many ways charts write YAML
//! (block or flow, quoted keys, comments, CRLF, 2 or 4 spaces, octal modes, YAML 1.1 booleans,
//! empty values, Lists) come out of the post-renderer as the same object plus exactly the fixes,
//! read as Kubernetes reads YAML; every byte of the documents it does not fix is kept, and the
//! fixes are what the webhook would patch.

use hookguard_engine::lint::{Source, judge_object};
use hookguard_engine::policy::{Exceptions, Policy};
use hookguard_engine::postrender::post_render;
use hookguard_engine::yaml::{EditMethod, decode_document, split_stream};
use proptest::prelude::*;
use serde_json::Value;

#[derive(Debug, Clone)]
struct Style {
    job: bool,
    flow_metadata: bool,
    quoted_keys: bool,
    indent: usize,
    crlf: bool,
    labels: usize,
    ttl: usize,
    restart: usize,
    delete_policy: usize,
    log_policy: bool,
    comments: bool,
    in_list: bool,
    mode_style: usize,
}

fn style() -> impl Strategy<Value = Style> {
    (
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            prop_oneof![Just(2usize), Just(4)],
        ),
        (any::<bool>(), 0usize..5, 0usize..5, 0usize..5),
        (
            0usize..4,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0usize..4,
        ),
    )
        .prop_map(
            |(
                (job, flow_metadata, quoted_keys, indent),
                (crlf, labels, ttl, restart),
                (delete_policy, log_policy, comments, in_list, mode_style),
            )| Style {
                job,
                flow_metadata,
                quoted_keys,
                indent,
                crlf,
                labels,
                ttl,
                restart,
                delete_policy,
                log_policy,
                comments,
                in_list,
                mode_style,
            },
        )
}

/// One hook object in the given style, at indentation 0.
fn hook(s: &Style) -> String {
    let i = " ".repeat(s.indent);
    let key = |k: &str| {
        if s.quoted_keys {
            format!("\"{k}\"")
        } else {
            k.to_owned()
        }
    };
    let comment = |c: &str| {
        if s.comments {
            format!("   # {c}")
        } else {
            String::new()
        }
    };
    // In a flow mapping a comma ends the entry: the list of events must be quoted there.
    let events = if s.flow_metadata {
        "\"pre-install,pre-upgrade\""
    } else {
        "pre-install,pre-upgrade"
    };
    let mut annotations = vec![format!("{}: {events}", key("helm.sh/hook"))];
    match s.delete_policy {
        1 => annotations.push(format!(
            "{}: hook-succeeded",
            key("helm.sh/hook-delete-policy")
        )),
        2 => annotations.push(format!(
            "{}: \"before-hook-creation,hook-failed\"",
            key("helm.sh/hook-delete-policy")
        )),
        _ => {}
    }
    if s.log_policy {
        annotations.push(format!(
            "{}: hook-succeeded",
            key("helm.sh/hook-output-log-policy")
        ));
    }
    let labels = match s.labels {
        0 => None,
        1 => Some(String::new()),
        2 => Some("{}".to_owned()),
        3 => Some("{app: demo, tier: \"1\"}".to_owned()),
        _ => Some("{hookguard.io/hook: \"true\"}".to_owned()),
    };
    let mut out = String::new();
    out.push_str(if s.job {
        "apiVersion: batch/v1\nkind: Job\n"
    } else {
        "apiVersion: v1\nkind: Pod\n"
    });
    if s.flow_metadata {
        let labels = labels
            .map(|l| {
                format!(
                    ", labels: {}",
                    if l.is_empty() { "null".to_owned() } else { l }
                )
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "metadata: {{name: demo-hook{labels}, annotations: {{{}}}}}{}\n",
            annotations.join(", "),
            comment("flow")
        ));
    } else {
        out.push_str(&format!(
            "metadata:\n{i}name: demo-hook{}\n",
            comment("the name")
        ));
        if let Some(l) = labels {
            out.push_str(&format!(
                "{i}labels:{}{l}\n",
                if l.is_empty() { "" } else { " " }
            ));
        }
        out.push_str(&format!("{i}annotations:\n"));
        for a in &annotations {
            out.push_str(&format!("{i}{i}{a}\n"));
        }
    }
    let mode = match s.mode_style {
        0 => "0444",
        1 => "0o444",
        2 => "292",
        _ => "0x124",
    };
    let restart = match s.restart {
        0 => None,
        1 => Some("Always"),
        2 => Some("\"Never\""),
        3 => Some("OnFailure"),
        _ => Some("'Always'"),
    };
    let pod_spec = |base: &str| {
        let mut p = String::new();
        if let Some(r) = restart {
            p.push_str(&format!("{base}restartPolicy: {r}{}\n", comment("restart")));
        }
        p.push_str(&format!("{base}volumes:\n{base}- name: scripts\n{base}  configMap: {{name: demo, defaultMode: {mode}}}\n"));
        p.push_str(&format!("{base}containers:\n{base}- name: main\n{base}  image: busybox:1.36\n{base}  env:\n{base}  - {{name: DEBUG, value: \"yes\"}}\n{base}  - name: FLAG\n{base}    value: \"on\"\n"));
        p
    };
    out.push_str("spec:\n");
    if s.job {
        match s.ttl {
            1 => out.push_str(&format!("{i}ttlSecondsAfterFinished: 0\n")),
            2 => out.push_str(&format!("{i}ttlSecondsAfterFinished: 0x1E\n")),
            3 => out.push_str(&format!("{i}ttlSecondsAfterFinished: 900\n")),
            4 => out.push_str(&format!("{i}backoffLimit: 0\n")),
            _ => {}
        }
        out.push_str(&format!("{i}template:\n{i}{i}spec:\n"));
        out.push_str(&pod_spec(&format!("{i}{i}{i}")));
    } else {
        out.push_str(&pod_spec(&i));
    }
    out
}

fn indent_lines(text: &str, prefix: &str) -> String {
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

fn stream(s: &Style) -> String {
    let object = hook(s);
    let document = if s.in_list {
        let item = indent_lines(&object, "  ");
        format!("apiVersion: v1\nkind: List\nitems:\n-{}", &item[1..])
    } else {
        object
    };
    let text = format!(
        "# Source: demo/templates/config.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: demo}}\ndata: {{mode: 0755, enabled: yes}}\n---\n# Source: demo/templates/hook.yaml\n{document}"
    );
    if s.crlf {
        text.replace('\n', "\r\n")
    } else {
        text
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_hook_comes_back_as_itself_plus_exactly_the_fixes(s in style()) {
        let text = stream(&s);
        let policy = Policy::default();
        let out = post_render(&policy, &text, Some("demo")).expect("renders");
        let input = split_stream(&text).unwrap();
        let output = split_stream(&out.manifests).unwrap();
        prop_assert_eq!(input.len(), 2);
        prop_assert_eq!(output.len(), 2);
        // The document that is not a hook: byte for byte.
        prop_assert_eq!(input[0].text, output[0].text);
        prop_assert_eq!(&text[..input[1].start], &out.manifests[..output[1].start]);
        prop_assert!(out.denied().next().is_none());
        let before = decode_document(input[1].text).unwrap();
        let after = decode_document(output[1].text).unwrap();
        // What the webhook would patch, plus the output-log policy where none is named.
        let object = if s.in_list { before["items"][0].clone() } else { before.clone() };
        let (_, patch) = judge_object(&policy, &Source { name: "-", document: 2 }, &object, Some("demo"), None, Exceptions::default()).unwrap();
        let mut expected = object.clone();
        json_patch::patch(&mut expected, &patch).unwrap();
        if !s.log_policy {
            expected["metadata"]["annotations"]["helm.sh/hook-output-log-policy"] = "hook-failed".into();
        }
        let got = if s.in_list { after["items"][0].clone() } else { after.clone() };
        prop_assert_eq!(&got, &expected, "{}", output[1].text);
        // YAML 1.1 scalars outside the fixes keep their meaning (octal 0444 is 292, "yes" a string).
        let pod = if s.job { &got["spec"]["template"]["spec"] } else { &got["spec"] };
        prop_assert_eq!(&pod["volumes"][0]["configMap"]["defaultMode"], &Value::from(292));
        prop_assert_eq!(&pod["containers"][0]["env"][0]["value"], &Value::from("yes"));
        // These shapes are all edited in place, every other line kept; a hook that needs no fix
        // comes back byte for byte.
        if expected == object {
            prop_assert!(out.edited.is_empty());
            prop_assert_eq!(input[1].text, output[1].text);
        } else {
            prop_assert_eq!(out.edited.len(), 1);
            prop_assert_eq!(out.edited[0].method, EditMethod::InPlace);
        }
        let newline = if s.crlf { "\r\n" } else { "\n" };
        for line in input[1].text.split(newline) {
            let kept = output[1].text.split(newline).any(|l| l == line);
            let fixed_line = ["restartPolicy", "ttlSecondsAfterFinished", "labels:"].iter().any(|k| line.contains(k))
                || (s.flow_metadata && line.trim_start().starts_with("metadata: {"));
            prop_assert!(kept || fixed_line, "line {:?} is gone:\n{}", line, output[1].text);
        }
        // Idempotent: post-rendering the output changes nothing.
        let again = post_render(&policy, &out.manifests, Some("demo")).unwrap();
        prop_assert_eq!(again.manifests, out.manifests);
    }
}

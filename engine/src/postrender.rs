//! The Helm post-renderer: the same engine over the manifests Helm rendered, hooks included
//! (Helm 4 passes hooks to post-renderers; Helm 3 never did), before Helm reads the hooks.
//!
//! What the webhook would patch onto the live object is written into the manifest instead, so
//! Helm's own copy of the hook (the one whose annotations decide what Helm does) carries the
//! fixes; hook Pods and Jobs without `helm.sh/hook-output-log-policy` get `hook-failed`, so Helm
//! prints a failed hook's logs before its delete policy removes them. Objects an enforced rule
//! denies, including hooks with an event Helm does not know (Helm would drop them silently),
//! fail the render.

use json_patch::PatchOperation;
use json_patch::jsonptr::PointerBuf;
use serde_json::Value;

use crate::hook::OUTPUT_LOG_POLICY_ANNOTATION;
use crate::lint::{LintError, LintedObject, Source, judge_object};
use crate::policy::{Exceptions, Policy, add_op};
use crate::yaml::{self, EditError, EditMethod};

/// The annotation Helm 4 puts on every document it sends to a post-renderer: the template file
/// the document came from (Helm removes it again afterwards).
pub const HELM_FILENAME_ANNOTATION: &str = "postrenderer.helm.sh/postrender-filename";

/// What the post-renderer adds to hook Pods and Jobs that name no output-log policy.
pub const ADDED_OUTPUT_LOG_POLICY: &str = "hook-failed";

#[derive(Debug, thiserror::Error)]
pub enum PostRenderError {
    #[error(transparent)]
    Yaml(#[from] LintError),
    #[error("cannot write the fixes into {kind} {name} ({source_name}): {error}")]
    Edit {
        kind: String,
        name: String,
        source_name: String,
        #[source]
        error: EditError,
    },
}

/// The result of one post-render.
#[derive(Debug)]
pub struct PostRendered {
    /// The manifests to hand back to Helm: the input, byte for byte, except inside the hook
    /// documents that were fixed.
    pub manifests: String,
    /// What the engine found on each hook object, with where it came from.
    pub objects: Vec<LintedObject>,
    /// Hook Pods and Jobs that got `helm.sh/hook-output-log-policy` added.
    pub output_log_policies_added: usize,
    /// Documents that were fixed: which, how, and with what.
    pub edited: Vec<EditedDocument>,
    /// Documents this reader could not read, passed through unchanged and unchecked (Kubernetes'
    /// own decoder, which Helm uses next, is the judge of them).
    pub unreadable: Vec<String>,
}

/// One document the post-renderer changed.
#[derive(Debug, Clone)]
pub struct EditedDocument {
    /// 1-based, in the stream as Kubernetes' reader cuts it.
    pub document: usize,
    /// In place (every other byte kept), or written anew.
    pub method: EditMethod,
    /// The fixes, as JSON Patch operations on the document's object: decoded, the output
    /// document is the input document with exactly these applied.
    pub fixes: Vec<PatchOperation>,
}

impl PostRendered {
    /// The hook objects an enforced rule denies (or that could not be judged).
    pub fn denied(&self) -> impl Iterator<Item = &LintedObject> {
        self.objects.iter().filter(|o| o.denied())
    }
}

/// Runs the engine over every hook object of a multi-document YAML stream (`List` documents
/// are entered) and writes the fixes into them, in place. Every byte outside the fixed hook
/// documents is handed back as it came, and a fixed document, read as Kubernetes reads YAML, is
/// the object it was plus exactly the fixes. Objects that set no namespace are judged in
/// `namespace` (the release's).
pub fn post_render(
    policy: &Policy,
    text: &str,
    namespace: Option<&str>,
) -> Result<PostRendered, PostRenderError> {
    let chunks = yaml::split_stream(text).map_err(|e| LintError::Yaml {
        source_name: "<post-render input>".to_owned(),
        message: e.to_string(),
    })?;
    let mut result = PostRendered {
        manifests: String::with_capacity(text.len()),
        objects: Vec::new(),
        output_log_policies_added: 0,
        edited: Vec::new(),
        unreadable: Vec::new(),
    };
    let mut copied_to = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        let document = i + 1;
        let value = match yaml::decode_document(chunk.text) {
            Ok(value) => value,
            Err(e) => {
                result.unreadable.push(format!(
                    "document {document} (line {}): {e}",
                    chunk.lines_before + 1
                ));
                continue;
            }
        };
        let mut ops = Vec::new();
        let mut fixed: Option<(String, String, String)> = None;
        let is_list = value
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.ends_with("List"));
        match value.get("items") {
            Some(Value::Array(items)) if is_list => {
                for (n, item) in items.iter().enumerate() {
                    let index = n.to_string();
                    let item_ops = fix(policy, document, item, namespace, &mut result, &mut fixed);
                    ops.extend(
                        item_ops
                            .into_iter()
                            .map(|op| prefixed(op, &["items", &index])),
                    );
                }
            }
            _ => ops = fix(policy, document, &value, namespace, &mut result, &mut fixed),
        }
        if ops.is_empty() {
            continue;
        }
        let (edited, method) = yaml::patch_document(chunk.text, &ops).map_err(|error| {
            let (kind, name, source_name) = fixed.clone().unwrap_or_default();
            PostRenderError::Edit {
                kind,
                name,
                source_name,
                error,
            }
        })?;
        result.manifests.push_str(&text[copied_to..chunk.start]);
        result.manifests.push_str(&edited);
        copied_to = chunk.start + chunk.text.len();
        result.edited.push(EditedDocument {
            document,
            method,
            fixes: ops,
        });
    }
    result.manifests.push_str(&text[copied_to..]);
    Ok(result)
}

/// The fixes for one object (empty when it is not a hook, is denied, or needs none), and its
/// finding.
fn fix(
    policy: &Policy,
    document: usize,
    value: &Value,
    namespace: Option<&str>,
    result: &mut PostRendered,
    fixed: &mut Option<(String, String, String)>,
) -> Vec<PatchOperation> {
    let file = value
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(HELM_FILENAME_ANNOTATION))
        .and_then(Value::as_str)
        .unwrap_or("<stdin>")
        .to_owned();
    let source = Source {
        name: &file,
        document,
    };
    let Some((linted, mut patch)) = judge_object(
        policy,
        &source,
        value,
        namespace,
        None,
        Exceptions::default(),
    ) else {
        return Vec::new();
    };
    if linted.denied() {
        patch.clear();
    } else {
        let logs_kind = matches!(
            (linted.api_version.as_str(), linted.kind.as_str()),
            ("v1", "Pod") | ("batch/v1", "Job")
        );
        let names_log_policy = value
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .is_some_and(|a| a.contains_key(OUTPUT_LOG_POLICY_ANNOTATION));
        if logs_kind && !names_log_policy {
            patch.push(add_op(
                ["metadata", "annotations", OUTPUT_LOG_POLICY_ANNOTATION],
                Value::String(ADDED_OUTPUT_LOG_POLICY.to_owned()),
            ));
            result.output_log_policies_added += 1;
        }
    }
    if !patch.is_empty() {
        *fixed = Some((linted.kind.clone(), linted.name.clone(), file));
    }
    result.objects.push(linted);
    patch
}

/// `op` with its path moved under `prefix` (an item of a `List`).
fn prefixed(op: PatchOperation, prefix: &[&str]) -> PatchOperation {
    let mut tokens: Vec<String> = prefix.iter().map(|t| (*t).to_owned()).collect();
    match op {
        PatchOperation::Add(mut add) => {
            tokens.extend(add.path.tokens().map(|t| t.decoded().into_owned()));
            add.path = PointerBuf::from_tokens(tokens);
            PatchOperation::Add(add)
        }
        other => other,
    }
}

/// The denials as one text, one line per finding: what the chart author must fix, by file.
pub fn denial_report(objects: &[&LintedObject]) -> String {
    let mut out = format!(
        "hookguard: {} hook object{} of this release break{} enforced rules:",
        objects.len(),
        if objects.len() == 1 { "" } else { "s" },
        if objects.len() == 1 { "s" } else { "" },
    );
    for o in objects {
        let at = format!("{} {} ({})", o.kind, o.name, o.source);
        if let Some(e) = &o.error {
            out.push_str(&format!("\n  {at}: {e}"));
        }
        for f in o.findings.iter().filter(|f| f.action == "deny") {
            out.push_str(&format!("\n  {at}: [{}] {}", f.rule, f.message));
        }
        if !o.ways_out.is_empty() {
            out.push_str("\n    without changing the chart:");
            for way in &o.ways_out {
                out.push_str(&format!("\n    - {way}"));
            }
        }
    }
    out
}

/// The single manifest a post-renderer plugin hands back to Helm 4 in place of a denied
/// release. Helm 4 discards the standard error of a plugin that fails and reports only
/// `plugin "..." exited with error`; but it names the template file of a document it cannot
/// read, and the file is whatever this annotation says. So the report goes in the annotation
/// and `metadata.name` is a mapping, which Helm's manifest reader refuses (after its lenient
/// post-render split has kept it) before anything is installed: `YAML parse error on <report>`.
pub fn helm_refusal(report: &str) -> String {
    let document = serde_json::json!({
        "apiVersion": "hookguard.io/v1",
        "kind": "PostRenderDenied",
        "metadata": {
            "name": {"hookguard": "denied"},
            "annotations": {
                HELM_FILENAME_ANNOTATION: format!("\n{report}\n(end of hookguard's report; Helm's words follow)"),
            },
        },
    });
    serde_saphyr::to_string(&document).unwrap_or_else(|_| {
        // Not reachable for a JSON value; still a document Helm refuses.
        "apiVersion: hookguard.io/v1\nkind: PostRenderDenied\nmetadata:\n  name: {hookguard: denied}\n"
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Helm 4 sends a post-renderer (combined strategy): every document annotated with its
    /// template file, hooks included.
    const FROM_HELM: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: demo-config
  annotations:
    postrenderer.helm.sh/postrender-filename: demo/templates/configmap.yaml
data:
  enabled: "yes"
  count: "1"
---
apiVersion: batch/v1
kind: Job
metadata:
  name: demo-migrate
  annotations:
    helm.sh/hook: pre-install
    postrenderer.helm.sh/postrender-filename: demo/templates/migrate.yaml
spec:
  template:
    spec:
      containers:
      - name: migrate
        image: busybox:1.36
"#;

    const TYPO: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: demo-typo
  annotations:
    helm.sh/hook: pre-instal
    postrenderer.helm.sh/postrender-filename: demo/templates/typo.yaml
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:1.36
"#;

    fn documents(text: &str) -> Vec<Value> {
        yaml::decode_stream(text).expect("post-render output is YAML")
    }

    #[test]
    fn fixes_hooks_in_the_manifest_and_leaves_other_objects_alone() {
        let out = post_render(&Policy::default(), FROM_HELM, Some("demo")).expect("renders");
        assert_eq!(out.denied().count(), 0);
        let docs = documents(&out.manifests);
        assert_eq!(docs.len(), 2);
        // Strings that YAML 1.1 readers (Helm's) would take for booleans or numbers stay strings.
        assert_eq!(docs[0]["data"]["enabled"], "yes");
        assert_eq!(docs[0]["data"]["count"], "1");
        assert!(out.manifests.contains("'yes'") || out.manifests.contains("\"yes\""));
        let job = &docs[1];
        let annotations = &job["metadata"]["annotations"];
        assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
        assert!(job["spec"]["ttlSecondsAfterFinished"].is_u64());
        assert!(annotations["helm.sh/hook-delete-policy"].is_string());
        assert_eq!(annotations["helm.sh/hook-output-log-policy"], "hook-failed");
        assert_eq!(
            annotations[HELM_FILENAME_ANNOTATION],
            "demo/templates/migrate.yaml"
        );
        assert_eq!(out.output_log_policies_added, 1);
        assert!(!out.objects[0].findings.is_empty());
    }

    #[test]
    fn keeps_an_output_log_policy_the_chart_chose() {
        let text = FROM_HELM.replace(
            "    helm.sh/hook: pre-install\n",
            "    helm.sh/hook: pre-install\n    helm.sh/hook-output-log-policy: hook-succeeded\n",
        );
        let out = post_render(&Policy::default(), &text, None).expect("renders");
        let docs = documents(&out.manifests);
        assert_eq!(
            docs[1]["metadata"]["annotations"]["helm.sh/hook-output-log-policy"],
            "hook-succeeded"
        );
        assert_eq!(out.output_log_policies_added, 0);
    }

    #[test]
    fn a_typo_in_the_hook_event_is_denied_with_the_file_and_a_suggestion() {
        let text = format!("{FROM_HELM}---\n{TYPO}");
        let out = post_render(&Policy::default(), &text, None).expect("renders");
        let denied: Vec<_> = out.denied().collect();
        assert_eq!(denied.len(), 1);
        let report = denial_report(&denied);
        assert!(
            report.contains("Job demo-typo (demo/templates/typo.yaml)"),
            "{report}"
        );
        assert!(report.contains("did you mean \"pre-install\""), "{report}");
        let refusal = documents(&helm_refusal(&report));
        assert!(refusal[0]["metadata"]["name"].is_object());
        let file = refusal[0]["metadata"]["annotations"][HELM_FILENAME_ANNOTATION]
            .as_str()
            .expect("the report is the file name");
        assert!(file.contains(&report));
    }

    #[test]
    fn list_documents_are_entered_and_bad_yaml_is_an_error() {
        let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: t\n    annotations:\n      helm.sh/hook: test\n  spec:\n    containers:\n    - name: c\n      image: busybox\n";
        let out = post_render(&Policy::default(), list, None).expect("renders");
        let docs = documents(&out.manifests);
        assert_eq!(
            docs[0]["items"][0]["spec"]["restartPolicy"], "Never",
            "{}",
            out.manifests
        );
        // A document this reader cannot read is Kubernetes' decoder's to judge: passed through.
        let out = post_render(&Policy::default(), "a: [", None).expect("renders");
        assert_eq!(out.manifests, "a: [");
        assert_eq!(out.unreadable.len(), 1, "{:?}", out.unreadable);
        assert!(post_render(&Policy::default(), "a: 1\n--- b: 2\n", None).is_err());
    }

    /// The issue's reproduction: octal file modes in objects that are not hooks.
    const NOT_HOOKS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      volumes: [{name: v, configMap: {name: x, defaultMode: 0444}}]\n";

    #[test]
    fn documents_without_fixes_come_back_byte_for_byte() {
        let out = post_render(&Policy::default(), NOT_HOOKS, Some("demo")).expect("renders");
        assert_eq!(out.manifests, NOT_HOOKS);
        let odd = "\n# leading comment\n---\n---   # empty document\n\nkind: ConfigMap\napiVersion: v1\nmetadata:\n    name:   'spaced'   # odd indentation\ndata: {a: yes, b: 0755, c: ~}\n...\n---\n";
        let out = post_render(&Policy::default(), odd, None).expect("renders");
        assert_eq!(out.manifests, odd);
        assert!(out.edited.is_empty());
    }

    #[test]
    fn a_fixed_hook_changes_only_where_the_fix_is() {
        let hook = "# Source: demo/templates/migrate.yaml\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: demo-migrate   # keep this comment\n  annotations:\n    \"helm.sh/hook\": pre-install\nspec:\n  template:\n    spec:\n      volumes:\n      - name: scripts\n        configMap: {name: demo-scripts, defaultMode: 0755}\n      containers:\n      - name: migrate\n        image: busybox:1.36\n        env: [{name: DEBUG, value: \"on\"}]\n";
        let text = format!("{NOT_HOOKS}---\n{hook}");
        let out = post_render(&Policy::default(), &text, Some("demo")).expect("renders");
        assert_eq!(out.edited.len(), 1);
        assert_eq!(
            (out.edited[0].document, out.edited[0].method),
            (3, EditMethod::InPlace)
        );
        // Everything before the hook document is untouched, and so is every line of the hook
        // that no fix names.
        assert!(out.manifests.starts_with(&format!("{NOT_HOOKS}---\n")));
        let fixed = &out.manifests[NOT_HOOKS.len() + 4..];
        for line in hook.lines() {
            assert!(
                fixed.lines().any(|l| l == line),
                "{line:?} is gone:\n{fixed}"
            );
        }
        // Decoded as Kubernetes decodes it: the input object plus exactly the fixes.
        let before = yaml::decode_document(hook).unwrap();
        let after = yaml::decode_document(fixed).unwrap();
        let volumes = "/spec/template/spec/volumes/0/configMap/defaultMode";
        assert_eq!(after.pointer(volumes), Some(&serde_json::json!(493)));
        let mut expected = before.clone();
        let (_, patch) = judge_object(
            &Policy::default(),
            &Source {
                name: "-",
                document: 1,
            },
            &before,
            Some("demo"),
            None,
            Exceptions::default(),
        )
        .unwrap();
        json_patch::patch(&mut expected, &patch).unwrap();
        expected["metadata"]["annotations"][OUTPUT_LOG_POLICY_ANNOTATION] = "hook-failed".into();
        assert_eq!(after, expected);
    }
}

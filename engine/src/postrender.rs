//! The Helm post-renderer: the same engine over the manifests Helm rendered, hooks included
//! (Helm 4 passes hooks to post-renderers; Helm 3 never did), before Helm reads the hooks.
//!
//! What the webhook would patch onto the live object is written into the manifest instead, so
//! Helm's own copy of the hook (the one whose annotations decide what Helm does) carries the
//! fixes; hook Pods and Jobs without `helm.sh/hook-output-log-policy` get `hook-failed`, so Helm
//! prints a failed hook's logs before its delete policy removes them. Objects an enforced rule
//! denies, including hooks with an event Helm does not know (Helm would drop them silently),
//! fail the render.

use serde_json::Value;

use crate::hook::OUTPUT_LOG_POLICY_ANNOTATION;
use crate::lint::{LintError, LintedObject, Source, judge_object};
use crate::policy::{Exceptions, Policy};

/// The annotation Helm 4 puts on every document it sends to a post-renderer: the template file
/// the document came from (Helm removes it again afterwards).
pub const HELM_FILENAME_ANNOTATION: &str = "postrenderer.helm.sh/postrender-filename";

/// What the post-renderer adds to hook Pods and Jobs that name no output-log policy.
pub const ADDED_OUTPUT_LOG_POLICY: &str = "hook-failed";

#[derive(Debug, thiserror::Error)]
pub enum PostRenderError {
    #[error(transparent)]
    Yaml(#[from] LintError),
    #[error("cannot apply the fixes to {kind} {name}: {message}")]
    Patch {
        kind: String,
        name: String,
        message: String,
    },
    #[error("cannot write the manifests back as YAML: {0}")]
    Write(String),
}

/// The result of one post-render.
#[derive(Debug)]
pub struct PostRendered {
    /// The manifests to hand back to Helm (YAML, every document of the input in its order).
    pub manifests: String,
    /// What the engine found on each hook object, with where it came from.
    pub objects: Vec<LintedObject>,
    /// Hook Pods and Jobs that got `helm.sh/hook-output-log-policy` added.
    pub output_log_policies_added: usize,
}

impl PostRendered {
    /// The hook objects an enforced rule denies (or that could not be judged).
    pub fn denied(&self) -> impl Iterator<Item = &LintedObject> {
        self.objects.iter().filter(|o| o.denied())
    }
}

/// Runs the engine over every hook object of a multi-document YAML stream (`List` documents
/// are entered) and writes the fixes into them. Objects that set no namespace are judged in
/// `namespace` (the release's).
pub fn post_render(
    policy: &Policy,
    text: &str,
    namespace: Option<&str>,
) -> Result<PostRendered, PostRenderError> {
    let mut documents: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| LintError::Yaml {
            source_name: "<post-render input>".to_owned(),
            message: e.to_string(),
        })?;
    // Empty documents (`---` twice) carry nothing Helm would keep.
    documents.retain(|d| !d.is_null());
    let mut result = PostRendered {
        manifests: String::new(),
        objects: Vec::new(),
        output_log_policies_added: 0,
    };
    for (i, doc) in documents.iter_mut().enumerate() {
        let is_list = doc
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.ends_with("List"));
        match doc.get_mut("items") {
            Some(Value::Array(items)) if is_list => {
                for item in items {
                    fix(policy, i + 1, item, namespace, &mut result)?;
                }
            }
            _ => fix(policy, i + 1, doc, namespace, &mut result)?,
        }
    }
    result.manifests = serde_saphyr::to_string_multiple(&documents)
        .map_err(|e| PostRenderError::Write(e.to_string()))?;
    Ok(result)
}

fn fix(
    policy: &Policy,
    document: usize,
    value: &mut Value,
    namespace: Option<&str>,
    result: &mut PostRendered,
) -> Result<(), PostRenderError> {
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
    let Some((linted, patch)) = judge_object(
        policy,
        &source,
        value,
        namespace,
        None,
        Exceptions::default(),
    ) else {
        return Ok(());
    };
    if !linted.denied() {
        json_patch::patch(value, &patch).map_err(|e| PostRenderError::Patch {
            kind: linted.kind.clone(),
            name: linted.name.clone(),
            message: e.to_string(),
        })?;
        let logs_kind = matches!(
            (linted.api_version.as_str(), linted.kind.as_str()),
            ("v1", "Pod") | ("batch/v1", "Job")
        );
        if logs_kind && add_output_log_policy(value) {
            result.output_log_policies_added += 1;
        }
    }
    result.objects.push(linted);
    Ok(())
}

/// Adds `helm.sh/hook-output-log-policy: hook-failed` unless the object names a policy.
fn add_output_log_policy(value: &mut Value) -> bool {
    let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) else {
        return false;
    };
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    match annotations.as_object_mut() {
        Some(map) if !map.contains_key(OUTPUT_LOG_POLICY_ANNOTATION) => {
            map.insert(
                OUTPUT_LOG_POLICY_ANNOTATION.to_owned(),
                Value::String(ADDED_OUTPUT_LOG_POLICY.to_owned()),
            );
            true
        }
        _ => false,
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
        serde_saphyr::from_multiple(text).expect("post-render output is YAML")
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
        assert!(post_render(&Policy::default(), "a: [", None).is_err());
    }
}

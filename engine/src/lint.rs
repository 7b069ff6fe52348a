//! `hookguard lint`: the same engine over rendered manifests (e.g. `helm template` output).
//!
//! Helm silently drops an object with an unknown hook event, so it never reaches the cluster or
//! the webhook, and `helm template` leaves it out of its output too: a typo'd event is only seen
//! in documents read before Helm sorts them (Helm 4's post-renderer, [`crate::postrender`]).

use serde::Serialize;
use serde_json::Value;

use crate::object::{Object, group_of};
use crate::policy::ways_out::{Subject, ways_out};
use crate::policy::{Exceptions, Labels, Operation, Policy, Request, evaluate};

#[derive(Debug, thiserror::Error)]
pub enum LintError {
    #[error("{source_name}: not valid YAML: {message}")]
    Yaml {
        source_name: String,
        message: String,
    },
}

/// One finding on one object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LintFinding {
    pub rule: &'static str,
    /// `deny` (an enforced rule fails), `warn`, or `mutate` (the webhook would fix it).
    pub action: &'static str,
    pub message: String,
}

/// The result for one hook object.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LintedObject {
    pub source: String,
    /// 1-based index of the YAML document in its source.
    pub document: usize,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub findings: Vec<LintFinding>,
    /// Set when the object could not be judged (e.g. a Job whose spec has the wrong shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a denied object: what the platform can do about it without a change to the chart.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ways_out: Vec<String>,
}

impl LintedObject {
    pub fn denied(&self) -> bool {
        self.error.is_some() || self.findings.iter().any(|f| f.action == "deny")
    }
}

/// Lints every hook object in a multi-document YAML text. Objects without `helm.sh/hook` are
/// skipped; `List` documents are expanded.
pub fn lint_text(
    policy: &Policy,
    source_name: &str,
    text: &str,
    namespace: Option<&str>,
) -> Result<Vec<LintedObject>, LintError> {
    // Read as Kubernetes reads YAML (YAML 1.1 scalars: `0644` is octal, `yes` is true).
    let documents: Vec<Value> = crate::yaml::decode_stream(text).map_err(|e| LintError::Yaml {
        source_name: source_name.to_owned(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (i, doc) in documents.into_iter().enumerate() {
        let is_list = doc
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.ends_with("List"))
            && doc.get("items").is_some_and(Value::is_array);
        if is_list {
            if let Some(Value::Array(items)) = doc.get("items") {
                for item in items {
                    lint_value(policy, source_name, i + 1, item, namespace, &mut out);
                }
            }
        } else {
            lint_value(policy, source_name, i + 1, &doc, namespace, &mut out);
        }
    }
    Ok(out)
}

fn lint_value(
    policy: &Policy,
    source_name: &str,
    document: usize,
    value: &Value,
    default_namespace: Option<&str>,
    out: &mut Vec<LintedObject>,
) {
    let source = Source {
        name: source_name,
        document,
    };
    out.extend(lint_object(
        policy,
        &source,
        value,
        default_namespace,
        None,
        Exceptions::default(),
    ));
}

/// Where an object was read: a file (or `-`, or a release) and the document's number in it.
pub struct Source<'a> {
    pub name: &'a str,
    pub document: usize,
}

/// Judges one object as a CREATE in its namespace (`default_namespace` when it sets none), whose
/// labels are `labels` (for overrides that select namespaces by label), with the
/// HookPolicyExceptions that exist; `None` when it is not a hook object.
pub fn lint_object(
    policy: &Policy,
    source: &Source<'_>,
    value: &Value,
    default_namespace: Option<&str>,
    labels: Option<&Labels>,
    exceptions: Exceptions<'_>,
) -> Option<LintedObject> {
    judge_object(policy, source, value, default_namespace, labels, exceptions)
        .map(|(linted, _patch)| linted)
}

/// [`lint_object`], plus the JSONPatch the webhook would send for the object (empty when it is
/// denied or could not be judged).
pub fn judge_object(
    policy: &Policy,
    source: &Source<'_>,
    value: &Value,
    default_namespace: Option<&str>,
    labels: Option<&Labels>,
    exceptions: Exceptions<'_>,
) -> Option<(LintedObject, Vec<json_patch::PatchOperation>)> {
    if !value.is_object() {
        return None;
    }
    // Round-trip through JSON text so lint and the webhook read objects with the same parser.
    let json = value.to_string();
    let object = serde_json::from_str::<Object<'_>>(&json).ok()?;
    object.hook()?;
    let api_version = object.api_version.as_deref().unwrap_or_default().to_owned();
    let kind = object.kind.as_deref().unwrap_or_default().to_owned();
    let namespace = object
        .metadata
        .as_ref()
        .and_then(|m| m.namespace.as_deref())
        .or(default_namespace)
        .map(str::to_owned);
    let mut linted = LintedObject {
        source: source.name.to_owned(),
        document: source.document,
        api_version: api_version.clone(),
        kind: kind.clone(),
        name: object.display_name(),
        namespace: namespace.clone(),
        findings: Vec::new(),
        error: None,
        ways_out: Vec::new(),
    };
    let req = Request {
        operation: Operation::Create,
        group: group_of(&api_version),
        kind: &kind,
        subresource: false,
        namespace: namespace.as_deref().unwrap_or_default(),
        namespace_labels: labels,
        exceptions,
        object: Some(&object),
        old_object: None,
    };
    let mut patch = Vec::new();
    match evaluate(policy, &req) {
        Err(e) => linted.error = Some(e.to_string()),
        Ok(decision) if decision.skipped == Some(crate::policy::Skip::AnnotationsTooLarge) => {
            linted.error = Some(format!(
                "metadata.annotations hold more than {} bytes (keys plus values): the API server \
                 refuses to store this object",
                crate::object::MAX_STORED_ANNOTATIONS_BYTES
            ));
        }
        Ok(decision) => {
            if decision.allowed() {
                patch = decision.patch;
            } else {
                let rules: Vec<&str> = decision.denials.iter().map(|f| f.rule).collect();
                let release = object
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.as_ref())
                    .and_then(|l| l.instance.as_deref());
                let subject = Subject {
                    kind: &kind,
                    name: &linted.name,
                    namespace: namespace.as_deref().unwrap_or_default(),
                    release,
                };
                linted.ways_out = ways_out(policy, &rules, &subject);
            }
            let tagged = |action: &'static str| {
                move |f: crate::policy::Finding| LintFinding {
                    rule: f.rule,
                    action,
                    message: f.message,
                }
            };
            linted.findings = decision
                .denials
                .into_iter()
                .map(tagged("deny"))
                .chain(decision.warnings.into_iter().map(tagged("warn")))
                .chain(decision.mutations.into_iter().map(tagged("mutate")))
                .collect();
        }
    }
    Some((linted, patch))
}

/// Human-readable report; the last line is a summary.
pub fn render_text(objects: &[LintedObject]) -> String {
    let mut out = String::new();
    let (mut denied, mut warnings, mut mutations) = (0, 0, 0);
    for o in objects {
        let ns = o
            .namespace
            .as_deref()
            .map(|n| format!(" -n {n}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "{} (document {}): {} {}{}\n",
            o.source, o.document, o.kind, o.name, ns
        ));
        if let Some(e) = &o.error {
            out.push_str(&format!("  ERROR  {e}\n"));
        }
        if o.findings.is_empty() && o.error.is_none() {
            out.push_str("  ok\n");
        }
        for f in &o.findings {
            let tag = match f.action {
                "deny" => "DENY  ",
                "warn" => "WARN  ",
                _ => "MUTATE",
            };
            out.push_str(&format!("  {tag} [{}] {}\n", f.rule, f.message));
            match f.action {
                "warn" => warnings += 1,
                "mutate" => mutations += 1,
                _ => {}
            }
        }
        if !o.ways_out.is_empty() {
            out.push_str("  without changing the chart:\n");
            for way in &o.ways_out {
                out.push_str(&format!("    - {way}\n"));
            }
        }
        if o.denied() {
            denied += 1;
        }
    }
    out.push_str(&format!(
        "{} hook object{} checked: {denied} would be denied, {warnings} warning{}, {mutations} mutation{} the webhook would apply\n",
        objects.len(),
        if objects.len() == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" },
        if mutations == 1 { "" } else { "s" },
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENDERED: &str = r#"---
# Source: demo/templates/configmap.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: not-a-hook
data:
  a: b
---
# Source: demo/templates/typo.yaml
apiVersion: batch/v1
kind: Job
metadata:
  name: demo-migrate
  annotations:
    "helm.sh/hook": pre-instal
    "helm.sh/hook-weight": "-5"
spec:
  template:
    spec:
      containers:
        - name: migrate
          image: busybox:1.36
---
---
# Source: demo/templates/tests/test.yaml
apiVersion: v1
kind: Pod
metadata:
  name: demo-test
  annotations:
    helm.sh/hook: test
spec:
  containers:
    - name: curl
      image: curlimages/curl:latest
"#;

    #[test]
    fn finds_typo_mutations_and_warnings_in_helm_template_output() {
        let objects = lint_text(&Policy::default(), "rendered.yaml", RENDERED, None).unwrap();
        assert_eq!(objects.len(), 2, "{objects:#?}");
        let job = &objects[0];
        assert_eq!(job.name, "demo-migrate");
        assert!(job.denied());
        assert!(
            job.findings
                .iter()
                .any(|f| f.rule == "hook-event-unknown" && f.message.contains("pre-install"))
        );
        assert!(
            job.findings
                .iter()
                .any(|f| f.rule == "restart-policy" && f.action == "mutate")
        );
        assert!(
            job.findings
                .iter()
                .any(|f| f.rule == "job-ttl" && f.message.contains("600"))
        );
        let pod = &objects[1];
        assert!(!pod.denied());
        assert!(
            pod.findings
                .iter()
                .any(|f| f.rule == "image-tag" && f.action == "warn")
        );
        let text = render_text(&objects);
        assert!(text.ends_with("2 hook objects checked: 1 would be denied, 1 warning, 5 mutations the webhook would apply\n"), "{text}");
    }

    #[test]
    fn invalid_yaml_names_the_source() {
        let err = lint_text(&Policy::default(), "bad.yaml", "a: [\n", None).unwrap_err();
        assert!(
            err.to_string().starts_with("bad.yaml: not valid YAML"),
            "{err}"
        );
    }

    #[test]
    fn annotations_the_api_server_refuses_are_an_error() {
        let list = "ab,".repeat(90_000);
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {{helm.sh/hook: '{list}'}}\nspec:\n  restartPolicy: Never\n  containers: [{{name: c, image: 'busybox:1.36'}}]\n"
        );
        let objects = lint_text(&Policy::default(), "-", &text, None).unwrap();
        let error = objects[0].error.as_deref().unwrap_or_default();
        assert!(error.contains("refuses to store"), "{objects:#?}");
    }

    #[test]
    fn lists_are_expanded() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: p\n    annotations: {helm.sh/hook: test}\n  spec:\n    restartPolicy: Never\n    containers: [{name: c, image: 'busybox:1.36'}]\n";
        let objects = lint_text(&Policy::default(), "-", text, None).unwrap();
        assert_eq!(objects.len(), 1);
    }
}

/// The value that switches a hook off, read from the template that renders it: when the whole
/// template sits inside `{{ if .Values.x.y }}` (alone, or as one term of an `and`), setting it to
/// false (`true` for a `not` term) means the hook is not rendered at all. `prefix` is the
/// subchart's path in the parent's values (`""` for the chart itself). `None` when the template
/// does not start with such a condition: nothing is guessed.
pub fn hook_switch(template: &str, prefix: &str) -> Option<String> {
    let mut rest = template.trim_start();
    // Comments (`{{/* ... */}}`, `{{- /* ... */ -}}`) may come first.
    loop {
        let after = rest.strip_prefix("{{")?;
        let after = after.strip_prefix('-').unwrap_or(after).trim_start();
        if let Some(comment) = after.strip_prefix("/*") {
            let end = comment.find("*/")?;
            let close = comment[end..].find("}}")?;
            rest = comment[end + close + 2..].trim_start();
            continue;
        }
        let condition = after.strip_prefix("if ")?;
        let end = condition.find("}}")?;
        let condition = condition[..end].trim().trim_end_matches('-').trim();
        return switch_of(condition).map(|(path, value)| {
            if prefix.is_empty() {
                format!("{path}={value}")
            } else {
                format!("{prefix}.{path}={value}")
            }
        });
    }
}

/// `.Values.a.b` → (`a.b`, false); `not .Values.a` → (`a`, true); `and T1 T2 ...` → the first
/// term that is one of those (any one false makes the `and` false); anything else → `None`.
fn switch_of(condition: &str) -> Option<(String, bool)> {
    let condition = condition.trim();
    let unparen = condition
        .strip_prefix('(')
        .and_then(|c| c.strip_suffix(')'))
        .map(str::trim);
    if let Some(inner) = unparen
        && balanced(inner)
    {
        return switch_of(inner);
    }
    let values_path = |term: &str| {
        let path = term.strip_prefix(".Values.")?;
        path.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
            .then(|| path.to_owned())
    };
    if let Some(path) = values_path(condition) {
        return Some((path, false));
    }
    if let Some(term) = condition.strip_prefix("not ") {
        return values_path(term.trim()).map(|p| (p, true));
    }
    let terms = condition.strip_prefix("and ")?;
    split_terms(terms)
        .into_iter()
        .find_map(|term| switch_of(term).filter(|_| !term.trim_start().starts_with("(or")))
}

fn balanced(s: &str) -> bool {
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

/// The space-separated terms of a template call, parenthesised terms kept whole.
fn split_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, None);
    for (i, c) in s.char_indices() {
        match c {
            '(' => {
                if depth == 0 && start.is_none() {
                    start = Some(i);
                }
                depth += 1;
            }
            ')' => depth -= 1,
            ' ' | '\t' | '\n' if depth == 0 => {
                if let Some(st) = start.take() {
                    terms.push(&s[st..i]);
                }
            }
            _ if start.is_none() => start = Some(i),
            _ => {}
        }
    }
    if let Some(st) = start {
        terms.push(&s[st..]);
    }
    terms
}

#[cfg(test)]
mod switch_tests {
    use super::hook_switch;

    #[test]
    fn the_condition_around_a_template_names_the_value_that_skips_the_hook() {
        let cases = [
            (
                "{{- if .Values.upgradeCRDs.enabled }}\nkind: Job\n",
                "",
                Some("upgradeCRDs.enabled=false"),
            ),
            (
                "{{- if and .Values.preUpgradeChecker.jobEnabled .Values.preUpgradeChecker.upgradeVersionCheck}}\n",
                "",
                Some("preUpgradeChecker.jobEnabled=false"),
            ),
            (
                "{{- if not .Values.disableValidatingWebhook }}\n",
                "",
                Some("disableValidatingWebhook=true"),
            ),
            (
                "{{- if and (not .Values.postInstall.labelNamespace.enabled) .Values.postInstall.probeWebhook.enabled }}",
                "",
                Some("postInstall.labelNamespace.enabled=true"),
            ),
            (
                "{{- if and (or (not .Values.a) (not .Values.b)) .Values.c.enabled }}",
                "",
                Some("c.enabled=false"),
            ),
            (
                "{{/* a comment */}}\n{{- if .Values.tests.enabled -}}\n",
                "sub",
                Some("sub.tests.enabled=false"),
            ),
            ("{{- if or .Values.a .Values.b }}", "", None),
            ("apiVersion: v1\n{{- if .Values.a }}", "", None),
            ("{{- if gt (int .Values.x) 0 }}", "", None),
        ];
        for (template, prefix, expected) in cases {
            assert_eq!(
                hook_switch(template, prefix).as_deref(),
                expected,
                "{template}"
            );
        }
    }
}

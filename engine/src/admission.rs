//! AdmissionReview `admission.k8s.io/v1` wire types and their translation to and from the engine.
//!
//! Own types rather than kube's: the API server expects `patch` as a base64 string, and only the
//! fields the rules read are parsed (borrowing from the request body).

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::object::Object;
use crate::policy::ways_out::{Subject, ways_out};
use crate::policy::{
    Decision, EngineError, Exceptions, Labels, Operation, Policy, Request, Skip, evaluate,
};

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// No response is larger than this, whatever the request: messages are capped per rule, values
/// from the object are echoed cut, and a response that would still be larger is answered with a
/// short one (see [`review`]).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The API server's uids are 36-byte UUIDs; a longer one is not from an API server, and echoing
/// it would let a request choose the size of its response.
pub const MAX_UID_BYTES: usize = 128;

/// Which endpoint is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Webhook {
    /// `/mutate`: always allows, returns the patch.
    Mutate,
    /// `/validate`: denies on enforced findings, returns warnings.
    Validate,
}

impl Webhook {
    pub fn as_str(self) -> &'static str {
        match self {
            Webhook::Mutate => "mutate",
            Webhook::Validate => "validate",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a> {
    #[serde(borrow, default, deserialize_with = "crate::object::opt_cow")]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "crate::object::opt_cow")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    request: Option<RequestIn<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(borrow)]
    kind: GroupVersionKind<'a>,
    #[serde(borrow, default, deserialize_with = "crate::object::opt_cow")]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "crate::object::opt_cow")]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    operation: Cow<'a, str>,
    #[serde(borrow, default)]
    object: Option<Object<'a>>,
    #[serde(borrow, default)]
    old_object: Option<Object<'a>>,
}

/// Only the namespace of a review, for [`namespace_of`].
#[derive(Deserialize)]
struct NamespaceIn<'a> {
    #[serde(borrow, default)]
    request: Option<RequestNamespaceIn<'a>>,
}

#[derive(Deserialize)]
struct RequestNamespaceIn<'a> {
    #[serde(borrow, default, deserialize_with = "crate::object::opt_cow")]
    namespace: Option<Cow<'a, str>>,
}

/// The request's namespace, read without building the objects (the caller looks its labels up
/// before [`review`]); `None` when the body holds none or is not a review.
pub fn namespace_of(body: &[u8]) -> Option<String> {
    let review: NamespaceIn<'_> = serde_json::from_slice(body).ok()?;
    review
        .request?
        .namespace
        .filter(|ns| !ns.is_empty())
        .map(Cow::into_owned)
}

#[derive(Debug, Deserialize)]
struct GroupVersionKind<'a> {
    #[serde(borrow, default)]
    group: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: BTreeMap<&'static str, String>,
}

#[derive(Debug, Serialize)]
struct StatusOut {
    code: u16,
    reason: &'static str,
    message: String,
}

/// A request hookguard cannot answer with an AdmissionReview: the HTTP layer returns 400.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("request body is not a valid AdmissionReview: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("AdmissionReview has no `request`")]
    MissingRequest,
    #[error(
        "unsupported AdmissionReview apiVersion {0:?}: hookguard speaks admission.k8s.io/v1 only"
    )]
    UnsupportedVersion(String),
    #[error("unsupported kind {0:?}: expected AdmissionReview")]
    UnsupportedKind(String),
    #[error("unknown operation {0:?}")]
    UnknownOperation(String),
    #[error("request.uid is {0} bytes long; an API server's uid is a 36-byte UUID")]
    UidTooLong(usize),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Longest error message a 400 (and its log line) carries. A parse error can quote the offending
/// value (serde: `invalid type: string "...", expected a boolean`), which a forged request makes
/// as long as the body.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

impl AdmissionError {
    /// The message, at most [`MAX_ERROR_MESSAGE_BYTES`] (plus a short note when cut).
    pub fn bounded_message(&self) -> String {
        let full = self.to_string();
        if full.len() <= MAX_ERROR_MESSAGE_BYTES {
            return full;
        }
        format!(
            "{}... (message cut: {} bytes)",
            crate::hook::truncate_str(&full, MAX_ERROR_MESSAGE_BYTES),
            full.len()
        )
    }
}

/// What was decided, for metrics and logs (no object content beyond names and rule ids).
#[derive(Debug)]
pub struct Outcome {
    pub operation: Operation,
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub decision: Decision,
    /// `allowed`, `patched` or `denied`.
    pub result: &'static str,
    pub name: String,
    pub uid: String,
}

/// Answers one AdmissionReview body: the serialized response and what was decided.
/// `namespace_labels`: the labels of the request's namespace, when the policy selects namespaces
/// by label ([`Policy::uses_namespace_labels`]) and the caller knows them (see [`namespace_of`]).
pub fn review(
    webhook: Webhook,
    policy: &Policy,
    body: &[u8],
    namespace_labels: Option<&Labels>,
) -> Result<(Vec<u8>, Outcome), AdmissionError> {
    review_with(
        webhook,
        policy,
        body,
        namespace_labels,
        Exceptions::default(),
    )
}

/// [`review`], with the HookPolicyExceptions that exist and the time.
pub fn review_with(
    webhook: Webhook,
    policy: &Policy,
    body: &[u8],
    namespace_labels: Option<&Labels>,
    exceptions: Exceptions<'_>,
) -> Result<(Vec<u8>, Outcome), AdmissionError> {
    let review: ReviewIn<'_> = serde_json::from_slice(body)?;
    if let Some(v) = review.api_version.as_deref()
        && v != API_VERSION
    {
        return Err(AdmissionError::UnsupportedVersion(cut(v).to_owned()));
    }
    if let Some(k) = review.kind.as_deref()
        && k != KIND
    {
        return Err(AdmissionError::UnsupportedKind(cut(k).to_owned()));
    }
    let req = review.request.ok_or(AdmissionError::MissingRequest)?;
    if req.uid.len() > MAX_UID_BYTES {
        return Err(AdmissionError::UidTooLong(req.uid.len()));
    }
    let operation = Operation::parse(&req.operation).ok_or_else(|| {
        AdmissionError::UnknownOperation(crate::hook::truncate_str(&req.operation, 32).to_owned())
    })?;
    let namespace = req.namespace.as_deref().unwrap_or_default();
    let engine_req = Request {
        operation,
        group: &req.kind.group,
        kind: &req.kind.kind,
        subresource: req.sub_resource.as_deref().is_some_and(|s| !s.is_empty()),
        namespace,
        namespace_labels,
        exceptions,
        object: req.object.as_ref(),
        old_object: req.old_object.as_ref(),
    };
    let decision = evaluate(policy, &engine_req)?;
    // Names and kinds come from the request: cut them for messages, logs and metrics.
    let name = req
        .object
        .as_ref()
        .or(req.old_object.as_ref())
        .map(Object::display_name)
        .map(|n| cut(&n).to_owned())
        .unwrap_or_default();
    let kind = cut(&req.kind.kind);

    let mut response = ResponseOut {
        uid: &req.uid,
        allowed: true,
        status: None,
        patch: None,
        patch_type: None,
        warnings: Vec::new(),
        audit_annotations: BTreeMap::new(),
    };
    let result = match webhook {
        Webhook::Mutate => {
            if decision.patch.is_empty() {
                "allowed"
            } else {
                let patch = serde_json::to_vec(&decision.patch)?;
                response.patch = Some(base64::engine::general_purpose::STANDARD.encode(patch));
                response.patch_type = Some("JSONPatch");
                if !decision.mutations.is_empty() {
                    response
                        .audit_annotations
                        .insert("mutated", decision.mutated_rules().join(","));
                }
                "patched"
            }
        }
        Webhook::Validate => {
            response.warnings = decision
                .warnings
                .iter()
                .map(|f| format!("[{}] {}", f.rule, f.message))
                .collect();
            // The validating webhook sees the mutated object, so a mutation still pending here
            // means the mutating webhook did not run (failurePolicy Ignore, or not registered).
            if !decision.mutations.is_empty() {
                response.warnings.push(format!(
                    "hookguard's mutating webhook did not run for this object; not fixed: {}",
                    decision.mutated_rules().join(", ")
                ));
            }
            let fired = decision.fired_rules();
            if !fired.is_empty() {
                response.audit_annotations.insert("rules", fired.join(","));
            }
            if !decision.ratcheted.is_empty() {
                response
                    .audit_annotations
                    .insert("ratcheted", decision.ratcheted.join(","));
            }
            if decision.allowed() {
                "allowed"
            } else {
                response.allowed = false;
                response.status = Some(StatusOut {
                    code: 403,
                    reason: "Forbidden",
                    message: denial_message(kind, &name, &decision, &{
                        let subject = Subject {
                            kind,
                            name: &name,
                            namespace,
                            release: req
                                .object
                                .as_ref()
                                .and_then(|o| o.metadata.as_ref())
                                .and_then(|m| m.labels.as_ref())
                                .and_then(|l| l.instance.as_deref())
                                .map(cut),
                        };
                        let rules: Vec<&str> = decision.denials.iter().map(|f| f.rule).collect();
                        ways_out(policy, &rules, &subject)
                    }),
                });
                "denied"
            }
        }
    };
    if !decision.exempted.is_empty() {
        response
            .audit_annotations
            .insert("exempted", decision.exempted.join(","));
    }
    // Which HookPolicyException waived which rule, and the expired ones that no longer did.
    for (key, list) in [
        ("exceptions", &decision.excepted),
        ("expired-exceptions", &decision.expired_exceptions),
    ] {
        if !list.is_empty() {
            let value: Vec<String> = list
                .iter()
                .map(|(rule, id)| format!("{rule}={id}"))
                .collect();
            response
                .audit_annotations
                .insert(key, cut(&value.join(",")).to_owned());
        }
    }
    let out = ReviewOut {
        api_version: API_VERSION,
        kind: KIND,
        response,
    };
    let mut bytes = serde_json::to_vec(&out)?;
    if bytes.len() > MAX_RESPONSE_BYTES {
        // Unreachable by construction (each part is capped); kept so that no input can ever
        // choose the size of the answer. The decision stands, only the explanation is cut.
        bytes = short_response(out.response)?;
    }
    let outcome = Outcome {
        operation,
        group: cut(&req.kind.group).to_owned(),
        kind: kind.to_owned(),
        namespace: cut(namespace).to_owned(),
        result,
        name,
        uid: req.uid.to_string(),
        decision,
    };
    Ok((bytes, outcome))
}

/// Longest name, kind, group or namespace kept for messages, logs and metrics (Kubernetes names
/// are at most 253 bytes).
const MAX_NAME_BYTES: usize = 253;

fn cut(s: &str) -> &str {
    crate::hook::truncate_str(s, MAX_NAME_BYTES)
}

/// The same answer without warnings, audit annotations and with a short message.
fn short_response(mut response: ResponseOut<'_>) -> Result<Vec<u8>, serde_json::Error> {
    response.warnings = vec![format!(
        "hookguard: the full answer exceeded {MAX_RESPONSE_BYTES} bytes; warnings were dropped"
    )];
    response.audit_annotations.clear();
    if let Some(status) = &mut response.status {
        status.message = crate::hook::truncate_str(&status.message, 4096).to_owned();
    }
    serde_json::to_vec(&ReviewOut {
        api_version: API_VERSION,
        kind: KIND,
        response,
    })
}

/// The message a user sees after `admission webhook "..." denied the request: `, then the ways
/// out that need no change to the chart.
pub fn denial_message(kind: &str, name: &str, decision: &Decision, ways: &[String]) -> String {
    let rules: Vec<String> = decision
        .denials
        .iter()
        .map(|f| format!("[{}] {}", f.rule, f.message))
        .collect();
    let mut message = format!(
        "hookguard: {kind} {name:?} breaks {} hook rule{}: {}",
        rules.len(),
        if rules.len() == 1 { "" } else { "s" },
        rules.join(" | ")
    );
    if !ways.is_empty() {
        message.push_str(" || Without changing the chart: ");
        message.push_str(&ways.join("; "));
    }
    message
}

impl Outcome {
    /// Whether the request concerned a Helm hook that was judged or counted.
    pub fn is_hook(&self) -> bool {
        self.decision.hook.is_some()
    }

    pub fn skipped(&self) -> Option<Skip> {
        self.decision.skipped
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn envelope(operation: &str, object: Value, old: Value) -> Vec<u8> {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "name": "t",
                "namespace": "default",
                "operation": operation,
                "userInfo": {"username": "admin", "groups": ["system:masters", "system:authenticated"]},
                "object": object,
                "oldObject": old,
                "dryRun": false,
                "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
            }
        })
        .to_string()
        .into_bytes()
    }

    fn hook_pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "t", "namespace": "default", "annotations": {"helm.sh/hook": "test"}},
               "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}], "restartPolicy": "Always"}})
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn mutate_returns_base64_json_patch_and_echoes_uid() {
        let (bytes, outcome) = review(
            Webhook::Mutate,
            &Policy::default(),
            &envelope("CREATE", hook_pod(), Value::Null),
            None,
        )
        .unwrap();
        let v = parse(&bytes);
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["kind"], "AdmissionReview");
        assert_eq!(v["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(v["response"]["allowed"], true);
        assert_eq!(v["response"]["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(v["response"]["patch"].as_str().unwrap())
            .unwrap();
        let ops: Vec<json_patch::PatchOperation> = serde_json::from_slice(&patch).unwrap();
        let mut obj = hook_pod();
        json_patch::patch(&mut obj, &ops).unwrap();
        assert_eq!(obj["spec"]["restartPolicy"], "Never");
        assert_eq!(obj["metadata"]["labels"]["hookguard.io/hook"], "true");
        assert_eq!(outcome.result, "patched");
        assert_eq!(
            v["response"]["auditAnnotations"]["mutated"],
            "restart-policy,delete-policy-default"
        );
    }

    #[test]
    fn validate_denies_with_every_rule_and_fix() {
        let mut pod = hook_pod();
        pod["metadata"]["annotations"]["helm.sh/hook"] = json!("crd-install");
        pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"] =
            json!("before-hook-creations");
        let (bytes, outcome) = review(
            Webhook::Validate,
            &Policy::default(),
            &envelope("CREATE", pod, Value::Null),
            None,
        )
        .unwrap();
        let v = parse(&bytes);
        assert_eq!(v["response"]["allowed"], false);
        assert_eq!(v["response"]["status"]["code"], 403);
        let msg = v["response"]["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains("[hook-event-unknown]") && msg.contains("[delete-policy-unknown]"),
            "{msg}"
        );
        assert!(
            msg.starts_with("hookguard: Pod \"t\" breaks 2 hook rules"),
            "{msg}"
        );
        // The ways out that need no chart change, for both rules, in the request's namespace.
        let (_, ways) = msg.split_once(" || Without changing the chart: ").unwrap();
        assert!(
            ways.contains(r#"{"hook-event-unknown":"warn","delete-policy-unknown":"warn"}"#)
                || ways.contains(r#"{"delete-policy-unknown":"warn","hook-event-unknown":"warn"}"#),
            "{ways}"
        );
        assert!(
            ways.contains(r#""kind":"HookPolicyException""#) && ways.contains(r#""names":["t"]"#),
            "{ways}"
        );
        assert_eq!(outcome.result, "denied");
    }

    #[test]
    fn delete_with_null_object_is_allowed_and_counted() {
        let (bytes, outcome) = review(
            Webhook::Validate,
            &Policy::default(),
            &envelope("DELETE", Value::Null, hook_pod()),
            None,
        )
        .unwrap();
        let v = parse(&bytes);
        assert_eq!(v["response"]["allowed"], true);
        assert!(v["response"].get("patch").is_none());
        assert!(outcome.is_hook());
        assert_eq!(outcome.skipped(), Some(Skip::Delete));
    }

    #[test]
    fn mutated_object_needs_no_second_patch() {
        let (bytes, _) = review(
            Webhook::Mutate,
            &Policy::default(),
            &envelope("CREATE", hook_pod(), Value::Null),
            None,
        )
        .unwrap();
        let v = parse(&bytes);
        let patch = base64::engine::general_purpose::STANDARD
            .decode(v["response"]["patch"].as_str().unwrap())
            .unwrap();
        let ops: Vec<json_patch::PatchOperation> = serde_json::from_slice(&patch).unwrap();
        let mut obj = hook_pod();
        json_patch::patch(&mut obj, &ops).unwrap();
        let (bytes, outcome) = review(
            Webhook::Mutate,
            &Policy::default(),
            &envelope("CREATE", obj, Value::Null),
            None,
        )
        .unwrap();
        assert!(parse(&bytes)["response"].get("patch").is_none());
        assert_eq!(outcome.result, "allowed");
    }

    #[test]
    fn error_messages_that_quote_the_input_are_cut() {
        let p = Policy::default();
        let huge = "x".repeat(1 << 20);
        let mut in_envelope: Value =
            serde_json::from_slice(&envelope("CREATE", hook_pod(), Value::Null)).unwrap();
        in_envelope["request"]["kind"] = json!(huge);
        let mut in_spec = hook_pod();
        in_spec["spec"]["hostNetwork"] = json!(huge);
        for body in [
            in_envelope.to_string(),
            String::from_utf8(envelope("CREATE", in_spec, Value::Null)).unwrap(),
        ] {
            let err = review(Webhook::Validate, &p, body.as_bytes(), None).unwrap_err();
            assert!(err.to_string().len() > 1 << 20, "serde quotes the value");
            let message = err.bounded_message();
            assert!(
                message.len() < MAX_ERROR_MESSAGE_BYTES + 64,
                "{}",
                message.len()
            );
            assert!(message.ends_with("bytes)"), "{message}");
        }
    }

    #[test]
    fn bad_envelopes_are_errors_not_panics() {
        let p = Policy::default();
        assert!(matches!(
            review(Webhook::Mutate, &p, b"{", None),
            Err(AdmissionError::Malformed(_))
        ));
        assert!(matches!(
            review(Webhook::Mutate, &p, b"null", None),
            Err(AdmissionError::Malformed(_))
        ));
        assert!(matches!(
            review(Webhook::Mutate, &p, b"{}", None),
            Err(AdmissionError::MissingRequest)
        ));
        assert!(matches!(
            review(
                Webhook::Mutate,
                &p,
                &{
                    let mut v: Value =
                        serde_json::from_slice(&envelope("CREATE", hook_pod(), Value::Null))
                            .unwrap();
                    v["apiVersion"] = json!("admission.k8s.io/v1beta1");
                    v.to_string().into_bytes()
                },
                None
            ),
            Err(AdmissionError::UnsupportedVersion(_))
        ));
        let body = envelope("PATCH", hook_pod(), Value::Null);
        assert!(matches!(
            review(Webhook::Mutate, &p, &body, None),
            Err(AdmissionError::UnknownOperation(_))
        ));
    }
}

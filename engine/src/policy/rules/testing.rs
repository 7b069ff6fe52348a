//! Fixture builders for rule tests. The objects are shaped like what kube-apiserver sends a
//! mutating webhook on CREATE: defaulted (restartPolicy, terminationMessagePath, dnsPolicy, ...),
//! with no uid or status yet.

use serde_json::{Value, json};

use crate::object::{Object, group_of};
use crate::policy::{Decision, Operation, Policy, Request, evaluate};

fn defaulted_pod_spec(name: &str, image: &str, restart_policy: &str) -> Value {
    json!({
        "containers": [{
            "name": name,
            "image": image,
            "command": ["sh", "-c", "echo run"],
            "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent"
        }],
        "restartPolicy": if restart_policy.is_empty() { "Always" } else { restart_policy },
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "securityContext": {},
        "schedulerName": "default-scheduler"
    })
}

fn annotations(fragment: &str) -> Value {
    serde_json::from_str(&format!("{{{fragment}}}")).expect("test annotations are valid JSON")
}

/// A defaulted hook Job; `restart_policy` `""` means the API default (`Always`).
pub fn job(annotation_fragment: &str, restart_policy: &str) -> String {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "migrate",
            "namespace": "default",
            "annotations": annotations(annotation_fragment)
        },
        "spec": {
            "parallelism": 1,
            "manualSelector": false,
            "completions": 1,
            "backoffLimit": 6,
            "completionMode": "NonIndexed",
            "suspend": false,
            "podReplacementPolicy": "TerminatingOrFailed",
            "template": {
                "metadata": {},
                "spec": defaulted_pod_spec("migrate", "busybox:1.36", restart_policy)
            }
        },
        "status": {}
    })
    .to_string()
}

/// A defaulted hook Pod; `restart_policy` `""` means the API default (`Always`).
pub fn pod(annotation_fragment: &str, restart_policy: &str) -> String {
    let mut spec = defaulted_pod_spec("test", "busybox:1.36", restart_policy);
    // Bare Pods also get these from defaulting and admission (Job templates do not).
    spec["enableServiceLinks"] = json!(true);
    spec["preemptionPolicy"] = json!("PreemptLowerPriority");
    spec["priority"] = json!(0);
    spec["serviceAccountName"] = json!("default");
    spec["serviceAccount"] = json!("default");
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "release-test",
            "namespace": "default",
            "annotations": annotations(annotation_fragment)
        },
        "spec": spec,
        "status": {}
    })
    .to_string()
}

/// Sets the value at a JSON pointer (creating nothing: the parent must exist).
pub fn with(json: &str, pointer: &str, value: Value) -> String {
    let mut v: Value = serde_json::from_str(json).expect("fixture is JSON");
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    let target = v.pointer_mut(parent).expect("parent exists");
    match target {
        Value::Object(map) => {
            map.insert(key.replace("~1", "/").replace("~0", "~"), value);
        }
        Value::Array(list) => list[key.parse::<usize>().expect("index")] = value,
        _ => panic!("parent of {pointer} is not a container"),
    }
    v.to_string()
}

pub fn judge_with(policy: &Policy, json: &str, operation: Operation) -> Decision {
    let object: Object = serde_json::from_str(json).expect("fixture parses");
    let namespace = object
        .metadata
        .as_ref()
        .and_then(|m| m.namespace.as_deref())
        .unwrap_or("default")
        .to_owned();
    judge_in(policy, json, operation, &namespace, None)
}

/// Evaluates `json` as if created in `namespace`, whose labels are `labels` (`None`: unknown).
pub fn judge_in(
    policy: &Policy,
    json: &str,
    operation: Operation,
    namespace: &str,
    labels: Option<&crate::policy::Labels>,
) -> Decision {
    let object: Object = serde_json::from_str(json).expect("fixture parses");
    let api_version = object.api_version.as_deref().unwrap_or("v1").to_owned();
    let kind = object.kind.as_deref().unwrap_or_default().to_owned();
    let req = Request {
        operation,
        group: group_of(&api_version),
        kind: &kind,
        subresource: false,
        namespace,
        namespace_labels: labels,
        exceptions: Default::default(),
        object: Some(&object),
        old_object: None,
    };
    evaluate(policy, &req).expect("fixture evaluates")
}

/// Evaluates an UPDATE from `old` to `new` under `policy`.
pub fn judge_update(policy: &Policy, old: &str, new: &str) -> Decision {
    let old: Object = serde_json::from_str(old).expect("old fixture parses");
    let object: Object = serde_json::from_str(new).expect("fixture parses");
    let api_version = object.api_version.as_deref().unwrap_or("v1").to_owned();
    let kind = object.kind.as_deref().unwrap_or_default().to_owned();
    let req = Request {
        operation: Operation::Update,
        group: group_of(&api_version),
        kind: &kind,
        subresource: false,
        namespace: "default",
        namespace_labels: None,
        exceptions: Default::default(),
        object: Some(&object),
        old_object: Some(&old),
    };
    evaluate(policy, &req).expect("fixture evaluates")
}

/// Evaluates a CREATE under the built-in policy.
pub fn judge(json: &str) -> Decision {
    judge_with(&Policy::default(), json, Operation::Create)
}

pub fn fired(d: &Decision, rule: &str) -> bool {
    d.fired_rules().contains(&rule)
}

/// The denial message of `rule`; panics when the rule did not deny.
pub fn denial(d: &Decision, rule: &str) -> String {
    d.denials
        .iter()
        .find(|f| f.rule == rule)
        .map(|f| f.message.clone())
        .unwrap_or_else(|| panic!("{rule} did not deny: {d:#?}"))
}

/// The warning message of `rule`; panics when the rule did not warn.
pub fn warning(d: &Decision, rule: &str) -> String {
    d.warnings
        .iter()
        .find(|f| f.rule == rule)
        .map(|f| f.message.clone())
        .unwrap_or_else(|| panic!("{rule} did not warn: {d:#?}"))
}

/// Applies the decision's patch to the object, as the API server does.
pub fn patched(json: &str, d: &Decision) -> Value {
    let mut v: Value = serde_json::from_str(json).expect("fixture is JSON");
    json_patch::patch(&mut v, &d.patch).expect("patch applies");
    v
}

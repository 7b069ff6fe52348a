//! The whole admission path (parse, engine, response) over AdmissionReviews shaped like what
//! kube-apiserver sends: defaulted objects, managedFields, userInfo, options.
//! Patches are verified by applying them to the request object.

mod common;

use serde_json::{Value, json};

use common::{apply_patch, fixture};
use hookguard::admission::{Webhook, review};
use hookguard::policy::{Config, Policy};

fn call(webhook: Webhook, policy: &Policy, body: &Value) -> Value {
    let bytes = serde_json::to_vec(body).unwrap();
    let (out, _) = review(webhook, policy, &bytes, None).expect("review answers");
    serde_json::from_slice(&out).unwrap()
}

/// Runs the API server's sequence: mutate, apply the patch, validate the mutated object.
/// Returns (mutated object, mutate response, validate response).
fn admit(policy: &Policy, body: &Value) -> (Value, Value, Value) {
    let mutate = call(Webhook::Mutate, policy, body);
    assert_eq!(mutate["response"]["allowed"], true, "/mutate never denies");
    assert_eq!(mutate["response"]["uid"], body["request"]["uid"]);
    let mutated = apply_patch(&mutate, &body["request"]["object"]);
    let mut second = body.clone();
    second["request"]["object"] = mutated.clone();
    // Reinvocation of the mutating webhook on its own output changes nothing.
    let again = call(Webhook::Mutate, policy, &second);
    assert!(
        again["response"].get("patch").is_none(),
        "not idempotent: {again}"
    );
    let validate = call(Webhook::Validate, policy, &second);
    (mutated, mutate, validate)
}

fn warnings(v: &Value) -> Vec<String> {
    v["response"]["warnings"]
        .as_array()
        .map(|a| a.iter().map(|w| w.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn migration_job_is_made_safe_and_allowed() {
    let body = fixture("job-migrate-create.json");
    let (job, mutate, validate) = admit(&Policy::default(), &body);
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 600);
    assert_eq!(
        job["metadata"]["annotations"]["helm.sh/hook-delete-policy"],
        "before-hook-creation"
    );
    assert_eq!(job["metadata"]["labels"]["hookguard.io/hook"], "true");
    assert_eq!(
        job["metadata"]["labels"]["app.kubernetes.io/instance"], "shop",
        "other labels kept"
    );
    assert_eq!(
        job["metadata"]["annotations"]["hookguard.io/mutated"],
        "restart-policy,job-ttl,delete-policy-default"
    );
    assert_eq!(
        mutate["response"]["auditAnnotations"]["mutated"],
        "restart-policy,job-ttl,delete-policy-default"
    );
    assert_eq!(validate["response"]["allowed"], true);
    assert!(warnings(&validate).is_empty(), "{validate}");
}

#[test]
fn test_pod_without_restart_policy_gets_never() {
    let (pod, _, validate) = admit(&Policy::default(), &fixture("pod-test-create.json"));
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(validate["response"]["allowed"], true);
    assert!(
        pod.get("spec")
            .unwrap()
            .get("ttlSecondsAfterFinished")
            .is_none(),
        "Pods have no TTL"
    );
}

#[test]
fn curl_latest_notify_job_warns_twice_and_is_allowed() {
    let (job, _, validate) = admit(
        &Policy::default(),
        &fixture("job-notify-curl-latest-create.json"),
    );
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 600);
    assert_eq!(validate["response"]["allowed"], true);
    let w = warnings(&validate);
    assert!(
        w.iter()
            .any(|w| w.starts_with("[image-tag]") && w.contains("curlimages/curl:latest")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|w| w.starts_with("[delete-policy-recreate]")),
        "{w:?}"
    );
    assert_eq!(
        validate["response"]["auditAnnotations"]["rules"],
        "delete-policy-recreate,image-tag"
    );
}

#[test]
fn popular_charts_hooks_are_never_denied() {
    for name in [
        "job-kyverno-migrate-resources-create.json",
        "job-kyverno-scale-to-zero-create.json",
        "job-gatekeeper-update-namespace-label-create.json",
        "job-gatekeeper-update-crds-create.json",
        "job-cert-manager-startupapicheck-create.json",
        "job-ingress-nginx-admission-create-create.json",
        "pod-helm-create-scaffold-test-create.json",
    ] {
        let body = fixture(name);
        let (object, _, validate) = admit(&Policy::default(), &body);
        assert_eq!(validate["response"]["allowed"], true, "{name}: {validate}");
        // Explicit policies and restart policies of these charts are kept.
        let original = &body["request"]["object"];
        let policy = &original["metadata"]["annotations"]["helm.sh/hook-delete-policy"];
        if !policy.is_null() {
            assert_eq!(
                object["metadata"]["annotations"]["helm.sh/hook-delete-policy"], *policy,
                "{name}"
            );
        }
        if original["kind"] == "Job" {
            assert_eq!(
                object["spec"]["template"]["spec"]["restartPolicy"],
                original["spec"]["template"]["spec"]["restartPolicy"],
                "{name}"
            );
            assert!(
                object["spec"]["ttlSecondsAfterFinished"].as_i64().unwrap() >= 60,
                "{name}"
            );
        }
    }
}

#[test]
fn ingress_nginx_ttl_zero_is_raised_to_the_floor() {
    let (job, _, _) = admit(
        &Policy::default(),
        &fixture("job-ingress-nginx-admission-create-create.json"),
    );
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 60);
}

#[test]
fn helm_create_scaffold_untagged_busybox_only_warns() {
    let (_, _, validate) = admit(
        &Policy::default(),
        &fixture("pod-helm-create-scaffold-test-create.json"),
    );
    assert_eq!(validate["response"]["allowed"], true);
    let w = warnings(&validate);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("\"busybox\" has no tag"), "{w:?}");
}

#[test]
fn delete_with_null_object_is_allowed_untouched() {
    let body = fixture("job-migrate-delete.json");
    assert!(body["request"]["object"].is_null());
    for webhook in [Webhook::Mutate, Webhook::Validate] {
        let v = call(webhook, &Policy::default(), &body);
        assert_eq!(v["response"]["allowed"], true);
        assert!(v["response"].get("patch").is_none());
        assert!(v["response"].get("warnings").is_none());
    }
}

#[test]
fn delete_is_never_denied_even_for_broken_hooks() {
    let mut body = fixture("job-migrate-delete.json");
    body["request"]["oldObject"]["metadata"]["annotations"]["helm.sh/hook"] = json!("crd-install");
    let v = call(Webhook::Validate, &Policy::default(), &body);
    assert_eq!(v["response"]["allowed"], true);
}

#[test]
fn update_never_touches_the_spec_but_fixes_metadata() {
    let body = fixture("job-migrate-update.json");
    let mut spec_always = body.clone();
    spec_always["request"]["object"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    spec_always["request"]["object"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("ttlSecondsAfterFinished");
    let mutate = call(Webhook::Mutate, &Policy::default(), &spec_always);
    let object = apply_patch(&mutate, &spec_always["request"]["object"]);
    assert_eq!(
        object["spec"]["template"]["spec"]["restartPolicy"], "Always",
        "spec is immutable"
    );
    assert!(object["spec"].get("ttlSecondsAfterFinished").is_none());
    assert_eq!(
        object["metadata"]["annotations"]["helm.sh/hook-delete-policy"],
        "before-hook-creation"
    );
    assert_eq!(
        object["metadata"]["annotations"]["hookguard.io/mutated"],
        "delete-policy-default"
    );
}

#[test]
fn dry_run_is_judged_like_a_real_request() {
    let real = call(
        Webhook::Mutate,
        &Policy::default(),
        &fixture("job-migrate-create.json"),
    );
    let dry = call(
        Webhook::Mutate,
        &Policy::default(),
        &fixture("job-migrate-create-dry-run.json"),
    );
    assert_eq!(real["response"]["patch"], dry["response"]["patch"]);
}

#[test]
fn typo_crd_install_deployment_and_privileged_are_denied_with_fixes() {
    let base = fixture("job-migrate-create.json");
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "delete-policy-unknown",
            {
                let mut b = base.clone();
                b["request"]["object"]["metadata"]["annotations"]["helm.sh/hook-delete-policy"] =
                    json!("before-hook-creations");
                b
            },
            "did you mean \"before-hook-creation\"",
        ),
        (
            "hook-event-unknown",
            {
                let mut b = base.clone();
                b["request"]["object"]["metadata"]["annotations"]["helm.sh/hook"] =
                    json!("pre-instal");
                b
            },
            "did you mean \"pre-install\"",
        ),
        (
            "hook-event-unknown",
            {
                let mut b = base.clone();
                b["request"]["object"]["metadata"]["annotations"]["helm.sh/hook"] =
                    json!("crd-install");
                b
            },
            "crds/ directory",
        ),
        (
            "hook-weight-invalid",
            {
                let mut b = base.clone();
                b["request"]["object"]["metadata"]["annotations"]["helm.sh/hook-weight"] =
                    json!("5.0");
                b
            },
            "write it as \"5\"",
        ),
        (
            "pod-security",
            {
                let mut b = base.clone();
                b["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["securityContext"] =
                    json!({"privileged": true});
                b
            },
            "is privileged",
        ),
    ];
    for (rule, body, fix) in cases {
        let (_, _, validate) = admit(&Policy::default(), &body);
        assert_eq!(validate["response"]["allowed"], false, "{rule}");
        assert_eq!(validate["response"]["status"]["code"], 403);
        let msg = validate["response"]["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains(&format!("[{rule}]")) && msg.contains(fix),
            "{rule}: {msg}"
        );
    }
}

#[test]
fn deployment_hook_is_denied() {
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "warmup", "namespace": "shop", "annotations": {"helm.sh/hook": "post-install"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "w"}}, "template": {"metadata": {"labels": {"app": "w"}},
                 "spec": {"containers": [{"name": "w", "image": "nginx:1.27"}], "restartPolicy": "Always"}}}
    });
    let body = common::review(
        "CREATE",
        "apps",
        "v1",
        "Deployment",
        "deployments",
        deployment,
        Value::Null,
    );
    let (object, _, validate) = admit(&Policy::default(), &body);
    assert_eq!(validate["response"]["allowed"], false);
    assert!(
        validate["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("[hook-kind-long-running]")
    );
    // Only Pods and Jobs get spec rules: a Deployment's template keeps Always.
    assert_eq!(
        object["spec"]["template"]["spec"]["restartPolicy"],
        "Always"
    );
}

#[test]
fn objects_without_labels_or_annotations_maps_are_handled() {
    let no_maps = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain", "namespace": "default"}, "data": {}});
    let body = common::review(
        "CREATE",
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        no_maps,
        Value::Null,
    );
    let v = call(Webhook::Mutate, &Policy::default(), &body);
    assert!(
        v["response"].get("patch").is_none(),
        "non-hooks are untouched"
    );

    let hook_no_labels = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default",
        "annotations": {"helm.sh/hook": "pre-install"}}, "type": "Opaque", "data": {"k": "dg=="}});
    let body = common::review(
        "CREATE",
        "",
        "v1",
        "Secret",
        "secrets",
        hook_no_labels.clone(),
        Value::Null,
    );
    let (object, _, validate) = admit(&Policy::default(), &body);
    assert_eq!(object["metadata"]["labels"]["hookguard.io/hook"], "true");
    assert_eq!(object["data"], hook_no_labels["data"]);
    assert_eq!(validate["response"]["allowed"], true);
}

#[test]
fn huge_config_map_hook_is_labelled_quickly_and_nothing_else_changes() {
    let blob = "x".repeat(4 * 1024 * 1024);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big", "namespace": "default",
        "annotations": {"helm.sh/hook": "pre-install", "helm.sh/hook-delete-policy": "before-hook-creation"}, "labels": {}},
        "data": {"blob": blob}});
    let body = common::review(
        "CREATE",
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        cm.clone(),
        Value::Null,
    );
    let (object, mutate, _) = admit(&Policy::default(), &body);
    let patch = mutate["response"]["patch"].as_str().unwrap();
    assert!(patch.len() < 200, "patch only carries the label");
    assert_eq!(object["data"]["blob"].as_str().unwrap().len(), blob.len());
}

#[test]
fn exempt_namespace_and_object_exemption() {
    let policy = Config::from_yaml("exemptions:\n  namespaces: [\"shop\"]\n").unwrap();
    let mut body = fixture("job-migrate-create.json");
    body["request"]["object"]["metadata"]["annotations"]["helm.sh/hook"] = json!("crd-install");
    let v = call(Webhook::Validate, &policy, &body);
    assert_eq!(
        v["response"]["allowed"], true,
        "exempt namespace is not judged"
    );
    let v = call(Webhook::Mutate, &policy, &body);
    assert!(v["response"].get("patch").is_none());

    let mut body = fixture("job-migrate-create.json");
    body["request"]["object"]["metadata"]["annotations"]["hookguard.io/exempt"] = json!("job-ttl");
    let (job, _, validate) = admit(&Policy::default(), &body);
    assert!(job["spec"].get("ttlSecondsAfterFinished").is_none());
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(
        validate["response"]["auditAnnotations"]["exempted"],
        "job-ttl"
    );

    let narrow = Config::from_yaml("exemptions:\n  objectRules: [image-tag]\n").unwrap();
    let (job, _, _) = admit(&narrow, &body);
    assert_eq!(
        job["spec"]["ttlSecondsAfterFinished"], 600,
        "job-ttl is not self-exemptable here"
    );
}

#[test]
fn kube_system_is_exempt_by_default() {
    let mut body = fixture("job-migrate-create.json");
    body["request"]["namespace"] = json!("kube-system");
    let v = call(Webhook::Mutate, &Policy::default(), &body);
    assert!(v["response"].get("patch").is_none());
}

#[test]
fn custom_resource_hook_with_any_spec_shape_is_labelled() {
    let cr = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default",
        "annotations": {"helm.sh/hook": "post-install", "helm.sh/hook-delete-policy": "before-hook-creation"}},
        "spec": {"containers": "not a list", "template": 3, "restartPolicy": {"odd": true}}});
    let body = common::review(
        "CREATE",
        "example.com",
        "v1",
        "Widget",
        "widgets",
        cr,
        Value::Null,
    );
    let (object, _, validate) = admit(&Policy::default(), &body);
    assert_eq!(object["metadata"]["labels"]["hookguard.io/hook"], "true");
    assert_eq!(validate["response"]["allowed"], true);
}

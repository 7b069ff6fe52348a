//! hookguard over AdmissionReviews captured from a real kube-apiserver v1.36 (not hand-written):
//! tests/fixtures/captured/, recorded by scripts/capture-fixtures.sh (a maintainer tool; see the
//! README there). Every CREATE and UPDATE goes through the API server's sequence: /mutate, the
//! JSONPatch applied to request.object, /mutate again on the result (reinvocation: no patch),
//! /validate on the mutated object. Each capture has an expected outcome in `EXPECTED`, and every
//! capture must have one, so a new capture cannot go untested.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine as _;
use serde_json::Value;

use common::{apply_patch, fixture};
use hookguard::admission::{Webhook, review};
use hookguard::policy::Policy;

const DIR: &str = "captured";

/// What hookguard (default policy) must do with one capture.
struct Expected {
    file: &'static str,
    operation: &'static str,
    /// `hookguard.io/mutated` on the mutated object (the rules that changed it), if any.
    mutated: Option<&'static str>,
    /// restartPolicy of the Pod / Job template after mutation (`None`: not a workload).
    restart_policy: Option<&'static str>,
    /// `spec.ttlSecondsAfterFinished` after mutation (`None`: absent).
    ttl: Option<i64>,
    /// `helm.sh/hook-delete-policy` after mutation.
    delete_policy: Option<&'static str>,
    /// Rule ids of the /validate warnings, in order.
    warnings: &'static [&'static str],
}

const fn create(file: &'static str) -> Expected {
    Expected {
        file,
        operation: "CREATE",
        mutated: None,
        restart_policy: None,
        ttl: None,
        delete_policy: None,
        warnings: &[],
    }
}

const EXPECTED: &[Expected] = &[
    // The shop chart's DB migration Job (kubectl apply, client-side).
    Expected {
        mutated: Some("job-ttl,delete-policy-default"),
        restart_policy: Some("Never"),
        ttl: Some(600),
        delete_policy: Some("before-hook-creation"),
        ..create("job-shop-shop-db-migrate-create.json")
    },
    // The same Job without restartPolicy: it arrives defaulted to Always (and without hookguard
    // the API server's validation rejects it after the webhooks).
    Expected {
        mutated: Some("restart-policy,job-ttl,delete-policy-default"),
        restart_policy: Some("Never"),
        ttl: Some(600),
        delete_policy: Some("before-hook-creation"),
        ..create("job-shop-shop-db-migrate-create-no-restart-policy.json")
    },
    Expected {
        mutated: Some("job-ttl,delete-policy-default"),
        restart_policy: Some("Never"),
        ttl: Some(600),
        delete_policy: Some("before-hook-creation"),
        ..create("job-shop-shop-db-migrate-create-dry-run.json")
    },
    // Second apply with a changed annotation: metadata is fixed, the spec is left alone.
    Expected {
        operation: "UPDATE",
        mutated: Some("delete-policy-default"),
        restart_policy: Some("Never"),
        ttl: None,
        delete_policy: Some("before-hook-creation"),
        ..create("job-shop-shop-db-migrate-update.json")
    },
    Expected {
        operation: "DELETE",
        ..create("job-shop-shop-db-migrate-delete.json")
    },
    // A test Pod without restartPolicy (defaulted to Always) and untagged busybox.
    Expected {
        mutated: Some("restart-policy,delete-policy-default"),
        restart_policy: Some("Never"),
        delete_policy: Some("before-hook-creation"),
        warnings: &["image-tag"],
        ..create("pod-shop-shop-test-connection-create.json")
    },
    // `helm create`'s test-connection Pod, created by `helm test` (Helm 3).
    Expected {
        mutated: Some("delete-policy-default"),
        restart_policy: Some("Never"),
        delete_policy: Some("before-hook-creation"),
        warnings: &["image-tag"],
        ..create("pod-shop-mychart-test-connection-create.json")
    },
    Expected {
        mutated: Some("job-ttl"),
        restart_policy: Some("Never"),
        ttl: Some(600),
        delete_policy: Some("hook-succeeded"),
        warnings: &["delete-policy-recreate", "image-tag"],
        ..create("job-shop-shop-notify-create.json")
    },
    // A hook ConfigMap without labels and a hook Secret that already has a delete policy.
    Expected {
        mutated: Some("delete-policy-default"),
        delete_policy: Some("before-hook-creation"),
        ..create("configmap-shop-shop-migrate-sql-create.json")
    },
    Expected {
        delete_policy: Some("before-hook-creation"),
        ..create("secret-shop-shop-db-create.json")
    },
    // Popular charts: allowed, restartPolicy and delete policy kept, a TTL added.
    Expected {
        mutated: Some("job-ttl"),
        restart_policy: Some("Never"),
        ttl: Some(600),
        delete_policy: Some("before-hook-creation,hook-succeeded,hook-failed"),
        ..create("job-kyverno-kyverno-migrate-resources-create.json")
    },
    Expected {
        mutated: Some("job-ttl"),
        restart_policy: Some("Never"),
        ttl: Some(600),
        delete_policy: Some("before-hook-creation,hook-succeeded,hook-failed"),
        ..create("job-kyverno-kyverno-scale-to-zero-create.json")
    },
    Expected {
        mutated: Some("job-ttl"),
        restart_policy: Some("OnFailure"),
        ttl: Some(600),
        delete_policy: Some("hook-succeeded,before-hook-creation"),
        ..create("job-gatekeeper-system-gatekeeper-update-namespace-label-create.json")
    },
    Expected {
        mutated: Some("job-ttl"),
        restart_policy: Some("Never"),
        ttl: Some(600),
        delete_policy: Some("hook-succeeded,before-hook-creation"),
        ..create("job-gatekeeper-system-gatekeeper-update-crds-hook-create.json")
    },
    Expected {
        mutated: Some("job-ttl"),
        restart_policy: Some("OnFailure"),
        ttl: Some(600),
        delete_policy: Some("before-hook-creation,hook-succeeded"),
        ..create("job-cert-manager-cert-manager-startupapicheck-create.json")
    },
    // ttlSecondsAfterFinished 0 is raised to the floor.
    Expected {
        mutated: Some("job-ttl"),
        restart_policy: Some("OnFailure"),
        ttl: Some(60),
        delete_policy: Some("before-hook-creation,hook-succeeded"),
        ..create("job-ingress-nginx-ingress-nginx-admission-create-create.json")
    },
    // A pre-install Job hook installed by Helm 3 and by Helm 4.
    Expected {
        mutated: Some("job-ttl,delete-policy-default"),
        restart_policy: Some("Never"),
        ttl: Some(600),
        delete_policy: Some("before-hook-creation"),
        ..create("job-shop-hooks-helm3-pre-install-create.json")
    },
    Expected {
        mutated: Some("job-ttl,delete-policy-default"),
        restart_policy: Some("Never"),
        ttl: Some(600),
        delete_policy: Some("before-hook-creation"),
        ..create("job-shop-hooks-helm4-pre-install-create.json")
    },
];

fn captured(file: &str) -> Value {
    fixture(&format!("{DIR}/{file}"))
}

fn call(webhook: Webhook, policy: &Policy, body: &Value) -> Value {
    let bytes = serde_json::to_vec(body).unwrap();
    let (out, _) = review(webhook, policy, &bytes, None).expect("review answers");
    serde_json::from_slice(&out).unwrap()
}

/// The decoded JSONPatch of a /mutate response (empty without a patch).
fn patch_ops(response: &Value) -> Vec<Value> {
    match response["response"]["patch"].as_str() {
        None => Vec::new(),
        Some(p) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(p)
                .expect("base64 patch");
            serde_json::from_slice(&bytes).expect("JSONPatch array")
        }
    }
}

fn warning_rules(v: &Value) -> Vec<String> {
    v["response"]["warnings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| {
                    let w = w.as_str().unwrap();
                    assert!(w.starts_with('['), "warning without a rule id: {w}");
                    w[1..w.find(']').unwrap()].to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

struct Admitted {
    mutated: Value,
    mutate: Value,
    validate: Value,
}

/// The API server's sequence for one request (default policy).
fn admit(name: &str, body: &Value) -> Admitted {
    let policy = Policy::default();
    let mutate = call(Webhook::Mutate, &policy, body);
    assert_eq!(
        mutate["response"]["allowed"], true,
        "{name}: /mutate denied"
    );
    assert_eq!(
        mutate["response"]["uid"], body["request"]["uid"],
        "{name}: uid not echoed"
    );
    let mutated = apply_patch(&mutate, &body["request"]["object"]);
    let mut second = body.clone();
    second["request"]["object"] = mutated.clone();
    let again = call(Webhook::Mutate, &policy, &second);
    assert_eq!(again["response"]["allowed"], true, "{name}");
    assert!(
        again["response"].get("patch").is_none(),
        "{name}: not idempotent, second /mutate patched: {again}"
    );
    let validate = call(Webhook::Validate, &policy, &second);
    Admitted {
        mutated,
        mutate,
        validate,
    }
}

fn pod_spec(object: &Value) -> &Value {
    if object["kind"] == "Pod" {
        &object["spec"]
    } else {
        &object["spec"]["template"]["spec"]
    }
}

#[test]
fn every_capture_has_an_expectation() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(DIR);
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    let expected: BTreeSet<String> = EXPECTED.iter().map(|e| e.file.to_owned()).collect();
    assert_eq!(
        expected.len(),
        EXPECTED.len(),
        "duplicate entries in EXPECTED"
    );
    assert_eq!(
        on_disk, expected,
        "tests/fixtures/captured and EXPECTED disagree (rerun of scripts/capture-fixtures.sh?)"
    );
}

#[test]
fn every_capture_is_admitted_as_expected() {
    for e in EXPECTED {
        let body = captured(e.file);
        let request = &body["request"];
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1", "{}", e.file);
        assert_eq!(request["operation"], e.operation, "{}", e.file);

        if e.operation == "DELETE" {
            assert!(request["object"].is_null(), "{}", e.file);
            for webhook in [Webhook::Mutate, Webhook::Validate] {
                let v = call(webhook, &Policy::default(), &body);
                assert_eq!(v["response"]["allowed"], true, "{}: {v}", e.file);
                assert!(v["response"].get("patch").is_none(), "{}: {v}", e.file);
                assert!(v["response"].get("warnings").is_none(), "{}: {v}", e.file);
            }
            continue;
        }

        let original = &request["object"];
        let a = admit(e.file, &body);
        let object = &a.mutated;

        // Only additions, only where hookguard is meant to write.
        for op in patch_ops(&a.mutate) {
            let path = op["path"].as_str().unwrap();
            assert_eq!(op["op"], "add", "{}: {op}", e.file);
            assert!(
                path.starts_with("/metadata/labels")
                    || path.starts_with("/metadata/annotations/")
                    || path == "/spec/ttlSecondsAfterFinished"
                    || path == "/spec/restartPolicy"
                    || path == "/spec/template/spec/restartPolicy",
                "{}: unexpected patch path {path}",
                e.file
            );
        }
        assert_eq!(
            object["metadata"]["labels"]["hookguard.io/hook"], "true",
            "{}",
            e.file
        );
        // Labels and annotations the request had are kept.
        for field in ["labels", "annotations"] {
            if let Some(map) = original["metadata"][field].as_object() {
                for (k, v) in map {
                    if k == "helm.sh/hook-delete-policy" {
                        continue;
                    }
                    assert_eq!(&object["metadata"][field][k], v, "{}: {field} {k}", e.file);
                }
            }
        }

        let annotations = &object["metadata"]["annotations"];
        assert_eq!(
            annotations["hookguard.io/mutated"].as_str(),
            e.mutated,
            "{}: hookguard.io/mutated",
            e.file
        );
        assert_eq!(
            a.mutate["response"]["auditAnnotations"]["mutated"].as_str(),
            e.mutated,
            "{}: auditAnnotations.mutated",
            e.file
        );
        assert_eq!(
            annotations["helm.sh/hook-delete-policy"].as_str(),
            e.delete_policy,
            "{}: delete policy",
            e.file
        );
        if let Some(rp) = e.restart_policy {
            assert_eq!(
                pod_spec(object)["restartPolicy"],
                rp,
                "{}: restartPolicy",
                e.file
            );
        }
        assert_eq!(
            object["spec"]["ttlSecondsAfterFinished"].as_i64(),
            e.ttl,
            "{}: ttlSecondsAfterFinished",
            e.file
        );

        assert_eq!(
            a.validate["response"]["allowed"], true,
            "{}: /validate denied: {}",
            e.file, a.validate
        );
        assert_eq!(
            warning_rules(&a.validate),
            e.warnings,
            "{}: warnings {}",
            e.file,
            a.validate["response"]["warnings"]
        );
    }
}

#[test]
fn job_without_restart_policy_arrives_defaulted_to_always_and_gets_never() {
    let body = captured("job-shop-shop-db-migrate-create-no-restart-policy.json");
    let object = &body["request"]["object"];
    // kube-apiserver v1.36 defaults the template's restartPolicy (PodSpec defaulting) before
    // the webhooks; the Job validation that rejects Always runs after them.
    assert_eq!(
        object["spec"]["template"]["spec"]["restartPolicy"],
        "Always"
    );
    let last_applied =
        object["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap();
    assert!(
        !last_applied.contains("restartPolicy"),
        "the manifest had no restartPolicy"
    );
    let a = admit("no-restart-policy", &body);
    assert_eq!(
        a.mutated["spec"]["template"]["spec"]["restartPolicy"],
        "Never"
    );
    assert!(
        patch_ops(&a.mutate)
            .iter()
            .any(|op| op["path"] == "/spec/template/spec/restartPolicy" && op["value"] == "Never"),
        "{}",
        a.mutate
    );
}

#[test]
fn bare_pod_without_restart_policy_arrives_defaulted_to_always_and_gets_never() {
    let body = captured("pod-shop-shop-test-connection-create.json");
    let object = &body["request"]["object"];
    assert_eq!(object["spec"]["restartPolicy"], "Always");
    // The ServiceAccount admission plugin ran before the webhook.
    assert_eq!(object["spec"]["serviceAccountName"], "default");
    let a = admit("test pod", &body);
    assert_eq!(a.mutated["spec"]["restartPolicy"], "Never");
    assert!(a.mutated["spec"].get("ttlSecondsAfterFinished").is_none());
    let w = a.validate["response"]["warnings"].to_string();
    assert!(w.contains("\\\"busybox\\\" has no tag"), "{w}");
}

#[test]
fn dry_run_gets_the_same_patch_as_the_real_create() {
    let dry = captured("job-shop-shop-db-migrate-create-dry-run.json");
    let real = captured("job-shop-shop-db-migrate-create.json");
    assert_eq!(dry["request"]["dryRun"], true);
    assert_eq!(dry["request"]["options"]["dryRun"][0], "All");
    assert_eq!(real["request"]["dryRun"], false);
    let dry = call(Webhook::Mutate, &Policy::default(), &dry);
    let real = call(Webhook::Mutate, &Policy::default(), &real);
    assert!(real["response"]["patch"].is_string());
    assert_eq!(dry["response"]["patch"], real["response"]["patch"]);
}

#[test]
fn update_fixes_metadata_and_leaves_the_spec_alone() {
    let body = captured("job-shop-shop-db-migrate-update.json");
    let request = &body["request"];
    // The API server already generated the selector and the controller-uid template labels.
    assert!(request["oldObject"]["spec"]["selector"].is_object());
    assert_eq!(request["object"]["spec"], request["oldObject"]["spec"]);
    let a = admit("update", &body);
    assert_eq!(a.mutated["spec"], request["object"]["spec"]);
    for op in patch_ops(&a.mutate) {
        assert!(
            op["path"].as_str().unwrap().starts_with("/metadata/"),
            "{op}"
        );
    }
}

#[test]
fn popular_chart_hooks_keep_their_restart_and_delete_policies() {
    for file in [
        "job-kyverno-kyverno-migrate-resources-create.json",
        "job-kyverno-kyverno-scale-to-zero-create.json",
        "job-gatekeeper-system-gatekeeper-update-namespace-label-create.json",
        "job-gatekeeper-system-gatekeeper-update-crds-hook-create.json",
        "job-cert-manager-cert-manager-startupapicheck-create.json",
        "job-ingress-nginx-ingress-nginx-admission-create-create.json",
    ] {
        let body = captured(file);
        let original = &body["request"]["object"];
        let a = admit(file, &body);
        assert_eq!(a.validate["response"]["allowed"], true, "{file}");
        assert!(
            a.validate["response"].get("warnings").is_none(),
            "{file}: {}",
            a.validate
        );
        assert_eq!(
            a.mutated["spec"]["template"]["spec"]["restartPolicy"],
            original["spec"]["template"]["spec"]["restartPolicy"],
            "{file}"
        );
        assert_eq!(
            a.mutated["metadata"]["annotations"]["helm.sh/hook-delete-policy"],
            original["metadata"]["annotations"]["helm.sh/hook-delete-policy"],
            "{file}"
        );
        assert_eq!(
            a.mutated["spec"]["template"], original["spec"]["template"],
            "{file}: the pod template is not touched"
        );
    }
    let ingress = captured("job-ingress-nginx-ingress-nginx-admission-create-create.json");
    assert_eq!(
        ingress["request"]["object"]["spec"]["ttlSecondsAfterFinished"],
        0
    );
}

#[test]
fn curl_latest_notify_job_is_allowed_with_an_image_tag_warning() {
    let a = admit("notify", &captured("job-shop-shop-notify-create.json"));
    assert_eq!(a.validate["response"]["allowed"], true);
    let warnings = a.validate["response"]["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| {
            let w = w.as_str().unwrap();
            w.starts_with("[image-tag]") && w.contains("curlimages/curl:latest")
        }),
        "{warnings:?}"
    );
    assert_eq!(
        a.validate["response"]["auditAnnotations"]["rules"],
        "delete-policy-recreate,image-tag"
    );
}

#[test]
fn helm3_creates_and_helm4_applies_hooks_server_side() {
    let h3 = captured("job-shop-hooks-helm3-pre-install-create.json");
    let h4 = captured("job-shop-hooks-helm4-pre-install-create.json");
    for (body, manager_operation, validation) in
        [(&h3, "Update", None), (&h4, "Apply", Some("Strict"))]
    {
        let request = &body["request"];
        // A new object: CREATE, also for Helm 4's server-side apply (a PATCH on the wire).
        assert_eq!(request["operation"], "CREATE");
        assert_eq!(request["options"]["kind"], "CreateOptions");
        assert_eq!(request["options"]["fieldManager"], "helm");
        assert_eq!(request["options"]["fieldValidation"].as_str(), validation);
        let managed = request["object"]["metadata"]["managedFields"]
            .as_array()
            .unwrap();
        assert_eq!(managed.len(), 1);
        assert_eq!(managed[0]["manager"], "helm");
        assert_eq!(managed[0]["operation"], manager_operation);
    }
    // Same chart, same patch.
    let p3 = patch_ops(&call(Webhook::Mutate, &Policy::default(), &h3));
    let p4 = patch_ops(&call(Webhook::Mutate, &Policy::default(), &h4));
    assert!(!p3.is_empty());
    assert_eq!(p3, p4);
}

#[test]
fn delete_is_allowed_without_a_patch() {
    let body = captured("job-shop-shop-db-migrate-delete.json");
    assert!(body["request"]["object"].is_null());
    assert_eq!(
        body["request"]["oldObject"]["metadata"]["annotations"]["helm.sh/hook"],
        "pre-install,pre-upgrade"
    );
    assert_eq!(
        body["request"]["options"]["propagationPolicy"],
        "Background"
    );
    for webhook in [Webhook::Mutate, Webhook::Validate] {
        let v = call(webhook, &Policy::default(), &body);
        assert_eq!(v["response"]["allowed"], true);
        assert!(v["response"].get("patch").is_none());
    }
}

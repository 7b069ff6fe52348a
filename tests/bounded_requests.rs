//! What one forged request can cost: every answer is at most 64 KiB whatever the body (up to the
//! default limit), and label values derived from requests cannot grow the metrics without bound.
//! The requests are sent through the real router, as an attacker on any pod could send them.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use hookguard::admission::MAX_RESPONSE_BYTES;
use hookguard::metrics::{MAX_ADMISSION_NAMESPACES, WebhookMetrics, encode};
use hookguard::policy::Policy;
use hookguard::server::routes::webhook_router;
use hookguard::server::{AppState, Limits};

/// The default body limit of `hookguard serve`.
const MAX_BODY: usize = 7 * 1024 * 1024;

fn router() -> (Router, WebhookMetrics) {
    let metrics = WebhookMetrics::new(true);
    let state = AppState::new(Policy::default(), metrics.admission.clone());
    let limits = Limits {
        max_body_bytes: MAX_BODY,
        request_timeout: Duration::from_secs(30),
    };
    (webhook_router(state, limits), metrics)
}

async fn post(router: &Router, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let req = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("request");
    let res = router.clone().oneshot(req).await.expect("router answers");
    let status = res.status();
    let bytes = res
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, bytes)
}

/// The shop migration Job hook as the API server sends it, with `change` applied to the object.
fn job_review(change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut review = common::fixture("job-migrate-create.json");
    change(&mut review["request"]["object"]);
    let body = serde_json::to_vec(&review).expect("serializes");
    assert!(body.len() <= MAX_BODY, "test body is {} bytes", body.len());
    body
}

fn set_annotation(object: &mut Value, key: &str, value: String) {
    object["metadata"]["annotations"][key] = Value::String(value);
}

/// What `/validate` must answer besides a bounded AdmissionReview.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    /// Denied with a short message.
    Denied,
    /// Annotations larger than the API server stores: not parsed, allowed, not patched.
    Untouched,
    /// Only bounded.
    Bounded,
}

#[tokio::test]
async fn every_answer_is_bounded_whatever_the_body() {
    use Expect::*;
    let (web, _) = router();
    // Just under the API server's 256 KiB of annotations (the fixture has a few more).
    let near_limit = 250_000;
    let cases: Vec<(&str, Expect, Vec<u8>)> = vec![
        (
            "4 MB hook event list",
            Untouched,
            job_review(|o| set_annotation(o, "helm.sh/hook", "ab,".repeat(1_400_000))),
        ),
        (
            "250 KB hook event list",
            Denied,
            job_review(|o| set_annotation(o, "helm.sh/hook", "ab,".repeat(near_limit / 3))),
        ),
        (
            "4 MB delete policy list",
            Untouched,
            job_review(|o| {
                set_annotation(o, "helm.sh/hook-delete-policy", "xy,".repeat(1_400_000))
            }),
        ),
        (
            "250 KB delete policy list",
            Denied,
            job_review(|o| {
                set_annotation(
                    o,
                    "helm.sh/hook-delete-policy",
                    "xy,".repeat(near_limit / 3),
                )
            }),
        ),
        (
            "3 MB single hook event",
            Untouched,
            job_review(|o| set_annotation(o, "helm.sh/hook", "q".repeat(3_000_000))),
        ),
        (
            "250 KB single hook event",
            Denied,
            job_review(|o| set_annotation(o, "helm.sh/hook", "q".repeat(near_limit))),
        ),
        (
            "30,000 distinct unknown events",
            Denied,
            job_review(|o| {
                let value: String = (0..30_000).map(|i| format!("e{i},")).collect();
                set_annotation(o, "helm.sh/hook", value)
            }),
        ),
        (
            "3 MB weight",
            Untouched,
            job_review(|o| set_annotation(o, "helm.sh/hook-weight", "9".repeat(3_000_000))),
        ),
        (
            "250 KB weight",
            Denied,
            job_review(|o| set_annotation(o, "helm.sh/hook-weight", "9".repeat(near_limit))),
        ),
        (
            "3 MB name",
            Denied,
            job_review(|o| {
                o["metadata"]["name"] = Value::String("n".repeat(3_000_000));
                set_annotation(o, "helm.sh/hook", "pre-instal".to_owned())
            }),
        ),
        (
            "40,000 privileged containers with 40 KB images",
            Denied,
            job_review(|o| {
                let image = format!("{}:latest", "r".repeat(40));
                let containers: Vec<Value> = (0..40_000)
                    .map(|i| {
                        json!({"name": format!("c{i}"), "image": image,
                               "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}},
                               "ports": [{"hostPort": 80}]})
                    })
                    .collect();
                o["spec"]["template"]["spec"]["containers"] = Value::Array(containers);
            }),
        ),
        (
            "100,000 hostPath volumes",
            Denied,
            job_review(|o| {
                let volumes: Vec<Value> = (0..100_000)
                    .map(|i| json!({"name": format!("v{i}"), "hostPath": {"path": "/"}}))
                    .collect();
                o["spec"]["template"]["spec"]["volumes"] = Value::Array(volumes);
            }),
        ),
        (
            "3 MB mutated annotation and exemption list",
            Untouched,
            job_review(|o| {
                set_annotation(o, "hookguard.io/mutated", "x,".repeat(700_000));
                set_annotation(o, "hookguard.io/exempt", "y,".repeat(700_000));
            }),
        ),
        (
            "250 KB mutated annotation and exemption list",
            Bounded,
            job_review(|o| {
                set_annotation(o, "hookguard.io/mutated", "x,".repeat(near_limit / 4));
                set_annotation(o, "hookguard.io/exempt", "y,".repeat(near_limit / 4));
            }),
        ),
    ];
    for (what, expect, body) in cases {
        for path in ["/mutate", "/validate"] {
            let (status, answer) = post(&web, path, body.clone()).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "{what} {path}: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(500)])
            );
            assert!(
                answer.len() <= MAX_RESPONSE_BYTES,
                "{what} {path}: answer is {} bytes",
                answer.len()
            );
            let v: Value = serde_json::from_slice(&answer).expect("an AdmissionReview");
            assert_eq!(v["kind"], "AdmissionReview", "{what} {path}");
            match (expect, path) {
                (Untouched, _) => {
                    assert_eq!(v["response"]["allowed"], true, "{what} {path}: {v}");
                    assert!(v["response"].get("patch").is_none(), "{what} {path}: {v}");
                }
                (Denied, "/validate") => {
                    assert_eq!(v["response"]["allowed"], false, "{what}: {v}");
                    let message = v["response"]["status"]["message"].as_str().unwrap_or("");
                    assert!(message.len() < 16 * 1024, "{what}: {} bytes", message.len());
                }
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn a_forged_uid_of_any_length_is_a_400_not_an_echo() {
    let (web, _) = router();
    let mut review = common::fixture("job-migrate-create.json");
    review["request"]["uid"] = Value::String("u".repeat(3_000_000));
    let (status, answer) = post(&web, "/mutate", serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer.len() < 1024, "{} bytes", answer.len());
}

#[tokio::test]
async fn ten_thousand_forged_reviews_add_a_bounded_number_of_series() {
    let (web, metrics) = router();
    let series = |text: &str, family: &str| {
        text.lines()
            .filter(|l| l.starts_with(family) && !l.starts_with('#'))
            .count()
    };
    let before = encode(&metrics.registry);
    for i in 0..10_000 {
        let mut review = common::fixture("job-migrate-create.json");
        let r = &mut review["request"];
        let namespace = format!("forged-{i}");
        r["namespace"] = json!(namespace);
        r["object"]["metadata"]["namespace"] = json!(namespace);
        // Random kinds in the core group, in a built-in group and in made-up groups.
        let (group, kind) = match i % 3 {
            0 => (String::new(), format!("Kind{i}")),
            1 => ("batch".to_owned(), format!("Job{i}")),
            _ => (format!("g{i}.example.com"), format!("Widget{i}")),
        };
        r["kind"] = json!({"group": group, "version": "v1", "kind": kind});
        let body = serde_json::to_vec(&review).unwrap();
        for path in ["/mutate", "/validate"] {
            let (status, _) = post(&web, path, body.clone()).await;
            assert_eq!(status, StatusCode::OK);
        }
    }
    let after = encode(&metrics.registry);
    // kind: one value ("custom"); namespace: capped, plus "other".
    let requests = series(&after, "hookguard_admission_requests_total{");
    assert!(
        requests <= series(&before, "hookguard_admission_requests_total{") + 4,
        "{requests} request series"
    );
    let hooks = series(&after, "hookguard_hook_admissions_total{");
    // Two events (pre-install, pre-upgrade) per namespace value.
    let bound = 2 * (MAX_ADMISSION_NAMESPACES + 1) + 1;
    assert!(hooks <= bound, "{hooks} hook series, bound {bound}");
    assert!(after.contains("namespace=\"other\""), "the cap was reached");
    assert!(!after.contains("Kind9999"), "no kind from input");
    assert!(
        after.len() < 512 * 1024,
        "/metrics grew to {} bytes",
        after.len()
    );
}

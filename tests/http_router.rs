//! In-process HTTP tests of the routers: status codes, content types, error bodies, metrics.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use hookguard::admin::{Readiness, admin_router};
use hookguard::metrics::{WebhookMetrics, encode};
use hookguard::policy::Policy;
use hookguard::server::routes::webhook_router;
use hookguard::server::{AppState, Limits};

fn routers(max_body_bytes: usize) -> (Router, Router, Readiness) {
    let metrics = WebhookMetrics::new(true);
    let state = AppState::new(Policy::default(), metrics.admission.clone());
    let readiness = Readiness::default();
    let limits = Limits {
        max_body_bytes,
        request_timeout: Duration::from_secs(5),
    };
    (
        webhook_router(state, limits),
        admin_router(readiness.clone(), metrics.registry.clone()),
        readiness,
    )
}

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, String, String) {
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let ct = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, ct, String::from_utf8_lossy(&body).into_owned())
}

fn post(path: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::post(path);
    if let Some(ct) = content_type {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(body.into()).unwrap()
}

#[tokio::test]
async fn mutate_and_validate_answer_admission_reviews() {
    let (web, _, _) = routers(16 << 20);
    let body = serde_json::to_vec(&common::fixture("job-migrate-create.json")).unwrap();
    for path in ["/mutate", "/validate"] {
        let (status, ct, text) =
            send(&web, post(path, Some("application/json"), body.clone())).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
        assert_eq!(ct, "application/json");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["kind"], "AdmissionReview");
        assert_eq!(v["response"]["allowed"], true);
    }
    // A charset parameter is fine.
    let (status, _, _) = send(
        &web,
        post("/mutate", Some("application/json; charset=utf-8"), body),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn bad_input_gets_4xx_with_a_json_error() {
    let (web, admin, _) = routers(1024);
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            post("/validate", Some("application/json"), "{not json"),
            StatusCode::BAD_REQUEST,
            "not a valid AdmissionReview",
        ),
        (
            post("/validate", Some("application/json"), "null"),
            StatusCode::BAD_REQUEST,
            "not a valid AdmissionReview",
        ),
        (
            post("/validate", Some("application/json"), ""),
            StatusCode::BAD_REQUEST,
            "not a valid AdmissionReview",
        ),
        (
            post(
                "/validate",
                Some("application/json"),
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            ),
            StatusCode::BAD_REQUEST,
            "no `request`",
        ),
        (
            post(
                "/validate",
                Some("application/json"),
                r#"{"request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","object":null}}"#,
            ),
            StatusCode::OK,
            "",
        ),
        (
            post("/mutate", Some("text/plain"), "{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ),
        (
            post("/mutate", None, "{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
        (
            post("/mutate", Some("application/json"), vec![b' '; 4096]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "length limit exceeded",
        ),
    ];
    for (req, expected, needle) in cases {
        let (status, ct, text) = send(&web, req).await;
        assert_eq!(status, expected, "{text}");
        if status != StatusCode::OK {
            assert_eq!(ct, "application/json", "{text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["status"], expected.as_u16());
            assert!(v["error"].as_str().unwrap().contains(needle), "{text}");
        }
    }
    let (status, _, _) = send(&web, Request::get("/mutate").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _, _) = send(&web, Request::get("/nothing").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, metrics) = send(
        &admin,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert!(metrics.contains(r#"hookguard_admission_requests_total{webhook="mutate",operation="",kind="",result="invalid"} 3"#), "{metrics}");
}

#[tokio::test]
async fn admin_endpoints() {
    let (web, admin, readiness) = routers(16 << 20);
    let (status, _, _) = send(&admin, Request::get("/livez").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&admin, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready until serving"
    );
    readiness.set(true);
    let (status, _, _) = send(&admin, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    let body = serde_json::to_vec(&common::fixture("job-notify-curl-latest-create.json")).unwrap();
    send(
        &web,
        post("/mutate", Some("application/json"), body.clone()),
    )
    .await;
    send(&web, post("/validate", Some("application/json"), body)).await;
    let (status, ct, text) = send(
        &admin,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    for line in [
        r#"hookguard_admission_requests_total{webhook="mutate",operation="CREATE",kind="Job",result="patched"} 1"#,
        r#"hookguard_admission_requests_total{webhook="validate",operation="CREATE",kind="Job",result="allowed"} 1"#,
        r#"hookguard_rule_findings_total{rule="job-ttl",action="mutate"} 1"#,
        r#"hookguard_rule_findings_total{rule="image-tag",action="warn"} 1"#,
        r#"hookguard_hook_admissions_total{event="post-install",kind="Job",namespace="shop",operation="CREATE"} 1"#,
        r#"hookguard_hook_admissions_total{event="post-upgrade",kind="Job",namespace="shop",operation="CREATE"} 1"#,
        r#"hookguard_admission_duration_seconds_count{webhook="mutate"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn namespace_label_can_be_turned_off() {
    let metrics = WebhookMetrics::new(false);
    let state = AppState::new(Policy::default(), metrics.admission.clone());
    let web = webhook_router(
        state,
        Limits {
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(5),
        },
    );
    let body = serde_json::to_vec(&common::fixture("job-migrate-create.json")).unwrap();
    send(&web, post("/validate", Some("application/json"), body)).await;
    let text = encode(&metrics.registry);
    assert!(text.contains(r#"hookguard_hook_admissions_total{event="pre-install",kind="Job",namespace="",operation="CREATE"} 1"#), "{text}");
}

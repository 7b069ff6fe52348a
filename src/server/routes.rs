//! HTTP handlers: the webhook endpoints and the admin endpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;

use crate::admission::{self, Webhook};
use crate::metrics::Metrics;
use crate::policy::Policy;

/// What the handlers share.
pub struct AppState {
    pub policy: ArcSwap<Policy>,
    pub metrics: Metrics,
    pub ready: AtomicBool,
}

impl AppState {
    pub fn new(policy: Policy, metrics: Metrics) -> Arc<Self> {
        Arc::new(AppState {
            policy: ArcSwap::from_pointee(policy),
            metrics,
            ready: AtomicBool::new(false),
        })
    }
}

/// Limits applied to the webhook router.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}

/// `POST /mutate`, `POST /validate`.
pub fn webhook_router(state: Arc<AppState>, limits: Limits) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/validate", post(validate))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .with_state(state)
}

/// `GET /livez`, `/readyz`, `/metrics`.
pub fn admin_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn mutate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(Webhook::Mutate, &state, &headers, body)
}

async fn validate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(Webhook::Validate, &state, &headers, body)
}

fn error_response(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message, "status": status.as_u16() }).to_string();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

fn answer(
    webhook: Webhook,
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    if !is_json(headers) {
        state
            .metrics
            .record_invalid(webhook, started.elapsed().as_secs_f64());
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json (an AdmissionReview)",
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            state
                .metrics
                .record_invalid(webhook, started.elapsed().as_secs_f64());
            return error_response(rejection.status(), &rejection.body_text());
        }
    };
    let policy = state.policy.load();
    match admission::review(webhook, &policy, &body) {
        Ok((bytes, outcome)) => {
            state
                .metrics
                .record(webhook, &outcome, started.elapsed().as_secs_f64());
            if outcome.result == "denied" {
                let rules: Vec<&str> = outcome.decision.denials.iter().map(|f| f.rule).collect();
                tracing::info!(
                    webhook = webhook.as_str(),
                    uid = %outcome.uid,
                    operation = outcome.operation.as_str(),
                    kind = %outcome.kind,
                    namespace = %outcome.namespace,
                    name = %outcome.name,
                    rules = %rules.join(","),
                    "denied hook"
                );
            } else {
                tracing::debug!(
                    webhook = webhook.as_str(),
                    uid = %outcome.uid,
                    operation = outcome.operation.as_str(),
                    kind = %outcome.kind,
                    namespace = %outcome.namespace,
                    name = %outcome.name,
                    result = outcome.result,
                    rules = %outcome.decision.fired_rules().join(","),
                    "admission"
                );
            }
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                bytes,
            )
                .into_response()
        }
        Err(e) => {
            state
                .metrics
                .record_invalid(webhook, started.elapsed().as_secs_f64());
            tracing::warn!(webhook = webhook.as_str(), error = %e, "bad admission request");
            error_response(StatusCode::BAD_REQUEST, &e.to_string())
        }
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        state.metrics.encode(),
    )
        .into_response()
}

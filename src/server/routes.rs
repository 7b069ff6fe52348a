//! HTTP handlers of the webhook endpoints.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::Semaphore;
use tower_http::timeout::TimeoutLayer;

use futures::future::BoxFuture;

use crate::admission::{self, Webhook};
use crate::metrics::AdmissionMetrics;
use crate::policy::{Exception, Exceptions, Labels, Policy};

/// Where the webhook finds a namespace's labels, for policy overrides with a
/// `namespaceSelector`; `None`: not known (then no selector matches).
pub trait NamespaceLabels: Send + Sync {
    fn labels<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Option<Labels>>;
}

/// What the handlers share.
pub struct AppState {
    pub policy: ArcSwap<Policy>,
    pub metrics: AdmissionMetrics,
    /// One permit per core: large reviews are judged on the blocking pool, at most this many at
    /// once, so they can neither starve the async workers (health checks, small reviews) nor pile
    /// up threads.
    engine_slots: Arc<Semaphore>,
    /// Present with `--namespace-labels`.
    namespace_labels: Option<Arc<dyn NamespaceLabels>>,
    /// Present with `--policy-exceptions`: the HookPolicyExceptions that exist.
    exceptions: Option<Arc<dyn PolicyExceptions>>,
}

/// Where the webhook finds the HookPolicyExceptions that exist.
pub trait PolicyExceptions: Send + Sync {
    fn current(&self) -> Arc<Vec<Exception>>;
}

impl AppState {
    pub fn new(policy: Policy, metrics: AdmissionMetrics) -> Arc<Self> {
        Self::with_sources(policy, metrics, None, None)
    }

    /// With the optional lookups of namespace labels and HookPolicyExceptions.
    pub fn with_sources(
        policy: Policy,
        metrics: AdmissionMetrics,
        namespace_labels: Option<Arc<dyn NamespaceLabels>>,
        exceptions: Option<Arc<dyn PolicyExceptions>>,
    ) -> Arc<Self> {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Arc::new(AppState {
            policy: ArcSwap::from_pointee(policy),
            metrics,
            engine_slots: Arc::new(Semaphore::new(cores)),
            namespace_labels,
            exceptions,
        })
    }

    /// Whether namespace labels can be looked up (a policy selecting by label needs them).
    pub fn knows_namespace_labels(&self) -> bool {
        self.namespace_labels.is_some()
    }

    /// The labels of the review's namespace, when the policy selects namespaces by label.
    async fn namespace_labels_for(&self, policy: &Policy, body: &[u8]) -> Option<Labels> {
        let source = self.namespace_labels.as_ref()?;
        if !policy.uses_namespace_labels() {
            return None;
        }
        let namespace = admission::namespace_of(body)?;
        source.labels(&namespace).await
    }
}

/// Bodies up to this size are judged right on the async worker: the engine's work is bounded by
/// the body's size, and for 64 KiB it is well under a millisecond (BENCHMARKS.md), cheaper than a
/// hand-off to another thread. Larger bodies go to the blocking pool.
pub const INLINE_BODY_BYTES: usize = 64 * 1024;

/// A large review waits at most this long for a free core; then it is shed with 503 rather than
/// queued without bound.
pub const ENGINE_QUEUE_WAIT: Duration = Duration::from_secs(2);

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

async fn mutate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(Webhook::Mutate, state, &headers, body).await
}

async fn validate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(Webhook::Validate, state, &headers, body).await
}

/// Why no review was produced.
enum Unanswered {
    /// All engine slots stayed busy for [`ENGINE_QUEUE_WAIT`].
    Busy,
    /// The engine task panicked: a bug of hookguard's, never the client's fault.
    Panicked,
    Invalid(admission::AdmissionError),
}

/// Runs the engine inline for small bodies, on the blocking pool behind the core semaphore for
/// large ones.
async fn judge(
    webhook: Webhook,
    state: &AppState,
    body: Bytes,
) -> Result<(Vec<u8>, admission::Outcome), Unanswered> {
    let policy = state.policy.load_full();
    let labels = state.namespace_labels_for(&policy, &body).await;
    let granted = state
        .exceptions
        .as_ref()
        .map(|e| e.current())
        .unwrap_or_default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if body.len() <= INLINE_BODY_BYTES {
        let exceptions = Exceptions {
            granted: &granted,
            now,
        };
        return admission::review_with(webhook, &policy, &body, labels.as_ref(), exceptions)
            .map_err(Unanswered::Invalid);
    }
    let permit = match tokio::time::timeout(
        ENGINE_QUEUE_WAIT,
        state.engine_slots.clone().acquire_owned(),
    )
    .await
    {
        Ok(Ok(permit)) => permit,
        _ => return Err(Unanswered::Busy),
    };
    let task = tokio::task::spawn_blocking(move || {
        // Held until the engine is done, even when the request times out meanwhile.
        let _permit = permit;
        let exceptions = Exceptions {
            granted: &granted,
            now,
        };
        admission::review_with(webhook, &policy, &body, labels.as_ref(), exceptions)
    });
    match task.await {
        Ok(result) => result.map_err(Unanswered::Invalid),
        Err(_) => Err(Unanswered::Panicked),
    }
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

async fn answer(
    webhook: Webhook,
    state: Arc<AppState>,
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
    match judge(webhook, &state, body).await {
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
        Err(Unanswered::Busy) => {
            state
                .metrics
                .record_engine_busy(webhook, started.elapsed().as_secs_f64());
            let mut response = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "hookguard is busy with other large reviews; retry",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        Err(Unanswered::Panicked) => {
            state
                .metrics
                .record_invalid(webhook, started.elapsed().as_secs_f64());
            tracing::error!(webhook = webhook.as_str(), "the policy engine panicked");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
        Err(Unanswered::Invalid(e)) => {
            state
                .metrics
                .record_invalid(webhook, started.elapsed().as_secs_f64());
            let message = e.bounded_message();
            tracing::warn!(webhook = webhook.as_str(), error = %message, "bad admission request");
            error_response(StatusCode::BAD_REQUEST, &message)
        }
    }
}

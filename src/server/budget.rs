//! Load shedding on request body bytes: all in-flight webhook requests together may hold at most
//! `--max-body-bytes-in-flight` bytes of body. Each request reserves its Content-Length (or
//! `--max-body-bytes` when the length is not announced) before its body is read; when the budget
//! is spent the request is answered at once with 503 and `Retry-After`, instead of the process
//! growing until the OOM killer ends every request at once.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;

/// What a shed client is told to wait before retrying (kube-apiserver does not retry webhook
/// calls itself, but other clients and people reading the answer do).
const RETRY_AFTER_SECONDS: &str = "1";

/// The shared budget; clone it into the middleware.
#[derive(Clone)]
pub struct BodyBudget {
    /// One permit per byte.
    bytes: Arc<Semaphore>,
    total: usize,
    max_body_bytes: usize,
    shed: Counter,
}

impl BodyBudget {
    /// `total` bytes for all requests together; no request reserves more than `max_body_bytes`
    /// (larger bodies get 413 from the router) or more than `total` (so one maximal request can
    /// always pass when it is alone). `shed` counts the requests answered with 503.
    pub fn new(total: u64, max_body_bytes: usize, shed: Counter) -> Self {
        let total = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        BodyBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
            max_body_bytes,
            shed,
        }
    }

    fn reservation(&self, request: &Request) -> u32 {
        let announced = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let bytes = announced
            .unwrap_or(self.max_body_bytes)
            .min(self.max_body_bytes)
            .min(self.total);
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// The middleware: `Router::layer(axum::middleware::from_fn_with_state(budget, limit_body_bytes))`.
pub async fn limit_body_bytes(
    State(budget): State<BodyBudget>,
    request: Request,
    next: Next,
) -> Response {
    let wanted = budget.reservation(&request);
    // Held until the handler has answered: by then the body has been read and dropped.
    match budget.bytes.clone().try_acquire_many_owned(wanted) {
        Ok(_reserved) => next.run(request).await,
        Err(_) => {
            budget.shed.inc();
            tracing::debug!(
                bytes = wanted,
                "request body budget exhausted: answering 503"
            );
            shed_response()
        }
    }
}

fn shed_response() -> Response {
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let body = serde_json::json!({
        "error": "server busy: too many request body bytes in flight; retry shortly",
        "status": status.as_u16(),
    })
    .to_string();
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt as _;

    fn request(len: Option<usize>) -> Request {
        let builder = Request::post("/");
        let builder = match len {
            Some(len) => builder.header(header::CONTENT_LENGTH, len),
            None => builder,
        };
        builder
            .body(Body::from(vec![b'x'; len.unwrap_or(1)]))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn status(app: &Router, len: Option<usize>) -> StatusCode {
        let Ok(response) = app.clone().oneshot(request(len)).await;
        response.status()
    }

    #[tokio::test]
    async fn requests_beyond_the_budget_get_503_with_retry_after_and_the_budget_recovers() {
        let shed = Counter::default();
        let budget = BodyBudget::new(100, 80, shed.clone());
        let app = Router::new()
            .route("/", post(|_: axum::body::Bytes| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                budget.clone(),
                limit_body_bytes,
            ));
        // Another request holds 60 of the 100 bytes.
        let held = budget.bytes.clone().try_acquire_many_owned(60);
        assert_eq!(
            status(&app, Some(50)).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        // Unknown length reserves --max-body-bytes (80): shed too.
        assert_eq!(status(&app, None).await, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(&app, Some(40)).await, StatusCode::OK);
        assert_eq!(shed.get(), 2);
        let Ok(response) = app.clone().oneshot(request(Some(50))).await;
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(response.into_body(), 1024).await;
        let body: serde_json::Value =
            serde_json::from_slice(&body.unwrap_or_default()).unwrap_or_default();
        assert_eq!(body["status"], 503);
        assert!(body["error"].as_str().is_some_and(|e| e.contains("busy")));
        drop(held);
        // Lengths above --max-body-bytes reserve only that much (the router answers 413).
        assert_eq!(status(&app, Some(1000)).await, StatusCode::OK);
        assert_eq!(status(&app, None).await, StatusCode::OK);
    }
}

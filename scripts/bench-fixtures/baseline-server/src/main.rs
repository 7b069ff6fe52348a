//! A server with hookguard's HTTP and TLS stack and no engine, for scripts/load-test.sh --baseline.
//!
//! usage: hookguard-baseline-server ADDR CERT_PEM KEY_PEM [OPTION,...]
//! OPTIONs add one of hookguard's own server settings each (src/server), to find what they cost:
//!   timeout     tower_http TimeoutLayer (10 s) on the routes
//!   limit       DefaultBodyLimit::max(16 MiB) on the routes
//!   h1timer     HTTP/1 header_read_timeout(5 s) with TokioTimer, keep_alive(true)
//!   h2ka        HTTP/2 keep_alive_interval(30 s) with TokioTimer
//!   nodelay     TCP_NODELAY on accepted connections (hookguard does not set it)
//!   GET  /empty  answers "ok" without a body to read       (the stack alone)
//!   POST /read   reads the body, answers a fixed review      (+ body read)
//!   POST /parse  parses the body into serde_json::Value and answers a review echoing its uid
//!                (+ a generic parse: what DESIGN.md calls "a server that does nothing but parse")

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::TokioTimer;
use tower_http::timeout::TimeoutLayer;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

const JSON: [(header::HeaderName, &str); 1] = [(header::CONTENT_TYPE, "application/json")];

async fn parse(body: Bytes) -> impl IntoResponse {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(review) => {
            let out = serde_json::json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": review["request"]["uid"], "allowed": true}
            });
            (StatusCode::OK, JSON, serde_json::to_vec(&out).expect("serializes")).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn read(body: Bytes) -> impl IntoResponse {
    let _ = body.len();
    (
        StatusCode::OK,
        JSON,
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}"#,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (addr, cert, key, options) = match args.as_slice() {
        [_, addr, cert, key] => (addr, cert, key, ""),
        [_, addr, cert, key, options] => (addr, cert, key, options.as_str()),
        _ => {
            eprintln!("usage: hookguard-baseline-server ADDR CERT_PEM KEY_PEM [OPTION,...]");
            std::process::exit(2);
        }
    };
    let on = |name: &str| options.split(',').any(|o| o == name);
    let addr: SocketAddr = addr.parse().expect("ADDR is host:port");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("reads CERT_PEM")
        .collect::<Result<_, _>>()
        .expect("parses CERT_PEM");
    let key = PrivateKeyDer::from_pem_file(key).expect("reads KEY_PEM");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate and key match");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let mut app = Router::new()
        .route("/empty", get(|| async { "ok\n" }))
        .route("/read", post(read))
        .route("/parse", post(parse));
    if on("limit") {
        app = app.layer(DefaultBodyLimit::max(16 * 1024 * 1024));
    }
    if on("timeout") {
        app = app.layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(10)));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(Arc::new(config)));
        let listener = std::net::TcpListener::bind(addr).expect("binds");
        listener.set_nonblocking(true).expect("non-blocking");
        let mut server = axum_server::from_tcp(listener).expect("listens");
        if on("h1timer") {
            server
                .http_builder()
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .keep_alive(true);
        }
        if on("h2ka") {
            server
                .http_builder()
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(30));
        }
        if on("nodelay") {
            server
                .acceptor(acceptor.acceptor(NoDelayAcceptor::new()))
                .serve(app.into_make_service())
                .await
                .expect("serves");
        } else {
            server.acceptor(acceptor).serve(app.into_make_service()).await.expect("serves");
        }
    });
}

//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};

use hookguard::serve::ServeOptions;

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hookguard-it-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    opts: ServeOptions,
}

/// `ServeOptions` parsed from flags exactly like the CLI does (defaults included).
pub fn serve_options(args: &[&str]) -> ServeOptions {
    let mut argv = vec!["hookguard"];
    argv.extend_from_slice(args);
    Wrapper::parse_from(argv).opts
}

/// Reads a fixture from tests/fixtures.
pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Wraps an object into an AdmissionReview as kube-apiserver sends it.
pub fn review(
    operation: &str,
    group: &str,
    version: &str,
    kind: &str,
    resource: &str,
    object: Value,
    old: Value,
) -> Value {
    let meta = if object.is_null() { &old } else { &object };
    let name = meta["metadata"]["name"].clone();
    let namespace = meta["metadata"]["namespace"].clone();
    let options = match operation {
        "CREATE" => {
            json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "helm"})
        }
        "UPDATE" => {
            json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "helm"})
        }
        "DELETE" => {
            json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background"})
        }
        _ => Value::Null,
    };
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "0d1e5a3c-8f0b-4d6e-9b1a-3c2d4e5f6a7b",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "name": name,
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false,
            "options": options
        }
    })
}

/// Polls a URL until it answers 200 (for up to 30 s: a debug build generating its certificates
/// on a loaded 2-core machine can take several seconds).
pub async fn wait_ready(url: &str) {
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{url} never became ready");
}

/// An HTTPS client that trusts exactly `ca_pem`.
pub fn https_client(ca_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).expect("CA PEM"))
        .build()
        .expect("client")
}

/// Decodes the base64 JSONPatch of a response and applies it to `object`.
pub fn apply_patch(response: &Value, object: &Value) -> Value {
    use base64::Engine as _;
    let mut out = object.clone();
    if let Some(patch) = response["response"]["patch"].as_str() {
        assert_eq!(response["response"]["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("base64 patch");
        let ops: json_patch::Patch = serde_json::from_slice(&bytes).expect("JSONPatch");
        json_patch::patch(&mut out, &ops).expect("patch applies to the request object");
    }
    out
}

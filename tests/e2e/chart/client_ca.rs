//! `webhook.clientCA`: hookguard requires client certificates (mutual TLS) from a CA given in
//! values. What each way of giving the CA renders (part of 11-chart-lint-render-and-schema), and
//! scenario 17: through the real kube-apiserver, which the suite starts with an
//! AdmissionConfiguration that makes it present a client certificate to exactly one webhook
//! address (`Cluster::mtls_webhook_port`), hookguard started with the rendered `--client-ca` and
//! the rendered CA admits hooks, while direct requests without a certificate, or with one from
//! another CA, are refused with a TLS alert before any HTTP.
//!
//! SIMULATED: the pod. hookguard runs as a local process with the CA the chart renders, at the
//! address the API server presents its certificate to.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::deployment::{check_deployment, container_args, forbid_arg, require_args};
use super::{NS, REL, named, render, render_values};
use crate::hookguard::Served;
use crate::proc::{Result, b64_decode, ensure};
use crate::scenarios::hook_pod;
use crate::tools::repo;
use crate::{DEFAULT_POLICY, Env};

const CLIENT_CA_ARG: &str = "--client-ca=/etc/hookguard/client-ca/ca.crt";
const MOUNT: &str = "/etc/hookguard/client-ca";

/// Helm 3's render of the defaults plus `webhook.clientCA.enabled=true` with the PEM in `file`.
fn render_with_inline_ca(env: &Env, file: &Path) -> Result<Vec<Value>> {
    render(
        env,
        "helm",
        REL,
        NS,
        &[
            "--set",
            "webhook.clientCA.enabled=true",
            "--set-file",
            &format!("webhook.clientCA.pem={}", file.display()),
        ],
    )
}

/// The `client-ca` volume of the Deployment, after checking its mount (read-only, at MOUNT) and
/// the `--client-ca` argument that names the file in it.
fn client_ca_volume(docs: &[Value]) -> Result<Value> {
    let deploy = named(docs, "Deployment", REL)?;
    require_args(&container_args(deploy), &[CLIENT_CA_ARG])?;
    let spec = &deploy["spec"]["template"]["spec"];
    let mounts = spec["containers"][0]["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure(
        mounts
            .iter()
            .any(|m| m["name"] == "client-ca" && m["mountPath"] == MOUNT && m["readOnly"] == true),
        || format!("no read-only client-ca mount at {MOUNT}: {mounts:?}"),
    )?;
    spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == "client-ca")
        .cloned()
        .ok_or_else(|| "no client-ca volume".to_owned())
}

/// The single item of a ConfigMap or Secret volume source: (key, path).
fn only_item(source: &Value) -> (String, String) {
    let item = &source["items"][0];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    match source["items"].as_array().map(Vec::len) {
        Some(1) => (s(&item["key"]), s(&item["path"])),
        _ => (String::new(), String::new()),
    }
}

/// Off by default; inline PEM (a ConfigMap of the chart's, pods restarted when it changes), an
/// existing Secret or ConfigMap with a custom key: the CA file is always `ca.crt` in MOUNT.
pub(super) fn client_ca_values(env: &Env) -> Result<()> {
    let docs = render_values(env, &[])?;
    let deploy = named(&docs, "Deployment", REL)?;
    forbid_arg(&container_args(deploy), "--client-ca")?;
    ensure(
        named(&docs, "ConfigMap", "hookguard-client-ca").is_err(),
        || "a client CA ConfigMap without webhook.clientCA".into(),
    )?;

    let ca = env.cluster.pki_file("webhook-client-ca.crt");
    let pem = fs::read_to_string(&ca).map_err(|e| e.to_string())?;
    let docs = render_with_inline_ca(env, &ca)?;
    let cm = named(&docs, "ConfigMap", "hookguard-client-ca")?;
    ensure(
        cm["data"]["ca.crt"].as_str().map(str::trim) == Some(pem.trim()),
        || format!("client CA ConfigMap {}", cm["data"]),
    )?;
    let volume = client_ca_volume(&docs)?;
    ensure(
        volume["configMap"]["name"] == "hookguard-client-ca"
            && only_item(&volume["configMap"]) == ("ca.crt".into(), "ca.crt".into()),
        || format!("inline client CA volume {volume}"),
    )?;
    let deploy = named(&docs, "Deployment", REL)?;
    // hookguard reads the CA at start only: a new one must roll the pods.
    ensure(
        deploy["spec"]["template"]["metadata"]["annotations"]["checksum/client-ca"].is_string(),
        || "no checksum/client-ca annotation for an inline CA".into(),
    )?;
    check_deployment(
        deploy,
        2,
        super::deployment::Tls::SelfManaged {
            fullname: REL,
            ns: NS,
        },
        "hookguard-policy",
        true,
    )?;

    let docs = render_values(
        env,
        &[
            "webhook.clientCA.enabled=true",
            "webhook.clientCA.existingSecret=apiserver-client-ca",
        ],
    )?;
    let volume = client_ca_volume(&docs)?;
    ensure(
        volume["secret"]["secretName"] == "apiserver-client-ca"
            && only_item(&volume["secret"]) == ("ca.crt".into(), "ca.crt".into())
            && named(&docs, "ConfigMap", "hookguard-client-ca").is_err(),
        || format!("existingSecret client CA volume {volume}"),
    )?;
    let docs = render_values(
        env,
        &[
            "webhook.clientCA.enabled=true",
            "webhook.clientCA.existingConfigMap=trust-bundle",
            "webhook.clientCA.key=bundle.pem",
        ],
    )?;
    let volume = client_ca_volume(&docs)?;
    ensure(
        volume["configMap"]["name"] == "trust-bundle"
            && only_item(&volume["configMap"]) == ("bundle.pem".into(), "ca.crt".into()),
        || format!("existingConfigMap client CA volume {volume}"),
    )
}

/// Scenario 17. The suite's webhook configurations point at the mutual-TLS hookguard for its
/// duration and are restored afterwards.
pub(super) fn mutual_tls_through_the_api_server(env: &Env) -> Result<()> {
    let c = &env.cluster;
    let ns = "e2e-mtls";
    c.namespace(ns)?;
    let dir = c.work.join("mtls");
    let (certs, ca_bundle) = {
        let hg = env.hookguard.lock().map_err(|e| e.to_string())?;
        (hg.dir.join("certs"), hg.ca_bundle.clone())
    };
    // The CA exactly as the chart renders it into the pod.
    let docs = render_with_inline_ca(env, &c.pki_file("webhook-client-ca.crt"))?;
    client_ca_volume(&docs)?;
    let pem = named(&docs, "ConfigMap", "hookguard-client-ca")?["data"]["ca.crt"]
        .as_str()
        .ok_or("no ca.crt in the client CA ConfigMap")?
        .to_owned();
    let mounted = dir.join("client-ca");
    fs::create_dir_all(&mounted).map_err(|e| e.to_string())?;
    fs::write(mounted.join("ca.crt"), &pem).map_err(|e| e.to_string())?;
    fs::write(dir.join("policy.yaml"), DEFAULT_POLICY).map_err(|e| e.to_string())?;

    let served = Served::start_at(
        c.mtls_webhook_port,
        "hookguard-mtls",
        &dir,
        &[
            format!("--tls-cert={}", certs.join("tls.crt").display()),
            format!("--tls-key={}", certs.join("tls.key").display()),
            format!("--config={}", dir.join("policy.yaml").display()),
            CLIENT_CA_ARG.replace(MOUNT, &mounted.display().to_string()),
        ],
        &[],
    )?;
    let result = (|| {
        env.register_webhooks_for(&served.url(), &ca_bundle)?;
        admitted_through_the_api_server(env, &served, ns)?;
        refused_without_the_right_certificate(env, &served, &b64_decode(&ca_bundle)?)
    })();
    let log = served.log_tail(20);
    served.stop();
    env.register_webhooks()?;
    result.map_err(|e| format!("{e}\nhookguard-mtls log:\n{log}"))
}

/// A hook Pod created with kubectl is mutated and validated by the mutual-TLS hookguard: the API
/// server presented the client certificate its AdmissionConfiguration names.
fn admitted_through_the_api_server(env: &Env, served: &Served, ns: &str) -> Result<()> {
    let c = &env.cluster;
    c.apply(&hook_pod(ns, "through-the-api-server", ""))?;
    let pod = c
        .get_json(&["-n", ns, "pod/through-the-api-server"])
        .ok_or("pod not stored")?;
    ensure(
        pod["spec"]["restartPolicy"] == "Never"
            && pod["metadata"]["labels"]["hookguard.io/hook"] == "true",
        || format!("not mutated through mutual TLS: {}", pod["metadata"]),
    )?;
    for webhook in ["mutate", "validate"] {
        let n = served.metric_sum(
            "hookguard_admission_requests_total",
            &[&format!("webhook=\"{webhook}\"")],
        );
        ensure(n >= 1.0, || {
            format!("the mutual-TLS hookguard answered {n} {webhook} requests")
        })?;
    }
    Ok(())
}

/// Direct POSTs of a review to /validate: without a client certificate and with the admin
/// certificate (signed by the cluster CA, not the client CA) hookguard ends the connection with a
/// TLS alert and never sees a request; with the API server's webhook client certificate it
/// answers 200.
fn refused_without_the_right_certificate(
    env: &Env,
    served: &Served,
    server_ca: &[u8],
) -> Result<()> {
    let c = &env.cluster;
    let requests = || served.metric_sum("hookguard_admission_requests_total", &[]);
    let before = requests();
    for (who, identity) in [
        ("no client certificate", None),
        ("the admin certificate (another CA)", Some("admin")),
    ] {
        let identity = identity.map(|n| c.pki_file(n));
        let err = match post_review(served.port, server_ca, identity.as_deref())? {
            Ok(status) => return Err(format!("{who}: answered {status:?}")),
            Err(e) => e,
        };
        ensure(err.contains("received fatal alert"), || {
            format!("{who}: not refused by a TLS alert: {err}")
        })?;
        eprintln!("e2e:   {who}: refused by hookguard in TLS ({err})");
    }
    let answer = post_review(served.port, server_ca, Some(&c.pki_file("webhook-client")))?;
    ensure(
        answer.as_ref().is_ok_and(|s| s.starts_with("HTTP/1.1 200")),
        || format!("with the webhook client certificate: {answer:?}"),
    )?;
    let after = requests();
    ensure(after == before + 1.0, || {
        format!(
            "hookguard counted {} direct requests, want 1",
            after - before
        )
    })
}

/// POSTs a hook Job review to `https://127.0.0.1:<port>/validate` over TLS (rustls, as a client
/// that verifies hookguard against `server_ca`), presenting the certificate `<identity>.crt` with
/// the key `<identity>.key` when given. Ok(Ok(status line)), or Ok(Err(the TLS error that ended
/// the connection)); Err when the test itself could not run. In TLS 1.3 the client finishes its
/// side of the handshake before the server has checked the client certificate, so a refusal
/// arrives as an alert when the client reads.
fn post_review(
    port: u16,
    server_ca: &[u8],
    identity: Option<&Path>,
) -> Result<std::result::Result<String, String>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let review =
        fs::read(repo().join("tests/fixtures/job-migrate-create.json")).map_err(|x| e(&x))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server_ca) {
        roots.add(cert.map_err(|x| e(&x))?).map_err(|x| e(&x))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|x| e(&x))?
    .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(base) => {
            let certs = CertificateDer::pem_file_iter(base.with_extension("crt"))
                .map_err(|x| e(&x))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|x| e(&x))?;
            let key =
                PrivateKeyDer::from_pem_file(base.with_extension("key")).map_err(|x| e(&x))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|x| e(&x))?
        }
    };
    let name = ServerName::try_from("127.0.0.1").map_err(|x| e(&x))?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|x| e(&x))?;
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|x| e(&x))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|x| e(&x))?;
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        review.len()
    );
    let mut response = Vec::new();
    let outcome = tls
        .write_all(head.as_bytes())
        .and_then(|()| tls.write_all(&review))
        .and_then(|()| tls.read_to_end(&mut response).map(|_| ()));
    let status = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    Ok(match outcome {
        // A response that was read in full counts, even if the peer skipped close_notify.
        _ if !status.is_empty() => Ok(status),
        Ok(()) => Err("connection closed without a response".to_owned()),
        Err(err) => Err(err.to_string()),
    })
}

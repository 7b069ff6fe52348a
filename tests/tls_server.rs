//! `hookguard serve` over real HTTPS: generated certificates, rotation on disk (plain rewrite and
//! Kubernetes' symlink swap), mutual TLS, policy reload, and graceful shutdown on SIGTERM.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use common::{free_port, https_client, serve_options, temp_dir, wait_ready};
use hookguard::certs::{Ca, generate_ca, generate_serving};

struct Running {
    addr: String,
    admin: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(extra: &[&str]) -> Running {
        let (port, admin_port) = (free_port(), free_port());
        let addr = format!("127.0.0.1:{port}");
        let admin = format!("127.0.0.1:{admin_port}");
        let mut args = vec![
            "--addr",
            &addr,
            "--admin-addr",
            &admin,
            "--reload-interval",
            "100ms",
        ];
        args.extend_from_slice(extra);
        let opts = serve_options(&args);
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            hookguard::serve::serve(opts, token)
                .await
                .expect("serve runs");
        });
        wait_ready(&format!("http://{admin}/readyz")).await;
        Running {
            addr,
            admin,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// Replaces a file atomically, as a ConfigMap volume update does.
fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn reload_failures(srv: &Running) -> f64 {
    srv.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(r#"hookguard_tls_reloads_total{result="failure"} "#))
        .map(|v| v.trim().parse().unwrap())
        // No series yet: nothing failed.
        .unwrap_or(0.0)
}

fn job_review() -> Vec<u8> {
    serde_json::to_vec(&common::fixture("job-notify-curl-latest-create.json")).unwrap()
}

async fn post(client: &reqwest::Client, url: &str) -> Result<Value, reqwest::Error> {
    client
        .post(url)
        .header("Content-Type", "application/json")
        .body(job_review())
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}

fn write_serving(dir: &Path, ca: &Ca) {
    let now = OffsetDateTime::now_utc();
    let s = generate_serving(
        ca,
        &["localhost".into()],
        &["127.0.0.1".parse().unwrap()],
        now,
        time::Duration::days(30),
    )
    .unwrap();
    // Key first, then cert, each replaced atomically.
    for (name, pem) in [("tls.key", &s.key_pem), ("tls.crt", &s.cert_pem)] {
        let tmp = dir.join(format!("{name}.new"));
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

/// Retries with fresh connections until the server presents a certificate `ca` trusts.
async fn eventually_trusted(ca: &Ca, url: &str) {
    for _ in 0..100 {
        let client = https_client(ca.cert_pem.as_bytes());
        if post(&client, url).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server never presented a certificate from the new CA");
}

#[tokio::test]
async fn generated_certificate_verifies_for_loopback_names() {
    let dir = temp_dir("gen");
    let cert_dir = dir.join("certs");
    let srv = Running::start(&[
        "--cert-dir",
        cert_dir.to_str().unwrap(),
        "--dns",
        "hookguard.test",
    ])
    .await;
    let ca = std::fs::read(cert_dir.join("ca.crt")).unwrap();
    let client = https_client(&ca);
    let v = post(&client, &format!("https://{}/mutate", srv.addr))
        .await
        .unwrap();
    assert_eq!(v["response"]["allowed"], true);
    assert!(v["response"]["patch"].is_string());
    let port = srv.addr.rsplit(':').next().unwrap();
    let v = post(&client, &format!("https://localhost:{port}/validate"))
        .await
        .unwrap();
    assert_eq!(v["response"]["allowed"], true);
    // A client that does not trust the CA is refused.
    let stranger = generate_ca("stranger", OffsetDateTime::now_utc()).unwrap();
    assert!(
        post(
            &https_client(stranger.cert_pem.as_bytes()),
            &format!("https://{}/mutate", srv.addr)
        )
        .await
        .is_err()
    );
    assert!(
        srv.metrics()
            .await
            .contains("hookguard_tls_cert_expiry_timestamp_seconds ")
    );
    srv.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn rotated_certificate_files_are_picked_up_without_restart() {
    let dir = temp_dir("rotate");
    let now = OffsetDateTime::now_utc();
    let (ca_a, ca_b) = (
        generate_ca("a", now).unwrap(),
        generate_ca("b", now).unwrap(),
    );
    write_serving(&dir, &ca_a);
    let cert = dir.join("tls.crt");
    let key = dir.join("tls.key");
    let srv = Running::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .await;
    let url = format!("https://{}/mutate", srv.addr);
    // Keep one connection open across the rotation: it must keep working.
    let long_lived = https_client(ca_a.cert_pem.as_bytes());
    post(&long_lived, &url).await.unwrap();

    write_serving(&dir, &ca_b);
    eventually_trusted(&ca_b, &url).await;
    post(&long_lived, &url)
        .await
        .expect("established connection survives rotation");
    assert!(
        srv.metrics()
            .await
            .contains(r#"hookguard_tls_reloads_total{result="success"} 1"#)
    );
    // (The key and certificate are two files: a poll between their writes may see a mismatched
    // pair and count one rejected reload, so failures are counted from here.)
    let failures_before = reload_failures(&srv).await;

    // A broken file is rejected and the current certificate kept.
    std::fs::write(&cert, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    post(&https_client(ca_b.cert_pem.as_bytes()), &url)
        .await
        .expect("still serving the last good cert");
    assert_eq!(reload_failures(&srv).await, failures_before + 1.0);
    srv.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// Lays out a directory like a mounted Kubernetes Secret: `tls.crt -> ..data/tls.crt`,
/// `..data -> ..<timestamp>`; an update writes a new timestamped dir and renames a new symlink
/// over `..data`.
fn secret_volume_update(volume: &Path, ca: &Ca, generation: u32) {
    let target = volume.join(format!("..2026_11_23_00_00_0{generation}"));
    std::fs::create_dir_all(&target).unwrap();
    write_serving(&target, ca);
    let tmp_link = volume.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(target.file_name().unwrap(), &tmp_link).unwrap();
    std::fs::rename(&tmp_link, volume.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        let link = volume.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(PathBuf::from("..data").join(name), &link).unwrap();
        }
    }
}

#[tokio::test]
async fn kubernetes_secret_symlink_swap_is_picked_up() {
    let volume = temp_dir("secret-volume");
    let now = OffsetDateTime::now_utc();
    let (ca_a, ca_b) = (
        generate_ca("a", now).unwrap(),
        generate_ca("b", now).unwrap(),
    );
    secret_volume_update(&volume, &ca_a, 1);
    let cert = volume.join("tls.crt");
    let key = volume.join("tls.key");
    let srv = Running::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .await;
    let url = format!("https://{}/validate", srv.addr);
    post(&https_client(ca_a.cert_pem.as_bytes()), &url)
        .await
        .unwrap();
    secret_volume_update(&volume, &ca_b, 2);
    eventually_trusted(&ca_b, &url).await;
    srv.stop().await;
    std::fs::remove_dir_all(volume).unwrap();
}

/// A client whose certificate (for `kube-apiserver`) is signed by `client_ca`.
fn client_with_cert(server_ca: &Ca, client_ca: &Ca) -> reqwest::Client {
    use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair};
    let issuer = Issuer::from_ca_cert_pem(
        &client_ca.cert_pem,
        KeyPair::from_pem(&client_ca.key_pem).unwrap(),
    )
    .unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["kube-apiserver".to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = params.signed_by(&key, &issuer).unwrap();
    let identity = reqwest::Identity::from_pem(
        format!("{}{}", client_cert.pem(), key.serialize_pem()).as_bytes(),
    )
    .unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(server_ca.cert_pem.as_bytes()).unwrap(),
        )
        .identity(identity)
        // A new connection per request, so each one meets the current client CA.
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn start_with_client_ca(dir: &Path, server_ca: &Ca) -> Running {
    write_serving(dir, server_ca);
    Running::start(&[
        "--tls-cert",
        dir.join("tls.crt").to_str().unwrap(),
        "--tls-key",
        dir.join("tls.key").to_str().unwrap(),
        "--client-ca",
        dir.join("client-ca.crt").to_str().unwrap(),
    ])
    .await
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_client_ca() {
    let dir = temp_dir("mtls");
    let now = OffsetDateTime::now_utc();
    let server_ca = generate_ca("server", now).unwrap();
    let client_ca = generate_ca("client", now).unwrap();
    std::fs::write(dir.join("client-ca.crt"), &client_ca.cert_pem).unwrap();
    let srv = start_with_client_ca(&dir, &server_ca).await;
    let url = format!("https://{}/mutate", srv.addr);
    assert!(
        post(&https_client(server_ca.cert_pem.as_bytes()), &url)
            .await
            .is_err(),
        "no client cert: refused"
    );
    let other_ca = generate_ca("other", now).unwrap();
    assert!(
        post(&client_with_cert(&server_ca, &other_ca), &url)
            .await
            .is_err(),
        "a client cert from another CA: refused"
    );
    assert_eq!(
        post(&client_with_cert(&server_ca, &client_ca), &url)
            .await
            .unwrap()["response"]["allowed"],
        true
    );
    srv.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_changed_client_ca_applies_to_new_connections_and_a_bad_one_is_rejected() {
    let dir = temp_dir("mtls-reload");
    let now = OffsetDateTime::now_utc();
    let server_ca = generate_ca("server", now).unwrap();
    let (old_ca, new_ca) = (
        generate_ca("client-old", now).unwrap(),
        generate_ca("client-new", now).unwrap(),
    );
    let ca_file = dir.join("client-ca.crt");
    std::fs::write(&ca_file, &old_ca.cert_pem).unwrap();
    let srv = start_with_client_ca(&dir, &server_ca).await;
    let url = format!("https://{}/mutate", srv.addr);
    let (old_client, new_client) = (
        client_with_cert(&server_ca, &old_ca),
        client_with_cert(&server_ca, &new_ca),
    );
    post(&old_client, &url).await.unwrap();
    assert!(post(&new_client, &url).await.is_err());

    replace_file(&ca_file, &new_ca.cert_pem);
    let mut switched = false;
    for _ in 0..100 {
        if post(&new_client, &url).await.is_ok() {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(switched, "the new client CA never took effect");
    assert!(
        post(&old_client, &url).await.is_err(),
        "a certificate from the replaced CA is still accepted"
    );

    let failures_before = reload_failures(&srv).await;
    replace_file(&ca_file, "not a certificate\n");
    let mut counted = false;
    for _ in 0..100 {
        if reload_failures(&srv).await == failures_before + 1.0 {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        counted,
        "the bad client CA was not counted as a failed reload"
    );
    assert!(
        post(&new_client, &url).await.is_ok(),
        "the current client CA was not kept"
    );
    srv.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn policy_file_is_reloaded_and_a_bad_one_is_rejected() {
    let dir = temp_dir("reload");
    let config = dir.join("policy.yaml");
    std::fs::write(&config, "rules:\n  image-tag: warn\n").unwrap();
    let cert_dir = dir.join("certs");
    let srv = Running::start(&[
        "--config",
        config.to_str().unwrap(),
        "--cert-dir",
        cert_dir.to_str().unwrap(),
    ])
    .await;
    let client = https_client(&std::fs::read(cert_dir.join("ca.crt")).unwrap());
    let url = format!("https://{}/validate", srv.addr);
    assert_eq!(
        post(&client, &url).await.unwrap()["response"]["allowed"],
        true
    );

    replace_file(&config, "rules:\n  image-tag: enforce\n");
    let mut denied = false;
    for _ in 0..100 {
        if post(&client, &url).await.unwrap()["response"]["allowed"] == false {
            denied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(denied, "new policy never took effect");

    replace_file(&config, "rules:\n  image-tag: sometimes\n");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        post(&client, &url).await.unwrap()["response"]["allowed"],
        false,
        "old policy kept"
    );
    let metrics = srv.metrics().await;
    assert!(
        metrics.contains(r#"hookguard_config_reloads_total{result="success"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"hookguard_config_reloads_total{result="failure"} 1"#),
        "{metrics}"
    );
    srv.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

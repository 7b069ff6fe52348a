//! SIMULATION of the kubelet for hookguard's container (install.rs runs it after the install and
//! after the upgrades): the binary cargo built, run with the Deployment's exact arguments and
//! environment plus `--kubeconfig` for the chart's ServiceAccount, the policy ConfigMap laid out
//! the way the kubelet mounts it, ports mapped to free loopback ports. What it must do then is
//! what the real pod must do: pass its probes, keep its certificates in the Secret and the CA
//! bundle in both webhook configurations, answer over TLS as the API server would call it, hold
//! the Lease, run the inventory, and stop cleanly on SIGTERM. The webhook's container does the
//! first half as the webhook's ServiceAccount, the controller's the Lease and the inventory as
//! its own.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::deployment::container_args;
use super::webhook_ca_bundles;
use crate::Env;
use crate::proc::{Result, b64_decode, ensure, free_port, http_get, wait_for};
use crate::scrape::{metric_sum_of, metric_value};
use crate::tools::repo;

/// Where the simulated pod runs: its namespace and name (what the downward API gives it), the
/// release's full name, the Service name the API server verifies, and a kubeconfig of its
/// ServiceAccount (in a pod, the mounted token and in-cluster configuration).
pub(super) struct PodEnv<'a> {
    pub(super) ns: &'a str,
    pub(super) name: &'a str,
    pub(super) fullname: &'a str,
    pub(super) svc_host: &'a str,
    pub(super) kubeconfig: &'a Path,
    /// For the controller: a namespace holding a hook Job and a hook Pod without hookguard's
    /// label, which only its discovery pass finds (by listing, then getting each).
    pub(super) unlabelled_hooks_in: Option<&'a str>,
}

const SECRET_KEYS: [&str; 5] = ["ca.crt", "ca.key", "tls.crt", "tls.key", "ca-bundle.crt"];

const DAY: i64 = 86_400;

/// The container's named ports on loopback: the webhook port (none in the controller), and
/// (port, path) of each probe.
struct Ports {
    https: Option<u16>,
    ready: (u16, String),
    live: (u16, String),
}

/// What the Secret holds, decoded: the CA bundle, the serving certificate and both expiries.
struct Issued {
    bundle: Vec<u8>,
    tls_pem: Vec<u8>,
    tls_not_after: i64,
    ca_not_after: i64,
}

/// Runs the Deployment's container locally as the ServiceAccount and checks the probes; that
/// hookguard keeps its CA and certificate in the Secret and the CA bundle in both webhook
/// configurations; a TLS handshake verified against that caBundle for the Service's name, serving
/// the Secret's certificate; an admission review; the Lease and the inventory (which need the
/// rest of the RBAC); and the SIGTERM sequence. Returns the Secret.
pub(super) fn run_container_locally(
    env: &Env,
    bin: &str,
    deploy: &Value,
    configmap: &Value,
    pod: &PodEnv,
    run: &str,
) -> Result<Value> {
    let root = env
        .cluster
        .work
        .join(format!("chart-pod-{bin}-{}", run.replace(' ', "-")));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    let spec = &deploy["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    ensure(c["command"].is_null(), || {
        "the container overrides the image's entrypoint".into()
    })?;
    let mut args = container_args(deploy);
    ensure(!args.is_empty(), || "container has no args".into())?;
    mount_volumes(&root, spec, configmap, &mut args)?;
    let ports = map_ports(c, &mut args)?;
    args.push(format!("--kubeconfig={}", pod.kubeconfig.display()));

    let workdir = root.join("cwd");
    fs::create_dir_all(&workdir).map_err(|e| e.to_string())?;
    let log = root.join("hookguard.log");
    let mut child = spawn(c, &args, pod, &workdir, &log)?;
    let log_tail = || fs::read_to_string(&log).unwrap_or_default();
    let result = (|| -> Result<Value> {
        let ready = format!("127.0.0.1:{}", ports.ready.0);
        wait_for(
            "the container's readinessProbe",
            Duration::from_secs(30),
            || http_get(&ready, &ports.ready.1).filter(|(s, _)| *s == 200),
        )?;
        let (live_port, live_path) = &ports.live;
        let live = http_get(&format!("127.0.0.1:{live_port}"), live_path);
        ensure(live.as_ref().is_some_and(|(s, _)| *s == 200), || {
            format!("livenessProbe {live_path}: {live:?}")
        })?;
        let controller = args.first().is_some_and(|a| a == "controller");
        let secret = if controller {
            ensure(ports.https.is_none(), || {
                "the controller has a webhook port".into()
            })?;
            lease_and_inventory(env, pod, &ready)?;
            Value::Null
        } else {
            let https = ports
                .https
                .ok_or("the webhook container has no https port")?;
            let secret = published_secret(env, pod)?;
            let issued = check_certificates(&secret, pod)?;
            admission_over_tls(pod, https, &issued)?;
            certificate_metrics(&ready, &issued)?;
            secret
        };
        // A missing permission shows up as a watch that keeps failing (and retrying).
        let logged = log_tail();
        ensure(!logged.contains("watch failed"), || {
            format!("a watch failed (RBAC?):\n{logged}")
        })?;
        let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
        let delay = args
            .iter()
            .find_map(|a| a.strip_prefix("--shutdown-delay="))
            .map(|d| humantime::parse_duration(d).map_err(|e| format!("--shutdown-delay: {e}")))
            .transpose()?
            .unwrap_or_default();
        let took = stops_on_sigterm(&mut child, &ready, &ports.ready.1, grace, delay)?;
        let written: Vec<_> = fs::read_dir(&workdir)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        ensure(written.is_empty(), || {
            format!("hookguard wrote {written:?} into its working directory (read-only root)")
        })?;
        eprintln!(
            "e2e:   the {} Deployment's container, run locally as its ServiceAccount ({run}; SIMULATION of the kubelet): {}, SIGTERM -> exit 0 after {:.1}s",
            if controller { "controller" } else { "webhook" },
            if controller {
                "Lease held, inventory up".to_owned()
            } else {
                format!(
                    "Secret and both caBundles written, TLS verified for {}, review patched",
                    pod.svc_host
                )
            },
            took.as_secs_f64()
        );
        Ok(secret)
    })();
    let _ = child.kill();
    let _ = child.wait();
    result.map_err(|e| format!("{run}: {e}\nhookguard log:\n{}", log_tail()))
}

/// Writes `files` into `dir` the way the kubelet lays out Secret and ConfigMap volumes: a
/// timestamped directory, a `..data` symlink to it, and one symlink per key through `..data`.
fn kubelet_volume(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    let e = |e: std::io::Error| format!("{}: {e}", dir.display());
    let stamp = "..2026_01_01_00_00_00.000000001";
    fs::create_dir_all(dir.join(stamp)).map_err(e)?;
    for (k, v) in files {
        fs::write(dir.join(stamp).join(k), v).map_err(e)?;
    }
    std::os::unix::fs::symlink(stamp, dir.join("..data")).map_err(e)?;
    for (k, _) in files {
        std::os::unix::fs::symlink(format!("..data/{k}"), dir.join(k)).map_err(e)?;
    }
    Ok(())
}

/// Volumes under `root`: the policy ConfigMap and scratch space (hookguard reads its Secret
/// through the API); `--flag=<mountPath>/file` becomes `--flag=<local dir>/file` (one
/// substitution per argument).
fn mount_volumes(root: &Path, spec: &Value, configmap: &Value, args: &mut [String]) -> Result<()> {
    let c = &spec["containers"][0];
    let mut mounts: Vec<(String, String)> = Vec::new();
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let name = m["name"].as_str().unwrap_or_default();
        let mount = m["mountPath"].as_str().unwrap_or_default();
        let vol = volumes
            .iter()
            .find(|v| v["name"] == name)
            .ok_or_else(|| format!("volumeMount {name} has no volume"))?;
        let local = root.join(format!("vol-{name}"));
        if vol["configMap"]["name"].is_string() {
            ensure(
                vol["configMap"]["name"] == configmap["metadata"]["name"],
                || format!("mounts ConfigMap {}", vol["configMap"]["name"]),
            )?;
            let files = configmap["data"]
                .as_object()
                .ok_or("ConfigMap without data")?
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().unwrap_or_default().as_bytes().to_vec(),
                    )
                })
                .collect::<Vec<_>>();
            kubelet_volume(&local, &files)?;
        } else if vol["emptyDir"].is_object() {
            fs::create_dir_all(&local).map_err(|e| e.to_string())?;
        } else {
            return Err(format!("unexpected volume {vol}"));
        }
        mounts.push((format!("{mount}/"), format!("{}/", local.display())));
    }
    // The longest mount path first, so that a nested mount wins.
    mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    for a in args {
        let (flag, value) = a.split_once('=').unwrap_or(("", a.as_str()));
        if let Some((m, local)) = mounts.iter().find(|(m, _)| value.starts_with(m.as_str())) {
            let sep = if flag.is_empty() { "" } else { "=" };
            *a = format!("{flag}{sep}{local}{}", &value[m.len()..]);
        }
    }
    Ok(())
}

/// Ports: 0.0.0.0:<containerPort> -> 127.0.0.1:<free port> in the arguments.
fn map_ports(c: &Value, args: &mut [String]) -> Result<Ports> {
    let mut local_port: BTreeMap<String, u16> = BTreeMap::new();
    for p in c["ports"].as_array().into_iter().flatten() {
        let (Some(pname), Some(cport)) = (p["name"].as_str(), p["containerPort"].as_i64()) else {
            continue;
        };
        let free = free_port();
        local_port.insert(pname.to_owned(), free);
        for a in args.iter_mut() {
            *a = a.replace(&format!("0.0.0.0:{cport}"), &format!("127.0.0.1:{free}"));
        }
    }
    let https = local_port.get("https").copied();
    let probe_port = |probe: &str| -> Result<(u16, String)> {
        let g = &c[probe]["httpGet"];
        let port = g["port"].as_str().ok_or("probe port is not a name")?;
        Ok((
            *local_port.get(port).ok_or("probe port unknown")?,
            g["path"].as_str().unwrap_or("/").to_owned(),
        ))
    };
    Ok(Ports {
        https,
        ready: probe_port("readinessProbe")?,
        live: probe_port("livenessProbe")?,
    })
}

/// Starts the binary with `args`, only the environment the container spec sets (the downward
/// API filled in), `workdir` as its working directory and its output in `log`.
fn spawn(c: &Value, args: &[String], pod: &PodEnv, workdir: &Path, log: &Path) -> Result<Child> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookguard"));
    cmd.args(args).env_clear();
    for e in c["env"].as_array().into_iter().flatten() {
        let key = e["name"].as_str().unwrap_or_default();
        if let Some(v) = e["value"].as_str() {
            cmd.env(key, v);
        } else {
            match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.namespace") => cmd.env(key, pod.ns),
                Some("metadata.name") => cmd.env(key, pod.name),
                _ => return Err(format!("unsupported env {e}")),
            };
        }
    }
    let logf = fs::File::create(log).map_err(|e| e.to_string())?;
    cmd.current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(logf.try_clone().map_err(|e| e.to_string())?)
        .stderr(logf);
    // SAFETY: prctl is async-signal-safe and only affects the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| e.to_string())
}

/// The Secret hookguard keeps, and the CA bundle it patched into both configurations.
fn published_secret(env: &Env, pod: &PodEnv) -> Result<Value> {
    let secret_name = format!("{}-tls", pod.fullname);
    let secret = wait_for(
        &format!("Secret {secret_name} with {SECRET_KEYS:?}"),
        Duration::from_secs(30),
        || {
            let s = env
                .cluster
                .get_json(&["-n", pod.ns, "secret", &secret_name])?;
            SECRET_KEYS
                .iter()
                .all(|k| s["data"][k].as_str().is_some_and(|v| !v.is_empty()))
                .then_some(s)
        },
    )?;
    let bundle_b64 = secret["data"]["ca-bundle.crt"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    wait_for(
        "both webhook configurations' caBundle to be the Secret's ca-bundle.crt",
        Duration::from_secs(30),
        || {
            webhook_ca_bundles(env, pod.fullname)
                .ok()
                .filter(|b| b.iter().all(|b| *b == bundle_b64))
        },
    )?;
    Ok(secret)
}

/// (subject alternative DNS names, notBefore, notAfter) of the first certificate in a PEM.
fn cert_info(pem: &[u8]) -> Result<(Vec<String>, i64, i64)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| e.to_string())?;
    let cert = pem.parse_x509().map_err(|e| e.to_string())?;
    let mut dns = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                dns.push((*d).to_owned());
            }
        }
    }
    let v = cert.validity();
    Ok((dns, v.not_before.timestamp(), v.not_after.timestamp()))
}

fn secret_field(secret: &Value, key: &str) -> Result<Vec<u8>> {
    b64_decode(
        secret["data"][key]
            .as_str()
            .ok_or_else(|| format!("Secret has no {key}"))?,
    )
}

/// The bundle contains the CA; the serving certificate names the Service; both are valid as
/// long as the certs.selfManaged defaults say (serving 30d, renewed 10d before; CA 365d).
fn check_certificates(secret: &Value, pod: &PodEnv) -> Result<Issued> {
    let bundle = secret_field(secret, "ca-bundle.crt")?;
    let ca_pem = secret_field(secret, "ca.crt")?;
    ensure(
        String::from_utf8_lossy(&bundle).contains(String::from_utf8_lossy(&ca_pem).trim()),
        || "ca-bundle.crt does not contain ca.crt".into(),
    )?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    let tls_pem = secret_field(secret, "tls.crt")?;
    let (dns, _, tls_not_after) = cert_info(&tls_pem)?;
    ensure(
        dns.iter().any(|d| d == pod.svc_host)
            && dns.contains(&format!("{}.cluster.local", pod.svc_host)),
        || format!("serving certificate SANs {dns:?}"),
    )?;
    ensure(
        (20 * DAY..=31 * DAY).contains(&(tls_not_after - now)),
        || {
            format!(
                "serving certificate valid {} more days",
                (tls_not_after - now) / DAY
            )
        },
    )?;
    let (_, _, ca_not_after) = cert_info(&ca_pem)?;
    ensure(
        (275 * DAY..=366 * DAY).contains(&(ca_not_after - now)),
        || format!("CA valid {} more days", (ca_not_after - now) / DAY),
    )?;
    Ok(Issued {
        bundle,
        tls_pem,
        tls_not_after,
        ca_not_after,
    })
}

/// TLS as the API server does it: the caBundle, the Service's DNS name; the certificate served
/// is the Secret's, and an admission review gets a patch. The client's runtime is dropped on
/// return: an HTTP/2 connection nobody polls would never answer the server's GOAWAY at SIGTERM.
fn admission_over_tls(pod: &PodEnv, https: u16, issued: &Issued) -> Result<()> {
    let review = fs::read(repo().join("tests/fixtures/job-migrate-create.json"))
        .map_err(|e| e.to_string())?;
    let (_, leaf) = x509_parser::pem::parse_x509_pem(&issued.tls_pem).map_err(|e| e.to_string())?;
    let svc_host = pod.svc_host;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (served, response): (Vec<u8>, Value) = rt.block_on(async {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .tls_info(true)
            .resolve(svc_host, ([127, 0, 0, 1], https).into())
            .https_only(true);
        for cert in
            reqwest::Certificate::from_pem_bundle(&issued.bundle).map_err(|e| e.to_string())?
        {
            builder = builder.add_root_certificate(cert);
        }
        let resp = builder
            .build()
            .map_err(|e| e.to_string())?
            .post(format!("https://{svc_host}:{https}/mutate"))
            .header("Content-Type", "application/json")
            .body(review)
            .send()
            .await
            .map_err(|e| format!("TLS request to https://{svc_host}: {e:?}"))?
            .error_for_status()
            .map_err(|e| e.to_string())?;
        let served = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate())
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let body = resp.json::<Value>().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((served, body))
    })?;
    ensure(served == leaf.contents, || {
        "the certificate served is not the Secret's tls.crt".into()
    })?;
    ensure(
        response["response"]["allowed"] == true
            && response["response"]["patch"]
                .as_str()
                .is_some_and(|p| !p.is_empty()),
        || format!("admission response {response}"),
    )
}

/// Leader election and the inventory, which need the Lease, Jobs, Pods and Secrets RBAC.
fn lease_and_inventory(env: &Env, pod: &PodEnv, ready: &str) -> Result<()> {
    wait_for(
        "the Lease held by this pod, hookguard_leader 1 and hookguard_inventory_up 1",
        Duration::from_secs(60),
        || {
            let lease = env
                .cluster
                .get_json(&["-n", pod.ns, "lease", pod.fullname])?;
            let metrics = http_get(ready, "/metrics")?.1;
            (lease["spec"]["holderIdentity"] == pod.name
                && metric_value(&metrics, "hookguard_leader") == 1.0
                && metric_value(&metrics, "hookguard_inventory_up") == 1.0)
                .then_some(())
        },
    )?;
    if let Some(ns) = pod.unlabelled_hooks_in {
        let namespace = format!("namespace=\"{ns}\"");
        wait_for(
            &format!("the discovery pass to find the unlabelled hooks in {ns}"),
            Duration::from_secs(30),
            || {
                let metrics = http_get(ready, "/metrics")?.1;
                ["kind=\"Job\"", "kind=\"Pod\""]
                    .iter()
                    .all(|kind| {
                        metric_sum_of(&metrics, "hookguard_hook_objects", &[&namespace, kind])
                            >= 1.0
                    })
                    .then_some(())
            },
        )?;
    }
    Ok(())
}

/// The certificate metrics agree with the Secret; the webhook exports no inventory families.
fn certificate_metrics(ready: &str, issued: &Issued) -> Result<()> {
    let metrics = http_get(ready, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    ensure(!metrics.contains("hookguard_inventory_up"), || {
        "the webhook exports the controller's metrics".into()
    })?;
    ensure(
        metric_value(&metrics, "hookguard_tls_cert_expiry_timestamp_seconds")
            == issued.tls_not_after as f64
            && metric_value(&metrics, "hookguard_tls_ca_expiry_timestamp_seconds")
                == issued.ca_not_after as f64
            && metric_value(
                &metrics,
                "hookguard_cert_reconciles_total{result=\"success\"}",
            ) >= 1.0,
        || "certificate metrics disagree with the Secret".into(),
    )
}

/// SIGTERM: /readyz fails at once, the process exits 0 after `delay` (--shutdown-delay; the
/// controller has none), well within terminationGracePeriodSeconds (`grace`). Returns how long
/// it took.
fn stops_on_sigterm(
    child: &mut Child,
    ready: &str,
    ready_path: &str,
    grace: u64,
    delay: Duration,
) -> Result<Duration> {
    let stopped_at = Instant::now();
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    wait_for(
        "/readyz to fail after SIGTERM",
        Duration::from_secs(3),
        || match http_get(ready, ready_path) {
            Some((200, _)) => None,
            _ => Some(()),
        },
    )?;
    let status = wait_for(
        "exit within terminationGracePeriodSeconds",
        Duration::from_secs(grace),
        || child.try_wait().ok().flatten(),
    )?;
    let took = stopped_at.elapsed();
    ensure(status.success(), || format!("exit status {status}"))?;
    ensure(took >= delay.saturating_sub(Duration::from_secs(1)), || {
        format!("exited {took:?} after SIGTERM: --shutdown-delay={delay:?} not honoured")
    })?;
    Ok(took)
}

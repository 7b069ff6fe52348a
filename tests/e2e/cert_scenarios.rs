//! Self-managed certificates against the real API server: two hookguard replicas share one
//! Secret, keep the caBundle of the chart's webhook configurations current, and rotate the serving
//! certificate and the CA on short validities, while kube-apiserver keeps calling them over TLS.
//! Nothing is simulated here except time, which is compressed (seconds instead of days).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::hookguard::Served;
use crate::proc::{Result, ensure, wait_for};
use crate::{Env, Scenario};

pub const ALL: &[Scenario] = &[
    (
        "12-self-managed-certs-rotate-under-load",
        self_managed_rotation,
    ),
    (
        "12-self-managed-certs-rotate-on-request",
        rotation_on_request,
    ),
];

const NS: &str = "e2e-certs";
const HOOKS_NS: &str = "e2e-certs-hooks";
const NAME: &str = "e2e-selfmanaged";
const SECRET: &str = "e2e-selfmanaged-tls";

fn b64(s: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("bad base64: {e}"))
}

/// One key of the Secret, decoded; `None` if the Secret or key is absent.
/// The Secret's data, decoded (empty if the Secret is absent).
fn secret_data(env: &Env, ns: &str, secret: &str) -> BTreeMap<String, String> {
    let Some(secret) = env.cluster.get_json(&["secret", "-n", ns, secret]) else {
        return BTreeMap::new();
    };
    let data = secret["data"].as_object().cloned().unwrap_or_default();
    data.into_iter()
        .filter_map(|(k, v)| {
            let text = String::from_utf8(b64(v.as_str()?).ok()?).ok()?;
            Some((k, text))
        })
        .collect()
}

fn secret_key_of(env: &Env, ns: &str, secret: &str, key: &str) -> Option<String> {
    secret_data(env, ns, secret).remove(key)
}

fn secret_key(env: &Env, key: &str) -> Option<String> {
    secret_key_of(env, NS, SECRET, key)
}

fn published(env: &Env) -> Vec<String> {
    published_in(env, NAME)
}

/// The caBundle (decoded PEM) of every webhook of both configurations called `name`.
fn published_in(env: &Env, name: &str) -> Vec<String> {
    env.cluster
        .webhook_ca_bundles(name)
        .iter()
        .map(|b| {
            b64(b)
                .map(|pem| String::from_utf8_lossy(&pem).into_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// Applies the chart's webhook configurations (named `name`) for hookguard at `url`, rendered
/// without a caBundle: hookguard must publish it.
fn register(env: &Env, name: &str, url: &str) -> Result<()> {
    env.apply_webhooks(name, url, None, &[])
}

/// Creates a hook ConfigMap through the API server; Err if it fails or is not mutated.
fn create_hook(env: &Env, ns: &str, name: &str) -> Result<()> {
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations:\n    helm.sh/hook: pre-install\n"
    );
    let out = env.cluster.run(
        "kubectl",
        &["create", "-f", "-", "-o", "json"],
        Some(&manifest),
    );
    ensure(out.status.success(), || {
        format!(
            "create {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let obj: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    ensure(
        obj["metadata"]["labels"]["hookguard.io/hook"] == "true",
        || format!("{name} was not mutated: {obj}"),
    )
}

fn self_managed_rotation(env: &Env) -> Result<()> {
    env.cluster.namespace(NS)?;
    env.cluster.namespace(HOOKS_NS)?;
    let dir = env.cluster.work.join("self-managed");
    let kubeconfig = env.cluster.kubeconfig.display().to_string();
    let args = |_: &str| -> Vec<String> {
        vec![
            format!("--kubeconfig={kubeconfig}"),
            format!("--namespace={NS}"),
            format!("--cert-secret={SECRET}"),
            format!("--webhook-config-name={NAME}"),
            // Compressed time: a serving certificate lives 20 s and is renewed 12 s before its
            // end (every ~8 s); a CA lives 60 s and is replaced from 40 s before its end.
            "--serving-cert-validity=20s".into(),
            "--serving-cert-renew-before=12s".into(),
            "--ca-validity=60s".into(),
            "--ca-renew-before=40s".into(),
            "--cert-check-interval=1s".into(),
            "--log=info,hookguard=debug".into(),
        ]
    };
    let a = Served::start("hookguard-selfmanaged-a", &dir, &args("a"), &[])?;
    let b = Served::start("hookguard-selfmanaged-b", &dir, &args("b"), &[])?;
    let result = (|| -> Result<()> {
        // The Secret appears, and both replicas become ready serving from it.
        wait_for(
            "the Secret and both replicas ready",
            Duration::from_secs(30),
            || (secret_key(env, "tls.crt").is_some() && a.ready() && b.ready()).then_some(()),
        )?;
        for key in ["ca.crt", "ca.key", "tls.key", "ca-bundle.crt"] {
            ensure(secret_key(env, key).is_some(), || {
                format!("Secret has no {key}")
            })?;
        }

        // Register the chart's webhook configurations for replica A, without a caBundle:
        // hookguard must publish it.
        register(env, NAME, &a.url())?;
        wait_for(
            "caBundle published in both configurations",
            Duration::from_secs(20),
            || {
                let bundle = secret_key(env, "ca-bundle.crt")?;
                published(env).iter().all(|p| *p == bundle).then_some(())
            },
        )?;

        // Create hook objects through the API server for a while; every one is admitted by
        // hookguard (validating failurePolicy Fail: a TLS failure would refuse the create).
        let before = a.metric_sum(
            "hookguard_admission_requests_total",
            &["webhook=\"validate\""],
        );
        let (mut tls_certs, mut cas, mut max_bundle) = (BTreeSet::new(), BTreeSet::new(), 0);
        let started = Instant::now();
        let mut created = 0;
        let mut deleted_ca: Option<String> = None;
        while started.elapsed() < Duration::from_secs(50) {
            // Half-way, the Secret is deleted (by hand, by a namespace clean-up script...): a
            // new CA must be trusted before any replica serves from it, and the old one until
            // every replica stopped serving from it. Every create goes on succeeding.
            if deleted_ca.is_none() && started.elapsed() > Duration::from_secs(25) {
                let old = secret_key(env, "ca.crt").ok_or("no CA in the Secret")?;
                env.cluster.run_ok(
                    "kubectl",
                    &["delete", "secret", SECRET, "-n", NS, "--wait=true"],
                    None,
                )?;
                // Once the new CA is published, the one the replicas were serving from must
                // still be trusted next to it.
                let new = wait_for("the Secret recreated", Duration::from_secs(10), || {
                    secret_key(env, "ca.crt").filter(|ca| *ca != old)
                })?;
                wait_for("the new CA published", Duration::from_secs(10), || {
                    published(env)
                        .iter()
                        .all(|p| p.contains(new.trim()))
                        .then_some(())
                })?;
                let bundles = published(env);
                ensure(bundles.iter().all(|p| p.contains(old.trim())), || {
                    format!(
                        "the CA still served left the published bundle when the Secret was recreated: {bundles:?}"
                    )
                })?;
                deleted_ca = Some(old);
            }
            create_hook(env, HOOKS_NS, &format!("hook-{created}")).map_err(|e| {
                format!(
                    "at {:.1}s: {e}\n--- replica A:\n{}",
                    started.elapsed().as_secs_f64(),
                    a.log_tail(30)
                )
            })?;
            created += 1;
            // One read of the Secret per round.
            let mut data = secret_data(env, NS, SECRET);
            tls_certs.extend(data.remove("tls.crt"));
            cas.extend(data.remove("ca.crt"));
            if let Some(bundle) = data.get("ca-bundle.crt") {
                max_bundle = max_bundle.max(bundle.matches("BEGIN CERTIFICATE").count());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let answered = a.metric_sum(
            "hookguard_admission_requests_total",
            &["webhook=\"validate\""],
        ) - before;
        ensure(answered >= created as f64, || {
            format!("replica A answered {answered} validations for {created} creates")
        })?;
        ensure(tls_certs.len() >= 4, || {
            format!(
                "expected at least 4 serving certificates in 50 s, saw {}",
                tls_certs.len()
            )
        })?;
        ensure(cas.len() >= 2, || {
            format!("expected the CA to rotate, saw {} CA(s)", cas.len())
        })?;
        let deleted_ca = deleted_ca.ok_or("the Secret was never deleted")?;
        ensure(
            secret_key(env, "ca.crt").is_some_and(|ca| ca != deleted_ca),
            || "no new CA in the Secret recreated after its deletion".into(),
        )?;
        ensure(max_bundle >= 2, || {
            "the bundle never held two CAs: CA rotation was not overlapped".to_owned()
        })?;

        // Both replicas converge on the Secret's certificate, and the published bundle on its
        // bundle.
        wait_for(
            "both replicas serving the Secret's certificate",
            Duration::from_secs(15),
            || {
                let cert = secret_key(env, "tls.crt")?;
                let expiry = hookguard::certs::not_after(&cert)? as f64;
                let served_by =
                    |s: &Served| s.metric_sum("hookguard_tls_cert_expiry_timestamp_seconds", &[]);
                (served_by(&a) == expiry && served_by(&b) == expiry).then_some(())
            },
        )?;
        let bundle = secret_key(env, "ca-bundle.crt").unwrap_or_default();
        wait_for(
            "published bundle equals the Secret's",
            Duration::from_secs(15),
            || published(env).iter().all(|p| *p == bundle).then_some(()),
        )?;
        let rotations = |cert: &str| {
            a.metric_sum(
                "hookguard_cert_rotations_total",
                &[&format!("cert=\"{cert}\"")],
            ) + b.metric_sum(
                "hookguard_cert_rotations_total",
                &[&format!("cert=\"{cert}\"")],
            )
        };
        ensure(
            rotations("serving") >= 4.0 && rotations("ca") >= 2.0,
            || {
                format!(
                    "rotations metric: serving {} ca {}",
                    rotations("serving"),
                    rotations("ca")
                )
            },
        )?;
        eprintln!(
            "e2e: {created} hooks admitted across {} serving certificates and {} CAs, the Secret deleted once",
            tls_certs.len(),
            cas.len()
        );
        Ok(())
    })();
    if result.is_err() {
        eprintln!("===== replica A =====\n{}", a.log_tail(40));
        eprintln!("===== replica B =====\n{}", b.log_tail(40));
    }
    a.stop();
    b.stop();
    let _ = env.cluster.kubectl(&[
        "delete",
        "mutatingwebhookconfiguration,validatingwebhookconfiguration",
        NAME,
        "--ignore-not-found",
    ]);
    let _ = env
        .cluster
        .kubectl(&["delete", "namespace", NS, HOOKS_NS, "--wait=false"]);
    result
}

/// With production validities (nothing due for months), `hookguard.io/rotate` on the Secret
/// rotates now: `serving` re-issues the serving certificate from the same CA; `ca` stages a new
/// CA, publishes it next to the old one and then moves the serving certificate to it. Admissions
/// succeed after each step, and hookguard removes the annotation.
fn rotation_on_request(env: &Env) -> Result<()> {
    const NS2: &str = "e2e-certs-request";
    const HOOKS_NS2: &str = "e2e-certs-request-hooks";
    const SECRET2: &str = "e2e-on-request-tls";
    const NAME2: &str = "e2e-on-request";
    env.cluster.namespace(NS2)?;
    env.cluster.namespace(HOOKS_NS2)?;
    let dir = env.cluster.work.join("on-request");
    let hg = Served::start(
        "hookguard-on-request",
        &dir,
        &[
            format!("--kubeconfig={}", env.cluster.kubeconfig.display()),
            format!("--namespace={NS2}"),
            format!("--cert-secret={SECRET2}"),
            format!("--webhook-config-name={NAME2}"),
            // Default validities; frequent checks only to keep the test short.
            "--cert-check-interval=1s".into(),
        ],
        &[],
    )?;
    let key = |k: &str| secret_key_of(env, NS2, SECRET2, k);
    let result = (|| -> Result<()> {
        wait_for("ready", Duration::from_secs(30), || {
            hg.ready().then_some(())
        })?;
        register(env, NAME2, &hg.url())?;
        let settled = || {
            let bundle = key("ca-bundle.crt")?;
            let annotated = env.cluster.get_json(&["secret", "-n", NS2, SECRET2])?["metadata"]
                    ["annotations"]["hookguard.io/rotate"]
                    .is_string();
            let served = hg.metric_sum("hookguard_tls_cert_expiry_timestamp_seconds", &[])
                == hookguard::certs::not_after(&key("tls.crt")?)? as f64;
            (!annotated && served && published_in(env, NAME2).iter().all(|p| *p == bundle))
                .then_some(())
        };
        wait_for("caBundle published", Duration::from_secs(20), settled)?;
        create_hook(env, HOOKS_NS2, "on-request-0")?;
        let (tls0, ca0) = (
            key("tls.crt").unwrap_or_default(),
            key("ca.crt").unwrap_or_default(),
        );

        let annotate = |value: &str| {
            env.cluster.run_ok(
                "kubectl",
                &[
                    "-n",
                    NS2,
                    "annotate",
                    "--overwrite",
                    "secret",
                    SECRET2,
                    &format!("hookguard.io/rotate={value}"),
                ],
                None,
            )
        };
        annotate("serving")?;
        wait_for(
            "a new serving certificate, served",
            Duration::from_secs(20),
            || {
                (key("tls.crt")? != tls0).then_some(())?;
                settled()
            },
        )?;
        ensure(key("ca.crt").unwrap_or_default() == ca0, || {
            "a serving rotation changed the CA".to_owned()
        })?;
        create_hook(env, HOOKS_NS2, "on-request-1")?;
        let tls1 = key("tls.crt").unwrap_or_default();

        annotate("ca")?;
        wait_for(
            "a new CA signing the served certificate",
            Duration::from_secs(30),
            || {
                let ca = key("ca.crt")?;
                (ca != ca0 && key("tls.crt")? != tls1).then_some(())?;
                settled()
            },
        )?;
        let bundle = key("ca-bundle.crt").unwrap_or_default();
        ensure(
            bundle.contains(ca0.trim()) && bundle.matches("BEGIN CERTIFICATE").count() == 2,
            || "the old CA must stay in the bundle until it expires".to_owned(),
        )?;
        create_hook(env, HOOKS_NS2, "on-request-2")?;
        serves_the_secret_when_publishing_fails(env, &dir, NS2, SECRET2, NAME2)?;
        let rotations = |cert: &str| {
            hg.metric_sum(
                "hookguard_cert_rotations_total",
                &[&format!("cert=\"{cert}\"")],
            )
        };
        // Creation (ca + serving), the serving request, and the CA promotion (ca + serving).
        ensure(
            rotations("serving") == 3.0 && rotations("ca") == 2.0,
            || {
                format!(
                    "rotations: serving {} ca {}",
                    rotations("serving"),
                    rotations("ca")
                )
            },
        )?;
        Ok(())
    })();
    if result.is_err() {
        eprintln!("===== hookguard-on-request =====\n{}", hg.log_tail(40));
    }
    hg.stop();
    let _ = env.cluster.kubectl(&[
        "delete",
        "mutatingwebhookconfiguration,validatingwebhookconfiguration",
        NAME2,
        "--ignore-not-found",
    ]);
    let _ = env
        .cluster
        .kubectl(&["delete", "namespace", NS2, HOOKS_NS2, "--wait=false"]);
    result
}

/// A second replica whose webhook configurations cannot be read (its ServiceAccount may use
/// its Secret but not read them) still starts serving, from the valid certificate in the
/// Secret, and leaves the Secret as it is; its checks keep failing meanwhile.
fn serves_the_secret_when_publishing_fails(
    env: &Env,
    dir: &Path,
    ns: &str,
    secret: &str,
    webhook_config: &str,
) -> Result<()> {
    const SA: &str = "e2e-unpublishable";
    env.cluster.apply(&format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {SA}, namespace: {ns}}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: {SA}, namespace: {ns}}}\nrules:\n  - apiGroups: [\"\"]\n    resources: [secrets]\n    resourceNames: [{secret}]\n    verbs: [get, list, watch, update]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {SA}, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {SA}}}\nsubjects: [{{kind: ServiceAccount, name: {SA}, namespace: {ns}}}]\n"
    ))?;
    let kubeconfig = env.cluster.service_account_kubeconfig(ns, SA, SA)?;
    let key = |k: &str| secret_key_of(env, ns, secret, k);
    let before = secret_data(env, ns, secret);
    let hg = Served::start(
        "hookguard-unpublishable",
        dir,
        &[
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--namespace={ns}"),
            format!("--cert-secret={secret}"),
            format!("--webhook-config-name={webhook_config}"),
            "--cert-check-interval=1s".into(),
        ],
        &[],
    )?;
    let result = (|| -> Result<()> {
        wait_for("ready without publishing", Duration::from_secs(30), || {
            hg.ready().then_some(())
        })?;
        let tls_not_after = hookguard::certs::not_after(&key("tls.crt").unwrap_or_default())
            .ok_or("the Secret's tls.crt does not parse")?;
        ensure(
            hg.metric_sum("hookguard_tls_cert_expiry_timestamp_seconds", &[])
                == tls_not_after as f64,
            || "it does not serve the certificate in the Secret".to_owned(),
        )?;
        wait_for("failed checks counted", Duration::from_secs(10), || {
            (hg.metric_sum("hookguard_cert_reconciles_total", &["result=\"failure\""]) >= 2.0)
                .then_some(())
        })?;
        ensure(
            hg.log_tail(200)
                .lines()
                .any(|l| l.contains("WebhookConfiguration ") && l.contains("is forbidden")),
            || "the checks do not fail on reading the webhook configurations".to_owned(),
        )?;
        ensure(secret_data(env, ns, secret) == before, || {
            "a replica that could not publish changed the Secret".to_owned()
        })?;
        ensure(
            hg.log_tail(200)
                .contains("serving the valid certificate in the Secret meanwhile"),
            || "no warning that it serves while its checks fail".to_owned(),
        )
    })();
    if result.is_err() {
        eprintln!("===== hookguard-unpublishable =====\n{}", hg.log_tail(40));
    }
    hg.stop();
    result
}

//! What the chart promises about hookguard's pod, checked on a rendered Deployment (render.rs) and
//! on the one the API server stores (install.rs): hardening, arguments per certificate mode,
//! downward API, probes, ports, resources, mounts and anti-affinity.

use std::collections::BTreeMap;

use serde_json::Value;

use super::strings;
use crate::proc::{Result, ensure};

/// How the pod gets its serving certificate.
#[derive(Clone, Copy)]
pub(super) enum Tls<'a> {
    /// certs.mode=selfManaged: hookguard keeps it in Secret `<fullname>-tls`, through the API.
    SelfManaged { fullname: &'a str, ns: &'a str },
    /// This Secret, mounted at /etc/hookguard/tls (certManager, existingSecret).
    Mounted(&'a str),
}

pub(super) fn container_args(d: &Value) -> Vec<String> {
    strings(&d["spec"]["template"]["spec"]["containers"][0]["args"])
}

/// Every one of `want` is an argument.
pub(super) fn require_args(args: &[String], want: &[impl AsRef<str>]) -> Result<()> {
    for w in want {
        let w = w.as_ref();
        ensure(args.iter().any(|a| a == w), || {
            format!("args {args:?} lack {w}")
        })?;
    }
    Ok(())
}

/// No argument starts with `flag`.
pub(super) fn forbid_arg(args: &[String], flag: &str) -> Result<()> {
    ensure(!args.iter().any(|a| a.starts_with(flag)), || {
        format!("args {args:?} have {flag}")
    })
}

/// What the chart promises about the pod, checked on a rendered or stored Deployment. `api`: some
/// enabled feature calls the Kubernetes API, so the pod needs its ServiceAccount token.
pub(super) fn check_deployment(
    d: &Value,
    replicas: i64,
    tls: Tls,
    policy_cm: &str,
    api: bool,
) -> Result<()> {
    ensure(d["spec"]["replicas"] == replicas, || {
        format!("replicas {}", d["spec"]["replicas"])
    })?;
    let pod = &d["spec"]["template"];
    let spec = &pod["spec"];
    check_pod_security(pod, api)?;
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    check_certificate_args(&container_args(d), &volumes, tls)?;
    check_container(&spec["containers"][0], &volumes, policy_cm)?;
    let anti = &spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"];
    ensure(anti["topologyKey"] == "kubernetes.io/hostname", || {
        format!(
            "no preferred anti-affinity by hostname: {}",
            spec["affinity"]
        )
    })
}

/// The controller's Deployment (`<fullname>-controller`): `hookguard controller` as its own
/// ServiceAccount, hardened like the webhook's pod, with a token (its whole job is the API), no
/// webhook port and no volume but scratch space, and pod labels the webhook's selectors cannot
/// match.
pub(super) fn check_controller_deployment(d: &Value, fullname: &str, replicas: i64) -> Result<()> {
    let controller = format!("{fullname}-controller");
    ensure(
        d["metadata"]["name"] == controller.as_str() && d["spec"]["replicas"] == replicas,
        || {
            format!(
                "controller Deployment {} replicas {}",
                d["metadata"]["name"], d["spec"]["replicas"]
            )
        },
    )?;
    let pod = &d["spec"]["template"];
    let spec = &pod["spec"];
    check_pod_security(pod, true)?;
    let args = container_args(d);
    ensure(args.first().is_some_and(|a| a == "controller"), || {
        format!("controller args {args:?}")
    })?;
    require_args(&args, &["--admin-addr=0.0.0.0:8080", "--log-format=json"])?;
    for flag in ["--cert-secret", "--tls-cert", "--addr=", "--client-ca"] {
        forbid_arg(&args, flag)?;
    }
    let c = &spec["containers"][0];
    // The policy file only for the re-check, from the policy ConfigMap, read-only.
    if args.iter().any(|a| a.starts_with("--config")) {
        require_args(
            &args,
            &[
                "--policy-recheck",
                "--config=/etc/hookguard/policy/policy.yaml",
            ],
        )?;
        ensure(
            c["volumeMounts"].as_array().is_some_and(|m| {
                m.iter()
                    .any(|m| m["mountPath"] == "/etc/hookguard/policy" && m["readOnly"] == true)
            }),
            || format!("controller volumeMounts {}", c["volumeMounts"]),
        )?;
    }
    // Where the Lease is, and the identity it is held under.
    check_downward_api(
        c,
        &[
            ("POD_NAMESPACE", "metadata.namespace"),
            ("POD_NAME", "metadata.name"),
        ],
    )?;
    ensure(
        spec["serviceAccountName"] == controller.as_str()
            && c["ports"]
                .as_array()
                .is_some_and(|p| p.len() == 1 && p[0]["name"] == "metrics")
            && spec["volumes"].as_array().is_some_and(|v| {
                // Scratch space, and the policy ConfigMap for the re-check: never a Secret.
                v.iter()
                    .all(|v| v["emptyDir"].is_object() || v["configMap"]["name"].is_string())
            }),
        || format!("controller pod spec {spec}"),
    )?;
    ensure(
        pod["metadata"]["labels"]["app.kubernetes.io/name"] == "hookguard-controller",
        || format!("controller pod labels {}", pod["metadata"]["labels"]),
    )
}

/// Restart behaviour, hardening, shutdown time and the ServiceAccount token of the pod template.
fn check_pod_security(pod: &Value, api: bool) -> Result<()> {
    // Only the client CA, which hookguard reads once at start, rolls the pods when it changes.
    ensure(
        pod["metadata"]["annotations"].as_object().is_none_or(|a| {
            !a.keys()
                .any(|k| k.contains("checksum") && k != "checksum/client-ca")
        }),
        || "a checksum annotation would restart the pods on every policy change".into(),
    )?;
    let spec = &pod["spec"];
    let psc = &spec["securityContext"];
    let csc = &spec["containers"][0]["securityContext"];
    ensure(
        psc["runAsNonRoot"] == true
            && psc["runAsUser"] == 65532
            && psc["seccompProfile"]["type"] == "RuntimeDefault"
            && csc["readOnlyRootFilesystem"] == true
            && csc["allowPrivilegeEscalation"] == false
            && csc["capabilities"]["drop"] == serde_json::json!(["ALL"]),
        || format!("pod not hardened: pod {psc}, container {csc}"),
    )?;
    ensure(spec["terminationGracePeriodSeconds"] == 30, || {
        format!(
            "terminationGracePeriodSeconds {}",
            spec["terminationGracePeriodSeconds"]
        )
    })?;
    ensure(spec["automountServiceAccountToken"] == api, || {
        format!(
            "automountServiceAccountToken is {}, but the enabled features {} the API",
            spec["automountServiceAccountToken"],
            if api { "call" } else { "never call" }
        )
    })
}

/// The arguments every pod has, and those of its certificate mode (with the Secret volume that
/// mode needs, or none).
fn check_certificate_args(args: &[String], volumes: &[Value], tls: Tls) -> Result<()> {
    require_args(
        args,
        &[
            "serve",
            "--shutdown-delay=5s",
            "--shutdown-grace=20s",
            "--log-format=json",
            "--config=/etc/hookguard/policy/policy.yaml",
        ],
    )?;
    let secret_volumes: Vec<&str> = volumes
        .iter()
        .filter_map(|v| v["secret"]["secretName"].as_str())
        .collect();
    match tls {
        Tls::SelfManaged { fullname, ns } => {
            require_args(
                args,
                &[
                    format!("--cert-secret={fullname}-tls"),
                    format!("--webhook-config-name={fullname}"),
                    format!("--dns={fullname}.{ns}.svc,{fullname}.{ns}.svc.cluster.local"),
                    "--serving-cert-validity=30d".to_owned(),
                    "--serving-cert-renew-before=10d".to_owned(),
                    "--ca-validity=365d".to_owned(),
                    "--ca-renew-before=90d".to_owned(),
                    "--cert-check-interval=1m".to_owned(),
                ],
            )?;
            ensure(
                !args
                    .iter()
                    .any(|a| a.starts_with("--tls-cert") || a.starts_with("--tls-key")),
                || format!("selfManaged but certificate files in args {args:?}"),
            )?;
            ensure(secret_volumes.is_empty(), || {
                format!(
                    "selfManaged mounts Secrets {secret_volumes:?}; hookguard reads its own through the API"
                )
            })
        }
        Tls::Mounted(secret) => {
            require_args(
                args,
                &[
                    "--tls-cert=/etc/hookguard/tls/tls.crt",
                    "--tls-key=/etc/hookguard/tls/tls.key",
                ],
            )?;
            ensure(!args.iter().any(|a| a.starts_with("--cert-secret")), || {
                format!("hookguard-managed certificates in args {args:?}")
            })?;
            ensure(secret_volumes == [secret], || {
                format!("mounted Secrets {secret_volumes:?}, want [{secret}]")
            })
        }
    }
}

/// `vars` (name, field) come from the downward API in container `c`.
fn check_downward_api(c: &Value, vars: &[(&str, &str)]) -> Result<()> {
    for (var, field) in vars {
        ensure(
            c["env"].as_array().is_some_and(|e| {
                e.iter()
                    .any(|v| v["name"] == *var && v["valueFrom"]["fieldRef"]["fieldPath"] == *field)
            }),
            || format!("no {var} from the downward API ({field})"),
        )?;
    }
    Ok(())
}

/// The container: downward API (its namespace: exempt, and where its Secret is), probes, ports,
/// resources and mounts.
fn check_container(c: &Value, volumes: &[Value], policy_cm: &str) -> Result<()> {
    check_downward_api(c, &[("POD_NAMESPACE", "metadata.namespace")])?;
    ensure(
        c["livenessProbe"]["httpGet"]["path"] == "/livez"
            && c["readinessProbe"]["httpGet"]["path"] == "/readyz"
            && c["livenessProbe"]["httpGet"]["port"] == "metrics"
            && c["readinessProbe"]["httpGet"]["port"] == "metrics",
        || "probes are not /livez and /readyz on the admin port".into(),
    )?;
    let ports: BTreeMap<String, i64> = c["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["containerPort"].as_i64()?)))
        .collect();
    ensure(
        ports.get("https") == Some(&8443) && ports.get("metrics") == Some(&8080),
        || format!("container ports {ports:?}"),
    )?;
    let res = &c["resources"];
    ensure(
        res["requests"]["cpu"] == "50m"
            && res["requests"]["memory"] == "32Mi"
            && res["limits"]["memory"] == "128Mi"
            && res["limits"]["cpu"].is_null(),
        || format!("resources {res}"),
    )?;
    ensure(
        c["volumeMounts"]
            .as_array()
            .is_some_and(|m| m.iter().all(|m| m["subPath"].is_null())),
        || "a subPath mount never sees Secret/ConfigMap updates".into(),
    )?;
    ensure(
        volumes.iter().any(|v| v["configMap"]["name"] == policy_cm),
        || format!("ConfigMap {policy_cm} not mounted"),
    )
}

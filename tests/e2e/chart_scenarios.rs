//! Scenarios for the chart that deploys hookguard itself (`charts/hookguard`) and for the plain
//! manifests rendered from it (`deploy/`).
//!
//! What is real: `helm lint`/`template`/`install`/`upgrade`/`uninstall` (Helm 3 and 4), the values
//! schema, kube-apiserver's validation (server-side dry run) and its RBAC authorizer, ServiceAccount
//! tokens, the Deployment and ReplicaSet controllers.
//! What is SIMULATED: the pods. kwok marks them Running and Ready; no container runs. To check what
//! the container would do, scenario 11-chart-*-install-upgrade-uninstall runs the hookguard binary
//! with the Deployment's exact arguments and environment, authenticated as the chart's
//! ServiceAccount (so it can do exactly what the chart's RBAC grants), with the policy ConfigMap
//! laid out on disk the way the kubelet mounts it (`..data` symlinks). hookguard must create its
//! Secret, patch the CA into both webhook configurations, take the Lease, run the inventory, and
//! answer over TLS with a certificate that verifies against the caBundle for the name the API
//! server uses (`<svc>.<ns>.svc`).
//! The CRDs of cert-manager and prometheus-operator are stood in for by minimal CRDs written here.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use crate::cluster::{Result, ensure, free_port, http_get, out_text, repo, wait_for};
use crate::{Env, Scenario};

pub const ALL: &[Scenario] = &[
    ("11-chart-lint-render-and-schema", lint_render_and_schema),
    ("11-chart-server-dry-run", server_dry_run),
    ("11-chart-prometheus-alerts", prometheus_alerts),
    ("11-chart-helm3-install-upgrade-uninstall", |env| {
        install_upgrade_uninstall(env, "helm")
    }),
    ("11-chart-helm4-install-upgrade-uninstall", |env| {
        install_upgrade_uninstall(env, "helm4")
    }),
    (
        "11-chart-deploy-manifests-current",
        deploy_manifests_current,
    ),
];

fn chart() -> String {
    repo().join("charts/hookguard").display().to_string()
}

/// Runs a tool (kubectl, helm, helm4); Ok(output) on success, Err(all output) on failure.
fn run_ok(env: &Env, tool: &str, args: &[&str], stdin: Option<&str>) -> Result<Output> {
    env.cluster.run_ok(tool, args, stdin)
}

fn b64(s: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("bad base64: {e}"))
}

/// Parses multi-document YAML (helm template output) into JSON values, skipping empty documents.
fn parse_docs(yaml: &str) -> Result<Vec<Value>> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| format!("rendered YAML: {e}"))?;
    Ok(docs
        .into_iter()
        .filter(|d| d.is_object() && !d["kind"].is_null())
        .collect())
}

/// `<bin> template <release> charts/hookguard -n <ns> <args>`, parsed.
fn render(env: &Env, bin: &str, release: &str, ns: &str, args: &[&str]) -> Result<Vec<Value>> {
    let chart = chart();
    let mut all = vec!["template", release, chart.as_str(), "--namespace", ns];
    all.extend_from_slice(args);
    let out = run_ok(env, bin, &all, None)?;
    parse_docs(&String::from_utf8_lossy(&out.stdout))
}

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .filter_map(|d| d["kind"].as_str().map(str::to_owned))
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> Result<&'a Value> {
    match of_kind(docs, kind).as_slice() {
        [d] => Ok(d),
        other => Err(format!("expected one {kind}, found {}", other.len())),
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The two webhook configurations: (mutating, validating).
fn webhooks(docs: &[Value]) -> Result<(&Value, &Value)> {
    Ok((
        &one(docs, "MutatingWebhookConfiguration")?["webhooks"][0],
        &one(docs, "ValidatingWebhookConfiguration")?["webhooks"][0],
    ))
}

fn excluded_namespaces(webhook: &Value) -> BTreeSet<String> {
    webhook["namespaceSelector"]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
        .flat_map(|e| e["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// How the pod gets its serving certificate.
#[derive(Clone, Copy)]
enum Tls<'a> {
    /// certs.mode=selfManaged: hookguard keeps it in Secret `<fullname>-tls`, through the API.
    SelfManaged { fullname: &'a str, ns: &'a str },
    /// This Secret, mounted at /etc/hookguard/tls (certManager, existingSecret).
    Mounted(&'a str),
}

fn container_args(d: &Value) -> Vec<String> {
    d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

/// What the chart promises about the pod, checked on a rendered or stored Deployment. `api`: some
/// enabled feature calls the Kubernetes API, so the pod needs its ServiceAccount token.
fn check_deployment(d: &Value, replicas: i64, tls: Tls, policy_cm: &str, api: bool) -> Result<()> {
    ensure(d["spec"]["replicas"] == replicas, || {
        format!("replicas {}", d["spec"]["replicas"])
    })?;
    let pod = &d["spec"]["template"];
    ensure(
        pod["metadata"]["annotations"]
            .as_object()
            .is_none_or(|a| !a.keys().any(|k| k.contains("checksum"))),
        || "a checksum annotation would restart the pods on every policy change".into(),
    )?;
    let spec = &pod["spec"];
    let c = &spec["containers"][0];
    let psc = &spec["securityContext"];
    let csc = &c["securityContext"];
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
    })?;
    let args = container_args(d);
    let has = |want: &str| args.iter().any(|a| a == want);
    for want in [
        "serve",
        "--shutdown-delay=5s",
        "--shutdown-grace=20s",
        "--log-format=json",
        "--config=/etc/hookguard/policy/policy.yaml",
    ] {
        ensure(has(want), || format!("args {args:?} lack {want}"))?;
    }
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    let secret_volumes: Vec<&str> = volumes
        .iter()
        .filter_map(|v| v["secret"]["secretName"].as_str())
        .collect();
    match tls {
        Tls::SelfManaged { fullname, ns } => {
            for want in [
                format!("--cert-secret={fullname}-tls"),
                format!("--webhook-config-name={fullname}"),
                format!("--dns={fullname}.{ns}.svc,{fullname}.{ns}.svc.cluster.local"),
                "--serving-cert-validity=30d".to_owned(),
                "--serving-cert-renew-before=10d".to_owned(),
                "--ca-validity=365d".to_owned(),
                "--ca-renew-before=90d".to_owned(),
                "--cert-check-interval=1m".to_owned(),
            ] {
                ensure(has(&want), || format!("args {args:?} lack {want}"))?;
            }
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
            })?;
        }
        Tls::Mounted(secret) => {
            for want in [
                "--tls-cert=/etc/hookguard/tls/tls.crt",
                "--tls-key=/etc/hookguard/tls/tls.key",
            ] {
                ensure(has(want), || format!("args {args:?} lack {want}"))?;
            }
            ensure(!args.iter().any(|a| a.starts_with("--cert-secret")), || {
                format!("hookguard-managed certificates in args {args:?}")
            })?;
            ensure(secret_volumes == [secret], || {
                format!("mounted Secrets {secret_volumes:?}, want [{secret}]")
            })?;
        }
    }
    for (var, field) in [
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
    ] {
        ensure(
            c["env"].as_array().is_some_and(|e| {
                e.iter()
                    .any(|v| v["name"] == var && v["valueFrom"]["fieldRef"]["fieldPath"] == field)
            }),
            || format!("no {var} from the downward API ({field})"),
        )?;
    }
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
    )?;
    let anti = &spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"];
    ensure(anti["topologyKey"] == "kubernetes.io/hostname", || {
        format!(
            "no preferred anti-affinity by hostname: {}",
            spec["affinity"]
        )
    })?;
    Ok(())
}

/// What the chart grants, one set of permissions per feature.
#[derive(Clone, Copy)]
enum Grant {
    /// certs.mode=selfManaged: its own Secret, and patching its two webhook configurations.
    Certs,
    /// Leader election: its own Lease.
    Lease,
    /// The inventory: reading Jobs and Pods in every namespace.
    Inventory,
    /// Orphan detection: listing Helm's release Secrets.
    Orphans,
    /// The janitor: deleting Jobs and Pods.
    Janitor,
}

/// One entry per (kind, API group, resource, verb, resourceName) of the Roles and ClusterRoles in
/// `docs`, e.g. "Role coordination.k8s.io/leases get hookguard" ("*": any name), so that what a
/// value set grants can be compared exactly.
fn rbac_rules(docs: &[Value]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
    {
        let kind = d["kind"].as_str().unwrap_or_default();
        for r in d["rules"].as_array().into_iter().flatten() {
            let list = |key: &str| -> Vec<String> {
                r[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            };
            let mut names = list("resourceNames");
            if names.is_empty() {
                names.push("*".to_owned());
            }
            for group in list("apiGroups") {
                for resource in list("resources") {
                    for verb in list("verbs") {
                        for name in &names {
                            out.insert(format!("{kind} {group}/{resource} {verb} {name}"));
                        }
                    }
                }
            }
        }
    }
    out
}

fn expected_rbac(fullname: &str, grants: &[Grant]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |kind: &str, resource: &str, verbs: &[&str], name: &str| {
        for verb in verbs {
            out.insert(format!("{kind} {resource} {verb} {name}"));
        }
    };
    for grant in grants {
        match grant {
            Grant::Certs => {
                add(
                    "Role",
                    "/secrets",
                    &["get", "update", "patch"],
                    &format!("{fullname}-tls"),
                );
                add("Role", "/secrets", &["create"], "*");
                for r in [
                    "mutatingwebhookconfigurations",
                    "validatingwebhookconfigurations",
                ] {
                    add(
                        "ClusterRole",
                        &format!("admissionregistration.k8s.io/{r}"),
                        &["get", "patch"],
                        fullname,
                    );
                }
            }
            Grant::Lease => {
                add(
                    "Role",
                    "coordination.k8s.io/leases",
                    &["get", "update", "patch"],
                    fullname,
                );
                add("Role", "coordination.k8s.io/leases", &["create"], "*");
            }
            Grant::Inventory => {
                add("ClusterRole", "batch/jobs", &["get", "list", "watch"], "*");
                add("ClusterRole", "/pods", &["get", "list", "watch"], "*");
            }
            Grant::Orphans => add("ClusterRole", "/secrets", &["list", "watch"], "*"),
            Grant::Janitor => {
                add("ClusterRole", "/pods", &["delete"], "*");
                add("ClusterRole", "batch/jobs", &["delete"], "*");
            }
        }
    }
    out
}

/// The Roles and ClusterRoles in `docs` grant exactly `grants`, and each is bound to the chart's
/// ServiceAccount by one binding of the same name.
fn check_rbac(docs: &[Value], fullname: &str, ns: &str, grants: &[Grant]) -> Result<()> {
    let got = rbac_rules(docs);
    let want = expected_rbac(fullname, grants);
    ensure(got == want, || {
        format!(
            "RBAC: granted but not needed {:?}; needed but not granted {:?}",
            got.difference(&want).collect::<Vec<_>>(),
            want.difference(&got).collect::<Vec<_>>()
        )
    })?;
    for (role, binding) in [
        ("Role", "RoleBinding"),
        ("ClusterRole", "ClusterRoleBinding"),
    ] {
        let (roles, bindings) = (of_kind(docs, role), of_kind(docs, binding));
        ensure(roles.len() == bindings.len() && roles.len() <= 1, || {
            format!("{} {role}, {} {binding}", roles.len(), bindings.len())
        })?;
        if let (Some(r), Some(b)) = (roles.first(), bindings.first()) {
            ensure(
                r["metadata"]["name"] == fullname
                    && b["roleRef"]["kind"] == role
                    && b["roleRef"]["name"] == fullname
                    && b["subjects"]
                        == serde_json::json!([
                            {"kind": "ServiceAccount", "name": fullname, "namespace": ns}
                        ]),
                || format!("{binding} {b}"),
            )?;
        }
    }
    Ok(())
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .ok_or_else(|| format!("no {kind} {name}"))
}

/// The dashboard ConfigMap carries the chart's dashboard JSON, labelled for Grafana's sidecar.
fn check_dashboard_configmap(cm: &Value, ns: &str) -> Result<()> {
    let file = fs::read_to_string(repo().join("charts/hookguard/dashboards/hookguard.json"))
        .map_err(|e| e.to_string())?;
    let want: Value = serde_json::from_str(&file).map_err(|e| e.to_string())?;
    let got: Value = serde_json::from_str(
        cm["data"]["hookguard.json"]
            .as_str()
            .ok_or("dashboard ConfigMap has no hookguard.json")?,
    )
    .map_err(|e| format!("dashboard ConfigMap: {e}"))?;
    ensure(got == want, || {
        "the dashboard ConfigMap is not dashboards/hookguard.json".into()
    })?;
    ensure(
        cm["metadata"]["labels"]["grafana_dashboard"] == "1" && cm["metadata"]["namespace"] == ns,
        || format!("dashboard ConfigMap metadata {}", cm["metadata"]),
    )
}

/// Metric names hookguard really exports, from the running hookguard's /metrics: sample names
/// plus, from `# TYPE` lines, the suffixed names of counters and histograms.
fn exported_metric_names(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                names.insert(name.to_owned());
                let suffixes: &[&str] = match kind {
                    "counter" => &["_total"],
                    "histogram" => &["_bucket", "_sum", "_count"],
                    _ => &[],
                };
                for s in suffixes {
                    names.insert(format!("{name}{s}"));
                }
            }
        } else if !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            if end > 0 {
                names.insert(line[..end].to_owned());
            }
        }
    }
    names
}

/// Every `hookguard_*` identifier in a PromQL expression.
fn hookguard_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("hookguard_") {
        let tail = &rest[i..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..len].to_owned());
        rest = &tail[len..];
    }
    out
}

fn helm_lint_is_clean(env: &Env, bin: &str) -> Result<()> {
    let chart = chart();
    let out = run_ok(env, bin, &["lint", "--strict", &chart], None)?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure(
        !text.contains("[WARNING]") && !text.contains("[ERROR]"),
        || format!("{bin} lint --strict: {text}"),
    )
}

/// Renders with bad values; the error must name `needle` (the field).
fn rejected(env: &Env, args: &[&str], needle: &str) -> Result<()> {
    let chart = chart();
    let mut all = vec![
        "template",
        "hookguard",
        chart.as_str(),
        "--namespace",
        "hookguard",
    ];
    all.extend_from_slice(args);
    let out = env.cluster.run("helm", &all, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(!out.status.success(), || {
        format!("helm template {} succeeded but must fail", args.join(" "))
    })?;
    ensure(stderr.contains(needle), || {
        format!(
            "helm template {}: error does not name {needle:?}: {stderr}",
            args.join(" ")
        )
    })?;
    eprintln!(
        "e2e:   rejected {}: {}",
        args.join(" "),
        stderr
            .lines()
            .filter(|l| l.contains(needle))
            .collect::<Vec<_>>()
            .join(" / ")
            .trim()
    );
    Ok(())
}

/// The alerts of a rendered PrometheusRule.
fn alerts(docs: &[Value]) -> Result<Vec<Value>> {
    Ok(one(docs, "PrometheusRule")?["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect())
}

fn alert_names(alerts: &[Value]) -> BTreeSet<String> {
    alerts
        .iter()
        .filter_map(|a| a["alert"].as_str().map(str::to_owned))
        .collect()
}

/// The alerts rendered whatever the features: the webhook, its certificate and its policy.
const BASE_ALERTS: [&str; 6] = [
    "HookguardDown",
    "HookguardInvalidAdmissionRequests",
    "HookguardAdmissionLatencyHigh",
    "HookguardCertificateExpiringSoon",
    "HookguardConfigReloadFailed",
    "HookguardTLSReloadFailed",
];

fn lint_render_and_schema(env: &Env) -> Result<()> {
    helm_lint_is_clean(env, "helm")?;
    helm_lint_is_clean(env, "helm4")?;
    let (rel, ns) = ("hookguard", "hookguard");
    let self_managed = Tls::SelfManaged { fullname: rel, ns };
    let arg_absent = |args: &[String], flag: &str| -> Result<()> {
        ensure(!args.iter().any(|a| a.starts_with(flag)), || {
            format!("args {args:?} have {flag}")
        })
    };
    let args_present = |args: &[String], want: &[&str]| -> Result<()> {
        for w in want {
            ensure(args.iter().any(|a| a == w), || {
                format!("args {args:?} lack {w}")
            })?;
        }
        Ok(())
    };

    // Defaults (certs.mode=selfManaged, inventory with leader election), Helm 3 and Helm 4.
    for bin in ["helm", "helm4"] {
        let docs = render(env, bin, rel, ns, &[])?;
        ensure(
            kinds(&docs)
                == set(&[
                    "ClusterRole",
                    "ClusterRoleBinding",
                    "ConfigMap",
                    "Deployment",
                    "MutatingWebhookConfiguration",
                    "PodDisruptionBudget",
                    "Role",
                    "RoleBinding",
                    "Service",
                    "ServiceAccount",
                    "ValidatingWebhookConfiguration",
                ]),
            || format!("{bin} default kinds {:?}", kinds(&docs)),
        )?;
        let (m, v) = webhooks(&docs)?;
        for w in [m, v] {
            // hookguard patches it in; a rendered value would be put back by every upgrade.
            ensure(w["clientConfig"]["caBundle"].is_null(), || {
                format!("{bin}: selfManaged renders a caBundle")
            })?;
            ensure(
                w["clientConfig"]["service"]["name"] == rel
                    && w["clientConfig"]["service"]["namespace"] == ns
                    && w["clientConfig"]["service"]["port"] == 443,
                || format!("clientConfig {}", w["clientConfig"]),
            )?;
            ensure(excluded_namespaces(w) == set(&["kube-system", ns]), || {
                format!("excluded namespaces {:?}", excluded_namespaces(w))
            })?;
        }
        ensure(
            m["failurePolicy"] == "Ignore" && v["failurePolicy"] == "Fail",
            || "default failure policies changed".into(),
        )?;
        let deploy = one(&docs, "Deployment")?;
        check_deployment(deploy, 2, self_managed, "hookguard-policy", true)?;
        let args = container_args(deploy);
        args_present(
            &args,
            &[
                "--inventory",
                "--inventory-discovery-interval=10m",
                "--lease-name=hookguard",
                "--lease-duration=15s",
            ],
        )?;
        for flag in [
            "--janitor",
            "--leader-election",
            "--orphan-detection",
            "--metrics-namespace-label",
            "--metrics-release-label",
        ] {
            arg_absent(&args, flag)?;
        }
        check_rbac(
            &docs,
            rel,
            ns,
            &[Grant::Certs, Grant::Lease, Grant::Inventory, Grant::Orphans],
        )?;
        ensure(
            one(&docs, "PodDisruptionBudget")?["spec"]["minAvailable"] == 1,
            || "PDB minAvailable".into(),
        )?;
        let svc = one(&docs, "Service")?;
        let ports: BTreeSet<(String, i64, String)> = svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p["name"].as_str()?.to_owned(),
                    p["port"].as_i64()?,
                    p["targetPort"].as_str()?.to_owned(),
                ))
            })
            .collect();
        ensure(
            ports
                == [
                    ("https".to_owned(), 443, "https".to_owned()),
                    ("metrics".to_owned(), 8080, "metrics".to_owned()),
                ]
                .into_iter()
                .collect(),
            || format!("Service ports {ports:?}"),
        )?;
        // Other pods using the ServiceAccount do not get the token; hookguard's pod opts in.
        ensure(
            one(&docs, "ServiceAccount")?["automountServiceAccountToken"] == false,
            || "ServiceAccount automounts its token".into(),
        )?;
        check_dashboard_configmap(named(&docs, "ConfigMap", "hookguard-dashboard")?, ns)?;

        // The ConfigMap's policy is examples/policy.yaml (the built-in defaults), and hookguard
        // itself accepts it.
        let policy_text = named(&docs, "ConfigMap", "hookguard-policy")?["data"]["policy.yaml"]
            .as_str()
            .ok_or("ConfigMap has no policy.yaml")?
            .to_owned();
        let example =
            fs::read_to_string(repo().join("examples/policy.yaml")).map_err(|e| e.to_string())?;
        let parse = |t: &str| serde_saphyr::from_str::<Value>(t).map_err(|e| e.to_string());
        ensure(parse(&policy_text)? == parse(&example)?, || {
            format!("chart policy differs from examples/policy.yaml:\n{policy_text}")
        })?;
        hookguard_accepts_policy(env, &policy_text)?;
    }

    // A policy override through --set reaches the ConfigMap, and hookguard accepts the result.
    let docs = render(
        env,
        "helm",
        rel,
        ns,
        &[
            "--set",
            "policy.rules.image-tag=enforce",
            "--set",
            "policy.jobTtl.defaultSeconds=300",
        ],
    )?;
    let text = named(&docs, "ConfigMap", "hookguard-policy")?["data"]["policy.yaml"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let policy: Value = serde_saphyr::from_str(&text).map_err(|e| e.to_string())?;
    ensure(
        policy["rules"]["image-tag"] == "enforce"
            && policy["rules"]["pod-security"] == "enforce"
            && policy["jobTtl"]["defaultSeconds"] == 300
            && policy["jobTtl"]["floorSeconds"] == 60,
        || format!("policy override not merged: {policy}"),
    )?;
    hookguard_accepts_policy(env, &text)?;

    // certManager: the four cert-manager objects, CA injection, no caBundle, the Secret mounted;
    // RBAC only for the inventory.
    let docs = render(env, "helm", rel, ns, &["--set", "certs.mode=certManager"])?;
    ensure(of_kind(&docs, "Issuer").len() == 2, || "Issuers".into())?;
    let certs = of_kind(&docs, "Certificate");
    ensure(certs.len() == 2, || "Certificates".into())?;
    ensure(of_kind(&docs, "Secret").is_empty(), || {
        "certManager mode renders a Secret".into()
    })?;
    let serving = certs
        .iter()
        .find(|c| c["metadata"]["name"] == "hookguard-serving")
        .ok_or("no Certificate hookguard-serving")?;
    ensure(
        serving["spec"]["dnsNames"]
            == serde_json::json!([
                "hookguard.hookguard.svc",
                "hookguard.hookguard.svc.cluster.local"
            ])
            && serving["spec"]["secretName"] == "hookguard-tls"
            && serving["spec"]["issuerRef"]["name"] == "hookguard-ca",
        || format!("serving Certificate {}", serving["spec"]),
    )?;
    ensure(
        certs
            .iter()
            .any(|c| c["metadata"]["name"] == "hookguard-ca" && c["spec"]["isCA"] == true),
        || "no CA Certificate".into(),
    )?;
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let cfg = one(&docs, kind)?;
        ensure(
            cfg["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
                == "hookguard/hookguard-serving",
            || format!("{kind} lacks cert-manager.io/inject-ca-from"),
        )?;
        ensure(
            cfg["webhooks"][0]["clientConfig"]["caBundle"].is_null(),
            || format!("{kind} has a caBundle the cainjector would fight with"),
        )?;
    }
    check_deployment(
        one(&docs, "Deployment")?,
        2,
        Tls::Mounted("hookguard-tls"),
        "hookguard-policy",
        true,
    )?;
    check_rbac(
        &docs,
        rel,
        ns,
        &[Grant::Lease, Grant::Inventory, Grant::Orphans],
    )?;

    // existingSecret: the given Secret mounted, the given caBundle used.
    let docs = render(
        env,
        "helm",
        rel,
        ns,
        &[
            "--set",
            "certs.mode=existingSecret",
            "--set",
            "certs.existingSecret=my-tls",
            "--set",
            "webhook.caBundle=QUJD",
        ],
    )?;
    ensure(
        of_kind(&docs, "Secret").is_empty()
            && of_kind(&docs, "Certificate").is_empty()
            && of_kind(&docs, "Issuer").is_empty(),
        || format!("existingSecret mode renders {:?}", kinds(&docs)),
    )?;
    let (m, v) = webhooks(&docs)?;
    ensure(
        m["clientConfig"]["caBundle"] == "QUJD" && v["clientConfig"]["caBundle"] == "QUJD",
        || "webhook.caBundle not used".into(),
    )?;
    check_deployment(
        one(&docs, "Deployment")?,
        2,
        Tls::Mounted("my-tls"),
        "hookguard-policy",
        true,
    )?;

    // certManager without the inventory: nothing calls the API, so no RBAC and no token.
    let docs = render(
        env,
        "helm",
        rel,
        ns,
        &[
            "--set",
            "certs.mode=certManager",
            "--set",
            "inventory.enabled=false",
        ],
    )?;
    let deploy = one(&docs, "Deployment")?;
    check_deployment(
        deploy,
        2,
        Tls::Mounted("hookguard-tls"),
        "hookguard-policy",
        false,
    )?;
    check_rbac(&docs, rel, ns, &[])?;
    let args = container_args(deploy);
    for flag in ["--inventory", "--lease", "--leader-election", "--janitor"] {
        arg_absent(&args, flag)?;
    }

    // Without leader election and orphan detection, with the janitor (dry run) and without the
    // namespace and release labels: every switch reaches its flag and its RBAC rule.
    let docs = render(
        env,
        "helm",
        rel,
        ns,
        &[
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "inventory.orphanDetection=false",
            "--set",
            "janitor.enabled=true",
            "--set",
            "janitor.namespaces={team-*,ci}",
            "--set",
            "janitor.dryRun=true",
            "--set",
            "metrics.namespaceLabel=false",
            "--set",
            "metrics.releaseLabel=false",
        ],
    )?;
    let deploy = one(&docs, "Deployment")?;
    check_deployment(deploy, 2, self_managed, "hookguard-policy", true)?;
    check_rbac(
        &docs,
        rel,
        ns,
        &[Grant::Certs, Grant::Inventory, Grant::Janitor],
    )?;
    let args = container_args(deploy);
    args_present(
        &args,
        &[
            "--inventory",
            "--leader-election=false",
            "--orphan-detection=false",
            "--janitor",
            "--janitor-namespaces=team-*,ci",
            "--janitor-min-age=24h",
            "--janitor-interval=5m",
            "--janitor-dry-run",
            "--metrics-namespace-label=false",
            "--metrics-release-label=false",
        ],
    )?;
    arg_absent(&args, "--lease")?;
    // The janitor with leader election: it shares the Lease with the inventory.
    let docs = render(
        env,
        "helm",
        rel,
        ns,
        &[
            "--set",
            "janitor.enabled=true",
            "--set",
            "janitor.namespaces={ci}",
        ],
    )?;
    check_rbac(
        &docs,
        rel,
        ns,
        &[
            Grant::Certs,
            Grant::Lease,
            Grant::Inventory,
            Grant::Orphans,
            Grant::Janitor,
        ],
    )?;
    let args = container_args(one(&docs, "Deployment")?);
    args_present(&args, &["--janitor", "--lease-name=hookguard"])?;
    arg_absent(&args, "--janitor-dry-run")?;

    // The dashboard ConfigMap: off, or in Grafana's namespace with the sidecar's folder annotation.
    let docs = render(
        env,
        "helm",
        rel,
        ns,
        &["--set", "grafanaDashboard.enabled=false"],
    )?;
    ensure(
        named(&docs, "ConfigMap", "hookguard-dashboard").is_err(),
        || "grafanaDashboard.enabled=false still renders the dashboard".into(),
    )?;
    let docs = render(
        env,
        "helm",
        rel,
        ns,
        &[
            "--set",
            "grafanaDashboard.namespace=monitoring",
            "--set",
            "grafanaDashboard.annotations.grafana_folder=Platform",
        ],
    )?;
    let cm = named(&docs, "ConfigMap", "hookguard-dashboard")?;
    check_dashboard_configmap(cm, "monitoring")?;
    ensure(
        cm["metadata"]["annotations"]["grafana_folder"] == "Platform",
        || format!("dashboard annotations {}", cm["metadata"]["annotations"]),
    )?;

    // webhook.url (out of cluster): only the two webhook configurations, with the URL, and a
    // caBundle only when one is given (a publicly trusted certificate needs none).
    let docs = render(
        env,
        "helm",
        rel,
        ns,
        &[
            "--set",
            "webhook.url=https://hookguard.example:8443/",
            "--set",
            "webhook.caBundle=QUJD",
        ],
    )?;
    ensure(
        kinds(&docs)
            == set(&[
                "MutatingWebhookConfiguration",
                "ValidatingWebhookConfiguration",
            ]),
        || format!("url mode renders {:?}", kinds(&docs)),
    )?;
    let (m, v) = webhooks(&docs)?;
    ensure(
        m["clientConfig"]["url"] == "https://hookguard.example:8443/mutate"
            && v["clientConfig"]["url"] == "https://hookguard.example:8443/validate"
            && m["clientConfig"]["service"].is_null()
            && m["clientConfig"]["caBundle"] == "QUJD",
        || format!("url mode clientConfig {}", m["clientConfig"]),
    )?;
    let docs = render(
        env,
        "helm",
        rel,
        ns,
        &["--set", "webhook.url=https://hookguard.example:8443"],
    )?;
    let (m, v) = webhooks(&docs)?;
    ensure(
        m["clientConfig"]["caBundle"].is_null() && v["clientConfig"]["caBundle"].is_null(),
        || {
            format!(
                "url mode without webhook.caBundle renders one: {}",
                m["clientConfig"]
            )
        },
    )?;

    // One replica: no PodDisruptionBudget (minAvailable 1 of 1 would block every drain).
    let docs = render(env, "helm", rel, ns, &["--set", "replicas=1"])?;
    ensure(of_kind(&docs, "PodDisruptionBudget").is_empty(), || {
        "PDB rendered with one replica".into()
    })?;
    ensure(one(&docs, "Deployment")?["spec"]["replicas"] == 1, || {
        "replicas".into()
    })?;

    // Monitoring and NetworkPolicy.
    let docs = render(env, "helm", rel, ns, MONITORING_AND_NETPOL)?;
    let sm = one(&docs, "ServiceMonitor")?;
    ensure(
        sm["spec"]["endpoints"][0]["port"] == "metrics"
            && sm["spec"]["endpoints"][0]["path"] == "/metrics"
            && sm["spec"]["endpoints"][0]["honorLabels"] == true,
        || format!("ServiceMonitor {}", sm["spec"]),
    )?;
    let np = one(&docs, "NetworkPolicy")?;
    let ingress = np["spec"]["ingress"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure(
        ingress.iter().any(|r| {
            r["ports"][0]["port"] == "https" && r["from"].is_null()
        }) && ingress.iter().any(|r| {
            r["ports"][0]["port"] == "metrics"
                && r["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    == "monitoring"
        }),
        || format!("NetworkPolicy ingress {ingress:?}"),
    )?;
    let rules = alerts(&docs)?;
    let mut want: BTreeSet<String> = BASE_ALERTS.iter().map(|s| (*s).to_owned()).collect();
    want.extend(
        [
            "HookguardCertificateReconcileFailing",
            "HookguardInventoryNotRunning",
            "HookguardHooksAccumulating",
            "HookguardHookJobsFailing",
            "HookguardOrphanedHooks",
        ]
        .map(str::to_owned),
    );
    ensure(alert_names(&rules) == want, || {
        format!("alerts {:?}, want {want:?}", alert_names(&rules))
    })?;
    // Alerts about features that are off are not rendered.
    let docs = render(
        env,
        "helm",
        rel,
        ns,
        &[
            MONITORING_AND_NETPOL,
            &[
                "--set",
                "certs.mode=certManager",
                "--set",
                "inventory.enabled=false",
            ],
        ]
        .concat(),
    )?;
    ensure(alert_names(&alerts(&docs)?) == set(&BASE_ALERTS), || {
        format!(
            "certManager without inventory: alerts {:?}",
            alert_names(&alerts(&docs).unwrap_or_default())
        )
    })?;

    // Bad values: refused by the schema (or the render checks), naming the field.
    rejected(env, &["--set", "replicas=0"], "/replicas")?;
    rejected(env, &["--set", "certs.mode=bogus"], "/certs/mode")?;
    rejected(
        env,
        &["--set", "webhook.validating.failurePolicy=Sometimes"],
        "/webhook/validating/failurePolicy",
    )?;
    rejected(
        env,
        &["--set", "webhook.mutating.failurePolicy=Never"],
        "/webhook/mutating/failurePolicy",
    )?;
    rejected(
        env,
        &["--set", "webhook.timeoutSeconds=0"],
        "/webhook/timeoutSeconds",
    )?;
    rejected(
        env,
        &["--set", "webhook.timeoutSeconds=31"],
        "/webhook/timeoutSeconds",
    )?;
    rejected(
        env,
        &[
            "--set",
            "certs.mode=existingSecret",
            "--set",
            "certs.existingSecret=my-tls",
        ],
        "/webhook/caBundle",
    )?;
    rejected(
        env,
        &[
            "--set",
            "certs.mode=existingSecret",
            "--set",
            "webhook.caBundle=QUJD",
        ],
        "/certs/existingSecret",
    )?;
    rejected(env, &["--set", "replica=1"], "'replica'")?;
    rejected(
        env,
        &["--set", "webhook.url=http://insecure:8443"],
        "/webhook/url",
    )?;
    rejected(
        env,
        &["--set", "policy.rules.image-tag=deny"],
        "/policy/rules/image-tag",
    )?;
    rejected(
        env,
        &["--set", "policy.jobTtl.floorSeconds=900"],
        "policy.jobTtl.floorSeconds (900) must not exceed",
    )?;
    rejected(
        env,
        &["--set", "podDisruptionBudget.minAvailable=2"],
        "podDisruptionBudget.minAvailable (2) must be below replicas",
    )?;
    // The values of the Helm-generated certificates are gone, not silently ignored.
    rejected(
        env,
        &["--set", "certs.selfManaged.caValidityDays=3650"],
        "caValidityDays",
    )?;
    rejected(
        env,
        &["--set", "certs.selfManaged.servingValidity=30 days"],
        "/certs/selfManaged/servingValidity",
    )?;
    rejected(
        env,
        &["--set", "certs.selfManaged.servingRenewBefore=30d"],
        "certs.selfManaged.servingRenewBefore (30d) must be shorter than servingValidity (30d)",
    )?;
    rejected(
        env,
        &["--set", "certs.selfManaged.caRenewBefore=1y"],
        "/certs/selfManaged/caRenewBefore",
    )?;
    rejected(
        env,
        &["--set", "certs.selfManaged.caRenewBefore=400d"],
        "certs.selfManaged.caRenewBefore (400d) must be shorter than caValidity (365d)",
    )?;
    rejected(
        env,
        &[
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set",
            "metrics.prometheusRule.certExpiryDays=14",
        ],
        "metrics.prometheusRule.certExpiryDays (14) must be below certs.selfManaged.servingRenewBefore (10d)",
    )?;
    rejected(
        env,
        &["--set", "janitor.enabled=true"],
        "/janitor/namespaces",
    )?;
    rejected(
        env,
        &[
            "--set",
            "janitor.enabled=true",
            "--set",
            "janitor.namespaces={Team_A}",
        ],
        "/janitor/namespaces/0",
    )?;
    rejected(
        env,
        &[
            "--set",
            "janitor.enabled=true",
            "--set",
            "janitor.namespaces={ci}",
            "--set",
            "inventory.enabled=false",
        ],
        "janitor.enabled needs inventory.enabled",
    )?;
    rejected(
        env,
        &["--set", "leaderElection.leaseDuration=15"],
        "/leaderElection/leaseDuration",
    )?;
    // Also without the schema, the render checks explain what is missing.
    rejected(
        env,
        &[
            "--skip-schema-validation",
            "--set",
            "certs.mode=existingSecret",
            "--set",
            "certs.existingSecret=my-tls",
        ],
        "certs.mode=existingSecret needs webhook.caBundle",
    )?;
    rejected(
        env,
        &["--skip-schema-validation", "--set", "janitor.enabled=true"],
        "janitor.enabled needs janitor.namespaces",
    )?;

    // Last, because it needs hookguard's newest metric families: every alert uses only metrics the
    // running hookguard exports.
    let rules = alerts(&render(env, "helm", rel, ns, MONITORING_AND_NETPOL)?)?;
    let exported = {
        let hg = env.hookguard.lock().map_err(|e| e.to_string())?;
        exported_metric_names(&hg.metrics())
    };
    ensure(!exported.is_empty(), || {
        "cannot read hookguard's /metrics".into()
    })?;
    let mut used = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    for a in &rules {
        let expr = a["expr"].as_str().ok_or("alert without expr")?;
        for name in hookguard_names(expr) {
            if !exported.contains(&name) {
                unknown.insert(format!("{} uses {name}", a["alert"]));
            }
            used.insert(name);
        }
    }
    ensure(unknown.is_empty(), || {
        format!("alerts use metrics the running hookguard does not export: {unknown:?}")
    })?;
    for want in [
        "hookguard_admission_requests_total",
        "hookguard_admission_duration_seconds_bucket",
        "hookguard_tls_cert_expiry_timestamp_seconds",
        "hookguard_tls_ca_expiry_timestamp_seconds",
        "hookguard_config_reloads_total",
        "hookguard_cert_reconciles_total",
        "hookguard_inventory_up",
        "hookguard_hook_objects",
        "hookguard_hook_oldest_finished_age_seconds",
        "hookguard_hook_job_outcomes_total",
        "hookguard_hook_orphans",
    ] {
        ensure(used.contains(want), || format!("no alert on {want}"))?;
    }
    eprintln!(
        "e2e:   {} alerts over {} metric names, all exported by the running hookguard",
        rules.len(),
        used.len()
    );
    Ok(())
}

const MONITORING_AND_NETPOL: &[&str] = &[
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--set",
    "networkPolicy.enabled=true",
];

/// `hookguard lint --config FILE --list-rules` loads and validates a policy file exactly as
/// `serve --config` does.
fn hookguard_accepts_policy(env: &Env, policy: &str) -> Result<()> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = env.cluster.work.join(format!("chart-policy-{n}.yaml"));
    fs::write(&path, policy).map_err(|e| e.to_string())?;
    let out = Command::new(env!("CARGO_BIN_EXE_hookguard"))
        .args(["lint", "--list-rules", "--config"])
        .arg(&path)
        .output()
        .map_err(|e| e.to_string())?;
    let _ = fs::remove_file(&path);
    ensure(out.status.success(), || {
        format!("hookguard rejects the chart's policy: {}", out_text(&out))
    })
}

/// promtool unit tests of the chart's alerts (default values: selector job="hookguard"; the
/// certificate alert's automatic threshold is half of servingRenewBefore, 5 days). `healthy`: none
/// fires, including a retired CA running out in the bundle while the serving certificate outlives
/// it, and a replica without hookguard-managed certificates (CA metric 0). `broken`: invalid
/// requests, slow admissions, a serving certificate and the CA it depends on expiring in days,
/// failed reloads, failing certificate reconciles, no inventory. `hooks`: accumulation, failing
/// hook Jobs and orphans fire for the namespace that has them, counted once although two replicas
/// report them, and the stale numbers of a replica whose inventory is not running are ignored.
/// `down`: no instance scraped.
const ALERT_TESTS: &str = r#"rule_files: [rules.json]
evaluation_interval: 1m
tests:
  - name: healthy
    interval: 1m
    input_series:
      - series: 'hookguard_build_info{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",version="0.1.0"}'
        values: '1x120'
      - series: 'hookguard_admission_requests_total{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",webhook="validate",operation="CREATE",kind="Job",result="allowed"}'
        values: '0+100x120'
      - series: 'hookguard_admission_requests_total{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",webhook="validate",operation="CREATE",kind="Job",result="invalid"}'
        values: '0x120'
      - series: 'hookguard_admission_duration_seconds_bucket{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",webhook="validate",le="0.001"}'
        values: '0+100x120'
      - series: 'hookguard_admission_duration_seconds_bucket{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",webhook="validate",le="+Inf"}'
        values: '0+100x120'
      - series: 'hookguard_tls_cert_expiry_timestamp_seconds{job="hookguard",instance="a:8080",namespace="hookguard",pod="a"}'
        values: '31536000x120'
      - series: 'hookguard_tls_ca_expiry_timestamp_seconds{job="hookguard",instance="a:8080",namespace="hookguard",pod="a"}'
        values: '172800x120'
      - series: 'hookguard_tls_cert_expiry_timestamp_seconds{job="hookguard",instance="b:8080",namespace="hookguard",pod="b"}'
        values: '31536000x120'
      - series: 'hookguard_tls_ca_expiry_timestamp_seconds{job="hookguard",instance="b:8080",namespace="hookguard",pod="b"}'
        values: '0x120'
      - series: 'hookguard_config_reloads_total{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",result="failure"}'
        values: '0x120'
      - series: 'hookguard_tls_reloads_total{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",result="failure"}'
        values: '0x120'
      - series: 'hookguard_cert_reconciles_total{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",result="failure"}'
        values: '0x120'
      - series: 'hookguard_cert_reconciles_total{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",result="success"}'
        values: '0+1x120'
      - series: 'hookguard_inventory_up{job="hookguard",instance="a:8080",namespace="hookguard",pod="a"}'
        values: '1x120'
      - series: 'hookguard_inventory_up{job="hookguard",instance="b:8080",namespace="hookguard",pod="b"}'
        values: '0x120'
      - series: 'hookguard_hook_objects{job="hookguard",instance="a:8080",pod="a",namespace="team-a",kind="Job",state="succeeded"}'
        values: '30x120'
      - series: 'hookguard_hook_oldest_finished_age_seconds{job="hookguard",instance="a:8080",pod="a",namespace="team-a"}'
        values: '3600x120'
      - series: 'hookguard_hook_job_outcomes_total{job="hookguard",instance="a:8080",pod="a",namespace="team-a",outcome="failed"}'
        values: '0x120'
      - series: 'hookguard_hook_orphans{job="hookguard",instance="a:8080",pod="a",namespace="team-a",kind="Pod"}'
        values: '0x120'
    alert_rule_test:
      - {eval_time: 90m, alertname: HookguardDown, exp_alerts: []}
      - {eval_time: 90m, alertname: HookguardInvalidAdmissionRequests, exp_alerts: []}
      - {eval_time: 90m, alertname: HookguardAdmissionLatencyHigh, exp_alerts: []}
      - {eval_time: 90m, alertname: HookguardCertificateExpiringSoon, exp_alerts: []}
      - {eval_time: 90m, alertname: HookguardConfigReloadFailed, exp_alerts: []}
      - {eval_time: 90m, alertname: HookguardTLSReloadFailed, exp_alerts: []}
      - {eval_time: 90m, alertname: HookguardCertificateReconcileFailing, exp_alerts: []}
      - {eval_time: 90m, alertname: HookguardInventoryNotRunning, exp_alerts: []}
      - {eval_time: 90m, alertname: HookguardHooksAccumulating, exp_alerts: []}
      - {eval_time: 90m, alertname: HookguardHookJobsFailing, exp_alerts: []}
      - {eval_time: 90m, alertname: HookguardOrphanedHooks, exp_alerts: []}
  - name: broken
    interval: 1m
    input_series:
      - series: 'hookguard_build_info{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",version="0.1.0"}'
        values: '1x120'
      - series: 'hookguard_admission_requests_total{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",webhook="validate",operation="CREATE",kind="Job",result="allowed"}'
        values: '0+100x120'
      - series: 'hookguard_admission_requests_total{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",webhook="validate",operation="CREATE",kind="Job",result="invalid"}'
        values: '0+10x120'
      - series: 'hookguard_admission_duration_seconds_bucket{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",webhook="validate",le="0.1"}'
        values: '0+50x120'
      - series: 'hookguard_admission_duration_seconds_bucket{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",webhook="validate",le="0.25"}'
        values: '0+100x120'
      - series: 'hookguard_admission_duration_seconds_bucket{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",webhook="validate",le="+Inf"}'
        values: '0+100x120'
      - series: 'hookguard_tls_cert_expiry_timestamp_seconds{job="hookguard",instance="a:8080",namespace="hookguard",pod="a"}'
        values: '300000x120'
      - series: 'hookguard_tls_ca_expiry_timestamp_seconds{job="hookguard",instance="a:8080",namespace="hookguard",pod="a"}'
        values: '300000x120'
      - series: 'hookguard_config_reloads_total{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",result="failure"}'
        values: '0x30 1x90'
      - series: 'hookguard_tls_reloads_total{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",result="failure"}'
        values: '0x30 1x90'
      - series: 'hookguard_cert_reconciles_total{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",result="failure"}'
        values: '0+1x120'
      - series: 'hookguard_inventory_up{job="hookguard",instance="a:8080",namespace="hookguard",pod="a"}'
        values: '0x120'
    alert_rule_test:
      - eval_time: 70m
        alertname: HookguardInvalidAdmissionRequests
        exp_alerts: [{exp_labels: {severity: warning}}]
      - eval_time: 70m
        alertname: HookguardAdmissionLatencyHigh
        exp_alerts: [{exp_labels: {severity: warning, webhook: validate}}]
      - eval_time: 70m
        alertname: HookguardCertificateExpiringSoon
        exp_alerts:
          - {exp_labels: {severity: warning, cert: serving, job: hookguard, instance: "a:8080", namespace: hookguard, pod: a}}
          - {exp_labels: {severity: warning, cert: ca, job: hookguard, instance: "a:8080", namespace: hookguard, pod: a}}
      - eval_time: 35m
        alertname: HookguardConfigReloadFailed
        exp_alerts: [{exp_labels: {severity: warning, job: hookguard, instance: "a:8080", namespace: hookguard, pod: a, result: failure}}]
      - eval_time: 35m
        alertname: HookguardTLSReloadFailed
        exp_alerts: [{exp_labels: {severity: warning, job: hookguard, instance: "a:8080", namespace: hookguard, pod: a, result: failure}}]
      - {eval_time: 70m, alertname: HookguardConfigReloadFailed, exp_alerts: []}
      - {eval_time: 70m, alertname: HookguardDown, exp_alerts: []}
      - {eval_time: 10m, alertname: HookguardCertificateReconcileFailing, exp_alerts: []}
      - eval_time: 70m
        alertname: HookguardCertificateReconcileFailing
        exp_alerts: [{exp_labels: {severity: warning, job: hookguard, instance: "a:8080", namespace: hookguard, pod: a, result: failure}}]
      - {eval_time: 10m, alertname: HookguardInventoryNotRunning, exp_alerts: []}
      - eval_time: 70m
        alertname: HookguardInventoryNotRunning
        exp_alerts: [{exp_labels: {severity: warning}}]
  - name: hooks
    interval: 1m
    input_series:
      - series: 'hookguard_build_info{job="hookguard",instance="a:8080",namespace="hookguard",pod="a",version="0.1.0"}'
        values: '1x120'
      - series: 'hookguard_inventory_up{job="hookguard",instance="a:8080",namespace="hookguard",pod="a"}'
        values: '1x120'
      - series: 'hookguard_inventory_up{job="hookguard",instance="b:8080",namespace="hookguard",pod="b"}'
        values: '0x120'
      # team-a: 30 finished hooks, the oldest 2 days old.
      - series: 'hookguard_hook_objects{job="hookguard",instance="a:8080",pod="a",namespace="team-a",kind="Pod",state="succeeded"}'
        values: '20x120'
      - series: 'hookguard_hook_objects{job="hookguard",instance="a:8080",pod="a",namespace="team-a",kind="Job",state="failed"}'
        values: '10x120'
      - series: 'hookguard_hook_oldest_finished_age_seconds{job="hookguard",instance="a:8080",pod="a",namespace="team-a"}'
        values: '200000x120'
      # team-b: as many, but all recent.
      - series: 'hookguard_hook_objects{job="hookguard",instance="a:8080",pod="a",namespace="team-b",kind="Pod",state="succeeded"}'
        values: '30x120'
      - series: 'hookguard_hook_oldest_finished_age_seconds{job="hookguard",instance="a:8080",pod="a",namespace="team-b"}'
        values: '3600x120'
      # Replica b lost the Lease and still reports what it saw then.
      - series: 'hookguard_hook_objects{job="hookguard",instance="b:8080",pod="b",namespace="team-c",kind="Pod",state="succeeded"}'
        values: '100x120'
      - series: 'hookguard_hook_oldest_finished_age_seconds{job="hookguard",instance="b:8080",pod="b",namespace="team-c"}'
        values: '1000000x120'
      - series: 'hookguard_hook_orphans{job="hookguard",instance="a:8080",pod="a",namespace="team-a",kind="Pod"}'
        values: '2x120'
      - series: 'hookguard_hook_orphans{job="hookguard",instance="b:8080",pod="b",namespace="team-c",kind="Job"}'
        values: '5x120'
      # One failed hook Job a minute in team-a (counted by both replicas), one in the last hour
      # in team-b.
      - series: 'hookguard_hook_job_outcomes_total{job="hookguard",instance="a:8080",pod="a",namespace="team-a",outcome="failed"}'
        values: '0+1x120'
      - series: 'hookguard_hook_job_outcomes_total{job="hookguard",instance="b:8080",pod="b",namespace="team-a",outcome="failed"}'
        values: '0+1x120'
      - series: 'hookguard_hook_job_outcomes_total{job="hookguard",instance="a:8080",pod="a",namespace="team-b",outcome="failed"}'
        values: '0x60 1x60'
    alert_rule_test:
      - eval_time: 90m
        alertname: HookguardHooksAccumulating
        exp_alerts: [{exp_labels: {severity: warning, namespace: team-a}}]
      - eval_time: 90m
        alertname: HookguardOrphanedHooks
        exp_alerts: [{exp_labels: {severity: info, namespace: team-a, kind: Pod}}]
      - eval_time: 90m
        alertname: HookguardHookJobsFailing
        exp_alerts: [{exp_labels: {severity: warning, namespace: team-a}}]
      - {eval_time: 90m, alertname: HookguardInventoryNotRunning, exp_alerts: []}
  - name: down
    interval: 1m
    input_series:
      - series: 'hookguard_build_info{job="other",instance="x:8080",namespace="hookguard",pod="x",version="0.1.0"}'
        values: '1x20'
    alert_rule_test:
      - {eval_time: 3m, alertname: HookguardDown, exp_alerts: []}
      - eval_time: 10m
        alertname: HookguardDown
        exp_alerts: [{exp_labels: {severity: critical, job: hookguard}}]
"#;

fn promtool() -> Result<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "promtool not found on PATH: install Debian's `prometheus` package (DESIGN.md: the \
             tests run promtool check/test rules)"
                .to_owned()
        })
}

/// Every PromQL query of the dashboard (panels and template variables), with Grafana's variables
/// replaced by what they expand to, as recording rules: `promtool check rules` then parses each
/// one, so a typo in a panel fails here rather than in someone's Grafana.
fn dashboard_rules() -> Result<Value> {
    fn exprs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        _ => exprs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
            _ => {}
        }
    }
    let text = fs::read_to_string(repo().join("charts/hookguard/dashboards/hookguard.json"))
        .map_err(|e| e.to_string())?;
    let dash: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let mut queries = Vec::new();
    exprs(&dash["panels"], &mut queries);
    for var in dash["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = var["query"]["query"].as_str()
            && let Some(inner) = q.strip_prefix("label_values(")
        {
            let selector = inner.rsplit_once(',').map_or(inner, |(s, _)| s);
            queries.push(selector.to_owned());
        }
    }
    let rules = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let expr = q
                .replace("$__rate_interval", "5m")
                .replace("$__interval", "1m")
                .replace("$__range", "1h")
                .replace("$job", ".*")
                .replace("$namespace", ".*");
            ensure(!expr.contains('$'), || {
                format!("dashboard query with an unknown variable: {q}")
            })?;
            Ok(serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr}))
        })
        .collect::<Result<Vec<_>>>()?;
    ensure(rules.len() > 20, || {
        format!("only {} dashboard queries found", rules.len())
    })?;
    Ok(serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}))
}

/// `promtool check rules` on the rendered PrometheusRule and on the dashboard's queries, and
/// `promtool test rules` with ALERT_TESTS: every expression parses, every template in the alerts
/// compiles, and each alert fires exactly when it should.
fn prometheus_alerts(env: &Env) -> Result<()> {
    let promtool = promtool()?;
    let docs = render(
        env,
        "helm",
        "hookguard",
        "hookguard",
        &["--set", "metrics.prometheusRule.enabled=true"],
    )?;
    let mut spec = one(&docs, "PrometheusRule")?["spec"].clone();
    let dir = env.cluster.work.join("promtool");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let write = |name: &str, v: &Value| -> Result<PathBuf> {
        let path = dir.join(name);
        fs::write(&path, v.to_string()).map_err(|e| e.to_string())?;
        Ok(path)
    };
    let full = write("rules-full.json", &spec)?;
    let promtool_ok = |args: &[&str]| -> Result<String> {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        let text = out_text(&out);
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("promtool {}: {text}", args.join(" ")))
        }
    };
    promtool_ok(&["check", "rules", &full.display().to_string()])?;
    let dashboard = write("dashboard-rules.json", &dashboard_rules()?)?;
    promtool_ok(&["check", "rules", &dashboard.display().to_string()])?;
    // The unit tests compare labels; annotations (templated with $value) are left out of them.
    for group in spec["groups"].as_array_mut().into_iter().flatten() {
        for rule in group["rules"].as_array_mut().into_iter().flatten() {
            if let Some(r) = rule.as_object_mut() {
                r.remove("annotations");
            }
        }
    }
    write("rules.json", &spec)?;
    fs::write(dir.join("tests.yaml"), ALERT_TESTS).map_err(|e| e.to_string())?;
    promtool_ok(&["test", "rules", "tests.yaml"])?;
    eprintln!(
        "e2e:   promtool: the chart's alerts and the dashboard's queries parse; the alerts fire exactly as the unit tests say"
    );
    Ok(())
}

/// Minimal stand-ins for the CRDs of cert-manager and prometheus-operator (the test cluster has
/// neither): the real group, version, kind and plural, the fields the chart sets typed (so a
/// wrong type or a missing required field is refused), everything else preserved.
const MINIMAL_CRDS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
  labels: {hookguard.test/minimal-crd: "true"}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              required: [selector, endpoints]
              x-kubernetes-preserve-unknown-fields: true
              properties:
                selector: {type: object, x-kubernetes-preserve-unknown-fields: true}
                endpoints:
                  type: array
                  items:
                    type: object
                    x-kubernetes-preserve-unknown-fields: true
                    properties:
                      port: {type: string}
                      path: {type: string}
                      interval: {type: string}
                      scrapeTimeout: {type: string}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: prometheusrules.monitoring.coreos.com
  labels: {hookguard.test/minimal-crd: "true"}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: PrometheusRule, listKind: PrometheusRuleList, plural: prometheusrules, singular: prometheusrule}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              required: [groups]
              properties:
                groups:
                  type: array
                  items:
                    type: object
                    required: [name, rules]
                    x-kubernetes-preserve-unknown-fields: true
                    properties:
                      name: {type: string}
                      rules:
                        type: array
                        items:
                          type: object
                          required: [expr]
                          properties:
                            alert: {type: string}
                            record: {type: string}
                            expr: {type: string}
                            for: {type: string}
                            labels: {type: object, additionalProperties: {type: string}}
                            annotations: {type: object, additionalProperties: {type: string}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: issuers.cert-manager.io
  labels: {hookguard.test/minimal-crd: "true"}
spec:
  group: cert-manager.io
  scope: Namespaced
  names: {kind: Issuer, listKind: IssuerList, plural: issuers, singular: issuer}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              x-kubernetes-preserve-unknown-fields: true
              properties:
                selfSigned: {type: object, x-kubernetes-preserve-unknown-fields: true}
                ca:
                  type: object
                  required: [secretName]
                  properties:
                    secretName: {type: string}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: certificates.cert-manager.io
  labels: {hookguard.test/minimal-crd: "true"}
spec:
  group: cert-manager.io
  scope: Namespaced
  names: {kind: Certificate, listKind: CertificateList, plural: certificates, singular: certificate}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              required: [secretName, issuerRef]
              x-kubernetes-preserve-unknown-fields: true
              properties:
                secretName: {type: string}
                commonName: {type: string}
                isCA: {type: boolean}
                dnsNames: {type: array, items: {type: string}}
                duration: {type: string}
                renewBefore: {type: string}
                usages: {type: array, items: {type: string}}
                privateKey:
                  type: object
                  properties:
                    algorithm: {type: string, enum: [RSA, ECDSA, Ed25519]}
                    size: {type: integer}
                    rotationPolicy: {type: string, enum: [Never, Always]}
                issuerRef:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    kind: {type: string}
                    group: {type: string}
"#;

const CRD_NAMES: [&str; 4] = [
    "crd/servicemonitors.monitoring.coreos.com",
    "crd/prometheusrules.monitoring.coreos.com",
    "crd/issuers.cert-manager.io",
    "crd/certificates.cert-manager.io",
];

fn install_minimal_crds(env: &Env) -> Result<()> {
    env.cluster.apply(MINIMAL_CRDS)?;
    let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    args.extend_from_slice(&CRD_NAMES);
    run_ok(env, "kubectl", &args, None)?;
    Ok(())
}

fn remove_minimal_crds(env: &Env) {
    let mut args = vec!["delete", "--ignore-not-found", "--wait=false"];
    args.extend_from_slice(&CRD_NAMES);
    let _ = env.cluster.kubectl(&args);
}

/// `kubectl apply --dry-run=server`: kube-apiserver validates (and defaults) every object
/// without storing it. Returns how many objects it accepted.
fn server_dry_run_apply(env: &Env, yaml: &str) -> Result<usize> {
    let out = run_ok(
        env,
        "kubectl",
        &["apply", "--dry-run=server", "--validate=strict", "-f", "-"],
        Some(yaml),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(server dry run)"))
        .count())
}

fn server_dry_run(env: &Env) -> Result<()> {
    let ns = "hookguard-chart-dryrun";
    env.cluster.namespace(ns)?;
    install_minimal_crds(env)?;
    let result = (|| {
        let chart = chart();
        let value_sets: [(&str, Vec<&str>); 4] = [
            (
                "defaults + janitor + monitoring + networkPolicy",
                [
                    MONITORING_AND_NETPOL,
                    &[
                        "--set",
                        "janitor.enabled=true",
                        "--set",
                        "janitor.namespaces={team-*}",
                    ],
                ]
                .concat(),
            ),
            (
                "certManager + monitoring + networkPolicy",
                [MONITORING_AND_NETPOL, &["--set", "certs.mode=certManager"]].concat(),
            ),
            (
                "existingSecret, 1 replica, no inventory",
                vec![
                    "--set",
                    "certs.mode=existingSecret",
                    "--set",
                    "certs.existingSecret=my-tls",
                    "--set",
                    "webhook.caBundle=QUJD",
                    "--set",
                    "replicas=1",
                    "--set",
                    "inventory.enabled=false",
                ],
            ),
            (
                "webhook.url",
                vec![
                    "--set",
                    "webhook.url=https://hookguard.example:8443",
                    "--set",
                    "webhook.caBundle=QUJD",
                ],
            ),
        ];
        let mut seen = BTreeSet::new();
        for (name, args) in value_sets {
            let mut all = vec![
                "template",
                "hookguard-chart",
                chart.as_str(),
                "--namespace",
                ns,
            ];
            all.extend_from_slice(&args);
            let out = run_ok(env, "helm", &all, None)?;
            let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
            let docs = parse_docs(&yaml)?;
            seen.extend(kinds(&docs));
            seen.extend(docs.iter().filter_map(|d| {
                Some(format!(
                    "{}/{}",
                    d["kind"].as_str()?,
                    d["metadata"]["name"].as_str()?
                ))
            }));
            let accepted = server_dry_run_apply(env, &yaml)
                .map_err(|e| format!("{name}: the API server refuses the chart: {e}"))?;
            ensure(accepted == docs.len(), || {
                format!("{name}: {accepted} of {} objects accepted", docs.len())
            })?;
            eprintln!("e2e:   {name}: {accepted} objects accepted by kube-apiserver (dry run)");
        }
        for kind in [
            "Deployment",
            "Service",
            "ConfigMap",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "ServiceMonitor",
            "PrometheusRule",
            "Issuer",
            "Certificate",
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
            "ConfigMap/hookguard-chart-policy",
            "ConfigMap/hookguard-chart-dashboard",
        ] {
            ensure(seen.contains(kind), || format!("{kind} never checked"))?;
        }
        // A broken value the schema cannot see is caught by the API server, not silently applied.
        let out = run_ok(
            env,
            "helm",
            &[
                "template",
                "hookguard-chart",
                &chart,
                "--namespace",
                ns,
                "--set-string",
                "podLabels.bad/label/key=x",
            ],
            None,
        )?;
        ensure(
            server_dry_run_apply(env, &String::from_utf8_lossy(&out.stdout)).is_err(),
            || "an invalid pod label was accepted: the dry run proves nothing".into(),
        )?;
        Ok(())
    })();
    remove_minimal_crds(env);
    let _ = env
        .cluster
        .kubectl(&["delete", "namespace", ns, "--wait=false"]);
    result
}

/// Uninstalls the release when dropped (also on panic), and removes the webhook configurations
/// by name if Helm could not: a dangling webhook must never outlive the scenario.
struct Release<'a> {
    env: &'a Env,
    bin: &'a str,
    name: &'a str,
    ns: &'a str,
    installed: bool,
}

impl Release<'_> {
    fn uninstall(&mut self) -> Result<()> {
        if !self.installed {
            return Ok(());
        }
        self.installed = false;
        let res = run_ok(
            self.env,
            self.bin,
            &["uninstall", self.name, "-n", self.ns, "--timeout", "60s"],
            None,
        )
        .map(|_| ());
        if res.is_err() {
            for kind in [
                "mutatingwebhookconfiguration",
                "validatingwebhookconfiguration",
            ] {
                let _ =
                    self.env
                        .cluster
                        .kubectl(&["delete", kind, self.name, "--ignore-not-found"]);
            }
        }
        res
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let _ = self.uninstall();
    }
}

fn get(env: &Env, args: &[&str]) -> Result<Value> {
    env.cluster
        .get_json(args)
        .ok_or_else(|| format!("kubectl get {} failed", args.join(" ")))
}

fn webhook_ca_bundles(env: &Env, name: &str) -> Result<[String; 2]> {
    let m = get(env, &["mutatingwebhookconfiguration", name])?;
    let v = get(env, &["validatingwebhookconfiguration", name])?;
    let ca = |c: &Value| {
        c["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    Ok([ca(&m), ca(&v)])
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
    b64(secret["data"][key]
        .as_str()
        .ok_or_else(|| format!("Secret has no {key}"))?)
}

const DAY: i64 = 86_400;

/// The API server's own authorizer (`kubectl auth can-i --as`) agrees that the chart's
/// ServiceAccount may do what hookguard needs with the default values, and nothing next to it.
fn service_account_permissions(env: &Env, ns: &str, sa: &str) -> Result<()> {
    let user = format!("system:serviceaccount:{ns}:{sa}");
    let tls = format!("secrets/{sa}-tls");
    let lease = format!("leases.coordination.k8s.io/{sa}");
    let mwc = format!("mutatingwebhookconfigurations/{sa}");
    let vwc = format!("validatingwebhookconfigurations/{sa}");
    let checks: [(&[&str], bool); 21] = [
        (&["get", &tls, "-n", ns], true),
        (&["update", &tls, "-n", ns], true),
        (&["create", "secrets", "-n", ns], true),
        (&["get", &mwc], true),
        (&["patch", &mwc], true),
        (&["patch", &vwc], true),
        (&["update", &lease, "-n", ns], true),
        (&["create", "leases.coordination.k8s.io", "-n", ns], true),
        (&["watch", "jobs.batch", "-A"], true),
        (&["list", "pods", "-A"], true),
        (&["list", "secrets", "-A"], true),
        (&["get", "secrets/other", "-n", ns], false),
        (&["update", "secrets/other", "-n", ns], false),
        (&["delete", &tls, "-n", ns], false),
        (&["patch", "mutatingwebhookconfigurations/other"], false),
        (
            &["update", "leases.coordination.k8s.io/other", "-n", ns],
            false,
        ),
        (&["delete", "pods", "-n", "default"], false),
        (&["delete", "jobs.batch", "-n", "default"], false),
        (&["create", "pods", "-n", ns], false),
        (&["update", "configmaps", "-n", ns], false),
        (&["update", "deployments.apps", "-n", ns], false),
    ];
    let mut wrong = Vec::new();
    for (args, want) in checks {
        let mut all = vec!["auth", "can-i", "--as", user.as_str()];
        all.extend_from_slice(args);
        let out = env.cluster.kubectl(&all);
        let got = String::from_utf8_lossy(&out.stdout).trim() == "yes";
        if got != want {
            wrong.push(format!(
                "can-i {}: {}",
                args.join(" "),
                if got { "yes" } else { "no" }
            ));
        }
    }
    ensure(wrong.is_empty(), || {
        format!("ServiceAccount {user}: {wrong:?}")
    })
}

/// A kubeconfig that authenticates as the chart's ServiceAccount against the test cluster, with a
/// token from the TokenRequest API: the same kind of credential a pod's projected token is.
fn service_account_kubeconfig(env: &Env, ns: &str, sa: &str, tag: &str) -> Result<PathBuf> {
    let out = run_ok(
        env,
        "kubectl",
        &["create", "token", sa, "-n", ns, "--duration=1h"],
        None,
    )?;
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    ensure(!token.is_empty(), || {
        "kubectl create token printed nothing".into()
    })?;
    let admin: Value = serde_saphyr::from_str(
        &fs::read_to_string(&env.cluster.kubeconfig).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("admin kubeconfig: {e}"))?;
    let cluster = &admin["clusters"][0]["cluster"];
    let (Some(server), Some(ca)) = (
        cluster["server"].as_str(),
        cluster["certificate-authority"].as_str(),
    ) else {
        return Err(format!("admin kubeconfig cluster {cluster}"));
    };
    let path = env
        .cluster
        .work
        .join(format!("chart-{tag}-serviceaccount.kubeconfig"));
    fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {sa}\n  user:\n    token: \"{token}\"\ncontexts:\n- name: {sa}\n  context:\n    cluster: e2e\n    user: {sa}\n    namespace: {ns}\ncurrent-context: {sa}\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    Ok(path)
}

fn install_upgrade_uninstall(env: &Env, bin: &str) -> Result<()> {
    // The release's webhooks point at a Service with no real backend (simulated pods): both are
    // set to Ignore so that nothing else in the cluster is refused while it is installed, and
    // the release is uninstalled at the end in any case (Release's Drop).
    let (name, ns) = if bin == "helm" {
        ("hookguard-chart", "hookguard-chart")
    } else {
        ("hookguard-chart-helm4", "hookguard-chart-helm4")
    };
    let chart = chart();
    let svc_host = format!("{name}.{ns}.svc");
    let secret_name = format!("{name}-tls");
    let policy_name = format!("{name}-policy");
    let common = [
        "-n",
        ns,
        "--set",
        "replicas=1",
        "--set",
        "webhook.validating.failurePolicy=Ignore",
        "--set",
        "webhook.mutating.failurePolicy=Ignore",
        "--timeout",
        "90s",
    ];
    let mut release = Release {
        env,
        bin,
        name,
        ns,
        installed: true,
    };
    let mut args = vec!["install", name, chart.as_str(), "--create-namespace"];
    args.extend_from_slice(&common);
    let installed_at = Instant::now();
    let install = match run_ok(env, bin, &args, None) {
        Ok(out) => out,
        Err(e) => {
            let _ = release.uninstall();
            return Err(e);
        }
    };
    let notes = String::from_utf8_lossy(&install.stdout).into_owned();
    // No key material and no caBundle in what Helm stores: both are hookguard's.
    let manifest = parse_docs(&String::from_utf8_lossy(
        &run_ok(env, bin, &["get", "manifest", name, "-n", ns], None)?.stdout,
    ))?;
    let (m, v) = webhooks(&manifest)?;
    ensure(
        m["clientConfig"]["caBundle"].is_null()
            && v["clientConfig"]["caBundle"].is_null()
            && of_kind(&manifest, "Secret").is_empty()
            && !serde_json::to_string(&manifest)
                .map_err(|e| e.to_string())?
                .contains("LS0tLS1CRUdJTi"),
        || format!("{bin} get manifest holds certificate material"),
    )?;

    // Installed. The pod is SIMULATED: scheduled by the real scheduler onto the kwok node, which
    // reports it Running (readiness is not asserted: the simulated node does not re-report it
    // after a node-lifecycle blip, a real kubelet would).
    let selector = format!("app.kubernetes.io/instance={name}");
    let pod_name = wait_for(
        "the Deployment's pod Running on the simulated node",
        Duration::from_secs(60),
        || {
            let pods = env.cluster.get_json(&["-n", ns, "pods", "-l", &selector])?;
            let items = pods["items"].as_array()?.clone();
            (items.len() == 1
                && items[0]["spec"]["nodeName"] == "kwok-node-0"
                && items[0]["status"]["phase"] == "Running")
                .then(|| items[0]["metadata"]["name"].as_str().map(str::to_owned))
                .flatten()
        },
    )?;
    let self_managed = Tls::SelfManaged { fullname: name, ns };
    let deploy = get(env, &["-n", ns, "deployment", name])?;
    check_deployment(&deploy, 1, self_managed, &policy_name, true)?;
    let svc = get(env, &["-n", ns, "service", name])?;
    ensure(
        svc["spec"]["ports"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == "https" && p["port"] == 443)),
        || format!("Service ports {}", svc["spec"]["ports"]),
    )?;
    wait_for(
        "an endpoint of the Service",
        Duration::from_secs(60),
        || {
            let slices = env.cluster.get_json(&[
                "-n",
                ns,
                "endpointslices",
                "-l",
                &format!("kubernetes.io/service-name={name}"),
            ])?;
            slices["items"][0]["endpoints"]
                .as_array()
                .is_some_and(|e| !e.is_empty())
                .then_some(())
        },
    )?;
    ensure(
        get(env, &["-n", ns, "poddisruptionbudgets"])?["items"]
            .as_array()
            .is_some_and(Vec::is_empty),
        || "PDB with one replica".into(),
    )?;
    // RBAC as stored, and as the API server's authorizer sees it.
    let stored_rbac = [
        get(env, &["-n", ns, "role", name])?,
        get(env, &["-n", ns, "rolebinding", name])?,
        get(env, &["clusterrole", name])?,
        get(env, &["clusterrolebinding", name])?,
    ];
    check_rbac(
        &stored_rbac,
        name,
        ns,
        &[Grant::Certs, Grant::Lease, Grant::Inventory, Grant::Orphans],
    )?;
    service_account_permissions(env, ns, name)?;
    // Until hookguard runs, there is no Secret and no caBundle.
    ensure(
        env.cluster
            .get_json(&["-n", ns, "secret", &secret_name])
            .is_none(),
        || format!("Secret {secret_name} exists before hookguard ran"),
    )?;
    ensure(
        webhook_ca_bundles(env, name)?.iter().all(String::is_empty),
        || "a caBundle exists before hookguard ran".into(),
    )?;
    let policy_cm = get(env, &["-n", ns, "configmap", &policy_name])?;

    // What kwok cannot show: the container itself, as the chart's ServiceAccount.
    let kubeconfig = service_account_kubeconfig(env, ns, name, bin)?;
    let pod = PodEnv {
        ns,
        name: &pod_name,
        fullname: name,
        svc_host: &svc_host,
        kubeconfig: &kubeconfig,
    };
    let first = run_container_locally(env, bin, &deploy, &policy_cm, &pod, "first start")?;
    let bundles = webhook_ca_bundles(env, name)?;

    // Upgrades while hookguard is stopped, so only Helm acts: the caBundle hookguard patched in
    // survives (Helm 3's three-way merge, Helm 4's server-side apply), the Secret is untouched.
    let upgrade = |extra: &[&str]| -> Result<()> {
        let mut args = vec!["upgrade", name, chart.as_str()];
        args.extend_from_slice(&common);
        args.extend_from_slice(extra);
        run_ok(env, bin, &args, None).map(|_| ())
    };
    let secret_now = || get(env, &["-n", ns, "secret", &secret_name]);
    upgrade(&[])?;
    ensure(webhook_ca_bundles(env, name)? == bundles, || {
        "helm upgrade removed or changed the caBundle hookguard patched in".into()
    })?;
    upgrade(&[
        "--set",
        "certs.selfManaged.checkInterval=30s",
        "--set",
        "logLevel=debug",
    ])?;
    ensure(webhook_ca_bundles(env, name)? == bundles, || {
        "an upgrade that changed the Deployment removed or changed the caBundle".into()
    })?;
    ensure(secret_now()?["data"] == first["data"], || {
        "helm upgrade changed hookguard's Secret".into()
    })?;
    let final_deploy = get(env, &["-n", ns, "deployment", name])?;
    ensure(
        container_args(&final_deploy)
            .iter()
            .any(|a| a == "--cert-check-interval=30s"),
        || "the upgrade's values did not reach the Deployment".into(),
    )?;
    let final_cm = get(env, &["-n", ns, "configmap", &policy_name])?;
    ensure(final_cm["data"] == policy_cm["data"], || {
        "policy changed across upgrades".into()
    })?;

    // Restarted with the upgraded Deployment: the CA and the still valid certificate are reused.
    let second = run_container_locally(
        env,
        bin,
        &final_deploy,
        &final_cm,
        &pod,
        "restart after upgrade",
    )?;
    for key in ["ca.crt", "ca.key", "tls.crt"] {
        ensure(second["data"][key] == first["data"][key], || {
            format!("the restart replaced {key}, which was still valid")
        })?;
    }
    ensure(webhook_ca_bundles(env, name)? == bundles, || {
        "the restart changed the caBundle".into()
    })?;

    // Uninstall: no webhook configuration and no RBAC may stay behind.
    release.uninstall()?;
    let window = installed_at.elapsed();
    for kind in [
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
    ] {
        let left = get(
            env,
            &[kind, "-l", &format!("app.kubernetes.io/instance={name}")],
        )?;
        ensure(left["items"].as_array().is_some_and(Vec::is_empty), || {
            format!("{kind} left behind after uninstall: {}", left["items"])
        })?;
        ensure(env.cluster.get_json(&[kind, name]).is_none(), || {
            format!("{kind}/{name} left behind after uninstall")
        })?;
    }
    for args in [
        ["-n", ns, "role", name],
        ["-n", ns, "rolebinding", name],
        ["", "", "clusterrole", name],
        ["", "", "clusterrolebinding", name],
    ] {
        let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
        ensure(env.cluster.get_json(&args).is_none(), || {
            format!("{} left behind after uninstall", args.join(" "))
        })?;
    }
    // hookguard created the Secret, not Helm, so uninstall leaves it (as the chart's README says)
    // and a reinstall would reuse the CA.
    ensure(secret_now().is_ok(), || {
        "the Secret hookguard created is gone after uninstall; the README says it stays".into()
    })?;
    eprintln!(
        "e2e:   {bin}: install, hookguard as the ServiceAccount, 2 upgrades (caBundle kept by Helm), restart (CA reused), uninstall in {:.1}s; no webhook configuration or RBAC left behind",
        window.as_secs_f64()
    );
    let _ = env
        .cluster
        .kubectl(&["delete", "namespace", ns, "--wait=false"]);

    // The NOTES' demo Pod, against the suite's real hookguard.
    notes_demo_pod_is_fixed(env, &notes)
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

/// Where the simulated pod runs: its namespace and name (what the downward API gives it), the
/// release's full name, the Service name the API server verifies, and a kubeconfig of its
/// ServiceAccount (in a pod, the mounted token and in-cluster configuration).
struct PodEnv<'a> {
    ns: &'a str,
    name: &'a str,
    fullname: &'a str,
    svc_host: &'a str,
    kubeconfig: &'a Path,
}

/// The value of an unlabelled sample or of one exact series (`name{labels}`) in metrics text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .filter(|rest| rest.starts_with(' '))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    })
}

const SECRET_KEYS: [&str; 5] = ["ca.crt", "ca.key", "tls.crt", "tls.key", "ca-bundle.crt"];

/// SIMULATION of the kubelet for hookguard's container: runs the binary cargo built with the
/// Deployment's exact arguments and environment plus `--kubeconfig` for the ServiceAccount, the
/// policy ConfigMap mounted from the release's, ports mapped to free loopback ports. Checks the
/// probes; that hookguard keeps its CA and certificate in the Secret and the CA bundle in both
/// webhook configurations; a TLS handshake verified against that caBundle for the Service's name,
/// serving the Secret's certificate; an admission review; the Lease and the inventory (which
/// need the rest of the RBAC); and the SIGTERM sequence. Returns the Secret.
fn run_container_locally(
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

    // Volumes: the policy ConfigMap and scratch space; hookguard reads its Secret through the API.
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
    // `--flag=<mountPath>/file` -> `--flag=<local dir>/file` (one substitution per argument).
    mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    for a in &mut args {
        let (flag, value) = a.split_once('=').unwrap_or(("", a.as_str()));
        if let Some((m, local)) = mounts.iter().find(|(m, _)| value.starts_with(m.as_str())) {
            let sep = if flag.is_empty() { "" } else { "=" };
            *a = format!("{flag}{sep}{local}{}", &value[m.len()..]);
        }
    }

    // Ports: 0.0.0.0:<containerPort> -> 127.0.0.1:<free port>.
    let mut local_port: BTreeMap<String, u16> = BTreeMap::new();
    for p in c["ports"].as_array().into_iter().flatten() {
        let (Some(pname), Some(cport)) = (p["name"].as_str(), p["containerPort"].as_i64()) else {
            continue;
        };
        let free = free_port();
        local_port.insert(pname.to_owned(), free);
        for a in &mut args {
            *a = a.replace(&format!("0.0.0.0:{cport}"), &format!("127.0.0.1:{free}"));
        }
    }
    let https = *local_port.get("https").ok_or("no https port")?;
    let probe_port = |probe: &str| -> Result<(u16, String)> {
        let g = &c[probe]["httpGet"];
        let port = g["port"].as_str().ok_or("probe port is not a name")?;
        Ok((
            *local_port.get(port).ok_or("probe port unknown")?,
            g["path"].as_str().unwrap_or("/").to_owned(),
        ))
    };
    let (ready_port, ready_path) = probe_port("readinessProbe")?;
    let (live_port, live_path) = probe_port("livenessProbe")?;
    args.push(format!("--kubeconfig={}", pod.kubeconfig.display()));

    // Environment: only what the container spec sets, the downward API filled in.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookguard"));
    cmd.args(&args).env_clear();
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
    let workdir = root.join("cwd");
    fs::create_dir_all(&workdir).map_err(|e| e.to_string())?;
    let log = root.join("hookguard.log");
    let logf = fs::File::create(&log).map_err(|e| e.to_string())?;
    cmd.current_dir(&workdir)
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
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let log_tail = || fs::read_to_string(&log).unwrap_or_default();
    let secret_name = format!("{}-tls", pod.fullname);
    let result = (|| -> Result<Value> {
        let ready = format!("127.0.0.1:{ready_port}");
        wait_for(
            "the container's readinessProbe",
            Duration::from_secs(30),
            || http_get(&ready, &ready_path).filter(|(s, _)| *s == 200),
        )?;
        let live = http_get(&format!("127.0.0.1:{live_port}"), &live_path);
        ensure(live.as_ref().is_some_and(|(s, _)| *s == 200), || {
            format!("livenessProbe {live_path}: {live:?}")
        })?;

        // The Secret hookguard keeps, and the CA bundle it patched into both configurations.
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
        let bundle = b64(&bundle_b64)?;
        let ca_pem = secret_field(&secret, "ca.crt")?;
        ensure(
            String::from_utf8_lossy(&bundle).contains(String::from_utf8_lossy(&ca_pem).trim()),
            || "ca-bundle.crt does not contain ca.crt".into(),
        )?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs() as i64;
        let tls_pem = secret_field(&secret, "tls.crt")?;
        let (dns, _, tls_not_after) = cert_info(&tls_pem)?;
        ensure(
            dns.iter().any(|d| d == pod.svc_host)
                && dns.contains(&format!("{}.cluster.local", pod.svc_host)),
            || format!("serving certificate SANs {dns:?}"),
        )?;
        // certs.selfManaged defaults: serving 30d (renewed 10d before), CA 365d.
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

        // TLS as the API server does it: the caBundle, the Service's DNS name; the certificate
        // served is the Secret's.
        let review = fs::read(repo().join("tests/fixtures/job-migrate-create.json"))
            .map_err(|e| e.to_string())?;
        let (_, leaf) = x509_parser::pem::parse_x509_pem(&tls_pem).map_err(|e| e.to_string())?;
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
            for cert in reqwest::Certificate::from_pem_bundle(&bundle).map_err(|e| e.to_string())? {
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
        )?;

        // Leader election and the inventory, which need the Lease, Jobs, Pods and Secrets RBAC.
        wait_for(
            "the Lease held by this pod, hookguard_leader 1 and hookguard_inventory_up 1",
            Duration::from_secs(60),
            || {
                let lease = env
                    .cluster
                    .get_json(&["-n", pod.ns, "lease", pod.fullname])?;
                let metrics = http_get(&ready, "/metrics")?.1;
                (lease["spec"]["holderIdentity"] == pod.name
                    && sample(&metrics, "hookguard_leader") == Some(1.0)
                    && sample(&metrics, "hookguard_inventory_up") == Some(1.0))
                .then_some(())
            },
        )?;
        let metrics = http_get(&ready, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        ensure(
            sample(&metrics, "hookguard_tls_cert_expiry_timestamp_seconds")
                == Some(tls_not_after as f64)
                && sample(&metrics, "hookguard_tls_ca_expiry_timestamp_seconds")
                    == Some(ca_not_after as f64)
                && sample(
                    &metrics,
                    "hookguard_cert_reconciles_total{result=\"success\"}",
                )
                .is_some_and(|n| n >= 1.0),
            || "certificate metrics disagree with the Secret".into(),
        )?;

        // SIGTERM: /readyz fails at once, the process exits 0 after --shutdown-delay, well
        // within terminationGracePeriodSeconds. (The client's runtime is dropped first: an
        // HTTP/2 connection nobody polls would never answer the server's GOAWAY.)
        drop(rt);
        let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
        let stopped_at = Instant::now();
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        wait_for(
            "/readyz to fail after SIGTERM",
            Duration::from_secs(3),
            || match http_get(&ready, &ready_path) {
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
        ensure(took >= Duration::from_secs(4), || {
            format!("exited {took:?} after SIGTERM: --shutdown-delay=5s not honoured")
        })?;
        let written: Vec<_> = fs::read_dir(&workdir)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        ensure(written.is_empty(), || {
            format!("hookguard wrote {written:?} into its working directory (read-only root)")
        })?;
        eprintln!(
            "e2e:   the Deployment's container, run locally as the ServiceAccount ({run}; SIMULATION of the kubelet): Secret and both caBundles written, TLS verified for {svc_host}, review patched, Lease held, inventory up, SIGTERM -> exit 0 after {:.1}s",
            took.as_secs_f64()
        );
        Ok(secret)
    })();
    let _ = child.kill();
    let _ = child.wait();
    result.map_err(|e| format!("{run}: {e}\nhookguard log:\n{}", log_tail()))
}

/// The NOTES tell users to `kubectl apply` a test hook Pod and read back its restartPolicy:
/// applied (in a namespace of its own) against the suite's real hookguard, it says Never.
fn notes_demo_pod_is_fixed(env: &Env, notes: &str) -> Result<()> {
    let start = notes
        .find("<<'EOF'\n")
        .ok_or_else(|| format!("NOTES have no demo Pod:\n{notes}"))?
        + "<<'EOF'\n".len();
    let len = notes[start..]
        .find("\nEOF\n")
        .ok_or("NOTES' heredoc is not terminated by EOF at the start of a line")?;
    let pod_yaml = &notes[start..start + len + 1];
    ensure(
        pod_yaml.contains("helm.sh/hook: test") && !pod_yaml.contains("restartPolicy"),
        || format!("demo Pod: {pod_yaml}"),
    )?;
    ensure(notes.contains("-o jsonpath='{.spec.restartPolicy}"), || {
        "NOTES do not show how to read the restartPolicy".into()
    })?;
    let ns = "e2e-chart-notes";
    env.cluster.namespace(ns)?;
    run_ok(
        env,
        "kubectl",
        &["apply", "-n", ns, "-f", "-"],
        Some(pod_yaml),
    )?;
    let out = run_ok(
        env,
        "kubectl",
        &[
            "-n",
            ns,
            "get",
            "pod",
            "hookguard-demo",
            "-o",
            "jsonpath={.spec.restartPolicy}",
        ],
        None,
    )?;
    let _ = env
        .cluster
        .kubectl(&["-n", ns, "delete", "pod", "hookguard-demo", "--wait=false"]);
    let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    ensure(got == "Never", || {
        format!("the NOTES' demo Pod got restartPolicy {got:?}")
    })
}

/// Runs scripts/render-deploy.sh from `root` (the repository or a copy of it).
fn render_deploy(env: &Env, root: &Path, check: bool) -> Output {
    let mut cmd = Command::new(root.join("scripts/render-deploy.sh"));
    if check {
        cmd.arg("--check");
    }
    cmd.env("HELM", env.cluster.bin.join("helm"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run render-deploy.sh: {e}"))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(|e| e.to_string())?;
    for entry in fs::read_dir(from).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn deploy_manifests_current(env: &Env) -> Result<()> {
    // deploy/ is what the chart renders today.
    let out = render_deploy(env, &repo(), true);
    ensure(out.status.success(), || {
        format!(
            "deploy/ has drifted from the chart (run scripts/render-deploy.sh): {}",
            out_text(&out)
        )
    })?;

    // --check really detects drift: in a copy of the repository, change a chart default.
    let copy: PathBuf = env.cluster.work.join("render-deploy-copy");
    let _ = fs::remove_dir_all(&copy);
    for dir in ["scripts", "charts", "deploy", "examples"] {
        copy_dir(&repo().join(dir), &copy.join(dir))?;
    }
    let values = copy.join("charts/hookguard/values.yaml");
    let text = fs::read_to_string(&values).map_err(|e| e.to_string())?;
    fs::write(
        &values,
        text.replacen("\nreplicas: 2\n", "\nreplicas: 3\n", 1),
    )
    .map_err(|e| e.to_string())?;
    let out = render_deploy(env, &copy, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure(
        out.status.code() == Some(1)
            && stdout.contains("-  replicas: 2")
            && stdout.contains("+  replicas: 3"),
        || format!("--check missed a changed default: {}", out_text(&out)),
    )?;
    // ... and a changed dashboard, in deploy/grafana/ too.
    fs::write(&values, &text).map_err(|e| e.to_string())?;
    let dashboard = copy.join("charts/hookguard/dashboards/hookguard.json");
    let json = fs::read_to_string(&dashboard).map_err(|e| e.to_string())?;
    fs::write(
        &dashboard,
        json.replacen(
            "\"title\": \"hookguard\"",
            "\"title\": \"hookguard changed\"",
            1,
        ),
    )
    .map_err(|e| e.to_string())?;
    let out = render_deploy(env, &copy, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure(
        out.status.code() == Some(1)
            && stdout.contains("deploy/grafana/hookguard-dashboard.json (rendered)")
            && stdout.contains("+  \"title\": \"hookguard changed\""),
        || format!("--check missed a changed dashboard: {}", out_text(&out)),
    )?;
    let _ = fs::remove_dir_all(&copy);

    // kubectl apply -k deploy/: the namespace, the chart, the ConfigMap from deploy/policy.yaml.
    let deploy = repo().join("deploy");
    let out = run_ok(
        env,
        "kubectl",
        &["kustomize", &deploy.display().to_string()],
        None,
    )?;
    let built = String::from_utf8_lossy(&out.stdout).into_owned();
    let docs = parse_docs(&built)?;
    let policy_file = fs::read_to_string(deploy.join("policy.yaml")).map_err(|e| e.to_string())?;
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "hookguard-policy")
        .ok_or("no ConfigMap hookguard-policy in kustomize output")?;
    ensure(cm["data"]["policy.yaml"] == policy_file.as_str(), || {
        "kustomize did not replace the policy with deploy/policy.yaml".into()
    })?;
    ensure(
        one(&docs, "Namespace")?["metadata"]["name"] == "hookguard",
        || "namespace".into(),
    )?;
    ensure(!docs.iter().any(|d| d["kind"] == "Secret"), || {
        "deploy/ must not embed key material".into()
    })?;
    check_dashboard_configmap(
        named(&docs, "ConfigMap", "hookguard-dashboard")?,
        "hookguard",
    )?;
    // kube-apiserver accepts every object (the namespace exists only for the dry run).
    let created_ns = env.cluster.get_json(&["namespace", "hookguard"]).is_none();
    if created_ns {
        env.cluster.namespace("hookguard")?;
    }
    install_minimal_crds(env)?;
    let without_ns: Vec<String> = built
        .split("\n---\n")
        .filter(|d| !d.contains("\nkind: Namespace\n") && !d.starts_with("kind: Namespace\n"))
        .map(str::to_owned)
        .collect();
    let result = server_dry_run_apply(env, &without_ns.join("\n---\n"));
    remove_minimal_crds(env);
    if created_ns {
        let _ = env
            .cluster
            .kubectl(&["delete", "namespace", "hookguard", "--wait=false"]);
    }
    let accepted = result.map_err(|e| format!("kubectl apply -k deploy/ (dry run): {e}"))?;
    ensure(accepted == docs.len() - 1, || {
        format!("{accepted} of {} objects accepted", docs.len() - 1)
    })?;
    eprintln!(
        "e2e:   deploy/ is current; kubectl apply -k deploy/ accepted ({accepted} objects, dry run)"
    );
    Ok(())
}

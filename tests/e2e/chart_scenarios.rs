//! Scenarios for the chart that deploys hookguard itself (`charts/hookguard`) and for the plain
//! manifests rendered from it (`deploy/`).
//!
//! What is real: `helm lint`/`template`/`install`/`upgrade`/`uninstall` (Helm 3 and 4), the values
//! schema, kube-apiserver's validation (server-side dry run), the Deployment and ReplicaSet
//! controllers, the Secret Helm generates and `lookup`s again on upgrade.
//! What is SIMULATED: the pods. kwok marks them Running and Ready; no container runs. To check what
//! the container would do, scenario 11-chart-*-install-upgrade-uninstall runs the hookguard binary
//! with the Deployment's exact arguments and environment, the installed Secret and ConfigMap laid
//! out on disk the way the kubelet mounts them (`..data` symlinks), and talks to it over TLS with
//! the name the API server uses (`<svc>.<ns>.svc`) and the caBundle of the webhook configurations.
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

/// What the chart promises about the pod, checked on a rendered or stored Deployment.
fn check_deployment(d: &Value, replicas: i64, tls_secret: &str, policy_cm: &str) -> Result<()> {
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
    ensure(spec["automountServiceAccountToken"] == false, || {
        "a service account token is mounted, but hookguard calls no API".into()
    })?;
    let args: Vec<&str> = c["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        "serve",
        "--shutdown-delay=5s",
        "--shutdown-grace=20s",
        "--log-format=json",
        "--tls-cert=/etc/hookguard/tls/tls.crt",
        "--tls-key=/etc/hookguard/tls/tls.key",
        "--config=/etc/hookguard/policy/policy.yaml",
    ] {
        ensure(args.contains(&want), || {
            format!("args {args:?} lack {want}")
        })?;
    }
    ensure(
        c["env"].as_array().is_some_and(|e| {
            e.iter().any(|v| {
                v["name"] == "POD_NAMESPACE"
                    && v["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
            })
        }),
        || "no POD_NAMESPACE from the downward API".into(),
    )?;
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
    let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
    ensure(
        volumes
            .iter()
            .any(|v| v["secret"]["secretName"] == tls_secret),
        || format!("Secret {tls_secret} not mounted: {volumes:?}"),
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

fn lint_render_and_schema(env: &Env) -> Result<()> {
    helm_lint_is_clean(env, "helm")?;
    helm_lint_is_clean(env, "helm4")?;
    let (rel, ns) = ("hookguard", "hookguard");

    // Defaults (certs.mode=selfManaged), with Helm 3 and Helm 4.
    for bin in ["helm", "helm4"] {
        let docs = render(env, bin, rel, ns, &[])?;
        ensure(
            kinds(&docs)
                == set(&[
                    "ConfigMap",
                    "Deployment",
                    "MutatingWebhookConfiguration",
                    "PodDisruptionBudget",
                    "Secret",
                    "Service",
                    "ServiceAccount",
                    "ValidatingWebhookConfiguration",
                ]),
            || format!("{bin} default kinds {:?}", kinds(&docs)),
        )?;
        let secret = one(&docs, "Secret")?;
        ensure(secret["type"] == "kubernetes.io/tls", || {
            "Secret is not kubernetes.io/tls".into()
        })?;
        let (m, v) = webhooks(&docs)?;
        for w in [m, v] {
            ensure(
                w["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
                    && !w["clientConfig"]["caBundle"].is_null(),
                || format!("{bin}: caBundle is not the generated CA (one render, one CA)"),
            )?;
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
        check_deployment(
            one(&docs, "Deployment")?,
            2,
            "hookguard-tls",
            "hookguard-policy",
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
        ensure(
            one(&docs, "ServiceAccount")?["automountServiceAccountToken"] == false,
            || "ServiceAccount automounts its token".into(),
        )?;
        ensure(
            !kinds(&docs)
                .iter()
                .any(|k| k.contains("Role") || k.contains("Binding")),
            || "RBAC objects rendered, but hookguard calls no API".into(),
        )?;

        // The ConfigMap's policy is examples/policy.yaml (the built-in defaults), and hookguard
        // itself accepts it.
        let policy_text = one(&docs, "ConfigMap")?["data"]["policy.yaml"]
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
    let text = one(&docs, "ConfigMap")?["data"]["policy.yaml"]
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

    // certManager: the four cert-manager objects, CA injection, no caBundle, no Secret.
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
        "hookguard-tls",
        "hookguard-policy",
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
    check_deployment(one(&docs, "Deployment")?, 2, "my-tls", "hookguard-policy")?;

    // webhook.url (out of cluster): only the two webhook configurations, with the URL and CA.
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
            && sm["spec"]["endpoints"][0]["path"] == "/metrics",
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
    let rule = one(&docs, "PrometheusRule")?;
    let alerts: Vec<&Value> = rule["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    let names: BTreeSet<String> = alerts
        .iter()
        .filter_map(|a| a["alert"].as_str().map(str::to_owned))
        .collect();
    for want in [
        "HookguardInvalidAdmissionRequests",
        "HookguardAdmissionLatencyHigh",
        "HookguardCertificateExpiringSoon",
        "HookguardConfigReloadFailed",
    ] {
        ensure(names.contains(want), || {
            format!("no alert {want}: {names:?}")
        })?;
    }
    let exported = {
        let hg = env.hookguard.lock().map_err(|e| e.to_string())?;
        exported_metric_names(&hg.metrics())
    };
    ensure(!exported.is_empty(), || {
        "cannot read hookguard's /metrics".into()
    })?;
    let mut used = BTreeSet::new();
    for a in &alerts {
        let expr = a["expr"].as_str().ok_or("alert without expr")?;
        for name in hookguard_names(expr) {
            ensure(exported.contains(&name), || {
                format!(
                    "alert {} uses {name}, which hookguard does not export",
                    a["alert"]
                )
            })?;
            used.insert(name);
        }
    }
    for want in [
        "hookguard_admission_requests_total",
        "hookguard_admission_duration_seconds_bucket",
        "hookguard_tls_cert_expiry_timestamp_seconds",
        "hookguard_config_reloads_total",
    ] {
        ensure(used.contains(want), || format!("no alert on {want}"))?;
    }
    eprintln!(
        "e2e:   {} alerts over {} metric names, all exported by the running hookguard",
        alerts.len(),
        used.len()
    );

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

/// promtool unit tests of the chart's alerts (selector job="hookguard",namespace="hookguard"):
/// with a healthy instance none fires; with invalid requests, slow admissions, a certificate
/// expiring in days and failed reloads each fires with the expected labels; with no instance
/// scraped, HookguardDown fires after 5 minutes.
const ALERT_TESTS: &str = r#"rule_files: [rules.json]
evaluation_interval: 1m
tests:
  - name: healthy
    interval: 1m
    input_series:
      - series: 'hookguard_build_info{job="hookguard",namespace="hookguard",pod="a",version="0.1.0"}'
        values: '1x120'
      - series: 'hookguard_admission_requests_total{job="hookguard",namespace="hookguard",pod="a",webhook="validate",operation="CREATE",kind="Job",result="allowed"}'
        values: '0+100x120'
      - series: 'hookguard_admission_requests_total{job="hookguard",namespace="hookguard",pod="a",webhook="validate",operation="CREATE",kind="Job",result="invalid"}'
        values: '0x120'
      - series: 'hookguard_admission_duration_seconds_bucket{job="hookguard",namespace="hookguard",pod="a",webhook="validate",le="0.001"}'
        values: '0+100x120'
      - series: 'hookguard_admission_duration_seconds_bucket{job="hookguard",namespace="hookguard",pod="a",webhook="validate",le="+Inf"}'
        values: '0+100x120'
      - series: 'hookguard_tls_cert_expiry_timestamp_seconds{job="hookguard",namespace="hookguard",pod="a"}'
        values: '31536000x120'
      - series: 'hookguard_config_reloads_total{job="hookguard",namespace="hookguard",pod="a",result="failure"}'
        values: '0x120'
      - series: 'hookguard_tls_reloads_total{job="hookguard",namespace="hookguard",pod="a",result="failure"}'
        values: '0x120'
    alert_rule_test:
      - {eval_time: 90m, alertname: HookguardDown, exp_alerts: []}
      - {eval_time: 90m, alertname: HookguardInvalidAdmissionRequests, exp_alerts: []}
      - {eval_time: 90m, alertname: HookguardAdmissionLatencyHigh, exp_alerts: []}
      - {eval_time: 90m, alertname: HookguardCertificateExpiringSoon, exp_alerts: []}
      - {eval_time: 90m, alertname: HookguardConfigReloadFailed, exp_alerts: []}
      - {eval_time: 90m, alertname: HookguardTLSReloadFailed, exp_alerts: []}
  - name: broken
    interval: 1m
    input_series:
      - series: 'hookguard_build_info{job="hookguard",namespace="hookguard",pod="a",version="0.1.0"}'
        values: '1x120'
      - series: 'hookguard_admission_requests_total{job="hookguard",namespace="hookguard",pod="a",webhook="validate",operation="CREATE",kind="Job",result="allowed"}'
        values: '0+100x120'
      - series: 'hookguard_admission_requests_total{job="hookguard",namespace="hookguard",pod="a",webhook="validate",operation="CREATE",kind="Job",result="invalid"}'
        values: '0+10x120'
      - series: 'hookguard_admission_duration_seconds_bucket{job="hookguard",namespace="hookguard",pod="a",webhook="validate",le="0.1"}'
        values: '0+50x120'
      - series: 'hookguard_admission_duration_seconds_bucket{job="hookguard",namespace="hookguard",pod="a",webhook="validate",le="0.25"}'
        values: '0+100x120'
      - series: 'hookguard_admission_duration_seconds_bucket{job="hookguard",namespace="hookguard",pod="a",webhook="validate",le="+Inf"}'
        values: '0+100x120'
      - series: 'hookguard_tls_cert_expiry_timestamp_seconds{job="hookguard",namespace="hookguard",pod="a"}'
        values: '604800x120'
      - series: 'hookguard_config_reloads_total{job="hookguard",namespace="hookguard",pod="a",result="failure"}'
        values: '0x30 1x90'
      - series: 'hookguard_tls_reloads_total{job="hookguard",namespace="hookguard",pod="a",result="failure"}'
        values: '0x30 1x90'
    alert_rule_test:
      - eval_time: 70m
        alertname: HookguardInvalidAdmissionRequests
        exp_alerts: [{exp_labels: {severity: warning}}]
      - eval_time: 70m
        alertname: HookguardAdmissionLatencyHigh
        exp_alerts: [{exp_labels: {severity: warning, webhook: validate}}]
      - eval_time: 70m
        alertname: HookguardCertificateExpiringSoon
        exp_alerts: [{exp_labels: {severity: warning, job: hookguard, namespace: hookguard, pod: a}}]
      - eval_time: 35m
        alertname: HookguardConfigReloadFailed
        exp_alerts: [{exp_labels: {severity: warning, job: hookguard, namespace: hookguard, pod: a, result: failure}}]
      - eval_time: 35m
        alertname: HookguardTLSReloadFailed
        exp_alerts: [{exp_labels: {severity: warning, job: hookguard, namespace: hookguard, pod: a, result: failure}}]
      - {eval_time: 70m, alertname: HookguardConfigReloadFailed, exp_alerts: []}
      - {eval_time: 70m, alertname: HookguardDown, exp_alerts: []}
  - name: down
    interval: 1m
    input_series:
      - series: 'hookguard_build_info{job="other",namespace="hookguard",pod="x",version="0.1.0"}'
        values: '1x20'
    alert_rule_test:
      - {eval_time: 3m, alertname: HookguardDown, exp_alerts: []}
      - eval_time: 10m
        alertname: HookguardDown
        exp_alerts: [{exp_labels: {severity: critical, job: hookguard, namespace: hookguard}}]
"#;

/// `promtool check rules` on the rendered PrometheusRule and `promtool test rules` with
/// ALERT_TESTS: every alert expression parses, every template in it compiles, and each alert
/// fires exactly when it should.
fn prometheus_alerts(env: &Env) -> Result<()> {
    let promtool = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
        .ok_or(
            "promtool not found on PATH: install Debian's `prometheus` package (DESIGN.md: the \
             tests run promtool check/test rules)",
        )?;
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
    eprintln!("e2e:   promtool: the chart's alerts parse and fire exactly as the unit tests say");
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
                "defaults + monitoring + networkPolicy",
                MONITORING_AND_NETPOL.to_vec(),
            ),
            (
                "certManager + monitoring + networkPolicy",
                [MONITORING_AND_NETPOL, &["--set", "certs.mode=certManager"]].concat(),
            ),
            (
                "existingSecret, 1 replica",
                vec![
                    "--set",
                    "certs.mode=existingSecret",
                    "--set",
                    "certs.existingSecret=my-tls",
                    "--set",
                    "webhook.caBundle=QUJD",
                    "--set",
                    "replicas=1",
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
            "Secret",
            "ConfigMap",
            "ServiceAccount",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "ServiceMonitor",
            "PrometheusRule",
            "Issuer",
            "Certificate",
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
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
    // The certificates are cached in .Values while rendering: they must not leak into the
    // values Helm records for the release (`helm get values`).
    for all in [false, true] {
        let mut args = vec!["get", "values", name, "-n", ns, "-o", "json"];
        if all {
            args.push("--all");
        }
        let values = String::from_utf8_lossy(&run_ok(env, bin, &args, None)?.stdout).into_owned();
        ensure(
            !values.contains("_hookguardCerts") && !values.contains("LS0tLS1CRUdJTi"),
            || format!("{bin} get values shows generated certificates: {values}"),
        )?;
    }

    // Installed. The pod is SIMULATED: scheduled by the real scheduler onto the kwok node, which
    // reports it Running (readiness is not asserted: the simulated node does not re-report it
    // after a node-lifecycle blip, a real kubelet would).
    let selector = format!("app.kubernetes.io/instance={name}");
    wait_for(
        "the Deployment's pod Running on the simulated node",
        Duration::from_secs(60),
        || {
            let pods = env.cluster.get_json(&["-n", ns, "pods", "-l", &selector])?;
            let items = pods["items"].as_array()?.clone();
            (items.len() == 1
                && items[0]["spec"]["nodeName"] == "kwok-node-0"
                && items[0]["status"]["phase"] == "Running")
                .then_some(())
        },
    )?;
    let deploy = get(env, &["-n", ns, "deployment", name])?;
    check_deployment(
        &deploy,
        1,
        &format!("{name}-tls"),
        &format!("{name}-policy"),
    )?;
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
    let secret = get(env, &["-n", ns, "secret", &format!("{name}-tls")])?;
    ensure(secret["type"] == "kubernetes.io/tls", || {
        "Secret type".into()
    })?;
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        ensure(
            secret["data"][key].as_str().is_some_and(|s| !s.is_empty()),
            || format!("Secret lacks {key}"),
        )?;
    }
    let ca_b64 = secret["data"]["ca.crt"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let bundles = webhook_ca_bundles(env, name)?;
    ensure(bundles.iter().all(|b| *b == ca_b64), || {
        "a webhook configuration's caBundle is not the Secret's ca.crt".into()
    })?;
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        let cfg = get(env, &[kind, name])?;
        let w = &cfg["webhooks"][0];
        ensure(
            excluded_namespaces(w).contains(ns) && excluded_namespaces(w).contains("kube-system"),
            || format!("{kind}: namespaceSelector {}", w["namespaceSelector"]),
        )?;
        ensure(
            w["clientConfig"]["service"]["name"] == name
                && w["clientConfig"]["service"]["namespace"] == ns,
            || format!("{kind}: clientConfig {}", w["clientConfig"]),
        )?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    let tls = secret_field(&secret, "tls.crt")?;
    let (dns, _, tls_not_after) = cert_info(&tls)?;
    ensure(
        dns.contains(&svc_host) && dns.contains(&format!("{svc_host}.cluster.local")),
        || format!("serving certificate SANs {dns:?}"),
    )?;
    ensure((tls_not_after - now - 365 * DAY).abs() < 2 * DAY, || {
        format!(
            "serving certificate valid {} days",
            (tls_not_after - now) / DAY
        )
    })?;
    let (_, _, ca_not_after) = cert_info(&secret_field(&secret, "ca.crt")?)?;
    ensure((ca_not_after - now - 3650 * DAY).abs() < 2 * DAY, || {
        format!("CA valid {} days", (ca_not_after - now) / DAY)
    })?;
    let policy_cm = get(env, &["-n", ns, "configmap", &format!("{name}-policy")])?;

    // Upgrade: the Secret is looked up and reused, the caBundle does not change.
    let upgrade = |extra: &[&str]| -> Result<Value> {
        let mut args = vec!["upgrade", name, chart.as_str()];
        args.extend_from_slice(&common);
        args.extend_from_slice(extra);
        run_ok(env, bin, &args, None)?;
        get(env, &["-n", ns, "secret", &format!("{name}-tls")])
    };
    let after = upgrade(&[])?;
    ensure(after["data"] == secret["data"], || {
        "helm upgrade replaced the certificate".into()
    })?;
    ensure(webhook_ca_bundles(env, name)? == bundles, || {
        "helm upgrade changed the caBundle".into()
    })?;
    // An upgrade within renewBeforeDays of expiry re-issues the serving certificate from the
    // same CA: new tls.crt, same ca.crt and caBundle.
    let renewed = upgrade(&["--set", "certs.selfManaged.renewBeforeDays=400"])?;
    ensure(
        renewed["data"]["tls.crt"] != secret["data"]["tls.crt"]
            && renewed["data"]["ca.crt"] == secret["data"]["ca.crt"]
            && renewed["data"]["ca.key"] == secret["data"]["ca.key"],
        || "renewal did not re-issue the serving certificate from the same CA".into(),
    )?;
    ensure(webhook_ca_bundles(env, name)? == bundles, || {
        "renewal changed the caBundle".into()
    })?;
    let again = upgrade(&[])?;
    ensure(again["data"] == renewed["data"], || {
        "the renewed certificate was not kept by the next upgrade".into()
    })?;
    let final_deploy = get(env, &["-n", ns, "deployment", name])?;
    let final_cm = get(env, &["-n", ns, "configmap", &format!("{name}-policy")])?;
    ensure(final_cm["data"] == policy_cm["data"], || {
        "policy changed across upgrades".into()
    })?;

    // Uninstall: no webhook configuration may stay behind.
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
    ensure(
        env.cluster
            .get_json(&["-n", ns, "secret", &format!("{name}-tls")])
            .is_none(),
        || "Secret left behind".into(),
    )?;
    eprintln!(
        "e2e:   {bin}: install, 3 upgrades (caBundle stable, certificate renewed from the same CA), uninstall in {:.1}s; nothing left behind",
        window.as_secs_f64()
    );
    let _ = env
        .cluster
        .kubectl(&["delete", "namespace", ns, "--wait=false"]);

    // What kwok cannot show: the container itself, with the installed Secret and ConfigMap.
    run_container_locally(env, bin, ns, &final_deploy, &again, &final_cm, &svc_host)?;

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

/// SIMULATION of the kubelet for hookguard's container: runs the binary cargo built with the
/// Deployment's exact arguments and environment, volumes mounted from the release's Secret and
/// ConfigMap, ports mapped to free loopback ports. Checks the probes, a TLS handshake verified
/// against the caBundle for the Service name, an admission review, and the SIGTERM sequence.
fn run_container_locally(
    env: &Env,
    bin: &str,
    ns: &str,
    deploy: &Value,
    secret: &Value,
    configmap: &Value,
    svc_host: &str,
) -> Result<()> {
    let root = env.cluster.work.join(format!("chart-pod-{bin}"));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    let spec = &deploy["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    ensure(c["command"].is_null(), || {
        "the container overrides the image's entrypoint".into()
    })?;
    let mut args: Vec<String> = c["args"]
        .as_array()
        .ok_or("container has no args")?
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();

    // Volumes.
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
        if vol["secret"]["secretName"].is_string() {
            ensure(
                vol["secret"]["secretName"] == secret["metadata"]["name"],
                || format!("mounts Secret {}", vol["secret"]["secretName"]),
            )?;
            let files = secret["data"]
                .as_object()
                .ok_or("Secret without data")?
                .iter()
                .map(|(k, v)| Ok((k.clone(), b64(v.as_str().unwrap_or_default())?)))
                .collect::<Result<Vec<_>>>()?;
            kubelet_volume(&local, &files)?;
        } else if vol["configMap"]["name"].is_string() {
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
            return Err(format!("unsupported volume {vol}"));
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

    // Environment: only what the container spec sets.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookguard"));
    cmd.args(&args).env_clear();
    for e in c["env"].as_array().into_iter().flatten() {
        let key = e["name"].as_str().unwrap_or_default();
        if let Some(v) = e["value"].as_str() {
            cmd.env(key, v);
        } else if e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace" {
            cmd.env(key, ns);
        } else {
            return Err(format!("unsupported env {e}"));
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
    let result = (|| -> Result<()> {
        let ready = format!("127.0.0.1:{ready_port}");
        wait_for(
            "the container's readinessProbe",
            Duration::from_secs(20),
            || http_get(&ready, &ready_path).filter(|(s, _)| *s == 200),
        )
        .map_err(|e| format!("{e}; log:\n{}", log_tail()))?;
        let live = http_get(&format!("127.0.0.1:{live_port}"), &live_path);
        ensure(live.as_ref().is_some_and(|(s, _)| *s == 200), || {
            format!("livenessProbe {live_path}: {live:?}")
        })?;
        let metrics = http_get(&ready, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        ensure(metrics.contains("hookguard_build_info"), || {
            "no hookguard metrics on the metrics port".into()
        })?;

        // TLS as the API server does it: the caBundle, the Service's DNS name.
        let ca = b64(secret["data"]["ca.crt"].as_str().unwrap_or_default())?;
        let review = fs::read(repo().join("tests/fixtures/job-migrate-create.json"))
            .map_err(|e| e.to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let response: Value = rt.block_on(async {
            let client = reqwest::Client::builder()
                .use_rustls_tls()
                .tls_built_in_root_certs(false)
                .add_root_certificate(
                    reqwest::Certificate::from_pem(&ca).map_err(|e| e.to_string())?,
                )
                .resolve(svc_host, ([127, 0, 0, 1], https).into())
                .https_only(true)
                .build()
                .map_err(|e| e.to_string())?;
            client
                .post(format!("https://{svc_host}:{https}/mutate"))
                .header("Content-Type", "application/json")
                .body(review)
                .send()
                .await
                .map_err(|e| format!("TLS request to https://{svc_host}: {e:?}"))?
                .error_for_status()
                .map_err(|e| e.to_string())?
                .json::<Value>()
                .await
                .map_err(|e| e.to_string())
        })?;
        ensure(
            response["response"]["allowed"] == true
                && response["response"]["patch"]
                    .as_str()
                    .is_some_and(|p| !p.is_empty()),
            || format!("admission response {response}"),
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
            "e2e:   the Deployment's container, run locally (SIMULATION of the kubelet): ready, TLS verified for {svc_host} with the caBundle, review patched, SIGTERM -> exit 0 after {:.1}s",
            took.as_secs_f64()
        );
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result.map_err(|e| format!("{e}\nhookguard log:\n{}", log_tail()))
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
    ensure(
        !docs
            .iter()
            .any(|d| d["kind"] == "Secret" && d["metadata"]["name"] == "hookguard-tls"),
        || "deploy/ must not embed a generated key".into(),
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

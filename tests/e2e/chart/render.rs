//! 11-chart-lint-render-and-schema: `helm lint --strict`, then `helm template` with one value set
//! per feature, each checked for what it must render; then the bad values (schema.rs) and the
//! alerts' metric names (alerts.rs).

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

use serde_json::Value;

use super::alerts::{self, BASE_ALERTS, alert_names};
use super::deployment::{
    Tls, check_controller_deployment, check_deployment, container_args, forbid_arg, require_args,
};
use super::rbac::{Grant, check_rbac};
use super::{
    EXISTING_SECRET, MONITORING_AND_NETPOL, NS, REL, all_webhooks, chart,
    check_dashboard_configmap, client_ca, kinds, named, of_kind, one, render, render_values,
    run_ok, schema, set, strings, webhooks,
};
use crate::Env;
use crate::proc::{Result, ensure, out_text};
use crate::tools::repo;

/// The certificate mode of the defaults, for release `hookguard` in namespace `hookguard`.
const SELF_MANAGED: Tls<'static> = Tls::SelfManaged {
    fullname: REL,
    ns: NS,
};

/// Everything the default values render.
const DEFAULT_KINDS: [&str; 11] = [
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
];

pub(super) fn lint_render_and_schema(env: &Env) -> Result<()> {
    helm_lint_is_clean(env, "helm")?;
    helm_lint_is_clean(env, "helm4")?;
    for bin in ["helm", "helm4"] {
        defaults(env, bin)?;
    }
    policy_override(env)?;
    namespace_label_overrides(env)?;
    cert_manager(env)?;
    existing_secret(env)?;
    cert_manager_without_inventory(env)?;
    every_switch_reaches_its_flag(env)?;
    janitor_with_leader_election(env)?;
    dashboard_values(env)?;
    webhook_url(env)?;
    count_deletes_values(env)?;
    client_ca::client_ca_values(env)?;
    one_replica(env)?;
    monitoring_and_network_policy(env)?;
    alerts_follow_features(env)?;
    schema::bad_values_are_rejected(env)?;
    // Last, because it needs hookguard's newest metric families.
    alerts::alerts_use_exported_metrics(env)
}

/// The webhook's Deployment, checked for `tls` and `api` with the defaults' two replicas and
/// ConfigMap `hookguard-policy`, and for carrying none of the controller's flags; returned for
/// further checks.
fn rendered_deployment<'a>(docs: &'a [Value], tls: Tls, api: bool) -> Result<&'a Value> {
    let deploy = named(docs, "Deployment", REL)?;
    check_deployment(deploy, 2, tls, "hookguard-policy", api)?;
    let args = container_args(deploy);
    for flag in [
        "--inventory",
        "--lease",
        "--leader-election",
        "--janitor",
        "--orphan-detection",
        "--metrics-release-label",
    ] {
        forbid_arg(&args, flag)?;
    }
    Ok(deploy)
}

/// The controller's Deployment (checked) and its arguments.
fn controller_args(docs: &[Value]) -> Result<Vec<String>> {
    let deploy = named(docs, "Deployment", CONTROLLER)?;
    check_controller_deployment(deploy, REL, 1)?;
    Ok(container_args(deploy))
}

const CONTROLLER: &str = "hookguard-controller";

fn helm_lint_is_clean(env: &Env, bin: &str) -> Result<()> {
    let out = run_ok(env, bin, &["lint", "--strict", chart()], None)?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure(
        !text.contains("[WARNING]") && !text.contains("[ERROR]"),
        || format!("{bin} lint --strict: {text}"),
    )
}

/// Defaults (certs.mode=selfManaged, inventory with leader election), Helm 3 or Helm 4.
fn defaults(env: &Env, bin: &str) -> Result<()> {
    let docs = render(env, bin, REL, NS, &[])?;
    ensure(kinds(&docs) == set(&DEFAULT_KINDS), || {
        format!("{bin} default kinds {:?}", kinds(&docs))
    })?;
    default_webhooks(bin, &docs)?;
    rendered_deployment(&docs, SELF_MANAGED, true)?;
    let args = controller_args(&docs)?;
    require_args(
        &args,
        &[
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
        forbid_arg(&args, flag)?;
    }
    check_rbac(
        &docs,
        REL,
        NS,
        &[
            Grant::Certs,
            Grant::Lease,
            Grant::Inventory,
            Grant::History,
            Grant::Orphans,
        ],
    )?;
    ensure(
        one(&docs, "PodDisruptionBudget")?["spec"]["minAvailable"] == 1,
        || "PDB minAvailable".into(),
    )?;
    default_service(&docs)?;
    // Other pods using the ServiceAccounts do not get the token; hookguard's pods opt in.
    for sa in [REL, CONTROLLER] {
        ensure(
            named(&docs, "ServiceAccount", sa)?["automountServiceAccountToken"] == false,
            || format!("ServiceAccount {sa} automounts its token"),
        )?;
    }
    check_dashboard_configmap(named(&docs, "ConfigMap", "hookguard-dashboard")?, NS)?;
    default_policy(env, &docs)
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

/// Every webhook calls the Service, without a caBundle, skipping kube-system and the release's
/// own namespace, with the same matchConditions; mutating fails open, validating closed; DELETEs
/// only reach the fail-open count-deletes webhook.
fn default_webhooks(bin: &str, docs: &[Value]) -> Result<()> {
    let all = all_webhooks(docs);
    ensure(
        names(&all)
            == [
                "mutate.hookguard.io",
                "validate.hookguard.io",
                "count-deletes.hookguard.io",
            ],
        || format!("{bin}: webhooks {:?}", names(&all)),
    )?;
    for w in &all {
        // hookguard patches it in; a rendered value would be put back by every upgrade.
        ensure(w["clientConfig"]["caBundle"].is_null(), || {
            format!("{bin}: selfManaged renders a caBundle")
        })?;
        ensure(
            w["clientConfig"]["service"]["name"] == REL
                && w["clientConfig"]["service"]["namespace"] == NS
                && w["clientConfig"]["service"]["port"] == 443,
            || format!("clientConfig {}", w["clientConfig"]),
        )?;
        ensure(excluded_namespaces(w) == set(&["kube-system", NS]), || {
            format!("excluded namespaces {:?}", excluded_namespaces(w))
        })?;
        ensure(
            w["matchConditions"] == all[0]["matchConditions"]
                && strings_at(&w["matchConditions"], "name")
                    == ["helm-hooks-only", "not-being-deleted"],
            || format!("{}: matchConditions {}", w["name"], w["matchConditions"]),
        )?;
    }
    let (m, v) = webhooks(docs)?;
    let count = all[2];
    ensure(
        m["failurePolicy"] == "Ignore" && v["failurePolicy"] == "Fail",
        || "default failure policies changed".into(),
    )?;
    ensure(
        operations(m) == ["CREATE", "UPDATE"]
            && operations(v) == ["CREATE", "UPDATE"]
            && m["timeoutSeconds"] == 5
            && v["timeoutSeconds"] == 5,
        || format!("{bin}: mutate/validate rules {} {}", m["rules"], v["rules"]),
    )?;
    ensure(
        operations(count) == ["DELETE"]
            && count["failurePolicy"] == "Ignore"
            && count["timeoutSeconds"] == 2
            && count["clientConfig"]["service"]["path"] == "/validate",
        || format!("{bin}: count-deletes webhook {count}"),
    )?;
    no_fail_closed_delete(docs)
}

fn names<'a>(webhooks: &[&'a Value]) -> Vec<&'a str> {
    webhooks.iter().filter_map(|w| w["name"].as_str()).collect()
}

/// The `field` of every element of a JSON array.
fn strings_at(array: &Value, field: &str) -> Vec<String> {
    array
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e[field].as_str().map(str::to_owned))
        .collect()
}

/// The operations of all rules of a webhook.
fn operations(webhook: &Value) -> Vec<String> {
    webhook["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| strings(&r["operations"]))
        .collect()
}

/// No webhook that fails closed is ever called for a DELETE.
fn no_fail_closed_delete(docs: &[Value]) -> Result<()> {
    for w in all_webhooks(docs) {
        let ops = operations(w);
        ensure(
            w["failurePolicy"] != "Fail" || !ops.iter().any(|o| o == "DELETE" || o == "*"),
            || format!("{} fails closed on DELETE: {ops:?}", w["name"]),
        )?;
    }
    Ok(())
}

/// webhook.countDeletes: off, no webhook sees DELETE at all; with both webhooks on Fail the count
/// stays on Ignore, with its own timeout.
fn count_deletes_values(env: &Env) -> Result<()> {
    let docs = render_values(env, &["webhook.countDeletes.enabled=false"])?;
    let all = all_webhooks(&docs);
    ensure(
        names(&all) == ["mutate.hookguard.io", "validate.hookguard.io"]
            && !all
                .iter()
                .any(|w| operations(w).contains(&"DELETE".to_owned())),
        || format!("countDeletes.enabled=false renders {:?}", names(&all)),
    )?;
    let docs = render_values(
        env,
        &[
            "webhook.mutating.failurePolicy=Fail",
            "webhook.countDeletes.timeoutSeconds=1",
        ],
    )?;
    no_fail_closed_delete(&docs)?;
    let count = all_webhooks(&docs)[2];
    ensure(
        count["failurePolicy"] == "Ignore" && count["timeoutSeconds"] == 1,
        || format!("count-deletes webhook {count}"),
    )
}

/// The Service exposes the webhook on 443 and the metrics on 8080, by port name.
fn default_service(docs: &[Value]) -> Result<()> {
    let svc = named(docs, "Service", REL)?;
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
    )
}

/// The policy in ConfigMap `hookguard-policy`.
fn policy_text(docs: &[Value]) -> Result<String> {
    Ok(
        named(docs, "ConfigMap", "hookguard-policy")?["data"]["policy.yaml"]
            .as_str()
            .ok_or("ConfigMap has no policy.yaml")?
            .to_owned(),
    )
}

fn parse_yaml(text: &str) -> Result<Value> {
    serde_saphyr::from_str::<Value>(text).map_err(|e| e.to_string())
}

/// The ConfigMap's policy is examples/policy.yaml (the built-in defaults), and hookguard itself
/// accepts it.
fn default_policy(env: &Env, docs: &[Value]) -> Result<()> {
    let policy_text = policy_text(docs)?;
    let example =
        fs::read_to_string(repo().join("examples/policy.yaml")).map_err(|e| e.to_string())?;
    ensure(parse_yaml(&policy_text)? == parse_yaml(&example)?, || {
        format!("chart policy differs from examples/policy.yaml:\n{policy_text}")
    })?;
    hookguard_accepts_policy(env, &policy_text)
}

/// A policy override through --set reaches the ConfigMap, and hookguard accepts the result.
fn policy_override(env: &Env) -> Result<()> {
    let docs = render_values(
        env,
        &[
            "policy.rules.image-tag=enforce",
            "policy.jobTtl.defaultSeconds=300",
        ],
    )?;
    let text = named(&docs, "ConfigMap", "hookguard-policy")?["data"]["policy.yaml"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let policy = parse_yaml(&text)?;
    ensure(
        policy["rules"]["image-tag"] == "enforce"
            && policy["rules"]["pod-security"] == "enforce"
            && policy["jobTtl"]["defaultSeconds"] == 300
            && policy["jobTtl"]["floorSeconds"] == 60,
        || format!("policy override not merged: {policy}"),
    )?;
    hookguard_accepts_policy(env, &text)
}

/// policy.overrides with a namespaceSelector: the webhook gets --namespace-labels, a token and
/// read access to Namespaces, also in a certificate mode that needs no API otherwise; overrides
/// by name only need none of it. policyExceptions.enabled: list/watch of HookPolicyExceptions.
fn namespace_label_overrides(env: &Env) -> Result<()> {
    const BY_LABEL: [&str; 2] = [
        "policy.overrides[0].namespaceSelector.matchLabels.tier=strict",
        "policy.overrides[0].rules.image-tag=enforce",
    ];
    let docs = render_values(env, &BY_LABEL)?;
    let args = container_args(rendered_deployment(&docs, SELF_MANAGED, true)?);
    require_args(&args, &["--namespace-labels"])?;
    check_rbac(
        &docs,
        REL,
        NS,
        &[
            Grant::Certs,
            Grant::NamespaceLabels,
            Grant::Lease,
            Grant::Inventory,
            Grant::History,
            Grant::Orphans,
        ],
    )?;
    let text = named(&docs, "ConfigMap", "hookguard-policy")?["data"]["policy.yaml"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    hookguard_accepts_policy(env, &text)?;

    let docs = render_values(
        env,
        &[
            &BY_LABEL[..],
            &["certs.mode=certManager", "inventory.enabled=false"],
        ]
        .concat(),
    )?;
    let args = container_args(rendered_deployment(
        &docs,
        Tls::Mounted("hookguard-tls"),
        true,
    )?);
    require_args(&args, &["--namespace-labels"])?;
    check_rbac(&docs, REL, NS, &[Grant::NamespaceLabels])?;

    let docs = render_values(
        env,
        &[
            "policy.overrides[0].namespaces[0]=team-*",
            "policy.overrides[0].rules.image-tag=enforce",
            "certs.mode=certManager",
            "inventory.enabled=false",
        ],
    )?;
    let args = container_args(rendered_deployment(
        &docs,
        Tls::Mounted("hookguard-tls"),
        false,
    )?);
    forbid_arg(&args, "--namespace-labels")?;
    forbid_arg(&args, "--policy-exceptions")?;
    check_rbac(&docs, REL, NS, &[])?;

    // HookPolicyExceptions: the webhook watches them, with a token, and nothing more.
    let docs = render_values(
        env,
        &[
            "policyExceptions.enabled=true",
            "certs.mode=certManager",
            "inventory.enabled=false",
        ],
    )?;
    let args = container_args(rendered_deployment(
        &docs,
        Tls::Mounted("hookguard-tls"),
        true,
    )?);
    require_args(&args, &["--policy-exceptions"])?;
    check_rbac(&docs, REL, NS, &[Grant::PolicyExceptions])?;

    // The controller's policy re-check: the policy file mounted, the records readable; and its
    // Events.
    let docs = render_values(
        env,
        &["policyRecheck.enabled=true", "controller.events=true"],
    )?;
    require_args(
        &controller_args(&docs)?,
        &[
            "--policy-recheck",
            "--config=/etc/hookguard/policy/policy.yaml",
            "--recheck-interval=10m",
            "--reports=openreports",
            "--events",
        ],
    )?;
    check_rbac(
        &docs,
        REL,
        NS,
        &[
            Grant::Certs,
            Grant::Lease,
            Grant::Inventory,
            Grant::History,
            Grant::Orphans,
            Grant::PolicyRecheck,
            Grant::Events,
        ],
    )
}

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

/// certManager: the four cert-manager objects, CA injection, no caBundle, the Secret mounted;
/// RBAC only for the inventory.
fn cert_manager(env: &Env) -> Result<()> {
    let docs = render_values(env, &["certs.mode=certManager"])?;
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
            cfg["webhooks"]
                .as_array()
                .is_some_and(|ws| ws.iter().all(|w| w["clientConfig"]["caBundle"].is_null())),
            || format!("{kind} has a caBundle the cainjector would fight with"),
        )?;
    }
    // The webhook does not call the API in this mode: no token, no RBAC of its own.
    rendered_deployment(&docs, Tls::Mounted("hookguard-tls"), false)?;
    controller_args(&docs)?;
    check_rbac(
        &docs,
        REL,
        NS,
        &[
            Grant::Lease,
            Grant::Inventory,
            Grant::History,
            Grant::Orphans,
        ],
    )
}

/// existingSecret: the given Secret mounted, the given caBundle used.
fn existing_secret(env: &Env) -> Result<()> {
    let docs = render_values(env, EXISTING_SECRET)?;
    ensure(
        of_kind(&docs, "Secret").is_empty()
            && of_kind(&docs, "Certificate").is_empty()
            && of_kind(&docs, "Issuer").is_empty(),
        || format!("existingSecret mode renders {:?}", kinds(&docs)),
    )?;
    ensure(
        all_webhooks(&docs)
            .iter()
            .all(|w| w["clientConfig"]["caBundle"] == "QUJD"),
        || "webhook.caBundle not used by every webhook".into(),
    )?;
    rendered_deployment(&docs, Tls::Mounted("my-tls"), false)?;
    Ok(())
}

/// certManager without the inventory: nothing calls the API, so no RBAC, no token and no
/// controller.
fn cert_manager_without_inventory(env: &Env) -> Result<()> {
    let docs = render_values(env, &["certs.mode=certManager", "inventory.enabled=false"])?;
    rendered_deployment(&docs, Tls::Mounted("hookguard-tls"), false)?;
    check_rbac(&docs, REL, NS, &[])?;
    ensure(
        of_kind(&docs, "Deployment").len() == 1
            && of_kind(&docs, "ServiceAccount").len() == 1
            && named(&docs, "Service", CONTROLLER).is_err(),
        || format!("no inventory, yet a controller: {:?}", kinds(&docs)),
    )
}

/// Without leader election and orphan detection, with the janitor (dry run) and without the
/// namespace and release labels: every switch reaches its flag and its RBAC rule.
fn every_switch_reaches_its_flag(env: &Env) -> Result<()> {
    let docs = render_values(
        env,
        &[
            "leaderElection.enabled=false",
            "inventory.orphanDetection=false",
            "janitor.enabled=true",
            "janitor.namespaces={team-*,ci}",
            "janitor.dryRun=true",
            "metrics.namespaceLabel=false",
            "metrics.releaseLabel=false",
        ],
    )?;
    let args = container_args(rendered_deployment(&docs, SELF_MANAGED, true)?);
    require_args(&args, &["--metrics-namespace-label=false"])?;
    check_rbac(
        &docs,
        REL,
        NS,
        &[
            Grant::Certs,
            Grant::Inventory,
            Grant::History,
            Grant::Janitor(&["team-*", "ci"]),
        ],
    )?;
    let args = controller_args(&docs)?;
    require_args(
        &args,
        &[
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
    forbid_arg(&args, "--lease")
}

/// The janitor with leader election: it shares the Lease with the inventory. A list of names
/// (one repeated) gets one Role per namespace, not a cluster-wide delete.
fn janitor_with_leader_election(env: &Env) -> Result<()> {
    let docs = render_values(
        env,
        &["janitor.enabled=true", "janitor.namespaces={ci,nightly,ci}"],
    )?;
    check_rbac(
        &docs,
        REL,
        NS,
        &[
            Grant::Certs,
            Grant::Lease,
            Grant::Inventory,
            Grant::History,
            Grant::Orphans,
            Grant::Janitor(&["ci", "nightly"]),
        ],
    )?;
    let args = controller_args(&docs)?;
    require_args(&args, &["--janitor", "--lease-name=hookguard"])?;
    forbid_arg(&args, "--janitor-dry-run")
}

/// The dashboard ConfigMap: off, or in Grafana's namespace with the sidecar's folder annotation.
fn dashboard_values(env: &Env) -> Result<()> {
    let docs = render_values(env, &["grafanaDashboard.enabled=false"])?;
    ensure(
        named(&docs, "ConfigMap", "hookguard-dashboard").is_err(),
        || "grafanaDashboard.enabled=false still renders the dashboard".into(),
    )?;
    let docs = render_values(
        env,
        &[
            "grafanaDashboard.namespace=monitoring",
            "grafanaDashboard.annotations.grafana_folder=Platform",
        ],
    )?;
    let cm = named(&docs, "ConfigMap", "hookguard-dashboard")?;
    check_dashboard_configmap(cm, "monitoring")?;
    ensure(
        cm["metadata"]["annotations"]["grafana_folder"] == "Platform",
        || format!("dashboard annotations {}", cm["metadata"]["annotations"]),
    )
}

/// webhook.url (out of cluster): only the two webhook configurations, with the URL, and a
/// caBundle only when one is given (a publicly trusted certificate needs none).
fn webhook_url(env: &Env) -> Result<()> {
    let docs = render_values(
        env,
        &[
            "webhook.url=https://hookguard.example:8443/",
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
    let count = all_webhooks(&docs)[2];
    ensure(
        m["clientConfig"]["url"] == "https://hookguard.example:8443/mutate"
            && v["clientConfig"]["url"] == "https://hookguard.example:8443/validate"
            && count["clientConfig"] == v["clientConfig"]
            && m["clientConfig"]["service"].is_null()
            && m["clientConfig"]["caBundle"] == "QUJD",
        || format!("url mode clientConfig {}", m["clientConfig"]),
    )?;
    let docs = render_values(env, &["webhook.url=https://hookguard.example:8443"])?;
    let (m, v) = webhooks(&docs)?;
    ensure(
        m["clientConfig"]["caBundle"].is_null() && v["clientConfig"]["caBundle"].is_null(),
        || {
            format!(
                "url mode without webhook.caBundle renders one: {}",
                m["clientConfig"]
            )
        },
    )
}

/// One replica: no PodDisruptionBudget (minAvailable 1 of 1 would block every drain).
fn one_replica(env: &Env) -> Result<()> {
    let docs = render_values(env, &["replicas=1"])?;
    ensure(of_kind(&docs, "PodDisruptionBudget").is_empty(), || {
        "PDB rendered with one replica".into()
    })?;
    ensure(
        named(&docs, "Deployment", REL)?["spec"]["replicas"] == 1,
        || "replicas".into(),
    )
}

/// Monitoring and NetworkPolicy: the ServiceMonitor scrapes the metrics port, the webhook port is
/// open to all and the metrics port to the monitoring namespace, and every alert is rendered.
fn monitoring_and_network_policy(env: &Env) -> Result<()> {
    let docs = render_values(env, MONITORING_AND_NETPOL)?;
    let sm = one(&docs, "ServiceMonitor")?;
    ensure(
        sm["spec"]["endpoints"][0]["port"] == "metrics"
            && sm["spec"]["endpoints"][0]["path"] == "/metrics"
            && sm["spec"]["endpoints"][0]["honorLabels"] == true,
        || format!("ServiceMonitor {}", sm["spec"]),
    )?;
    // Both processes' Services are scraped under one job (the dashboard's and alerts' selector).
    let job_label = sm["spec"]["jobLabel"].as_str().ok_or("no jobLabel")?;
    for svc in [REL, CONTROLLER] {
        let svc = named(&docs, "Service", svc)?;
        let labels = &svc["metadata"]["labels"];
        ensure(
            labels[job_label] == REL
                && sm["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .is_some_and(|m| m.iter().all(|(k, v)| &labels[k] == v))
                && svc["spec"]["ports"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["name"] == "metrics")),
            || format!("ServiceMonitor does not scrape Service {}", svc["metadata"]),
        )?;
    }
    // The controller accepts connections on its admin port only, from the monitoring namespaces.
    let cnp = named(&docs, "NetworkPolicy", CONTROLLER)?;
    ensure(
        cnp["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            == "hookguard-controller"
            && cnp["spec"]["ingress"].as_array().is_some_and(|i| {
                i.len() == 1 && i[0]["ports"][0]["port"] == "metrics" && !i[0]["from"].is_null()
            }),
        || format!("controller NetworkPolicy {}", cnp["spec"]),
    )?;
    let np = named(&docs, "NetworkPolicy", REL)?;
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
    let rules = alerts::alerts(&docs)?;
    let mut want = set(&BASE_ALERTS);
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
    })
}

/// Alerts about features that are off are not rendered.
fn alerts_follow_features(env: &Env) -> Result<()> {
    let docs = render_values(
        env,
        &[
            MONITORING_AND_NETPOL,
            &["certs.mode=certManager", "inventory.enabled=false"],
        ]
        .concat(),
    )?;
    ensure(
        alert_names(&alerts::alerts(&docs)?) == set(&BASE_ALERTS),
        || {
            format!(
                "certManager without inventory: alerts {:?}",
                alert_names(&alerts::alerts(&docs).unwrap_or_default())
            )
        },
    )
}

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
//! The CRDs of cert-manager and prometheus-operator are stood in for by minimal CRDs
//! (`minimal-crds.yaml`).
//!
//! One file per concern: `render` (lint and template, one check per value set), `schema` (bad
//! values), `deployment` (what the chart promises about the pod), `rbac`, `alerts` (promtool, the
//! alert unit tests, exported metric names), `dry_run` (kube-apiserver's validation), `install`
//! (install/upgrade/uninstall), `container` (the Deployment's container run locally), `deploy`
//! (`deploy/` and its drift check), `client_ca` (webhook.clientCA rendered, and scenario 17: mutual
//! TLS through the API server). This file holds what several of them use.

mod alerts;
mod client_ca;
mod container;
mod deploy;
mod deployment;
mod dry_run;
mod install;
mod rbac;
mod render;
mod schema;

use std::collections::BTreeSet;
use std::fs;
use std::process::Output;
use std::sync::OnceLock;

use serde_json::Value;

use crate::proc::{Result, ensure};
use crate::tools::repo;
use crate::{Env, Scenario};

pub const ALL: &[Scenario] = &[
    (
        "11-chart-lint-render-and-schema",
        render::lint_render_and_schema,
    ),
    ("11-chart-server-dry-run", dry_run::server_dry_run),
    ("11-chart-prometheus-alerts", alerts::prometheus_alerts),
    ("11-chart-helm3-install-upgrade-uninstall", |env| {
        install::install_upgrade_uninstall(env, "helm")
    }),
    ("11-chart-helm4-install-upgrade-uninstall", |env| {
        install::install_upgrade_uninstall(env, "helm4")
    }),
    (
        "11-chart-deploy-manifests-current",
        deploy::deploy_manifests_current,
    ),
    (
        "17-mtls-client-certificates-from-the-api-server",
        client_ca::mutual_tls_through_the_api_server,
    ),
];

/// Release name and namespace of the renders that are not installed.
const REL: &str = "hookguard";
const NS: &str = "hookguard";

/// Values that turn on the ServiceMonitor, the PrometheusRule and the NetworkPolicy.
const MONITORING_AND_NETPOL: &[&str] = &[
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "networkPolicy.enabled=true",
];

/// certs.mode=existingSecret with what it needs: the Secret's name and the caBundle.
const EXISTING_SECRET: &[&str] = &[
    "certs.mode=existingSecret",
    "certs.existingSecret=my-tls",
    "webhook.caBundle=QUJD",
];

fn chart() -> &'static str {
    static CHART: OnceLock<String> = OnceLock::new();
    CHART.get_or_init(|| repo().join("charts/hookguard").display().to_string())
}

/// Runs a tool (kubectl, helm, helm4); Ok(output) on success, Err(all output) on failure.
fn run_ok(env: &Env, tool: &str, args: &[&str], stdin: Option<&str>) -> Result<Output> {
    env.cluster.run_ok(tool, args, stdin)
}

/// `--set` before each of `values` (`key=value`), for Helm.
fn set_args<'a>(values: &[&'a str]) -> Vec<&'a str> {
    values.iter().flat_map(|v| ["--set", *v]).collect()
}

/// `template <release> charts/hookguard --namespace <ns> <args>`.
fn template_args<'a>(release: &'a str, ns: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["template", release, chart(), "--namespace", ns];
    all.extend_from_slice(args);
    all
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
    let out = run_ok(env, bin, &template_args(release, ns, args), None)?;
    parse_docs(&String::from_utf8_lossy(&out.stdout))
}

/// Helm 3's render of release `hookguard` in namespace `hookguard` with `values` set.
fn render_values(env: &Env, values: &[&str]) -> Result<Vec<Value>> {
    render(env, "helm", REL, NS, &set_args(values))
}

/// The strings of a JSON array (none if it is not one).
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
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

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .ok_or_else(|| format!("no {kind} {name}"))
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Every webhook of every webhook configuration rendered.
fn all_webhooks(docs: &[Value]) -> Vec<&Value> {
    docs.iter()
        .filter(|d| {
            d["kind"] == "MutatingWebhookConfiguration"
                || d["kind"] == "ValidatingWebhookConfiguration"
        })
        .flat_map(|d| d["webhooks"].as_array().into_iter().flatten())
        .collect()
}

/// The first webhook of each of the two configurations: (mutating, validating).
fn webhooks(docs: &[Value]) -> Result<(&Value, &Value)> {
    Ok((
        &one(docs, "MutatingWebhookConfiguration")?["webhooks"][0],
        &one(docs, "ValidatingWebhookConfiguration")?["webhooks"][0],
    ))
}

/// The chart's Grafana dashboard (`dashboards/hookguard.json`).
fn dashboard_json() -> Result<Value> {
    let file = fs::read_to_string(repo().join("charts/hookguard/dashboards/hookguard.json"))
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&file).map_err(|e| e.to_string())
}

/// The dashboard ConfigMap carries the chart's dashboard JSON, labelled for Grafana's sidecar.
fn check_dashboard_configmap(cm: &Value, ns: &str) -> Result<()> {
    let want = dashboard_json()?;
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

/// `kubectl get <args> -o json`, parsed; Err when kubectl fails (e.g. not found).
fn get(env: &Env, args: &[&str]) -> Result<Value> {
    env.cluster
        .get_json(args)
        .ok_or_else(|| format!("kubectl get {} failed", args.join(" ")))
}

/// The caBundle of every webhook of the (mutating, validating) configurations called `name`
/// (`Cluster::webhook_ca_bundles`).
fn webhook_ca_bundles(env: &Env, name: &str) -> Result<Vec<String>> {
    Ok(env.cluster.webhook_ca_bundles(name))
}

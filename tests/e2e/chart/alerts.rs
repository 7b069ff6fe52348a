//! The chart's alerts and dashboard queries. 11-chart-prometheus-alerts: `promtool check rules` on
//! the rendered PrometheusRule and on the dashboard's queries, and `promtool test rules` with
//! `alert-tests.yaml`. Part of 11-chart-lint-render-and-schema: every alert uses only metrics the
//! running hookguard exports.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::{MONITORING_AND_NETPOL, dashboard_json, one, render_values};
use crate::Env;
use crate::hookguard::Served;
use crate::proc::{Result, ensure, out_text, wait_for};
use crate::scrape::exported_metric_names;
use crate::tools::prometheus_tool;

/// The alerts rendered whatever the features: the webhook, its certificate and its policy.
pub(super) const BASE_ALERTS: [&str; 6] = [
    "HookguardDown",
    "HookguardInvalidAdmissionRequests",
    "HookguardAdmissionLatencyHigh",
    "HookguardCertificateExpiringSoon",
    "HookguardConfigReloadFailed",
    "HookguardTLSReloadFailed",
];

/// promtool unit tests of the chart's alerts: healthy (none fires), broken, hooks and down; the
/// file's header says what each covers.
const ALERT_TESTS: &str = include_str!("alert-tests.yaml");

/// The alerts of a rendered PrometheusRule.
pub(super) fn alerts(docs: &[Value]) -> Result<Vec<Value>> {
    Ok(one(docs, "PrometheusRule")?["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect())
}

pub(super) fn alert_names(alerts: &[Value]) -> BTreeSet<String> {
    alerts
        .iter()
        .filter_map(|a| a["alert"].as_str().map(str::to_owned))
        .collect()
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

/// Every alert uses only metrics the running hookguard processes export (the suite's webhook
/// and a controller started for this; so none can silently never fire), and every metric that
/// should be alerted on is.
pub(super) fn alerts_use_exported_metrics(env: &Env) -> Result<()> {
    let rules = alerts(&render_values(
        env,
        &[MONITORING_AND_NETPOL, &["policyRecheck.enabled=true"]].concat(),
    )?)?;
    let webhook = {
        let hg = env.hookguard.lock().map_err(|e| e.to_string())?;
        hg.metrics()
    };
    // A hook the policy re-check reports (restartPolicy Always), so that its gauge has a series.
    const NS: &str = "e2e-unguarded-alerts";
    env.cluster.namespace(NS)?;
    env.cluster.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: recheck-me\n  namespace: {NS}\n  annotations:\n    helm.sh/hook: test\nspec:\n  containers: [{{name: c, image: registry.example/c:1}}]\n"
    ))?;
    let controller = Served::controller(
        "hookguard-alerts-controller",
        &env.cluster.work.join("alerts-controller"),
        &[
            format!("--kubeconfig={}", env.cluster.kubeconfig.display()),
            "--namespace=default".to_owned(),
            "--leader-election=false".to_owned(),
            "--policy-recheck".to_owned(),
        ],
        &[],
    )?;
    let rechecked = wait_for(
        "the policy re-check's first pass",
        Duration::from_secs(60),
        || {
            let m = controller.metrics();
            m.contains("hookguard_policy_violations{").then_some(m)
        },
    );
    controller.stop();
    let _ = env
        .cluster
        .kubectl(&["delete", "namespace", NS, "--wait=false"]);
    let controller_metrics = rechecked?;
    ensure(
        !webhook.is_empty() && !controller_metrics.is_empty(),
        || "cannot read the webhook's or the controller's /metrics".into(),
    )?;
    let mut exported = exported_metric_names(&webhook);
    exported.extend(exported_metric_names(&controller_metrics));
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
        format!("alerts use metrics neither running process exports: {unknown:?}")
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
        "hookguard_policy_violations",
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
    let dash = dashboard_json()?;
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
pub(super) fn prometheus_alerts(env: &Env) -> Result<()> {
    let promtool = prometheus_tool("promtool")?;
    let docs = render_values(
        env,
        &[
            "metrics.prometheusRule.enabled=true",
            "policyRecheck.enabled=true",
        ],
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

//! 11-chart-server-dry-run: kube-apiserver validates (and defaults) everything the chart renders,
//! for value sets that together render every kind, without storing anything; and a broken value
//! the schema cannot see is refused. Also the minimal CRDs deploy.rs needs for the same check.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{
    EXISTING_SECRET, MONITORING_AND_NETPOL, kinds, parse_docs, run_ok, set_args, template_args,
};
use crate::Env;
use crate::proc::{Result, ensure};

/// Minimal stand-ins for the CRDs of cert-manager and prometheus-operator (the file says how
/// minimal).
const MINIMAL_CRDS: &str = include_str!("minimal-crds.yaml");

const CRD_NAMES: [&str; 4] = [
    "crd/servicemonitors.monitoring.coreos.com",
    "crd/prometheusrules.monitoring.coreos.com",
    "crd/issuers.cert-manager.io",
    "crd/certificates.cert-manager.io",
];

/// The release the dry runs render.
const RELEASE: &str = "hookguard-chart";

/// Every kind (and the two named ConfigMaps) that some value set must have rendered, so that no
/// template escapes the API server's validation.
const MUST_SEE: [&str; 18] = [
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
];

pub(super) fn install_minimal_crds(env: &Env) -> Result<()> {
    env.cluster.apply(MINIMAL_CRDS)?;
    let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    args.extend_from_slice(&CRD_NAMES);
    run_ok(env, "kubectl", &args, None)?;
    Ok(())
}

pub(super) fn remove_minimal_crds(env: &Env) {
    let mut args = vec!["delete", "--ignore-not-found", "--wait=false"];
    args.extend_from_slice(&CRD_NAMES);
    let _ = env.cluster.kubectl(&args);
}

/// `kubectl apply --dry-run=server`: kube-apiserver validates (and defaults) every object
/// without storing it. Returns how many objects it accepted.
pub(super) fn server_dry_run_apply(env: &Env, yaml: &str) -> Result<usize> {
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

pub(super) fn server_dry_run(env: &Env) -> Result<()> {
    let ns = "hookguard-chart-dryrun";
    env.cluster.namespace(ns)?;
    install_minimal_crds(env)?;
    let result = (|| {
        let seen = value_sets_accepted(env, ns)?;
        for kind in MUST_SEE {
            ensure(seen.contains(kind), || format!("{kind} never checked"))?;
        }
        invalid_label_refused(env, ns)
    })();
    remove_minimal_crds(env);
    let _ = env
        .cluster
        .kubectl(&["delete", "namespace", ns, "--wait=false"]);
    result
}

/// Each value set is accepted object for object. Returns the kinds and `Kind/name`s rendered.
fn value_sets_accepted(env: &Env, ns: &str) -> Result<BTreeSet<String>> {
    let value_sets: [(&str, Vec<&str>); 4] = [
        (
            "defaults + janitor + monitoring + networkPolicy",
            [
                MONITORING_AND_NETPOL,
                &["janitor.enabled=true", "janitor.namespaces={team-*}"],
            ]
            .concat(),
        ),
        (
            "certManager + monitoring + networkPolicy",
            [MONITORING_AND_NETPOL, &["certs.mode=certManager"]].concat(),
        ),
        (
            "existingSecret, 1 replica, no inventory, client CA from a Secret",
            [
                EXISTING_SECRET,
                &[
                    "replicas=1",
                    "inventory.enabled=false",
                    "webhook.clientCA.enabled=true",
                    "webhook.clientCA.existingSecret=apiserver-client-ca",
                ],
            ]
            .concat(),
        ),
        (
            "webhook.url",
            vec![
                "webhook.url=https://hookguard.example:8443",
                "webhook.caBundle=QUJD",
            ],
        ),
    ];
    let mut seen = BTreeSet::new();
    for (name, values) in value_sets {
        let out = run_ok(
            env,
            "helm",
            &template_args(RELEASE, ns, &set_args(&values)),
            None,
        )?;
        let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
        let docs = parse_docs(&yaml)?;
        seen.extend(kinds(&docs));
        seen.extend(docs.iter().filter_map(kind_and_name));
        let accepted = server_dry_run_apply(env, &yaml)
            .map_err(|e| format!("{name}: the API server refuses the chart: {e}"))?;
        ensure(accepted == docs.len(), || {
            format!("{name}: {accepted} of {} objects accepted", docs.len())
        })?;
        eprintln!("e2e:   {name}: {accepted} objects accepted by kube-apiserver (dry run)");
    }
    Ok(seen)
}

fn kind_and_name(d: &Value) -> Option<String> {
    Some(format!(
        "{}/{}",
        d["kind"].as_str()?,
        d["metadata"]["name"].as_str()?
    ))
}

/// A broken value the schema cannot see is caught by the API server, not silently applied.
fn invalid_label_refused(env: &Env, ns: &str) -> Result<()> {
    let out = run_ok(
        env,
        "helm",
        &template_args(RELEASE, ns, &["--set-string", "podLabels.bad/label/key=x"]),
        None,
    )?;
    ensure(
        server_dry_run_apply(env, &String::from_utf8_lossy(&out.stdout)).is_err(),
        || "an invalid pod label was accepted: the dry run proves nothing".into(),
    )
}

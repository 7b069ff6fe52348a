//! Report objects after each policy re-check: OpenReports `Report` (`openreports.io/v1alpha1`,
//! `--reports openreports`) or the older wgpolicyk8s.io `PolicyReport` (`v1alpha2`, `--reports
//! policyreport`), one named `hookguard` per namespace with findings, so Policy Reporter and
//! other report UIs show them; the report of a namespace without findings is deleted. Results are
//! capped per report ([`MAX_RESULTS`]). When the CRD is not installed nothing is written.

use std::collections::{BTreeMap, BTreeSet};

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde_json::{Value, json};

use crate::impact::{From, Impact};

/// Results per Report, at most; the summary still counts every finding.
pub const MAX_RESULTS: usize = 1000;
const NAME: &str = "hookguard";
const MANAGER: &str = "hookguard-controller";
const LABEL: &str = "app.kubernetes.io/managed-by";

/// Which report format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    None,
    Openreports,
    Policyreport,
}

impl ReportFormat {
    /// (group, version, kind, plural); `None` for [`ReportFormat::None`].
    fn gvk(self) -> Option<(&'static str, &'static str, &'static str, &'static str)> {
        match self {
            ReportFormat::None => None,
            ReportFormat::Openreports => Some(("openreports.io", "v1alpha1", "Report", "reports")),
            ReportFormat::Policyreport => Some((
                "wgpolicyk8s.io",
                "v1alpha2",
                "PolicyReport",
                "policyreports",
            )),
        }
    }

    fn api_resource(self) -> Option<ApiResource> {
        let (group, version, kind, plural) = self.gvk()?;
        Some(ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, kind),
            plural,
        ))
    }
}

/// The report bodies in `format`, by namespace (pure).
pub fn reports(format: ReportFormat, impacts: &[Impact], now: i64) -> BTreeMap<String, Value> {
    let Some((group, version, kind, _)) = format.gvk() else {
        return BTreeMap::new();
    };
    let mut by_ns: BTreeMap<&str, Vec<&Impact>> = BTreeMap::new();
    for i in impacts.iter().filter(|i| !i.findings.is_empty()) {
        by_ns.entry(&i.namespace).or_default().push(i);
    }
    let mut out = BTreeMap::new();
    for (ns, impacts) in by_ns {
        let (mut fail, mut warn) = (0, 0);
        let mut results = Vec::new();
        for i in impacts {
            for f in &i.findings {
                let result = if f.action == "deny" { "fail" } else { "warn" };
                if result == "fail" {
                    fail += 1;
                } else {
                    warn += 1;
                }
                if results.len() >= MAX_RESULTS {
                    continue;
                }
                let mut properties = json!({
                    "from": match i.from { From::Live => "live", From::Release => "release" },
                    "effect": f.action,
                    "release": i.release,
                });
                if let Some(r) = i.revision {
                    properties["revision"] = r.to_string().into();
                }
                results.push(json!({
                    "source": "hookguard",
                    "policy": "hookguard",
                    "rule": f.rule,
                    "result": result,
                    "severity": if result == "fail" { "high" } else { "low" },
                    "scored": true,
                    "timestamp": {"seconds": now, "nanos": 0},
                    "message": f.message,
                    "resources": [{"kind": i.kind, "name": i.name, "namespace": ns}],
                    "properties": properties,
                }));
            }
        }
        let mut body = json!({
            "apiVersion": format!("{group}/{version}"),
            "kind": kind,
            "metadata": {"name": NAME, "namespace": ns, "labels": {LABEL: "hookguard"}},
            "summary": {"pass": 0, "fail": fail, "warn": warn, "error": 0, "skip": 0},
            "results": results,
        });
        // PolicyReport has no report-level source; each result names it.
        if format == ReportFormat::Openreports {
            body["source"] = "hookguard".into();
        }
        out.insert(ns.to_owned(), body);
    }
    out
}

/// Writes the Reports of one re-check and deletes those of namespaces without findings;
/// `written` carries the namespaces written last time (`None`: not known yet, listed).
pub async fn publish(
    client: &kube::Client,
    format: ReportFormat,
    impacts: &[Impact],
    now: i64,
    written: &mut Option<BTreeSet<String>>,
) {
    let Some(resource) = format.api_resource() else {
        return;
    };
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let previous = match written.take() {
        Some(w) => w,
        None => match all
            .list(&ListParams::default().labels(&format!("{LABEL}=hookguard")))
            .await
        {
            Ok(list) => list
                .items
                .iter()
                .filter_map(|r| r.metadata.namespace.clone())
                .collect(),
            Err(kube::Error::Api(e)) if e.code == 404 => {
                tracing::info!(kind = %resource.kind, group = %resource.group, "the report CRD is not installed: no reports written");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list hookguard's Reports; writing them anyway");
                BTreeSet::new()
            }
        },
    };
    let bodies = reports(format, impacts, now);
    let mut now_written = BTreeSet::new();
    for (ns, body) in &bodies {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
        match api
            .patch(
                NAME,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
        {
            Ok(_) => {
                now_written.insert(ns.clone());
            }
            Err(e) => tracing::warn!(namespace = %ns, error = %e, "cannot write the Report"),
        }
    }
    for ns in previous.difference(&now_written) {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
        match api.delete(NAME, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(namespace = %ns, error = %e, "cannot delete the stale Report"),
        }
    }
    *written = Some(now_written);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::LintFinding;

    #[test]
    fn one_report_per_namespace_with_a_result_per_finding_and_their_counts() {
        let impact = |ns: &str, from, action: &'static str| Impact {
            from,
            namespace: ns.into(),
            release: "shop".into(),
            revision: (from == From::Release).then_some(3),
            kind: "Job".into(),
            name: "shop-migrate".into(),
            api_version: "batch/v1".into(),
            uid: None,
            findings: vec![LintFinding {
                rule: "image-tag",
                action,
                message: "pin it".into(),
            }],
            error: None,
        };
        let r = reports(
            ReportFormat::Openreports,
            &[
                impact("shop", From::Release, "deny"),
                impact("shop", From::Live, "warn"),
                impact("other", From::Live, "mutate"),
            ],
            1_700_000_000,
        );
        assert_eq!(r.keys().collect::<Vec<_>>(), ["other", "shop"]);
        let shop = &r["shop"];
        assert_eq!(shop["summary"]["fail"], 1);
        assert_eq!(shop["summary"]["warn"], 1);
        let first = &shop["results"][0];
        assert_eq!(first["result"], "fail");
        assert_eq!(first["rule"], "image-tag");
        assert_eq!(first["properties"]["revision"], "3");
        assert_eq!(first["resources"][0]["name"], "shop-migrate");
        assert_eq!(r["other"]["results"][0]["properties"]["effect"], "mutate");
        assert_eq!(shop["source"], "hookguard");
        // The same findings as a wgpolicyk8s.io PolicyReport.
        let p = reports(
            ReportFormat::Policyreport,
            &[impact("shop", From::Release, "deny")],
            1,
        );
        assert_eq!(p["shop"]["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(p["shop"]["kind"], "PolicyReport");
        assert!(p["shop"]["source"].is_null());
        assert_eq!(p["shop"]["results"][0]["source"], "hookguard");
        assert!(reports(ReportFormat::None, &[impact("shop", From::Live, "deny")], 1).is_empty());
    }
}

//! Which Helm release a hook object belongs to. Hooks carry no Helm ownership metadata, so the
//! evidence is read in the order of HELM-HOOKS.md: the `app.kubernetes.io/instance` label, Flux's
//! `helm.toolkit.fluxcd.io/name` label, Argo CD's tracking id, and only then the field manager,
//! which names the tool but not the release. Without a release name the attribution is unknown:
//! never guessed from the namespace or the object's name.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const FLUX_NAME_LABEL: &str = "helm.toolkit.fluxcd.io/name";
pub const ARGO_TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";

/// Where the release name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    InstanceLabel,
    FluxLabel,
    ArgoTrackingId,
    /// No release name; `tool` may still say who created it.
    Unknown,
}

/// The tool that wrote the object, from its managed fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    Helm,
    Flux,
    ArgoCd,
}

impl Tool {
    fn from_manager(manager: &str) -> Option<Tool> {
        match manager {
            "helm" => Some(Tool::Helm),
            "helm-controller" => Some(Tool::Flux),
            "argocd-controller" | "argocd-application-controller" => Some(Tool::ArgoCd),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attribution {
    /// The release name, when some evidence names it.
    pub release: Option<String>,
    pub source: Source,
    pub tool: Option<Tool>,
}

impl Attribution {
    /// The release as a metric label value: `unknown` when not attributable.
    pub fn release_label(&self) -> &str {
        self.release.as_deref().unwrap_or("unknown")
    }

    /// Whether the release can be looked up among Helm's release records in the object's
    /// namespace. Argo CD renders charts without Helm releases, and a Flux HelmRelease's name
    /// need not be the Helm release's, so only Helm's own instance label qualifies.
    pub fn is_helm_release(&self) -> bool {
        self.source == Source::InstanceLabel
            && !matches!(self.tool, Some(Tool::ArgoCd) | Some(Tool::Flux))
    }
}

fn non_empty(v: Option<&String>) -> Option<String> {
    v.map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Attributes an object from its metadata.
pub fn attribute(meta: &ObjectMeta) -> Attribution {
    let labels = meta.labels.as_ref();
    let annotations = meta.annotations.as_ref();
    let tool = meta
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|f| f.manager.as_deref().and_then(Tool::from_manager))
        .next();
    let argo = annotations
        .and_then(|a| non_empty(a.get(ARGO_TRACKING_ANNOTATION)))
        // `<app>:<group>/<kind>:<namespace>/<name>`: the application comes first.
        .and_then(|id| id.split(':').next().map(str::to_owned))
        .filter(|app| !app.is_empty());
    let tool = tool.or(argo.as_ref().map(|_| Tool::ArgoCd));
    let (release, source) = if let Some(r) = labels.and_then(|l| non_empty(l.get(INSTANCE_LABEL))) {
        (Some(r), Source::InstanceLabel)
    } else if let Some(r) = labels.and_then(|l| non_empty(l.get(FLUX_NAME_LABEL))) {
        (Some(r), Source::FluxLabel)
    } else if let Some(app) = argo {
        (Some(app), Source::ArgoTrackingId)
    } else {
        (None, Source::Unknown)
    };
    Attribution {
        release,
        source,
        tool,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use std::collections::BTreeMap;

    fn meta(labels: &[(&str, &str)], annotations: &[(&str, &str)], manager: &str) -> ObjectMeta {
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        ObjectMeta {
            labels: map(labels),
            annotations: map(annotations),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some(manager.to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn the_instance_label_wins_and_is_a_helm_release() {
        let a = attribute(&meta(
            &[(INSTANCE_LABEL, "shop"), (FLUX_NAME_LABEL, "other")],
            &[],
            "helm",
        ));
        assert_eq!(a.release.as_deref(), Some("shop"));
        assert_eq!(a.source, Source::InstanceLabel);
        assert_eq!(a.tool, Some(Tool::Helm));
        assert!(a.is_helm_release());
    }

    #[test]
    fn flux_then_argo_then_unknown() {
        let flux = attribute(&meta(
            &[(FLUX_NAME_LABEL, "podinfo")],
            &[],
            "helm-controller",
        ));
        assert_eq!(
            (flux.release.as_deref(), flux.source, flux.tool),
            (Some("podinfo"), Source::FluxLabel, Some(Tool::Flux))
        );
        assert!(!flux.is_helm_release());
        let argo = attribute(&meta(
            &[],
            &[(ARGO_TRACKING_ANNOTATION, "guestbook:batch/Job:apps/migrate")],
            "kubectl",
        ));
        assert_eq!(
            (argo.release.as_deref(), argo.source, argo.tool),
            (
                Some("guestbook"),
                Source::ArgoTrackingId,
                Some(Tool::ArgoCd)
            )
        );
        // An instance label on an Argo CD object is no Helm release: no orphan lookups.
        let argo_labelled = attribute(&meta(
            &[(INSTANCE_LABEL, "guestbook")],
            &[],
            "argocd-controller",
        ));
        assert!(!argo_labelled.is_helm_release());
        let helm_only = attribute(&meta(&[], &[], "helm"));
        assert_eq!(helm_only.release, None);
        assert_eq!(helm_only.source, Source::Unknown);
        assert_eq!(helm_only.tool, Some(Tool::Helm));
        assert_eq!(helm_only.release_label(), "unknown");
        let nothing = attribute(&meta(&[(INSTANCE_LABEL, " ")], &[], "kubectl-create"));
        assert_eq!((nothing.release, nothing.tool), (None, None));
    }
}

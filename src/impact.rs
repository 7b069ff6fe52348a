//! `hookguard audit --policy FILE`: what a candidate policy would do, judged by the same engine,
//! to the hook objects that exist (as when they are created again) and to the hooks Helm will
//! create on a release's next upgrade, rollback or test (the manifests stored in its latest
//! revision). The judging is pure; [`collect`] lists the cluster page by page and keeps only the
//! results.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::api::{Api, ListParams, PartialObjectMeta};
use kube::{Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cluster::{each_listed, scoped};
use crate::helm_release::{self, HelmRelease};
use crate::hook::HOOK_ANNOTATION;
use crate::inventory::HelmDriver;
use crate::lint::{LintFinding, Source, lint_object};
use crate::policy::{Exception, Exceptions, Labels, Policy};

/// Where a judged hook comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum From {
    /// A hook object in the cluster.
    Live,
    /// A hook manifest stored in a release's latest revision.
    Release,
}

/// One hook and what the policy would do to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Impact {
    pub from: From,
    pub namespace: String,
    /// The Helm release (`unknown` for a live object without Helm's instance label).
    pub release: String,
    /// The release's revision the manifest is stored in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    pub kind: String,
    pub name: String,
    /// The object's apiVersion (as the manifest says).
    pub api_version: String,
    /// A live object's uid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub findings: Vec<LintFinding>,
    /// The object or record could not be judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Impact {
    pub fn denied(&self) -> bool {
        self.findings.iter().any(|f| f.action == "deny")
    }
}

/// A live hook object (as JSON), in a namespace with `labels`, with the HookPolicyExceptions
/// that exist.
pub fn judge_live(
    policy: &Policy,
    object: &Value,
    labels: Option<&Labels>,
    exceptions: Exceptions<'_>,
) -> Option<Impact> {
    let source = Source {
        name: "live",
        document: 1,
    };
    let linted = lint_object(policy, &source, object, None, labels, exceptions)?;
    let release = object["metadata"]["labels"]["app.kubernetes.io/instance"]
        .as_str()
        .unwrap_or("unknown")
        .to_owned();
    Some(Impact {
        from: From::Live,
        namespace: linted.namespace.unwrap_or_default(),
        release,
        revision: None,
        kind: linted.kind,
        name: linted.name,
        api_version: linted.api_version,
        uid: object["metadata"]["uid"].as_str().map(str::to_owned),
        findings: linted.findings,
        error: linted.error,
    })
}

/// The hooks stored in `release`; `labels` gives a namespace's labels.
pub fn judge_release<'l>(
    policy: &Policy,
    release: &HelmRelease,
    labels: impl Fn(&str) -> Option<&'l Labels>,
    exceptions: Exceptions<'_>,
) -> Vec<Impact> {
    let mut out = Vec::new();
    let source_name = format!("release {}/{}", release.namespace, release.name);
    for (i, hook) in release.hooks.iter().enumerate() {
        let base = Impact {
            from: From::Release,
            namespace: release.namespace.clone(),
            release: release.name.clone(),
            revision: Some(release.version),
            kind: hook.kind.clone(),
            name: hook.name.clone(),
            api_version: String::new(),
            uid: None,
            findings: Vec::new(),
            error: None,
        };
        // Read as the API server read it when Helm created the hook (YAML 1.1 scalars).
        let value: Value = match crate::yaml::decode_document(&hook.manifest) {
            Ok(v) => v,
            Err(e) => {
                out.push(Impact {
                    error: Some(format!("{}: not valid YAML: {e}", hook.path)),
                    ..base
                });
                continue;
            }
        };
        let namespace = value["metadata"]["namespace"]
            .as_str()
            .unwrap_or(&release.namespace)
            .to_owned();
        let source = Source {
            name: &source_name,
            document: i + 1,
        };
        if let Some(linted) = lint_object(
            policy,
            &source,
            &value,
            Some(&release.namespace),
            labels(&namespace),
            exceptions,
        ) {
            out.push(Impact {
                namespace,
                api_version: linted.api_version,
                findings: linted.findings,
                error: linted.error,
                ..base
            });
        }
    }
    out
}

/// The table: one line per finding (or error), then one line per release whose next upgrade
/// would be denied, and a summary.
pub fn render_table(impacts: &[Impact]) -> String {
    let mut out = format!(
        "{:<8} {:<20} {:<16} {:<4} {:<24} {:<7} {:<22} MESSAGE\n",
        "FROM", "NAMESPACE", "RELEASE", "REV", "OBJECT", "ACTION", "RULE"
    );
    let mut denied_releases: BTreeMap<(String, String), Vec<&'static str>> = BTreeMap::new();
    let (mut deny, mut warn, mut mutate) = (0, 0, 0);
    for i in impacts {
        let from = match i.from {
            From::Live => "live",
            From::Release => "release",
        };
        let rev = i.revision.map(|r| r.to_string()).unwrap_or_default();
        let object = format!("{}/{}", i.kind, i.name);
        if let Some(e) = &i.error {
            out.push_str(&format!(
                "{from:<8} {:<20} {:<16} {rev:<4} {object:<24} {:<7} {:<22} {e}\n",
                i.namespace, i.release, "error", "-"
            ));
        }
        for f in &i.findings {
            match f.action {
                "deny" => deny += 1,
                "warn" => warn += 1,
                _ => mutate += 1,
            }
            if f.action == "deny" && i.from == From::Release {
                let rules = denied_releases
                    .entry((i.namespace.clone(), i.release.clone()))
                    .or_default();
                if !rules.contains(&f.rule) {
                    rules.push(f.rule);
                }
            }
            out.push_str(&format!(
                "{from:<8} {:<20} {:<16} {rev:<4} {object:<24} {:<7} {:<22} {}\n",
                i.namespace, i.release, f.action, f.rule, f.message
            ));
        }
    }
    for ((ns, release), rules) in &denied_releases {
        out.push_str(&format!(
            "release {release} (namespace {ns}): its next upgrade would be denied by {}\n",
            rules.join(", ")
        ));
    }
    out.push_str(&format!(
        "{} hooks judged: {deny} denials, {warn} warnings, {mutate} changes\n",
        impacts.len()
    ));
    out
}

/// Lists what to judge: live hook Jobs and Pods in `namespace` (all when `None`) and the latest
/// revision of every release stored by `drivers`, page by page, keeping only the results.
pub async fn collect(
    client: &kube::Client,
    namespace: Option<&str>,
    drivers: &[HelmDriver],
    policy: &Policy,
) -> Result<Vec<Impact>, kube::Error> {
    let labels = if policy.uses_namespace_labels() {
        namespace_labels(client).await?
    } else {
        HashMap::new()
    };
    let granted = exceptions(client).await?;
    let exceptions = Exceptions {
        granted: &granted,
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    let mut out = Vec::new();
    live::<Job>(client, namespace, policy, &labels, exceptions, &mut out).await?;
    live::<Pod>(client, namespace, policy, &labels, exceptions, &mut out).await?;
    for &driver in drivers {
        let latest = match driver {
            HelmDriver::Secret => latest_records::<Secret>(client, namespace).await?,
            HelmDriver::Configmap => latest_records::<ConfigMap>(client, namespace).await?,
        };
        for (ns, record) in latest {
            let value = match driver {
                HelmDriver::Secret => Api::<Secret>::namespaced(client.clone(), &ns)
                    .get_opt(&record)
                    .await?
                    .and_then(|s| s.data?.remove("release"))
                    .map(|b| b.0),
                HelmDriver::Configmap => Api::<ConfigMap>::namespaced(client.clone(), &ns)
                    .get_opt(&record)
                    .await?
                    .and_then(|c| c.data?.remove("release"))
                    .map(String::into_bytes),
            };
            let Some(value) = value else { continue };
            match helm_release::decode(&value) {
                Ok(release) => out.extend(judge_release(
                    policy,
                    &release,
                    |n| labels.get(n),
                    exceptions,
                )),
                Err(e) => out.push(Impact {
                    from: From::Release,
                    namespace: ns.clone(),
                    release: record.clone(),
                    revision: None,
                    kind: String::new(),
                    name: record.clone(),
                    api_version: String::new(),
                    uid: None,
                    findings: Vec::new(),
                    error: Some(format!("release record {ns}/{record}: {e}")),
                }),
            }
        }
    }
    Ok(out)
}

/// The HookPolicyExceptions that exist and are valid (none while the CRD is not installed);
/// which of them count is the policy's decision, as in the webhook.
async fn exceptions(client: &kube::Client) -> Result<Vec<Exception>, kube::Error> {
    let api: Api<kube::api::DynamicObject> =
        Api::all_with(client.clone(), &crate::serve::exception_resource());
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list
            .items
            .iter()
            .filter_map(crate::serve::compile_exception)
            .collect()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Every Namespace's labels (for overrides that select by label).
async fn namespace_labels(client: &kube::Client) -> Result<HashMap<String, Labels>, kube::Error> {
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    let mut out = HashMap::new();
    each_listed(&api, ListParams::default().limit(500), |ns| {
        out.insert(ns.name_any(), ns.labels().clone());
    })
    .await?;
    Ok(out)
}

async fn live<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    policy: &Policy,
    labels: &HashMap<String, Labels>,
    exceptions: Exceptions<'_>,
    out: &mut Vec<Impact>,
) -> Result<(), kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = scoped(client, namespace);
    // The list drops each item's kind and apiVersion; the engine judges by kind.
    let dt = K::DynamicType::default();
    let (api_version, kind) = (K::api_version(&dt), K::kind(&dt));
    each_listed(&api, ListParams::default().limit(200), |obj| {
        if !obj.annotations().contains_key(HOOK_ANNOTATION) {
            return;
        }
        let Ok(mut value) = serde_json::to_value(obj) else {
            return;
        };
        value["apiVersion"] = api_version.as_ref().into();
        value["kind"] = kind.as_ref().into();
        let ns = obj.namespace().unwrap_or_default();
        out.extend(judge_live(policy, &value, labels.get(&ns), exceptions));
    })
    .await
}

/// The name of the latest release record per release (and its namespace), from a metadata-only
/// list: the records' contents are read one by one afterwards. Releases whose latest revision is
/// uninstalled are left out.
async fn latest_records<K>(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<Vec<(String, String)>, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<PartialObjectMeta<K>> = scoped(client, namespace);
    let mut latest: HashMap<(String, String), (u64, String, String)> = HashMap::new();
    let params = ListParams::default().labels("owner=helm").limit(500);
    each_listed(&api, params, |meta| {
        let l = meta.labels();
        let (Some(name), Some(version)) = (
            l.get("name"),
            l.get("version").and_then(|v| v.parse::<u64>().ok()),
        ) else {
            return;
        };
        let status = l.get("status").cloned().unwrap_or_default();
        let key = (meta.namespace().unwrap_or_default(), name.clone());
        let entry = latest
            .entry(key)
            .or_insert((0, String::new(), String::new()));
        if version >= entry.0 {
            *entry = (version, meta.name_any(), status);
        }
    })
    .await?;
    let mut out: Vec<(String, String)> = latest
        .into_iter()
        .filter(|(_, (_, _, status))| status != "uninstalled")
        .map(|((ns, _), (_, record, _))| (ns, record))
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helm_release::ReleaseHook;
    use crate::policy::Config;

    fn release(manifest: &str) -> HelmRelease {
        HelmRelease {
            name: "shop".into(),
            namespace: "apps".into(),
            version: 4,
            info: Default::default(),
            hooks: vec![ReleaseHook {
                name: "shop-migrate".into(),
                kind: "Job".into(),
                path: "shop/templates/migrate.yaml".into(),
                manifest: manifest.into(),
                events: vec!["pre-upgrade".into()],
            }],
        }
    }

    const MIGRATE: &str = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: shop-migrate\n  annotations:\n    helm.sh/hook: pre-upgrade\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: m\n          image: registry.example/m:latest\n";

    #[test]
    fn a_stored_hook_is_judged_in_its_releases_namespace_with_the_candidate_policy() {
        let policy = Config::from_yaml(
            "rules: {image-tag: \"off\"}\noverrides:\n  - namespaces: [apps]\n    rules: {image-tag: enforce}\n",
        )
        .unwrap();
        let impacts = judge_release(&policy, &release(MIGRATE), |_| None, Exceptions::default());
        assert_eq!(impacts.len(), 1);
        let i = &impacts[0];
        assert_eq!(
            (i.from, i.namespace.as_str(), i.revision),
            (From::Release, "apps", Some(4))
        );
        assert!(i.denied(), "{i:?}");
        let table = render_table(&impacts);
        assert!(
            table.contains(
                "release shop (namespace apps): its next upgrade would be denied by image-tag"
            ),
            "{table}"
        );
        // Elsewhere the same manifest is not denied.
        let mut other = release(MIGRATE);
        other.namespace = "shop".into();
        assert!(!judge_release(&policy, &other, |_| None, Exceptions::default())[0].denied());
    }

    #[test]
    fn a_platform_exception_is_honoured_in_the_prediction_too() {
        let policy = Config::from_yaml("rules: {image-tag: enforce}\n")
            .unwrap()
            .with_own_namespace("hookguard");
        let spec: crate::policy::ExceptionSpec = serde_saphyr::from_str(
            "rules: [image-tag]\nmatch: {names: [shop-migrate]}\nreason: pinned next sprint\n",
        )
        .unwrap();
        let granted = [crate::policy::Exception::new("hookguard", "x", &spec, None).unwrap()];
        let with = Exceptions {
            granted: &granted,
            now: 0,
        };
        assert!(
            judge_release(&policy, &release(MIGRATE), |_| None, Exceptions::default())[0].denied()
        );
        assert!(!judge_release(&policy, &release(MIGRATE), |_| None, with)[0].denied());
    }

    #[test]
    fn a_broken_manifest_is_reported_not_skipped() {
        let impacts = judge_release(
            &Policy::default(),
            &release("a: [b"),
            |_| None,
            Exceptions::default(),
        );
        assert!(
            impacts[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("not valid YAML"))
        );
    }

    #[test]
    fn a_live_object_keeps_its_release_and_namespace_labels_decide_overrides() {
        let policy = Config::from_yaml(
            "overrides:\n  - namespaceSelector: {matchLabels: {tier: strict}}\n    rules: {image-tag: enforce}\n",
        )
        .unwrap();
        let mut job: Value = serde_saphyr::from_str(MIGRATE).unwrap();
        job["metadata"]["namespace"] = "apps".into();
        job["metadata"]["labels"] = serde_json::json!({"app.kubernetes.io/instance": "shop"});
        let strict: Labels = [("tier".to_owned(), "strict".to_owned())].into();
        let i = judge_live(&policy, &job, Some(&strict), Exceptions::default()).unwrap();
        assert_eq!((i.release.as_str(), i.namespace.as_str()), ("shop", "apps"));
        assert!(i.denied());
        assert!(
            !judge_live(&policy, &job, None, Exceptions::default())
                .unwrap()
                .denied()
        );
    }
}

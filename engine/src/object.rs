//! A typed, borrowing view of only the parts of a Kubernetes object that the rules read.
//!
//! Parsing is the dominant cost of a webhook, so nothing here builds a generic JSON tree: strings
//! borrow from the request body where they can, unknown fields are skipped, and the `spec` is kept
//! as raw JSON until the engine knows the object is a Pod or a Job (other kinds, including custom
//! resources, may use any shape under `spec`, so it is never parsed for them).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::hook::HookAnnotations;

/// Label hookguard puts on every hook object it admits, so that watchers can select hooks.
pub const HOOK_LABEL: &str = "hookguard.io/hook";
/// Annotation listing the rule ids whose mutations hookguard applied.
pub const MUTATED_ANNOTATION: &str = "hookguard.io/mutated";
/// Annotation listing the rule ids an object is exempt from (`*` for all).
pub const EXEMPT_ANNOTATION: &str = "hookguard.io/exempt";

/// Deserializes an optional string, borrowing it from the input when it has no escapes.
/// (`#[serde(borrow)]` alone does not make `Option<Cow<str>>` borrow.)
pub fn opt_cow<'de: 'a, 'a, D>(d: D) -> Result<Option<Cow<'a, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'a>>::deserialize(d)?.map(|b| b.0))
}

/// Any Kubernetes object.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<'a> {
    #[serde(borrow, default, deserialize_with = "crate::object::opt_cow")]
    pub api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "crate::object::opt_cow")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub metadata: Option<Metadata<'a>>,
    /// Parsed only for Pods and Jobs (see the module comment).
    #[serde(borrow, default)]
    pub spec: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata<'a> {
    #[serde(borrow, default, deserialize_with = "crate::object::opt_cow")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "crate::object::opt_cow")]
    pub generate_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "crate::object::opt_cow")]
    pub namespace: Option<Cow<'a, str>>,
    /// `None` when the object has no labels map at all (a patch must then create it).
    #[serde(borrow, default)]
    pub labels: Option<Labels<'a>>,
    #[serde(borrow, default)]
    pub annotations: Option<Annotations<'a>>,
    /// Set once a delete was accepted and finalizers still hold the object.
    #[serde(borrow, default, deserialize_with = "crate::object::opt_cow")]
    pub deletion_timestamp: Option<Cow<'a, str>>,
}

/// The labels: the two hookguard reads by name, and every string-valued one (borrowed), for
/// HookPolicyExceptions that match objects by label.
#[derive(Debug, Default)]
pub struct Labels<'a> {
    pub hook: Option<Cow<'a, str>>,
    pub instance: Option<Cow<'a, str>>,
    pub all: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Labels<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(LabelsVisitor(std::marker::PhantomData))
    }
}

struct LabelsVisitor<'a>(std::marker::PhantomData<&'a ()>);

#[derive(Deserialize)]
struct BorrowedStr<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for LabelsVisitor<'a> {
    type Value = Labels<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a map of labels")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut m: M) -> Result<Labels<'a>, M::Error> {
        let mut labels = Labels::default();
        while let Some(BorrowedStr(key)) = m.next_key::<BorrowedStr<'de>>()? {
            // The two labels hookguard acts on must be strings (or null), as before; any other
            // label of another type is skipped (the API server would not have stored it).
            let value = match key.as_ref() {
                HOOK_LABEL | "app.kubernetes.io/instance" => {
                    m.next_value::<Option<BorrowedStr<'de>>>()?.map(|v| v.0)
                }
                _ => m.next_value::<LabelValue<'de>>()?.0,
            };
            let Some(value) = value else { continue };
            match key.as_ref() {
                HOOK_LABEL => labels.hook = Some(value.clone()),
                "app.kubernetes.io/instance" => labels.instance = Some(value.clone()),
                _ => {}
            }
            labels.all.push((key, value));
        }
        Ok(labels)
    }
}

/// A label value: a string, or anything else (skipped). Read as raw JSON first (it borrows),
/// then as a string only when it is one.
struct LabelValue<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for LabelValue<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        Ok(LabelValue(
            serde_json::from_str::<BorrowedStr<'de>>(raw.get())
                .ok()
                .map(|v| v.0),
        ))
    }
}

/// The annotations hookguard reads; all others are skipped while parsing.
#[derive(Debug, Default, Deserialize)]
pub struct Annotations<'a> {
    #[serde(
        rename = "helm.sh/hook",
        borrow,
        default,
        deserialize_with = "crate::object::opt_cow"
    )]
    pub hook: Option<Cow<'a, str>>,
    #[serde(
        rename = "helm.sh/hook-weight",
        borrow,
        default,
        deserialize_with = "crate::object::opt_cow"
    )]
    pub weight: Option<Cow<'a, str>>,
    #[serde(
        rename = "helm.sh/hook-delete-policy",
        borrow,
        default,
        deserialize_with = "crate::object::opt_cow"
    )]
    pub delete_policy: Option<Cow<'a, str>>,
    #[serde(
        rename = "helm.sh/hook-output-log-policy",
        borrow,
        default,
        deserialize_with = "crate::object::opt_cow"
    )]
    pub output_log_policy: Option<Cow<'a, str>>,
    #[serde(
        rename = "hookguard.io/exempt",
        borrow,
        default,
        deserialize_with = "crate::object::opt_cow"
    )]
    pub exempt: Option<Cow<'a, str>>,
    #[serde(
        rename = "hookguard.io/mutated",
        borrow,
        default,
        deserialize_with = "crate::object::opt_cow"
    )]
    pub mutated: Option<Cow<'a, str>>,
}

/// kube-apiserver refuses to store an object whose annotations, keys plus values, exceed this many
/// bytes (apimachinery's `TotalAnnotationSizeLimitB`). Mutating webhooks are called before that
/// check, validating webhooks after it.
pub const MAX_STORED_ANNOTATIONS_BYTES: usize = 256 * 1024;

impl Annotations<'_> {
    /// Keys plus values of the annotations read here: a lower bound of the object's total.
    pub fn bytes_read(&self) -> usize {
        [
            ("helm.sh/hook", &self.hook),
            ("helm.sh/hook-weight", &self.weight),
            ("helm.sh/hook-delete-policy", &self.delete_policy),
            ("helm.sh/hook-output-log-policy", &self.output_log_policy),
            ("hookguard.io/exempt", &self.exempt),
            ("hookguard.io/mutated", &self.mutated),
        ]
        .iter()
        .filter_map(|(key, value)| value.as_ref().map(|v| key.len() + v.len()))
        .sum()
    }
}

impl<'a> Object<'a> {
    pub fn annotations(&self) -> Option<&Annotations<'a>> {
        self.metadata.as_ref()?.annotations.as_ref()
    }

    /// Whether the API server would refuse to store this object for its annotations' size: no
    /// object it stores or sends to a validating webhook is like this, so hookguard does not
    /// parse them (a forged list of millions of items costs time, and the answer cannot matter).
    pub fn annotations_too_large(&self) -> bool {
        self.annotations()
            .is_some_and(|a| a.bytes_read() > MAX_STORED_ANNOTATIONS_BYTES)
    }

    /// The Helm hook annotations, or `None` when this is not a hook.
    pub fn hook(&self) -> Option<HookAnnotations> {
        let a = self.annotations()?;
        HookAnnotations::parse(
            a.hook.as_deref(),
            a.weight.as_deref(),
            a.delete_policy.as_deref(),
            a.output_log_policy.as_deref(),
        )
    }

    /// Whether the object is being deleted (it has a `deletionTimestamp`).
    pub fn is_terminating(&self) -> bool {
        self.metadata
            .as_ref()
            .is_some_and(|m| m.deletion_timestamp.is_some())
    }

    /// `name`, or `generateName*`, or `<unnamed>`: for messages.
    pub fn display_name(&self) -> String {
        let meta = self.metadata.as_ref();
        match (
            meta.and_then(|m| m.name.as_deref()),
            meta.and_then(|m| m.generate_name.as_deref()),
        ) {
            (Some(name), _) if !name.is_empty() => name.to_owned(),
            (_, Some(prefix)) if !prefix.is_empty() => format!("{prefix}*"),
            _ => "<unnamed>".to_owned(),
        }
    }
}

/// The Pod spec fields the rules read. Also the Job's `spec` (which adds the TTL and template).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec<'a> {
    #[serde(borrow, default, deserialize_with = "crate::object::opt_cow")]
    pub restart_policy: Option<Cow<'a, str>>,
    #[serde(default)]
    pub host_network: Option<bool>,
    #[serde(rename = "hostPID", default)]
    pub host_pid: Option<bool>,
    #[serde(rename = "hostIPC", default)]
    pub host_ipc: Option<bool>,
    #[serde(borrow, default)]
    pub containers: Option<Vec<Container<'a>>>,
    #[serde(borrow, default)]
    pub init_containers: Option<Vec<Container<'a>>>,
    #[serde(borrow, default)]
    pub ephemeral_containers: Option<Vec<Container<'a>>>,
    #[serde(borrow, default)]
    pub volumes: Option<Vec<Volume<'a>>>,
    #[serde(default)]
    pub security_context: Option<PodSecurityContext>,
}

impl<'a> PodSpec<'a> {
    /// Every container with the list it belongs to (for messages).
    pub fn all_containers(&self) -> impl Iterator<Item = (&'static str, &Container<'a>)> {
        let containers = self.containers.iter().flatten().map(|c| ("containers", c));
        let init = self
            .init_containers
            .iter()
            .flatten()
            .map(|c| ("initContainers", c));
        let ephemeral = self
            .ephemeral_containers
            .iter()
            .flatten()
            .map(|c| ("ephemeralContainers", c));
        containers.chain(init).chain(ephemeral)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec<'a> {
    #[serde(default)]
    pub ttl_seconds_after_finished: Option<i64>,
    #[serde(borrow, default)]
    pub template: Option<PodTemplate<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct PodTemplate<'a> {
    #[serde(borrow, default)]
    pub spec: Option<PodSpec<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container<'a> {
    #[serde(borrow, default, deserialize_with = "crate::object::opt_cow")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "crate::object::opt_cow")]
    pub image: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub security_context: Option<SecurityContext<'a>>,
    #[serde(default)]
    pub ports: Option<Vec<ContainerPort>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext<'a> {
    #[serde(default)]
    pub privileged: Option<bool>,
    #[serde(default)]
    pub allow_privilege_escalation: Option<bool>,
    #[serde(borrow, default)]
    pub capabilities: Option<Capabilities<'a>>,
    #[serde(default)]
    pub windows_options: Option<WindowsOptions>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Capabilities<'a> {
    #[serde(borrow, default)]
    pub add: Option<Vec<Cow<'a, str>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowsOptions {
    #[serde(default)]
    pub host_process: Option<bool>,
}

/// The pod-level security context: only what can reach into the node.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContext {
    #[serde(default)]
    pub windows_options: Option<WindowsOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default)]
    pub host_port: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume<'a> {
    #[serde(borrow, default, deserialize_with = "crate::object::opt_cow")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub host_path: Option<HostPath<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct HostPath<'a> {
    #[serde(borrow, default, deserialize_with = "crate::object::opt_cow")]
    pub path: Option<Cow<'a, str>>,
}

/// Splits `apiVersion` into its group (`""` for the core group).
pub fn group_of(api_version: &str) -> &str {
    match api_version.rsplit_once('/') {
        Some((group, _version)) => group,
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_what_rules_need_and_borrows() {
        let json = r#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"m","labels":{"a":"b"},
            "annotations":{"helm.sh/hook":"pre-install","other":"x"}},"spec":{"template":{"spec":{}}},"status":{}}"#;
        let o: Object = serde_json::from_str(json).unwrap();
        assert_eq!(o.display_name(), "m");
        let labels = o.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        assert!(labels.hook.is_none());
        assert!(matches!(
            labels.all.as_slice(),
            [(Cow::Borrowed("a"), Cow::Borrowed("b"))]
        ));
        assert!(matches!(
            o.annotations().unwrap().hook,
            Some(Cow::Borrowed("pre-install"))
        ));
        assert!(o.spec.is_some());
        let escaped: Object = serde_json::from_str(
            r#"{"metadata":{"annotations":{"helm.sh/hook":"pre-\u0069nstall"}}}"#,
        )
        .unwrap();
        assert_eq!(
            escaped.annotations().unwrap().hook.as_deref(),
            Some("pre-install")
        );
    }

    #[test]
    fn labels_of_other_types_are_skipped_but_hookguards_own_must_be_strings() {
        let o: Object = serde_json::from_str(
            r#"{"metadata":{"labels":{"n":1,"m":{"x":[1]},"app.kubernetes.io/instance":"shop","hookguard.io/hook":null}}}"#,
        )
        .unwrap();
        let labels = o.metadata.unwrap().labels.unwrap();
        assert_eq!(labels.instance.as_deref(), Some("shop"));
        assert!(labels.hook.is_none());
        assert_eq!(labels.all.len(), 1);
        assert!(
            serde_json::from_str::<Object>(r#"{"metadata":{"labels":{"hookguard.io/hook":5}}}"#)
                .is_err()
        );
    }

    #[test]
    fn missing_maps_are_none_and_nulls_are_accepted() {
        let o: Object = serde_json::from_str(r#"{"metadata":{"labels":null}}"#).unwrap();
        assert!(o.metadata.unwrap().labels.is_none());
        let o: Object = serde_json::from_str(r#"{}"#).unwrap();
        assert!(o.hook().is_none());
        assert_eq!(o.display_name(), "<unnamed>");
    }

    #[test]
    fn custom_resource_spec_of_any_shape_is_not_parsed() {
        let json = r#"{"metadata":{"annotations":{"helm.sh/hook":"test"}},"spec":{"containers":"not-a-list","template":7}}"#;
        let o: Object = serde_json::from_str(json).unwrap();
        assert!(o.hook().is_some());
    }

    #[test]
    fn group_of_api_version() {
        assert_eq!(group_of("v1"), "");
        assert_eq!(group_of("batch/v1"), "batch");
        assert_eq!(group_of("apiextensions.k8s.io/v1"), "apiextensions.k8s.io");
    }
}

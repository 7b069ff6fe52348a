//! Policy configuration: the YAML file users write, its defaults, and its validation.
//!
//! A [`Config`] is what the file says; a [`Policy`] is the validated, compiled form the engine reads
//! (modes indexed like the rule registry, namespace globs compiled).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

use super::did_you_mean::closest;
use super::rules::{RULES, RuleInfo};
use super::selector::{LabelSelector, Labels};

/// The `apiVersion` a config file may declare.
pub const CONFIG_API_VERSION: &str = "hookguard.io/v1alpha1";
/// The `kind` a config file may declare.
pub const CONFIG_KIND: &str = "PolicyConfig";

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Validating rules deny; mutating rules mutate.
    Enforce,
    /// Allow, with a warning the client prints (kubectl, helm).
    Warn,
    /// Do nothing.
    Off,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Off => "off",
        })
    }
}

/// The policy file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// Optional; when present must be `hookguard.io/v1alpha1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Optional; when present must be `PolicyConfig`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Mode per rule id; rules not listed keep their default mode.
    pub rules: BTreeMap<String, Mode>,
    /// Modes for some namespaces only, on top of `rules`; later entries win.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<Override>,
    pub job_ttl: JobTtl,
    pub image_tag: ImageTag,
    /// Kinds that must never be hooks, as `Kind` (core group) or `Kind.group`.
    pub long_running_kinds: Vec<String>,
    pub exemptions: Exemptions,
    pub exceptions: ExceptionsConfig,
}

/// Where HookPolicyExceptions are honoured from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ExceptionsConfig {
    /// Namespace names or globs whose HookPolicyExceptions count (`[]`: hookguard's own
    /// namespace only). Whoever may create objects there may grant exceptions.
    pub namespaces: Vec<String>,
}

/// Modes for the namespaces an entry matches. It matches a namespace when every selector it
/// sets holds: one of `namespaces` (names or globs) and `namespaceSelector` (on the Namespace's
/// labels). For each rule, the last matching entry that names it decides; rules no matching entry
/// names keep their mode from `rules`. Exempt namespaces stay exempt.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Override {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    pub rules: BTreeMap<String, Mode>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct JobTtl {
    /// Injected into hook Jobs that set no `ttlSecondsAfterFinished`.
    pub default_seconds: i64,
    /// Explicit values below this are raised to it (a TTL shorter than Helm's observation of the
    /// Job's completion makes Helm 4 and Argo CD wait until their timeout).
    pub floor_seconds: i64,
}

impl Default for JobTtl {
    fn default() -> Self {
        JobTtl {
            default_seconds: 600,
            floor_seconds: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ImageTag {
    /// Tags that name a moving target.
    pub mutable_tags: Vec<String>,
    /// An image with neither tag nor digest means `:latest`.
    pub require_tag: bool,
}

impl Default for ImageTag {
    fn default() -> Self {
        ImageTag {
            mutable_tags: vec!["latest".to_owned()],
            require_tag: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Exemptions {
    /// Namespace names or globs (`*`, `?`) whose objects are never judged nor mutated.
    pub namespaces: Vec<String>,
    /// Rule ids an object may exempt itself from with the `hookguard.io/exempt` annotation
    /// (`[]` disables self-exemption). `*` covers every rule except the security rules
    /// (`pod-security`, `hook-kind-long-running`): those must be named here to be waivable.
    pub object_rules: Vec<String>,
}

impl Default for Exemptions {
    fn default() -> Self {
        Exemptions {
            namespaces: vec!["kube-system".to_owned()],
            object_rules: vec!["*".to_owned()],
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_version: None,
            kind: None,
            rules: BTreeMap::new(),
            overrides: Vec::new(),
            job_ttl: JobTtl::default(),
            image_tag: ImageTag::default(),
            long_running_kinds: [
                "Deployment.apps",
                "StatefulSet.apps",
                "DaemonSet.apps",
                "ReplicaSet.apps",
                "ReplicationController",
                "Service",
                "CronJob.batch",
            ]
            .map(str::to_owned)
            .to_vec(),
            exemptions: Exemptions::default(),
            exceptions: ExceptionsConfig::default(),
        }
    }
}

/// A configuration that cannot be used, with the field at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("policy config is not valid YAML for hookguard: {0}")]
    Parse(String),
    #[error("policy config field `{field}`: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Config {
    /// Parses and validates a policy file.
    pub fn from_yaml(text: &str) -> Result<Policy, ConfigError> {
        // An empty file (or one holding only comments) means "all defaults".
        let config: Config = if text.trim().lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l == "---"
        }) {
            Config::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?
        };
        Policy::new(config)
    }

    /// The mode of a rule after applying this config.
    fn mode_of(&self, id: &str, default: Mode) -> Mode {
        self.rules.get(id).copied().unwrap_or(default)
    }
}

/// A validated configuration, ready for the engine.
#[derive(Debug, Clone)]
pub struct Policy {
    config: Config,
    modes: Vec<Mode>,
    overrides: Vec<CompiledOverride>,
    exempt_namespaces: Vec<WildMatch>,
    exception_namespaces: Vec<WildMatch>,
    /// A namespace (no glob) where HookPolicyExceptions count, for messages that suggest one.
    exception_namespace_hint: Option<String>,
    object_rules_all: bool,
}

/// An [`Override`] with its globs compiled and its modes indexed like [`RULES`].
#[derive(Debug, Clone)]
struct CompiledOverride {
    namespaces: Vec<WildMatch>,
    selector: Option<LabelSelector>,
    modes: Vec<Option<Mode>>,
}

impl CompiledOverride {
    /// Whether it applies in `namespace`; a selector never holds on labels not known.
    fn matches(&self, namespace: &str, labels: Option<&Labels>) -> bool {
        (self.namespaces.is_empty() || self.namespaces.iter().any(|g| g.matches(namespace)))
            && self
                .selector
                .as_ref()
                .is_none_or(|s| labels.is_some_and(|l| s.matches(l)))
    }
}

impl Default for Policy {
    fn default() -> Self {
        // The built-in configuration is valid by construction (tested below).
        match Policy::new(Config::default()) {
            Ok(p) => p,
            Err(e) => unreachable!("built-in policy is invalid: {e}"),
        }
    }
}

impl Policy {
    /// Validates a config; every error names the field at fault.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        if let Some(v) = &config.api_version
            && v != CONFIG_API_VERSION
        {
            return Err(invalid(
                "apiVersion",
                format!("must be {CONFIG_API_VERSION:?}, got {v:?}"),
            ));
        }
        if let Some(k) = &config.kind
            && k != CONFIG_KIND
        {
            return Err(invalid(
                "kind",
                format!("must be {CONFIG_KIND:?}, got {k:?}"),
            ));
        }
        let ids: Vec<&str> = RULES.iter().map(|r| r.info().id).collect();
        for id in config.rules.keys() {
            if !ids.contains(&id.as_str()) {
                return Err(invalid(
                    format!("rules.{id}"),
                    unknown_rule_message(id, &ids),
                ));
            }
        }
        for (i, o) in config.overrides.iter().enumerate() {
            let field = |f: &str| format!("overrides[{i}]{f}");
            if o.namespaces.is_empty() && o.namespace_selector.is_none() {
                return Err(invalid(
                    field(""),
                    "set namespaces, namespaceSelector or both (for every namespace, use `rules`)",
                ));
            }
            if o.rules.is_empty() {
                return Err(invalid(field(".rules"), "names no rule"));
            }
            for id in o.rules.keys() {
                if !ids.contains(&id.as_str()) {
                    return Err(invalid(
                        field(&format!(".rules.{id}")),
                        unknown_rule_message(id, &ids),
                    ));
                }
            }
            if let Some(j) = o.namespaces.iter().position(String::is_empty) {
                return Err(invalid(
                    field(&format!(".namespaces[{j}]")),
                    "must not be empty",
                ));
            }
            if let Some((at, message)) = o.namespace_selector.as_ref().and_then(|s| s.problem()) {
                return Err(invalid(field(&format!(".namespaceSelector.{at}")), message));
            }
        }
        for (i, id) in config.exemptions.object_rules.iter().enumerate() {
            if id != "*" && !ids.contains(&id.as_str()) {
                return Err(invalid(
                    format!("exemptions.objectRules[{i}]"),
                    unknown_rule_message(id, &ids),
                ));
            }
        }
        let ttl = &config.job_ttl;
        if ttl.floor_seconds < 1 {
            return Err(invalid(
                "jobTtl.floorSeconds",
                format!(
                    "must be at least 1 (a TTL of 0 deletes a hook Job before Helm sees it finish), got {}",
                    ttl.floor_seconds
                ),
            ));
        }
        if ttl.default_seconds < ttl.floor_seconds {
            return Err(invalid(
                "jobTtl.defaultSeconds",
                format!(
                    "must be at least jobTtl.floorSeconds ({}), got {}",
                    ttl.floor_seconds, ttl.default_seconds
                ),
            ));
        }
        if ttl.default_seconds > i64::from(i32::MAX) {
            return Err(invalid(
                "jobTtl.defaultSeconds",
                format!(
                    "must fit in an int32 (Kubernetes' type), got {}",
                    ttl.default_seconds
                ),
            ));
        }
        for (i, tag) in config.image_tag.mutable_tags.iter().enumerate() {
            if tag.is_empty() || tag.contains([':', '@', '/']) {
                return Err(invalid(
                    format!("imageTag.mutableTags[{i}]"),
                    format!("must be a bare tag such as \"latest\", got {tag:?}"),
                ));
            }
        }
        for (i, kind) in config.long_running_kinds.iter().enumerate() {
            let name = kind.split('.').next().unwrap_or_default();
            if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
                return Err(invalid(
                    format!("longRunningKinds[{i}]"),
                    format!(
                        "must be a kind such as \"Deployment.apps\" or \"Service\", got {kind:?}"
                    ),
                ));
            }
        }
        for (i, ns) in config.exceptions.namespaces.iter().enumerate() {
            if ns.is_empty() {
                return Err(invalid(
                    format!("exceptions.namespaces[{i}]"),
                    "must not be empty",
                ));
            }
        }
        for (i, ns) in config.exemptions.namespaces.iter().enumerate() {
            if ns.is_empty() {
                return Err(invalid(
                    format!("exemptions.namespaces[{i}]"),
                    "must not be empty",
                ));
            }
        }
        let modes = RULES
            .iter()
            .map(|r| {
                let info = r.info();
                config.mode_of(info.id, info.default_mode)
            })
            .collect();
        let overrides = config
            .overrides
            .iter()
            .map(|o| CompiledOverride {
                namespaces: o.namespaces.iter().map(|g| WildMatch::new(g)).collect(),
                selector: o.namespace_selector.clone(),
                modes: RULES
                    .iter()
                    .map(|r| o.rules.get(r.info().id).copied())
                    .collect(),
            })
            .collect();
        let exempt_namespaces = config
            .exemptions
            .namespaces
            .iter()
            .map(|g| WildMatch::new(g))
            .collect();
        let object_rules_all = config.exemptions.object_rules.iter().any(|r| r == "*");
        let exception_namespaces = config
            .exceptions
            .namespaces
            .iter()
            .map(|g| WildMatch::new(g))
            .collect();
        let exception_namespace_hint = config
            .exceptions
            .namespaces
            .iter()
            .find(|n| !n.contains(['*', '?']))
            .cloned();
        Ok(Policy {
            config,
            modes,
            overrides,
            exempt_namespaces,
            exception_namespaces,
            exception_namespace_hint,
            object_rules_all,
        })
    }

    /// Adds namespaces that are always exempt (hookguard's own), on top of the config.
    pub fn with_exempt_namespace(mut self, namespace: &str) -> Self {
        if !namespace.is_empty() && !self.namespace_is_exempt(namespace) {
            self.exempt_namespaces.push(WildMatch::new(namespace));
        }
        self
    }

    /// hookguard's own namespace: always exempt, and where HookPolicyExceptions are honoured
    /// from when the policy names no `exceptions.namespaces`.
    pub fn with_own_namespace(mut self, namespace: &str) -> Self {
        if !namespace.is_empty() && self.config.exceptions.namespaces.is_empty() {
            self.exception_namespaces = vec![WildMatch::new(namespace)];
            self.exception_namespace_hint = Some(namespace.to_owned());
        }
        self.with_exempt_namespace(namespace)
    }

    /// Whether HookPolicyExceptions in `namespace` count.
    pub fn honours_exceptions_from(&self, namespace: &str) -> bool {
        !namespace.is_empty()
            && self
                .exception_namespaces
                .iter()
                .any(|g| g.matches(namespace))
    }

    /// A namespace whose HookPolicyExceptions count, when one is known by name (messages
    /// suggest creating one there).
    pub fn exception_namespace_hint(&self) -> Option<&str> {
        self.exception_namespace_hint.as_deref()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The mode of the rule at `index` in [`RULES`], outside every override.
    pub fn mode_at(&self, index: usize) -> Mode {
        self.modes.get(index).copied().unwrap_or(Mode::Off)
    }

    /// The mode of every rule (indexed like [`RULES`]) for objects in `namespace`, whose labels
    /// are `labels` (`None`: not known; then no `namespaceSelector` holds).
    pub fn modes_in(&self, namespace: &str, labels: Option<&Labels>) -> Cow<'_, [Mode]> {
        let mut modes = Cow::Borrowed(self.modes.as_slice());
        for o in self
            .overrides
            .iter()
            .filter(|o| o.matches(namespace, labels))
        {
            let modes = modes.to_mut();
            for (mode, set) in modes.iter_mut().zip(&o.modes) {
                if let Some(set) = set {
                    *mode = *set;
                }
            }
        }
        modes
    }

    /// Whether any override selects namespaces by their labels (the webhook then needs them).
    pub fn uses_namespace_labels(&self) -> bool {
        self.overrides.iter().any(|o| o.selector.is_some())
    }

    /// The mode of a rule by id.
    pub fn mode(&self, id: &str) -> Option<Mode> {
        RULES
            .iter()
            .position(|r| r.info().id == id)
            .map(|i| self.mode_at(i))
    }

    pub fn namespace_is_exempt(&self, namespace: &str) -> bool {
        !namespace.is_empty() && self.exempt_namespaces.iter().any(|g| g.matches(namespace))
    }

    /// Whether an object's own `hookguard.io/exempt` annotation may waive this rule: `*` in
    /// `exemptions.objectRules` covers every rule but the security rules, which the policy must
    /// name one by one (a chart author must not be able to wave a privileged hook pod through).
    pub fn object_may_exempt(&self, rule: RuleInfo) -> bool {
        let named = || {
            self.config
                .exemptions
                .object_rules
                .iter()
                .any(|r| r == rule.id)
        };
        if rule.security {
            named()
        } else {
            self.object_rules_all || named()
        }
    }
}

fn unknown_rule_message(id: &str, ids: &[&str]) -> String {
    match closest(id, ids.iter().copied()) {
        Some(near) => format!("unknown rule id {id:?}; did you mean {near:?}?"),
        None => format!("unknown rule id {id:?}; known rules: {}", ids.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_design() {
        let p = Policy::default();
        assert_eq!(p.config().job_ttl.default_seconds, 600);
        assert_eq!(p.config().job_ttl.floor_seconds, 60);
        assert!(p.namespace_is_exempt("kube-system"));
        assert!(!p.namespace_is_exempt("default"));
        assert_eq!(p.mode("image-tag"), Some(Mode::Warn));
        assert_eq!(p.mode("restart-policy"), Some(Mode::Enforce));
    }

    #[test]
    fn empty_and_comment_only_files_mean_defaults() {
        for text in ["", "# nothing\n", "---\n"] {
            let p = Config::from_yaml(text).unwrap();
            assert_eq!(p.config(), &Config::default());
        }
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let p = Config::from_yaml("rules:\n  image-tag: enforce\njobTtl:\n  floorSeconds: 30\n")
            .unwrap();
        assert_eq!(p.mode("image-tag"), Some(Mode::Enforce));
        assert_eq!(p.config().job_ttl.floor_seconds, 30);
        assert_eq!(p.config().job_ttl.default_seconds, 600);
    }

    #[test]
    fn unknown_rule_is_named_with_a_suggestion() {
        let err = Config::from_yaml("rules:\n  image-tags: warn\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "policy config field `rules.image-tags`: unknown rule id \"image-tags\"; did you mean \"image-tag\"?"
        );
    }

    #[test]
    fn unknown_field_and_bad_mode_are_parse_errors_naming_them() {
        let err = Config::from_yaml("jobTTL:\n  defaultSeconds: 5\n").unwrap_err();
        assert!(err.to_string().contains("jobTTL"), "{err}");
        let err = Config::from_yaml("rules:\n  image-tag: deny\n").unwrap_err();
        assert!(err.to_string().contains("deny"), "{err}");
    }

    #[test]
    fn ttl_bounds_are_checked() {
        let err = Config::from_yaml("jobTtl:\n  floorSeconds: 0\n").unwrap_err();
        assert!(err.to_string().contains("jobTtl.floorSeconds"), "{err}");
        let err = Config::from_yaml("jobTtl:\n  defaultSeconds: 30\n").unwrap_err();
        assert!(err.to_string().contains("jobTtl.defaultSeconds"), "{err}");
    }

    #[test]
    fn namespace_globs() {
        let p =
            Config::from_yaml("exemptions:\n  namespaces: [\"team-*\", kube-system]\n").unwrap();
        assert!(p.namespace_is_exempt("team-a"));
        assert!(!p.namespace_is_exempt("teams"));
        let p = p.with_exempt_namespace("hookguard");
        assert!(p.namespace_is_exempt("hookguard"));
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// `(image-tag, pod-security)` modes in `namespace` with `labels`.
    fn two_modes(p: &Policy, namespace: &str, labels: Option<&Labels>) -> (Mode, Mode) {
        let index = |id: &str| RULES.iter().position(|r| r.info().id == id).unwrap();
        let modes = p.modes_in(namespace, labels);
        (modes[index("image-tag")], modes[index("pod-security")])
    }

    #[test]
    fn overrides_apply_where_they_match_and_later_entries_win() {
        let p = Config::from_yaml(
            r#"
rules: {image-tag: "off", pod-security: enforce}
overrides:
  - namespaces: ["team-*"]
    rules: {image-tag: warn, pod-security: warn}
  - namespaces: [team-payments]
    rules: {image-tag: enforce}
  - namespaceSelector: {matchLabels: {hookguard.io/tier: strict}}
    rules: {pod-security: enforce}
  - namespaces: [ci]
    namespaceSelector: {matchExpressions: [{key: legacy, operator: Exists}]}
    rules: {pod-security: "off"}
"#,
        )
        .unwrap();
        use Mode::*;
        assert_eq!(two_modes(&p, "shop", None), (Off, Enforce));
        // Nothing matched: the base modes, not a copy.
        assert!(matches!(p.modes_in("shop", None), Cow::Borrowed(_)));
        assert_eq!(two_modes(&p, "team-a", None), (Warn, Warn));
        assert_eq!(two_modes(&p, "team-payments", None), (Enforce, Warn));
        let strict = labels(&[("hookguard.io/tier", "strict")]);
        assert_eq!(two_modes(&p, "team-a", Some(&strict)), (Warn, Enforce));
        assert_eq!(two_modes(&p, "shop", Some(&strict)), (Off, Enforce));
        // Labels not known: no selector holds.
        assert_eq!(two_modes(&p, "team-a", None), (Warn, Warn));
        // Both selectors of an entry must hold.
        let legacy = labels(&[("legacy", "yes")]);
        assert_eq!(two_modes(&p, "ci", Some(&legacy)), (Off, Off));
        assert_eq!(two_modes(&p, "ci", None), (Off, Enforce));
        assert_eq!(two_modes(&p, "shop", Some(&legacy)), (Off, Enforce));
        assert!(p.uses_namespace_labels());
        let by_name =
            Config::from_yaml("overrides: [{namespaces: [a], rules: {image-tag: enforce}}]\n")
                .unwrap();
        assert!(!by_name.uses_namespace_labels());
    }

    #[test]
    fn override_errors_name_the_field() {
        let err = |yaml: &str| Config::from_yaml(yaml).unwrap_err().to_string();
        assert_eq!(
            err("overrides: [{rules: {image-tag: warn}}]\n"),
            "policy config field `overrides[0]`: set namespaces, namespaceSelector or both (for every namespace, use `rules`)"
        );
        assert_eq!(
            err("overrides: [{namespaces: [a]}]\n"),
            "policy config field `overrides[0].rules`: names no rule"
        );
        assert_eq!(
            err(
                "overrides: [{namespaces: [a], rules: {image-tag: warn}}, {namespaces: [b], rules: {pod-securty: warn}}]\n"
            ),
            "policy config field `overrides[1].rules.pod-securty`: unknown rule id \"pod-securty\"; did you mean \"pod-security\"?"
        );
        assert_eq!(
            err("overrides: [{namespaces: [''], rules: {image-tag: warn}}]\n"),
            "policy config field `overrides[0].namespaces[0]`: must not be empty"
        );
        assert_eq!(
            err(
                "overrides: [{namespaceSelector: {matchExpressions: [{key: team, operator: In}]}, rules: {image-tag: warn}}]\n"
            ),
            "policy config field `overrides[0].namespaceSelector.matchExpressions[0].values`: must not be empty for In"
        );
        assert!(
            err("overrides: [{namespaceSelectors: {}, rules: {image-tag: warn}}]\n")
                .contains("namespaceSelectors")
        );
        assert!(err("overrides: [{namespaces: [a], rules: {image-tag: deny}}]\n").contains("deny"));
    }

    #[test]
    fn wrong_api_version_is_rejected() {
        let err = Config::from_yaml("apiVersion: v1\n").unwrap_err();
        assert!(err.to_string().contains("apiVersion"), "{err}");
        Config::from_yaml("apiVersion: hookguard.io/v1alpha1\nkind: PolicyConfig\n").unwrap();
    }

    #[test]
    fn shipped_example_documents_exactly_the_defaults() {
        let text = include_str!("../../../examples/policy.yaml");
        let p = Config::from_yaml(text).unwrap();
        let mut expected = Config {
            api_version: Some(CONFIG_API_VERSION.to_owned()),
            kind: Some(CONFIG_KIND.to_owned()),
            ..Config::default()
        };
        for rule in RULES {
            let info = rule.info();
            expected.rules.insert(info.id.to_owned(), info.default_mode);
        }
        assert_eq!(p.config(), &expected);
    }
}

//! Exceptions the platform grants: `HookPolicyException` objects (`hookguard.io/v1alpha1`) waive
//! named rules for the hook objects they match, with a reason and an optional expiry. Only those
//! living in the namespaces the policy lists (`exceptions.namespaces`, by default hookguard's own)
//! count, so Kubernetes RBAC on those namespaces decides who may grant one; a chart author cannot.
//! The shell turns the custom resources into [`Exception`]s and passes the time: the engine has no
//! clock.

use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

use super::did_you_mean::closest;
use super::rules::RULES;
use super::selector::{LabelSelector, Labels};
use crate::object::Object;

/// The `spec` of a HookPolicyException.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ExceptionSpec {
    /// Rule ids waived.
    pub rules: Vec<String>,
    #[serde(rename = "match")]
    pub matches: ExceptionMatch,
    /// Why, for whoever reviews it; required.
    pub reason: String,
    /// RFC 3339 time after which the exception no longer applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// What an exception applies to: every field set must match (an empty field matches anything).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ExceptionMatch {
    /// Namespace names or globs of the objects.
    pub namespaces: Vec<String>,
    /// Helm releases, by the objects' `app.kubernetes.io/instance` label.
    pub releases: Vec<String>,
    /// Object names or globs.
    pub names: Vec<String>,
    /// A label selector on the objects' labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<LabelSelector>,
}

/// A validated exception.
#[derive(Debug, Clone)]
pub struct Exception {
    /// `namespace/name` of the HookPolicyException.
    pub id: String,
    pub namespace: String,
    rules: Vec<&'static str>,
    namespaces: Vec<WildMatch>,
    releases: Vec<String>,
    names: Vec<WildMatch>,
    labels: Option<LabelSelector>,
    pub reason: String,
    /// Unix seconds.
    pub expires: Option<i64>,
}

impl Exception {
    /// Validates a spec; `expires` is the spec's time already parsed by the caller (RFC 3339
    /// parsing needs a time library the engine does not carry), `Err` names the field.
    pub fn new(
        namespace: &str,
        name: &str,
        spec: &ExceptionSpec,
        expires: Option<i64>,
    ) -> Result<Exception, String> {
        let ids: Vec<&'static str> = RULES.iter().map(|r| r.info().id).collect();
        if spec.rules.is_empty() {
            return Err("spec.rules: names no rule".into());
        }
        let mut rules = Vec::new();
        for (i, rule) in spec.rules.iter().enumerate() {
            match ids.iter().find(|id| **id == rule.as_str()) {
                Some(id) => rules.push(*id),
                None => {
                    let hint = closest(rule, ids.iter().copied())
                        .map(|n| format!("; did you mean {n:?}?"))
                        .unwrap_or_default();
                    return Err(format!("spec.rules[{i}]: unknown rule id {rule:?}{hint}"));
                }
            }
        }
        if spec.reason.trim().is_empty() {
            return Err("spec.reason: must say why".into());
        }
        let m = &spec.matches;
        if m.namespaces.is_empty()
            && m.releases.is_empty()
            && m.names.is_empty()
            && m.labels.is_none()
        {
            return Err(
                "spec.match: set namespaces, releases, names or labels (an exception for everything is a policy change)"
                    .into(),
            );
        }
        if let Some((field, message)) = m.labels.as_ref().and_then(LabelSelector::problem) {
            return Err(format!("spec.match.labels.{field}: {message}"));
        }
        Ok(Exception {
            id: format!("{namespace}/{name}"),
            namespace: namespace.to_owned(),
            rules,
            namespaces: m.namespaces.iter().map(|g| WildMatch::new(g)).collect(),
            releases: m.releases.clone(),
            names: m.names.iter().map(|g| WildMatch::new(g)).collect(),
            labels: m.labels.clone(),
            reason: spec.reason.clone(),
            expires,
        })
    }

    /// Whether it waives `rule` for `object` in `namespace` (expired or not).
    pub fn covers(&self, rule: &str, namespace: &str, object: &Object<'_>) -> bool {
        let meta = object.metadata.as_ref();
        let name = meta.and_then(|m| m.name.as_deref()).unwrap_or_default();
        let labels = meta.and_then(|m| m.labels.as_ref());
        let release = labels.and_then(|l| l.instance.as_deref());
        let labels_match = || {
            self.labels.as_ref().is_none_or(|selector| {
                let all: Labels = labels
                    .map(|l| {
                        l.all
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                selector.matches(&all)
            })
        };
        self.rules.contains(&rule)
            && (self.namespaces.is_empty() || self.namespaces.iter().any(|g| g.matches(namespace)))
            && (self.releases.is_empty()
                || release.is_some_and(|r| self.releases.iter().any(|x| x == r)))
            && (self.names.is_empty() || self.names.iter().any(|g| g.matches(name)))
            && labels_match()
    }

    pub fn expired(&self, now: i64) -> bool {
        self.expires.is_some_and(|t| now >= t)
    }
}

/// The exceptions a request is judged with, and the time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exceptions<'e> {
    pub granted: &'e [Exception],
    /// Unix seconds, for expiry.
    pub now: i64,
}

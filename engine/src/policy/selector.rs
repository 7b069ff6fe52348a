//! Kubernetes label selectors (`matchLabels`, `matchExpressions`), as `overrides` use them on
//! Namespace labels, with the API server's semantics: every term must hold; an empty selector
//! matches everything; `NotIn` and `DoesNotExist` hold when the key is absent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A Namespace's labels.
pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LabelSelector {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// Whether `labels` satisfy every term.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// What the API server would refuse in this selector: `(field under the selector, message)`.
    pub fn problem(&self) -> Option<(String, String)> {
        if let Some(key) = self.match_labels.keys().find(|k| k.is_empty()) {
            return Some((
                format!("matchLabels.{key}"),
                "a key must not be empty".into(),
            ));
        }
        self.match_expressions
            .iter()
            .enumerate()
            .find_map(|(i, r)| {
                let field = |f: &str| format!("matchExpressions[{i}].{f}");
                match r.operator {
                    _ if r.key.is_empty() => Some((field("key"), "must not be empty".into())),
                    Operator::In | Operator::NotIn if r.values.is_empty() => Some((
                        field("values"),
                        format!("must not be empty for {:?}", r.operator),
                    )),
                    Operator::Exists | Operator::DoesNotExist if !r.values.is_empty() => Some((
                        field("values"),
                        format!("must be empty for {:?}", r.operator),
                    )),
                    _ => None,
                }
            })
    }
}

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn selector(yaml: &str) -> LabelSelector {
        serde_saphyr::from_str(yaml).expect("selector parses")
    }

    #[test]
    fn terms_hold_together_with_the_api_servers_semantics() {
        let s = selector(
            "matchLabels: {tier: team}\nmatchExpressions:\n  - {key: env, operator: In, values: [prod, staging]}\n  - {key: legacy, operator: DoesNotExist}\n  - {key: owner, operator: NotIn, values: [platform]}\n",
        );
        assert!(s.matches(&labels(&[("tier", "team"), ("env", "prod")])));
        assert!(s.matches(&labels(&[
            ("tier", "team"),
            ("env", "staging"),
            ("owner", "shop")
        ])));
        // Each term failing on its own.
        assert!(!s.matches(&labels(&[("env", "prod")])));
        assert!(!s.matches(&labels(&[("tier", "team"), ("env", "dev")])));
        assert!(!s.matches(&labels(&[("tier", "team")])));
        assert!(!s.matches(&labels(&[
            ("tier", "team"),
            ("env", "prod"),
            ("legacy", "")
        ])));
        assert!(!s.matches(&labels(&[
            ("tier", "team"),
            ("env", "prod"),
            ("owner", "platform")
        ])));
        let exists = selector("matchExpressions: [{key: team, operator: Exists}]\n");
        assert!(exists.matches(&labels(&[("team", "")])));
        assert!(!exists.matches(&labels(&[])));
        assert!(LabelSelector::default().matches(&labels(&[])));
    }

    #[test]
    fn what_the_api_server_refuses_is_named() {
        let p = |yaml: &str| selector(yaml).problem();
        assert_eq!(
            p("matchExpressions: [{key: a, operator: In}]\n"),
            Some((
                "matchExpressions[0].values".into(),
                "must not be empty for In".into()
            ))
        );
        assert_eq!(
            p(
                "matchExpressions: [{key: a, operator: Exists}, {key: b, operator: DoesNotExist, values: [x]}]\n"
            ),
            Some((
                "matchExpressions[1].values".into(),
                "must be empty for DoesNotExist".into()
            ))
        );
        assert_eq!(
            p("matchExpressions: [{key: '', operator: Exists}]\n"),
            Some(("matchExpressions[0].key".into(), "must not be empty".into()))
        );
        assert_eq!(p("matchLabels: {a: b}\n"), None);
        assert!(
            serde_saphyr::from_str::<LabelSelector>(
                "matchExpressions: [{key: a, operator: Equals}]\n"
            )
            .is_err()
        );
    }
}

//! Helm hook annotations, parsed exactly the way Helm parses them.
//!
//! Helm (`pkg/release/v1/util/manifest_sorter.go`, `pkg/action/hooks.go`) splits every list on `,`,
//! trims each item and lower-cases it. An unknown hook event makes Helm silently drop the whole object;
//! delete and log policies are stored without validation; the weight goes through Go's
//! `strconv.Atoi` and any error silently becomes 0.

use std::fmt;

/// `helm.sh/hook`
pub const HOOK_ANNOTATION: &str = "helm.sh/hook";
/// `helm.sh/hook-weight`
pub const WEIGHT_ANNOTATION: &str = "helm.sh/hook-weight";
/// `helm.sh/hook-delete-policy`
pub const DELETE_POLICY_ANNOTATION: &str = "helm.sh/hook-delete-policy";
/// `helm.sh/hook-output-log-policy`
pub const OUTPUT_LOG_POLICY_ANNOTATION: &str = "helm.sh/hook-output-log-policy";

/// A hook event Helm knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookEvent {
    PreInstall,
    PostInstall,
    PreDelete,
    PostDelete,
    PreUpgrade,
    PostUpgrade,
    PreRollback,
    PostRollback,
    Test,
}

impl HookEvent {
    /// Every spelling Helm accepts, with the event it maps to (`test-success` is an alias of `test`).
    pub const SPELLINGS: &'static [(&'static str, HookEvent)] = &[
        ("pre-install", HookEvent::PreInstall),
        ("post-install", HookEvent::PostInstall),
        ("pre-delete", HookEvent::PreDelete),
        ("post-delete", HookEvent::PostDelete),
        ("pre-upgrade", HookEvent::PreUpgrade),
        ("post-upgrade", HookEvent::PostUpgrade),
        ("pre-rollback", HookEvent::PreRollback),
        ("post-rollback", HookEvent::PostRollback),
        ("test", HookEvent::Test),
        ("test-success", HookEvent::Test),
    ];

    /// Parses one already trimmed and lower-cased item.
    pub fn from_normalized(item: &str) -> Option<Self> {
        Self::SPELLINGS
            .iter()
            .find(|(spelling, _)| *spelling == item)
            .map(|(_, event)| *event)
    }

    /// The canonical spelling (used as a metric label value).
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::PreInstall => "pre-install",
            HookEvent::PostInstall => "post-install",
            HookEvent::PreDelete => "pre-delete",
            HookEvent::PostDelete => "post-delete",
            HookEvent::PreUpgrade => "pre-upgrade",
            HookEvent::PostUpgrade => "post-upgrade",
            HookEvent::PreRollback => "pre-rollback",
            HookEvent::PostRollback => "post-rollback",
            HookEvent::Test => "test",
        }
    }
}

impl fmt::Display for HookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delete policy Helm acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeletePolicy {
    BeforeHookCreation,
    HookSucceeded,
    HookFailed,
}

impl DeletePolicy {
    pub const ALL: &'static [DeletePolicy] = &[
        DeletePolicy::BeforeHookCreation,
        DeletePolicy::HookSucceeded,
        DeletePolicy::HookFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeletePolicy::BeforeHookCreation => "before-hook-creation",
            DeletePolicy::HookSucceeded => "hook-succeeded",
            DeletePolicy::HookFailed => "hook-failed",
        }
    }

    pub fn from_normalized(item: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.as_str() == item)
    }
}

/// An output-log policy (Helm >= 3.18 and 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputLogPolicy {
    HookSucceeded,
    HookFailed,
}

impl OutputLogPolicy {
    pub fn from_normalized(item: &str) -> Option<Self> {
        match item {
            "hook-succeeded" => Some(OutputLogPolicy::HookSucceeded),
            "hook-failed" => Some(OutputLogPolicy::HookFailed),
            _ => None,
        }
    }
}

/// One item of a comma list: the text Helm ends up with, and what it means if Helm knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<T> {
    /// The trimmed, lower-cased text exactly as Helm keeps it.
    pub text: String,
    pub known: Option<T>,
}

/// Splits an annotation value the way Helm does: on `,`, each item trimmed and lower-cased.
/// An empty value yields one empty item, as Go's `strings.Split("", ",")` does.
pub fn split_helm_list(value: &str) -> impl Iterator<Item = String> + '_ {
    value.split(',').map(|item| item.trim().to_lowercase())
}

fn parse_list<T>(value: &str, known: impl Fn(&str) -> Option<T>) -> Vec<Item<T>> {
    split_helm_list(value)
        .map(|text| {
            let known = known(&text);
            Item { text, known }
        })
        .collect()
}

/// The result of parsing `helm.sh/hook-weight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// Parsed by Go's `strconv.Atoi`.
    Valid(i64),
    /// `strconv.Atoi` fails: Helm silently uses 0.
    Invalid,
}

impl Weight {
    /// Go's `strconv.Atoi` on a 64-bit platform: optional `+`/`-`, then decimal digits, no spaces,
    /// no underscores, must fit in an `int`. Rust's `i64` parser accepts exactly that language.
    pub fn parse(value: &str) -> Self {
        match value.parse::<i64>() {
            Ok(n) => Weight::Valid(n),
            Err(_) => Weight::Invalid,
        }
    }

    /// The weight Helm orders by.
    pub fn effective(self) -> i64 {
        match self {
            Weight::Valid(n) => n,
            Weight::Invalid => 0,
        }
    }
}

/// The Helm hook annotations of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookAnnotations {
    pub events: Vec<Item<HookEvent>>,
    /// `None` when the annotation is absent.
    pub weight: Option<(String, Weight)>,
    /// `None` when the annotation is absent.
    pub delete_policies: Option<Vec<Item<DeletePolicy>>>,
    /// `None` when the annotation is absent.
    pub output_log_policies: Option<Vec<Item<OutputLogPolicy>>>,
}

impl HookAnnotations {
    /// Parses the annotations; `None` when the object carries no `helm.sh/hook` (not a hook).
    pub fn parse(
        hook: Option<&str>,
        weight: Option<&str>,
        delete_policy: Option<&str>,
        output_log_policy: Option<&str>,
    ) -> Option<Self> {
        let hook = hook?;
        Some(HookAnnotations {
            events: parse_list(hook, HookEvent::from_normalized),
            weight: weight.map(|w| (w.to_owned(), Weight::parse(w))),
            delete_policies: delete_policy.map(|v| parse_list(v, DeletePolicy::from_normalized)),
            output_log_policies: output_log_policy
                .map(|v| parse_list(v, OutputLogPolicy::from_normalized)),
        })
    }

    /// Helm drops the whole object when any event is unknown.
    pub fn helm_drops_object(&self) -> bool {
        self.events.iter().any(|e| e.known.is_none())
    }

    /// The known events, deduplicated, in canonical order.
    pub fn known_events(&self) -> Vec<HookEvent> {
        let mut events: Vec<HookEvent> = self.events.iter().filter_map(|e| e.known).collect();
        events.sort();
        events.dedup();
        events
    }

    /// The delete policies Helm will apply: its default (`before-hook-creation`) only when the
    /// list is empty, i.e. the annotation is absent. A present list of unknown values disables it.
    pub fn effective_delete_policies(&self) -> Vec<DeletePolicy> {
        match &self.delete_policies {
            None => vec![DeletePolicy::BeforeHookCreation],
            Some(items) => items.iter().filter_map(|i| i.known).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messy_event_list_is_trimmed_and_lower_cased() {
        let h =
            HookAnnotations::parse(Some(" Pre-Install , POST-upgrade "), None, None, None).unwrap();
        assert_eq!(
            h.known_events(),
            vec![HookEvent::PreInstall, HookEvent::PostUpgrade]
        );
        assert!(!h.helm_drops_object());
    }

    #[test]
    fn test_success_is_an_alias_of_test() {
        let h = HookAnnotations::parse(Some("test-success"), None, None, None).unwrap();
        assert_eq!(h.known_events(), vec![HookEvent::Test]);
    }

    #[test]
    fn unknown_events_make_helm_drop_the_object() {
        for value in [
            "crd-install",
            "test-failure",
            "",
            "pre-instal",
            "pre-install,",
        ] {
            let h = HookAnnotations::parse(Some(value), None, None, None).unwrap();
            assert!(h.helm_drops_object(), "{value:?}");
        }
    }

    #[test]
    fn no_hook_annotation_is_not_a_hook() {
        assert!(HookAnnotations::parse(None, Some("5"), None, None).is_none());
    }

    #[test]
    fn weights_follow_go_atoi() {
        assert_eq!(Weight::parse("+5"), Weight::Valid(5));
        assert_eq!(Weight::parse("-5"), Weight::Valid(-5));
        assert_eq!(Weight::parse("007"), Weight::Valid(7));
        assert_eq!(
            Weight::parse("-9223372036854775808"),
            Weight::Valid(i64::MIN)
        );
        for bad in [
            "5.0",
            " 5",
            "5 ",
            "abc",
            "",
            "+",
            "-",
            "1_000",
            "0x10",
            "9223372036854775808",
            "+-5",
        ] {
            assert_eq!(Weight::parse(bad), Weight::Invalid, "{bad:?}");
            assert_eq!(Weight::parse(bad).effective(), 0);
        }
    }

    #[test]
    fn delete_policy_default_only_when_absent() {
        let absent = HookAnnotations::parse(Some("pre-install"), None, None, None).unwrap();
        assert_eq!(
            absent.effective_delete_policies(),
            vec![DeletePolicy::BeforeHookCreation]
        );
        let typo = HookAnnotations::parse(
            Some("pre-install"),
            None,
            Some("before-hook-creations"),
            None,
        )
        .unwrap();
        assert!(typo.effective_delete_policies().is_empty());
        let empty = HookAnnotations::parse(Some("pre-install"), None, Some(""), None).unwrap();
        assert!(empty.effective_delete_policies().is_empty());
        let kyverno = HookAnnotations::parse(
            Some("post-upgrade"),
            None,
            Some("before-hook-creation,hook-succeeded,hook-failed"),
            None,
        )
        .unwrap();
        assert_eq!(kyverno.effective_delete_policies().len(), 3);
    }
}

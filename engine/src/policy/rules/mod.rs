//! The rules, one per file. A rule reads the [`Context`] and returns a [`Violation`] when the object
//! breaks it; mutating rules attach the patch that fixes it. The engine applies the rule's mode.
//!
//! Adding a rule: write its file and add one line to [`RULES`].

use super::config::Mode;
use super::{Context, Violation};

mod delete_policy_default;
mod delete_policy_recreate;
mod delete_policy_unknown;
mod hook_event_unknown;
mod hook_kind_long_running;
mod hook_weight_invalid;
mod image_tag;
mod job_ttl;
mod pod_security;
mod restart_policy;

/// Static facts about a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleInfo {
    /// Stable id used in config, messages, audit annotations and metrics.
    pub id: &'static str,
    pub default_mode: Mode,
    /// Whether `enforce` means "mutate" (true) or "deny" (false).
    pub mutates: bool,
    /// A security rule: an object's own `hookguard.io/exempt` annotation waives it only when the
    /// policy names it in `exemptions.objectRules` (`*` does not cover it).
    pub security: bool,
    /// One line for docs and `hookguard lint --list-rules`.
    pub summary: &'static str,
}

pub trait Rule: Sync {
    fn info(&self) -> RuleInfo;
    fn check(&self, ctx: &Context<'_, '_>) -> Option<Violation>;
}

/// Every rule, in the order findings are reported.
pub static RULES: &[&dyn Rule] = &[
    &hook_event_unknown::HookEventUnknown,
    &hook_weight_invalid::HookWeightInvalid,
    &delete_policy_unknown::DeletePolicyUnknown,
    &delete_policy_recreate::DeletePolicyRecreate,
    &hook_kind_long_running::HookKindLongRunning,
    &pod_security::PodSecurity,
    &image_tag::ImageTag,
    &restart_policy::RestartPolicy,
    &job_ttl::JobTtl,
    &delete_policy_default::DeletePolicyDefault,
];

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_kebab_case() {
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.info().id).collect();
        for id in &ids {
            assert!(
                id.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{id}"
            );
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
    }
}

//! Deny unknown delete policies: Helm stores them without validation, ignores them, and a list with
//! no valid value switches off its default `before-hook-creation`.

use crate::hook::DeletePolicy;
use crate::policy::did_you_mean::nearest;
use crate::policy::{Context, Mode, Rule, RuleInfo, Violation};

pub struct DeletePolicyUnknown;

impl Rule for DeletePolicyUnknown {
    fn info(&self) -> RuleInfo {
        RuleInfo {
            id: "delete-policy-unknown",
            default_mode: Mode::Enforce,
            mutates: false,
            summary: "helm.sh/hook-delete-policy holds a value Helm does not know",
        }
    }

    fn check(&self, ctx: &Context<'_, '_>) -> Option<Violation> {
        let items = ctx.hook.delete_policies.as_ref()?;
        let valid = DeletePolicy::ALL.iter().map(|p| p.as_str());
        let problems: Vec<String> = items
            .iter()
            .filter(|i| i.known.is_none())
            .map(|i| {
                let near = nearest(&i.text, valid.clone()).unwrap_or("before-hook-creation");
                if i.text.is_empty() {
                    format!("an empty value (did you mean {near:?}?)")
                } else {
                    format!("unknown value {:?} (did you mean {near:?}?)", i.text)
                }
            })
            .collect();
        if problems.is_empty() {
            return None;
        }
        Some(Violation::new(format!(
            "helm.sh/hook-delete-policy has {}. Helm ignores unknown values, and a list without a \
             valid one turns off its default before-hook-creation, so the next upgrade fails with \
             \"already exists\"; valid values: before-hook-creation, hook-succeeded, hook-failed",
            problems.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::rules::testing::*;

    fn with_policy(p: &str) -> String {
        job(
            &format!(r#""helm.sh/hook": "pre-install", "helm.sh/hook-delete-policy": "{p}""#),
            "",
        )
    }

    #[test]
    fn typo_is_denied_naming_value_and_nearest() {
        let msg = denial(
            &judge(&with_policy("before-hook-creations")),
            "delete-policy-unknown",
        );
        assert!(msg.contains("\"before-hook-creations\""), "{msg}");
        assert!(
            msg.contains("did you mean \"before-hook-creation\""),
            "{msg}"
        );
        let msg = denial(
            &judge(&with_policy("hook-suceeded,hook-failed")),
            "delete-policy-unknown",
        );
        assert!(msg.contains("did you mean \"hook-succeeded\""), "{msg}");
    }

    #[test]
    fn empty_value_is_denied() {
        let msg = denial(&judge(&with_policy("")), "delete-policy-unknown");
        assert!(msg.contains("empty value"), "{msg}");
    }

    #[test]
    fn kyverno_and_gatekeeper_lists_pass() {
        for p in [
            "before-hook-creation,hook-succeeded,hook-failed",
            "hook-succeeded,before-hook-creation",
            " Before-Hook-Creation ",
        ] {
            assert!(
                !fired(&judge(&with_policy(p)), "delete-policy-unknown"),
                "{p}"
            );
        }
    }
}

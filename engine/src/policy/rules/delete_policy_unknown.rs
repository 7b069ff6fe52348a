//! Deny unknown delete policies: Helm stores them without validation, ignores them, and a list with
//! no valid value switches off its default `before-hook-creation`.

use crate::hook::DeletePolicy;
use crate::policy::did_you_mean::nearest;
use crate::policy::{Context, Mode, Problems, Rule, RuleInfo, Violation};

pub struct DeletePolicyUnknown;

impl Rule for DeletePolicyUnknown {
    fn info(&self) -> RuleInfo {
        RuleInfo {
            id: "delete-policy-unknown",
            default_mode: Mode::Enforce,
            mutates: false,
            security: false,
            summary: "helm.sh/hook-delete-policy holds a value Helm does not know",
        }
    }

    fn check(&self, ctx: &Context<'_, '_>) -> Option<Violation> {
        let list = ctx.hook.delete_policies.as_ref()?;
        let valid = DeletePolicy::ALL.iter().map(|p| p.as_str());
        let mut problems = Problems::new();
        for item in &list.unknown {
            problems.push_with(|| {
                if item.text.is_empty() {
                    return "an empty value (did you mean \"before-hook-creation\"?)".to_owned();
                }
                if item.is_truncated() {
                    // Too long to be a typo: no edit distance over it.
                    return format!("unknown value {item}");
                }
                let near = nearest(&item.text, valid.clone()).unwrap_or("before-hook-creation");
                format!("unknown value {item} (did you mean {near:?}?)")
            });
        }
        problems.add_not_shown(list.unknown_not_kept);
        Violation::listing(problems, |list| {
            format!(
                "helm.sh/hook-delete-policy has {list}. Helm ignores unknown values, and a list \
                 without a valid one turns off its default before-hook-creation, so the next \
                 upgrade fails with \"already exists\"; valid values: before-hook-creation, \
                 hook-succeeded, hook-failed"
            )
        })
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
    fn a_huge_list_gives_a_short_message() {
        let msg = denial(
            &judge(&with_policy(&"xy,".repeat(80_000))),
            "delete-policy-unknown",
        );
        assert!(msg.len() < 1024, "{} bytes", msg.len());
        assert!(msg.contains("unknown value \"xy\""), "{msg}");
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

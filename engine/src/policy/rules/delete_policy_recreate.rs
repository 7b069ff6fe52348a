//! Warn when a delete policy is set without `before-hook-creation`: a hook object that is kept
//! (failed, or not deleted) makes the next `helm upgrade` fail with "already exists".

use crate::hook::DeletePolicy;
use crate::policy::{Context, Mode, Rule, RuleInfo, Violation};

pub struct DeletePolicyRecreate;

impl Rule for DeletePolicyRecreate {
    fn info(&self) -> RuleInfo {
        RuleInfo {
            id: "delete-policy-recreate",
            default_mode: Mode::Warn,
            mutates: false,
            security: false,
            summary: "helm.sh/hook-delete-policy is set without before-hook-creation",
        }
    }

    fn check(&self, ctx: &Context<'_, '_>) -> Option<Violation> {
        ctx.hook.delete_policies.as_ref()?;
        let effective = ctx.hook.effective_delete_policies();
        if effective.contains(&DeletePolicy::BeforeHookCreation) {
            return None;
        }
        let mut suggested: Vec<&str> = vec!["before-hook-creation"];
        suggested.extend(effective.iter().map(|p| p.as_str()));
        Some(Violation::new(format!(
            "helm.sh/hook-delete-policy lacks before-hook-creation: when this hook fails or is kept, \
             the next helm upgrade fails with \"already exists\"; use \"{}\"",
            suggested.join(",")
        )))
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::rules::testing::*;

    #[test]
    fn hook_succeeded_alone_warns_with_suggestion() {
        let j = job(
            r#""helm.sh/hook": "post-install", "helm.sh/hook-delete-policy": "hook-succeeded""#,
            "Never",
        );
        let d = judge(&j);
        assert!(d.allowed());
        let msg = warning(&d, "delete-policy-recreate");
        assert!(
            msg.contains("\"before-hook-creation,hook-succeeded\""),
            "{msg}"
        );
    }

    #[test]
    fn absent_policy_does_not_warn() {
        assert!(!fired(
            &judge(&job(r#""helm.sh/hook": "post-install""#, "Never")),
            "delete-policy-recreate"
        ));
    }

    #[test]
    fn policy_with_before_hook_creation_does_not_warn() {
        let j = job(
            r#""helm.sh/hook": "post-install", "helm.sh/hook-delete-policy": "hook-succeeded, before-hook-creation""#,
            "Never",
        );
        assert!(!fired(&judge(&j), "delete-policy-recreate"));
    }
}

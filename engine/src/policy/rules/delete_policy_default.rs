//! Make Helm's default delete policy visible: when the annotation is absent, Helm applies
//! `before-hook-creation`; hookguard writes it on the live object for people, audits and its
//! inventory. Metadata only, so CREATE and UPDATE.

use serde_json::Value;

use crate::hook::DELETE_POLICY_ANNOTATION;
use crate::policy::{Context, Mode, Rule, RuleInfo, Violation, add_op};

pub struct DeletePolicyDefault;

impl Rule for DeletePolicyDefault {
    fn info(&self) -> RuleInfo {
        RuleInfo {
            id: "delete-policy-default",
            default_mode: Mode::Enforce,
            mutates: true,
            security: false,
            summary: "no helm.sh/hook-delete-policy: set before-hook-creation (Helm's default) on the object",
        }
    }

    fn check(&self, ctx: &Context<'_, '_>) -> Option<Violation> {
        if ctx.hook.delete_policies.is_some() {
            return None;
        }
        Some(Violation::with_patch(
            "helm.sh/hook-delete-policy is not set (Helm then applies before-hook-creation); \
             hookguard records it on the object; set it in the chart to be explicit",
            vec![add_op(
                ["metadata", "annotations", DELETE_POLICY_ANNOTATION],
                Value::String("before-hook-creation".to_owned()),
            )],
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::Operation;
    use crate::policy::Policy;
    use crate::policy::rules::testing::*;

    #[test]
    fn absent_policy_gets_before_hook_creation_on_create_and_update() {
        let j = job(r#""helm.sh/hook": "pre-install""#, "Never");
        for op in [Operation::Create, Operation::Update] {
            let d = judge_with(&Policy::default(), &j, op);
            let v = patched(&j, &d);
            assert_eq!(
                v["metadata"]["annotations"]["helm.sh/hook-delete-policy"],
                "before-hook-creation"
            );
            assert!(
                v["metadata"]["annotations"]["hookguard.io/mutated"]
                    .as_str()
                    .unwrap()
                    .contains("delete-policy-default")
            );
        }
    }

    #[test]
    fn present_policy_is_left_alone() {
        let j = job(
            r#""helm.sh/hook": "pre-install", "helm.sh/hook-delete-policy": "hook-failed""#,
            "Never",
        );
        assert!(!fired(&judge(&j), "delete-policy-default"));
    }
}

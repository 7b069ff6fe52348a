//! Set `restartPolicy: Never` on hook Pods and hook Job templates that arrive as `Always` (the API
//! default): a hook Pod that restarts forever never completes, so Helm waits until its timeout, and
//! the API server rejects a Job template with `Always`. Specs are immutable: CREATE only.

use serde_json::Value;

use crate::policy::{Context, Mode, Rule, RuleInfo, Violation, Workload, add_under};

pub struct RestartPolicy;

impl Rule for RestartPolicy {
    fn info(&self) -> RuleInfo {
        RuleInfo {
            id: "restart-policy",
            default_mode: Mode::Enforce,
            mutates: true,
            security: false,
            summary: "hook Pod or Job template has restartPolicy Always (the default): set Never",
        }
    }

    fn check(&self, ctx: &Context<'_, '_>) -> Option<Violation> {
        if !ctx.spec_is_mutable() {
            return None;
        }
        let (spec, at) = ctx.workload.pod_spec()?;
        // An object that was not defaulted (lint input) has no restartPolicy: that means Always.
        let current = spec.restart_policy.as_deref().unwrap_or("Always");
        if current != "Always" {
            return None;
        }
        let why = match ctx.workload {
            Workload::Job(_) => "a Job's pods cannot use Always (the API server rejects it)",
            _ => "a hook Pod that restarts forever never finishes, so helm waits until its timeout",
        };
        Some(Violation::with_patch(
            format!(
                "{at}/restartPolicy is Always (the default when unset): {why}; set restartPolicy: Never"
            ),
            vec![add_under(
                at,
                "restartPolicy",
                Value::String("Never".to_owned()),
            )],
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::rules::testing::*;
    use crate::policy::{Operation, Policy};

    const TEST_HOOK: &str = r#""helm.sh/hook": "test""#;

    #[test]
    fn test_pod_without_restart_policy_gets_never() {
        let p = pod(TEST_HOOK, "");
        let d = judge(&p);
        assert!(d.mutated_rules().contains(&"restart-policy"));
        assert_eq!(patched(&p, &d)["spec"]["restartPolicy"], "Never");
    }

    #[test]
    fn job_template_gets_never() {
        let j = job(r#""helm.sh/hook": "pre-install,pre-upgrade""#, "Always");
        let d = judge(&j);
        assert_eq!(
            patched(&j, &d)["spec"]["template"]["spec"]["restartPolicy"],
            "Never"
        );
    }

    #[test]
    fn on_failure_and_never_are_kept() {
        for rp in ["OnFailure", "Never"] {
            assert!(!fired(&judge(&job(TEST_HOOK, rp)), "restart-policy"));
        }
    }

    #[test]
    fn update_never_touches_the_spec() {
        let d = judge_with(&Policy::default(), &pod(TEST_HOOK, ""), Operation::Update);
        assert!(!fired(&d, "restart-policy"));
    }

    #[test]
    fn warn_mode_warns_instead_of_mutating() {
        let policy = crate::policy::Config::from_yaml("rules:\n  restart-policy: warn\n").unwrap();
        let d = judge_with(&policy, &pod(TEST_HOOK, ""), Operation::Create);
        assert!(!d.mutated_rules().contains(&"restart-policy"));
        assert!(warning(&d, "restart-policy").contains("set restartPolicy: Never"));
    }
}

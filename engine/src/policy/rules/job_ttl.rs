//! Give hook Jobs a `ttlSecondsAfterFinished` so finished hooks do not pile up, never shorter than
//! the floor: a Job deleted before Helm saw it complete makes Helm 4 and Argo CD wait until timeout.
//! Only on CREATE (hookguard mutates specs only when they are created).

use serde_json::Value;

use crate::policy::{Context, Mode, Rule, RuleInfo, Violation, Workload, add_op};

pub struct JobTtl;

impl Rule for JobTtl {
    fn info(&self) -> RuleInfo {
        RuleInfo {
            id: "job-ttl",
            default_mode: Mode::Enforce,
            mutates: true,
            security: false,
            summary: "hook Job has no ttlSecondsAfterFinished (set the default) or one below the floor (raise it)",
        }
    }

    fn check(&self, ctx: &Context<'_, '_>) -> Option<Violation> {
        if !ctx.spec_is_mutable() {
            return None;
        }
        let Workload::Job(job) = ctx.workload else {
            return None;
        };
        let ttl = &ctx.policy.config().job_ttl;
        let (message, value) = match job.ttl_seconds_after_finished {
            None => (
                format!(
                    "spec.ttlSecondsAfterFinished is not set, so finished hook Jobs pile up; \
                     hookguard sets {}; set it in the chart",
                    ttl.default_seconds
                ),
                ttl.default_seconds,
            ),
            Some(v) if v < ttl.floor_seconds => (
                format!(
                    "spec.ttlSecondsAfterFinished {v} is below the floor of {}: the Job can be \
                     deleted before Helm sees it complete (Helm 4 then waits until its timeout); \
                     set at least {}",
                    ttl.floor_seconds, ttl.floor_seconds
                ),
                ttl.floor_seconds,
            ),
            Some(_) => return None,
        };
        Some(Violation::with_patch(
            message,
            vec![add_op(
                ["spec", "ttlSecondsAfterFinished"],
                Value::from(value),
            )],
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::policy::rules::testing::*;
    use crate::policy::{Operation, Policy};

    const HOOK: &str = r#""helm.sh/hook": "pre-install""#;

    #[test]
    fn missing_ttl_gets_default() {
        let j = job(HOOK, "Never");
        assert_eq!(
            patched(&j, &judge(&j))["spec"]["ttlSecondsAfterFinished"],
            600
        );
    }

    #[test]
    fn zero_and_low_ttl_are_raised_to_the_floor() {
        for low in [0, 5, 59] {
            let j = with(
                &job(HOOK, "Never"),
                "/spec/ttlSecondsAfterFinished",
                json!(low),
            );
            assert_eq!(
                patched(&j, &judge(&j))["spec"]["ttlSecondsAfterFinished"],
                60
            );
        }
    }

    #[test]
    fn ttl_at_or_above_floor_is_kept() {
        for ok in [60, 3600] {
            let j = with(
                &job(HOOK, "Never"),
                "/spec/ttlSecondsAfterFinished",
                json!(ok),
            );
            assert!(!fired(&judge(&j), "job-ttl"));
        }
    }

    #[test]
    fn configured_values_are_used_and_update_is_untouched() {
        let policy =
            crate::policy::Config::from_yaml("jobTtl:\n  defaultSeconds: 5\n  floorSeconds: 2\n")
                .unwrap();
        let j = job(HOOK, "Never");
        let d = judge_with(&policy, &j, Operation::Create);
        assert_eq!(patched(&j, &d)["spec"]["ttlSecondsAfterFinished"], 5);
        assert!(!fired(
            &judge_with(&Policy::default(), &j, Operation::Update),
            "job-ttl"
        ));
    }

    #[test]
    fn pods_have_no_ttl() {
        assert!(!fired(&judge(&pod(HOOK, "Never")), "job-ttl"));
    }
}

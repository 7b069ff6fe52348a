//! Deny hooks on long-running kinds: Helm waits only for Jobs and Pods, never updates a hook in
//! place and never deletes hooks on uninstall.

use crate::policy::{Context, Mode, Rule, RuleInfo, Violation};

pub struct HookKindLongRunning;

impl Rule for HookKindLongRunning {
    fn info(&self) -> RuleInfo {
        RuleInfo {
            id: "hook-kind-long-running",
            default_mode: Mode::Enforce,
            mutates: false,
            security: true,
            summary: "a long-running kind (Deployment, StatefulSet, DaemonSet, ReplicaSet, Service, CronJob) is a hook",
        }
    }

    fn check(&self, ctx: &Context<'_, '_>) -> Option<Violation> {
        let qualified = ctx.qualified_kind();
        let listed = ctx.policy.config().long_running_kinds.contains(&qualified);
        if !listed {
            return None;
        }
        Some(Violation::new(format!(
            "a {qualified} cannot be a Helm hook: Helm waits only for Jobs and Pods, recreates hooks \
             instead of updating them and never deletes them on uninstall, so this {kind} would be \
             orphaned or replaced on every upgrade; remove the helm.sh/hook annotation to make it a \
             normal release resource, or do the hook's work in a Job",
            kind = ctx.kind
        )))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::policy::rules::testing::*;

    fn object(api_version: &str, kind: &str) -> String {
        json!({
            "apiVersion": api_version, "kind": kind,
            "metadata": {"name": "x", "namespace": "default", "annotations": {"helm.sh/hook": "pre-install"}},
            "spec": {"selector": {"app": "x"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}
        })
        .to_string()
    }

    #[test]
    fn deployment_and_service_are_denied() {
        assert!(
            denial(
                &judge(&object("apps/v1", "Deployment")),
                "hook-kind-long-running"
            )
            .contains("Deployment.apps cannot be a Helm hook")
        );
        assert!(fired(
            &judge(&object("v1", "Service")),
            "hook-kind-long-running"
        ));
        assert!(fired(
            &judge(&object("apps/v1", "DaemonSet")),
            "hook-kind-long-running"
        ));
    }

    #[test]
    fn config_maps_secrets_and_custom_kinds_are_fine() {
        assert!(judge(&object("v1", "ConfigMap")).allowed());
        assert!(judge(&object("v1", "ServiceAccount")).allowed());
        // A custom resource named like a built-in is not the built-in.
        assert!(judge(&object("example.com/v1", "Deployment")).allowed());
    }
}

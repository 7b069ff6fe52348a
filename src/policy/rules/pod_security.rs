//! Deny hook pods that reach into the node: privileged containers, host namespaces, hostPath
//! volumes. Hooks run on every install and upgrade with the chart author's choices, unreviewed.

use crate::policy::{Context, Mode, Rule, RuleInfo, Violation};

pub struct PodSecurity;

impl Rule for PodSecurity {
    fn info(&self) -> RuleInfo {
        RuleInfo {
            id: "pod-security",
            default_mode: Mode::Enforce,
            mutates: false,
            summary: "hook pod is privileged, uses the host network/PID/IPC namespace or a hostPath volume",
        }
    }

    fn check(&self, ctx: &Context<'_, '_>) -> Option<Violation> {
        let (spec, at) = ctx.workload.pod_spec()?;
        let mut problems: Vec<String> = Vec::new();
        for (list, c) in spec.all_containers() {
            if c.security_context.as_ref().and_then(|s| s.privileged) == Some(true) {
                problems.push(format!(
                    "{list} {:?} is privileged (remove securityContext.privileged)",
                    c.name.as_deref().unwrap_or_default()
                ));
            }
        }
        for (field, on) in [
            ("hostNetwork", spec.host_network),
            ("hostPID", spec.host_pid),
            ("hostIPC", spec.host_ipc),
        ] {
            if on == Some(true) {
                problems.push(format!("{at}/{field} is true (remove it)"));
            }
        }
        for v in spec.volumes.iter().flatten() {
            if let Some(host) = &v.host_path {
                problems.push(format!(
                    "volume {:?} mounts hostPath {:?} (use an emptyDir, ConfigMap or PVC)",
                    v.name.as_deref().unwrap_or_default(),
                    host.path.as_deref().unwrap_or_default()
                ));
            }
        }
        if problems.is_empty() {
            return None;
        }
        Some(Violation::new(format!(
            "hook pod reaches into the node: {}",
            problems.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::policy::rules::testing::*;

    const HOOK: &str = r#""helm.sh/hook": "pre-install""#;

    #[test]
    fn privileged_container_is_denied() {
        let j = with(
            &job(HOOK, "Never"),
            "/spec/template/spec/containers/0/securityContext",
            json!({"privileged": true}),
        );
        let msg = denial(&judge(&j), "pod-security");
        assert!(
            msg.contains("containers \"migrate\" is privileged"),
            "{msg}"
        );
    }

    #[test]
    fn host_namespaces_and_host_path_are_denied() {
        let p = with(&pod(HOOK, "Never"), "/spec/hostNetwork", json!(true));
        assert!(denial(&judge(&p), "pod-security").contains("/spec/hostNetwork"));
        let p = with(&pod(HOOK, "Never"), "/spec/hostPID", json!(true));
        assert!(fired(&judge(&p), "pod-security"));
        let p = with(
            &pod(HOOK, "Never"),
            "/spec/volumes",
            json!([{"name": "root", "hostPath": {"path": "/", "type": ""}}]),
        );
        assert!(denial(&judge(&p), "pod-security").contains("hostPath \"/\""));
    }

    #[test]
    fn hardened_pod_passes() {
        let p = with(
            &pod(HOOK, "Never"),
            "/spec/containers/0/securityContext",
            json!({"privileged": false, "runAsNonRoot": true, "allowPrivilegeEscalation": false}),
        );
        assert!(!fired(&judge(&p), "pod-security"));
    }
}

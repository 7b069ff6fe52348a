//! Deny hook pods that reach into the node: privileged containers, privilege escalation, added
//! capabilities beyond the Pod Security Standards' baseline set, host namespaces, host ports,
//! hostPath volumes, Windows host-process containers. Hooks run on every install and upgrade with
//! the chart author's choices, unreviewed.

use crate::object::{SecurityContext, WindowsOptions};
use crate::policy::{Context, Mode, Problems, Rule, RuleInfo, Violation, echo};

pub struct PodSecurity;

/// Capabilities a container may add: the Pod Security Standards' baseline list (what the
/// container runtimes grant by default anyway). Anything else (`SYS_ADMIN`, `NET_ADMIN`, `ALL`,
/// ...) gives the hook power over the node.
pub const SAFE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn is_safe_capability(cap: &str) -> bool {
    let cap = cap.trim();
    let bare = cap
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("CAP_"))
        .map_or(cap, |_| &cap[4..]);
    SAFE_CAPABILITIES
        .iter()
        .any(|safe| safe.eq_ignore_ascii_case(bare))
}

fn host_process(options: Option<&WindowsOptions>) -> bool {
    options.and_then(|w| w.host_process) == Some(true)
}

fn container_problems(list: &str, name: &str, sc: &SecurityContext<'_>, problems: &mut Problems) {
    if sc.privileged == Some(true) {
        problems.push_with(|| {
            format!(
                "{list} {} is privileged (remove securityContext.privileged)",
                echo(name)
            )
        });
    }
    if sc.allow_privilege_escalation == Some(true) {
        problems.push_with(|| {
            format!(
                "{list} {} allows privilege escalation (set securityContext.allowPrivilegeEscalation: false)",
                echo(name)
            )
        });
    }
    for cap in sc
        .capabilities
        .as_ref()
        .and_then(|c| c.add.as_ref())
        .into_iter()
        .flatten()
    {
        if !is_safe_capability(cap) {
            problems.push_with(|| {
                format!(
                    "{list} {} adds capability {} (only the baseline set may be added: {})",
                    echo(name),
                    echo(cap),
                    SAFE_CAPABILITIES.join(", ")
                )
            });
        }
    }
    if host_process(sc.windows_options.as_ref()) {
        problems.push_with(|| {
            format!(
                "{list} {} is a Windows host process (remove securityContext.windowsOptions.hostProcess)",
                echo(name)
            )
        });
    }
}

impl Rule for PodSecurity {
    fn info(&self) -> RuleInfo {
        RuleInfo {
            id: "pod-security",
            default_mode: Mode::Enforce,
            mutates: false,
            security: true,
            summary: "hook pod is privileged, escalates privileges, adds capabilities, uses the host network/PID/IPC, host ports, hostPath volumes or Windows host processes",
        }
    }

    fn check(&self, ctx: &Context<'_, '_>) -> Option<Violation> {
        let (spec, at) = ctx.workload.pod_spec()?;
        let mut problems = Problems::new();
        for (field, on) in [
            ("hostNetwork", spec.host_network),
            ("hostPID", spec.host_pid),
            ("hostIPC", spec.host_ipc),
        ] {
            if on == Some(true) {
                problems.push_with(|| format!("{at}/{field} is true (remove it)"));
            }
        }
        if host_process(
            spec.security_context
                .as_ref()
                .and_then(|s| s.windows_options.as_ref()),
        ) {
            problems.push_with(|| {
                format!("{at}/securityContext/windowsOptions/hostProcess is true (remove it)")
            });
        }
        for (list, c) in spec.all_containers() {
            let name = c.name.as_deref().unwrap_or_default();
            if let Some(sc) = &c.security_context {
                container_problems(list, name, sc, &mut problems);
            }
            for port in c.ports.iter().flatten() {
                if let Some(host_port) = port.host_port.filter(|p| *p != 0) {
                    problems.push_with(|| {
                        format!(
                            "{list} {} binds hostPort {host_port} on the node (remove hostPort; use a Service)",
                            echo(name)
                        )
                    });
                }
            }
        }
        for v in spec.volumes.iter().flatten() {
            if let Some(host) = &v.host_path {
                problems.push_with(|| {
                    format!(
                        "volume {} mounts hostPath {} (use an emptyDir, ConfigMap or PVC)",
                        echo(v.name.as_deref().unwrap_or_default()),
                        echo(host.path.as_deref().unwrap_or_default())
                    )
                });
            }
        }
        Violation::listing(problems, |list| {
            format!("hook pod reaches into the node: {list}")
        })
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
    fn escalation_capabilities_host_ports_and_host_process_are_denied() {
        let j = with(
            &job(HOOK, "Never"),
            "/spec/template/spec/containers/0/securityContext",
            json!({"allowPrivilegeEscalation": true, "capabilities": {"add": ["NET_BIND_SERVICE", "CAP_SYS_ADMIN"], "drop": ["ALL"]}}),
        );
        let msg = denial(&judge(&j), "pod-security");
        assert!(msg.contains("allows privilege escalation"), "{msg}");
        assert!(msg.contains("adds capability \"CAP_SYS_ADMIN\""), "{msg}");
        assert!(!msg.contains("\"NET_BIND_SERVICE\" ("), "{msg}");
        let p = with(
            &pod(HOOK, "Never"),
            "/spec/containers/0/ports",
            json!([{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}]),
        );
        assert!(denial(&judge(&p), "pod-security").contains("hostPort 8080"));
        let p = with(
            &pod(HOOK, "Never"),
            "/spec/securityContext",
            json!({"windowsOptions": {"hostProcess": true}}),
        );
        assert!(denial(&judge(&p), "pod-security").contains("hostProcess"));
        let p = with(
            &pod(HOOK, "Never"),
            "/spec/containers/0/securityContext",
            json!({"windowsOptions": {"hostProcess": true, "runAsUserName": "NT AUTHORITY\\SYSTEM"}}),
        );
        assert!(denial(&judge(&p), "pod-security").contains("Windows host process"));
    }

    #[test]
    fn baseline_capabilities_and_container_ports_pass() {
        let p = with(
            &pod(HOOK, "Never"),
            "/spec/containers/0/securityContext",
            json!({"capabilities": {"add": ["CHOWN", "cap_setuid", "NET_BIND_SERVICE"]}}),
        );
        let p = with(
            &p,
            "/spec/containers/0/ports",
            json!([{"containerPort": 80, "protocol": "TCP"}]),
        );
        assert!(!fired(&judge(&p), "pod-security"));
    }

    #[test]
    fn forty_thousand_privileged_containers_give_a_short_message() {
        let containers: Vec<_> = (0..40_000)
            .map(|i| json!({"name": format!("c{i}"), "image": "busybox:1.36", "securityContext": {"privileged": true}}))
            .collect();
        let p = with(&pod(HOOK, "Never"), "/spec/containers", json!(containers));
        let msg = denial(&judge(&p), "pod-security");
        assert!(msg.len() < 2048, "{} bytes", msg.len());
        assert!(msg.contains("and 39995 more"), "{msg}");
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

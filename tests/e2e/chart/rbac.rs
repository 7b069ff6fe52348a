//! The chart's RBAC: exactly the rules each enabled feature needs, bound to the chart's
//! ServiceAccount (checked on rendered and stored Roles), and the API server's authorizer agreeing
//! (`kubectl auth can-i --as`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::{of_kind, strings};
use crate::Env;
use crate::cluster::{Result, ensure};

/// What the chart grants, one set of permissions per feature.
#[derive(Clone, Copy)]
pub(super) enum Grant {
    /// certs.mode=selfManaged: its own Secret, and patching its two webhook configurations.
    Certs,
    /// Leader election: its own Lease.
    Lease,
    /// The inventory: reading Jobs and Pods in every namespace.
    Inventory,
    /// Orphan detection: listing Helm's release Secrets.
    Orphans,
    /// The janitor: deleting Jobs and Pods.
    Janitor,
}

/// One entry per (kind, API group, resource, verb, resourceName) of the Roles and ClusterRoles in
/// `docs`, e.g. "Role coordination.k8s.io/leases get hookguard" ("*": any name), so that what a
/// value set grants can be compared exactly.
fn rbac_rules(docs: &[Value]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
    {
        let kind = d["kind"].as_str().unwrap_or_default();
        for r in d["rules"].as_array().into_iter().flatten() {
            let mut names = strings(&r["resourceNames"]);
            if names.is_empty() {
                names.push("*".to_owned());
            }
            for group in strings(&r["apiGroups"]) {
                for resource in strings(&r["resources"]) {
                    for verb in strings(&r["verbs"]) {
                        for name in &names {
                            out.insert(format!("{kind} {group}/{resource} {verb} {name}"));
                        }
                    }
                }
            }
        }
    }
    out
}

/// The entries (as `rbac_rules` spells them) that `grants` need for release `fullname`.
fn expected_rbac(fullname: &str, grants: &[Grant]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut add = |kind: &str, resource: &str, verbs: &[&str], name: &str| {
        for verb in verbs {
            out.insert(format!("{kind} {resource} {verb} {name}"));
        }
    };
    for grant in grants {
        match grant {
            Grant::Certs => {
                add(
                    "Role",
                    "/secrets",
                    &["get", "list", "watch", "update"],
                    &format!("{fullname}-tls"),
                );
                add("Role", "/secrets", &["create"], "*");
                for r in [
                    "mutatingwebhookconfigurations",
                    "validatingwebhookconfigurations",
                ] {
                    add(
                        "ClusterRole",
                        &format!("admissionregistration.k8s.io/{r}"),
                        &["get", "list", "watch", "patch"],
                        fullname,
                    );
                }
            }
            Grant::Lease => {
                add(
                    "Role",
                    "coordination.k8s.io/leases",
                    &["get", "update"],
                    fullname,
                );
                add("Role", "coordination.k8s.io/leases", &["create"], "*");
            }
            Grant::Inventory => {
                add("ClusterRole", "batch/jobs", &["get", "list", "watch"], "*");
                add("ClusterRole", "/pods", &["get", "list", "watch"], "*");
            }
            Grant::Orphans => add("ClusterRole", "/secrets", &["list", "watch"], "*"),
            Grant::Janitor => {
                add("ClusterRole", "/pods", &["delete"], "*");
                add("ClusterRole", "batch/jobs", &["delete"], "*");
            }
        }
    }
    out
}

/// The Roles and ClusterRoles in `docs` grant exactly `grants`, and each is bound to the chart's
/// ServiceAccount by one binding of the same name.
pub(super) fn check_rbac(docs: &[Value], fullname: &str, ns: &str, grants: &[Grant]) -> Result<()> {
    let got = rbac_rules(docs);
    let want = expected_rbac(fullname, grants);
    ensure(got == want, || {
        format!(
            "RBAC: granted but not needed {:?}; needed but not granted {:?}",
            got.difference(&want).collect::<Vec<_>>(),
            want.difference(&got).collect::<Vec<_>>()
        )
    })?;
    for (role, binding) in [
        ("Role", "RoleBinding"),
        ("ClusterRole", "ClusterRoleBinding"),
    ] {
        let (roles, bindings) = (of_kind(docs, role), of_kind(docs, binding));
        ensure(roles.len() == bindings.len() && roles.len() <= 1, || {
            format!("{} {role}, {} {binding}", roles.len(), bindings.len())
        })?;
        if let (Some(r), Some(b)) = (roles.first(), bindings.first()) {
            ensure(
                r["metadata"]["name"] == fullname
                    && b["roleRef"]["kind"] == role
                    && b["roleRef"]["name"] == fullname
                    && b["subjects"]
                        == serde_json::json!([
                            {"kind": "ServiceAccount", "name": fullname, "namespace": ns}
                        ]),
                || format!("{binding} {b}"),
            )?;
        }
    }
    Ok(())
}

/// The API server's own authorizer (`kubectl auth can-i --as`) agrees that the chart's
/// ServiceAccount may do what hookguard needs with the default values, and nothing next to it.
pub(super) fn service_account_permissions(env: &Env, ns: &str, sa: &str) -> Result<()> {
    let user = format!("system:serviceaccount:{ns}:{sa}");
    let tls = format!("secrets/{sa}-tls");
    let lease = format!("leases.coordination.k8s.io/{sa}");
    let mwc = format!("mutatingwebhookconfigurations/{sa}");
    let vwc = format!("validatingwebhookconfigurations/{sa}");
    let checks: [(&[&str], bool); 25] = [
        (&["get", &tls, "-n", ns], true),
        (&["watch", &tls, "-n", ns], true),
        (&["watch", &vwc], true),
        (&["update", &tls, "-n", ns], true),
        (&["patch", &tls, "-n", ns], false),
        (&["create", "secrets", "-n", ns], true),
        (&["get", &mwc], true),
        (&["patch", &mwc], true),
        (&["patch", &vwc], true),
        (&["update", &lease, "-n", ns], true),
        (&["patch", &lease, "-n", ns], false),
        (&["create", "leases.coordination.k8s.io", "-n", ns], true),
        (&["watch", "jobs.batch", "-A"], true),
        (&["list", "pods", "-A"], true),
        (&["list", "secrets", "-A"], true),
        (&["get", "secrets/other", "-n", ns], false),
        (&["update", "secrets/other", "-n", ns], false),
        (&["delete", &tls, "-n", ns], false),
        (&["patch", "mutatingwebhookconfigurations/other"], false),
        (
            &["update", "leases.coordination.k8s.io/other", "-n", ns],
            false,
        ),
        (&["delete", "pods", "-n", "default"], false),
        (&["delete", "jobs.batch", "-n", "default"], false),
        (&["create", "pods", "-n", ns], false),
        (&["update", "configmaps", "-n", ns], false),
        (&["update", "deployments.apps", "-n", ns], false),
    ];
    let mut wrong = Vec::new();
    for (args, want) in checks {
        let mut all = vec!["auth", "can-i", "--as", user.as_str()];
        all.extend_from_slice(args);
        let out = env.cluster.kubectl(&all);
        let got = String::from_utf8_lossy(&out.stdout).trim() == "yes";
        if got != want {
            wrong.push(format!(
                "can-i {}: {}",
                args.join(" "),
                if got { "yes" } else { "no" }
            ));
        }
    }
    ensure(wrong.is_empty(), || {
        format!("ServiceAccount {user}: {wrong:?}")
    })
}

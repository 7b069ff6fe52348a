//! The chart's RBAC: exactly the rules each enabled feature needs, each bound to the
//! ServiceAccount of the process that needs it (the webhook's or the controller's; checked on
//! rendered and stored Roles), and the API server's authorizer agreeing (`kubectl auth can-i
//! --as`): the webhook's ServiceAccount has no verb on Secrets but its own and none on Pods.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{of_kind, strings};
use crate::Env;
use crate::cluster::AuditedRequest;
use crate::proc::{Result, ensure};

/// What the chart grants, one set of permissions per feature.
#[derive(Clone, Copy)]
pub(super) enum Grant {
    /// certs.mode=selfManaged: its own Secret, and patching its two webhook configurations.
    /// The webhook's.
    Certs,
    /// policy.overrides with a namespaceSelector: reading Namespaces. The webhook's.
    NamespaceLabels,
    /// policyExceptions.enabled: watching HookPolicyExceptions. The webhook's.
    PolicyExceptions,
    /// Leader election: its own Lease. The controller's, like all below.
    Lease,
    /// The inventory: reading Jobs and Pods in every namespace.
    Inventory,
    /// Orphan detection with the default `inventory.helmDrivers`: listing Helm's release
    /// records, Secrets and ConfigMaps.
    Orphans,
    /// history.enabled (the default): reading hook Pods' logs and Helm's release records, and
    /// the HookRunHistory records in the release namespace.
    History,
    /// controller.events: recording Events.
    Events,
    /// policyRecheck.enabled: reading the latest release record of each release, and writing
    /// OpenReports Reports.
    PolicyRecheck,
    /// The janitor: deleting Jobs and Pods in these namespaces (`janitor.namespaces`): one Role
    /// per namespace for a list of names, cluster-wide when one is a glob.
    Janitor(&'static [&'static str]),
}

impl Grant {
    /// The Roles, bindings and ServiceAccount holding this grant: `<fullname>` (the webhook's)
    /// or `<fullname>-controller`.
    fn holder(self, fullname: &str) -> String {
        match self {
            Grant::Certs | Grant::NamespaceLabels | Grant::PolicyExceptions => fullname.to_owned(),
            _ => format!("{fullname}-controller"),
        }
    }
}

/// One entry per (kind, role namespace and name, API group, resource, verb, resourceName) of the
/// Roles and ClusterRoles in `docs`, e.g. "Role hookguard/hookguard-controller
/// coordination.k8s.io/leases get hookguard" ("*": any name), so that what a value set grants,
/// where, and to whom, can be compared exactly.
fn rbac_rules(docs: &[Value]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
    {
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        let kind = match d["metadata"]["namespace"].as_str() {
            Some(ns) if d["kind"] == "Role" => format!("Role {ns}/{name}"),
            _ => format!("ClusterRole {name}"),
        };
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

/// The entries (as `rbac_rules` spells them) that `grants` need for release `fullname` in `ns`.
fn expected_rbac(fullname: &str, ns: &str, grants: &[Grant]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for grant in grants {
        let holder = grant.holder(fullname);
        let mut add = |kind: &str, resource: &str, verbs: &[&str], name: &str| {
            let role = match kind {
                "Role" => format!("Role {ns}/{holder}"),
                _ => format!("ClusterRole {holder}"),
            };
            for verb in verbs {
                out.insert(format!("{role} {resource} {verb} {name}"));
            }
        };
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
            Grant::NamespaceLabels => {
                add("ClusterRole", "/namespaces", &["get", "list", "watch"], "*");
            }
            Grant::PolicyExceptions => {
                add(
                    "ClusterRole",
                    "hookguard.io/hookpolicyexceptions",
                    &["list", "watch"],
                    "*",
                );
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
            Grant::History => {
                add("ClusterRole", "/pods/log", &["get"], "*");
                add("ClusterRole", "/secrets", &["get", "list"], "*");
                add("ClusterRole", "/configmaps", &["get", "list"], "*");
                add(
                    "Role",
                    "hookguard.io/hookrunhistories",
                    &["get", "list", "create", "update", "delete"],
                    "*",
                );
            }
            Grant::Events => {
                add(
                    "ClusterRole",
                    "events.k8s.io/events",
                    &["create", "patch"],
                    "*",
                );
            }
            Grant::PolicyRecheck => {
                add("ClusterRole", "/secrets", &["get", "list"], "*");
                add("ClusterRole", "/configmaps", &["get", "list"], "*");
                add(
                    "ClusterRole",
                    "openreports.io/reports",
                    &["list", "patch", "delete"],
                    "*",
                );
                add(
                    "ClusterRole",
                    "hookguard.io/hookpolicyexceptions",
                    &["list"],
                    "*",
                );
            }
            Grant::Orphans => {
                add("ClusterRole", "/secrets", &["list", "watch"], "*");
                add("ClusterRole", "/configmaps", &["list", "watch"], "*");
            }
            Grant::Janitor(namespaces) if namespaces.iter().any(|n| n.contains(['*', '?'])) => {
                add("ClusterRole", "/pods", &["delete"], "*");
                add("ClusterRole", "batch/jobs", &["delete"], "*");
            }
            Grant::Janitor(namespaces) => {
                for target in *namespaces {
                    for resource in ["/pods", "batch/jobs"] {
                        out.insert(format!(
                            "Role {target}/{holder}-janitor {resource} delete *"
                        ));
                    }
                }
            }
        }
    }
    out
}

/// The Roles and ClusterRoles in `docs` grant exactly `grants`, and each is bound by one binding
/// of the same name (and namespace) to the ServiceAccount of the process it is for: its own name,
/// or the controller's for the janitor's per-namespace Roles.
pub(super) fn check_rbac(docs: &[Value], fullname: &str, ns: &str, grants: &[Grant]) -> Result<()> {
    let got = rbac_rules(docs);
    let want = expected_rbac(fullname, ns, grants);
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
        ensure(roles.len() == bindings.len(), || {
            format!("{} {role}, {} {binding}", roles.len(), bindings.len())
        })?;
        let controller = format!("{fullname}-controller");
        let janitor = format!("{controller}-janitor");
        for r in roles {
            let name = r["metadata"]["name"].as_str().unwrap_or_default();
            let sa = match name {
                n if n == fullname || n == controller => n,
                n if n == janitor && role == "Role" => controller.as_str(),
                n => return Err(format!("unexpected {role} {n}")),
            };
            let b = bindings
                .iter()
                .find(|b| {
                    b["metadata"]["name"] == name
                        && b["metadata"]["namespace"] == r["metadata"]["namespace"]
                })
                .ok_or_else(|| format!("no {binding} {name} beside the {role}"))?;
            ensure(
                b["roleRef"]["kind"] == role
                    && b["roleRef"]["name"] == name
                    && b["subjects"]
                        == serde_json::json!([
                            {"kind": "ServiceAccount", "name": sa, "namespace": ns}
                        ]),
                || format!("{binding} {b}"),
            )?;
        }
    }
    Ok(())
}

/// What each process asked of the API server as its ServiceAccount (the audit log) is exactly
/// what the chart grants it: no request refused, each allowed by one of the chart's rules (in
/// `docs`) for that ServiceAccount, and each of those rules used, but for `unused`: entries (as
/// `rbac_rules` spells them) for code paths the run did not take, with the path that needs them,
/// and `incidental` ones, which the run uses or not depending on what else the cluster holds.
pub(super) fn requests_use_exactly_the_grants(
    env: &Env,
    docs: &[Value],
    fullname: &str,
    ns: &str,
    unused: &[(&str, &str)],
    incidental: &[String],
) -> Result<()> {
    let rules = rbac_rules(docs);
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    let controller = format!("{fullname}-controller");
    let janitor = format!("{controller}-janitor");
    for sa in [fullname, controller.as_str()] {
        let holds = |role: &str| {
            if sa == fullname {
                role == fullname
            } else {
                role == controller || role == janitor
            }
        };
        let requests = env
            .cluster
            .audited_requests(&format!("system:serviceaccount:{ns}:{sa}"))?;
        if requests.is_empty() {
            problems.push(format!("{sa}: no request in the audit log"));
        }
        for r in &requests {
            if r.code == 403 {
                problems.push(format!("{sa}: refused: {} {}", r.verb, r.uri));
                continue;
            }
            let allowing: Vec<&String> = rules.iter().filter(|e| allows(e, &holds, r)).collect();
            if allowing.is_empty() {
                problems.push(format!(
                    "{sa}: {} {} ({}) is allowed by no rule of the chart",
                    r.verb, r.uri, r.resource
                ));
            }
            used.extend(allowing.into_iter().cloned());
        }
    }
    let excused: BTreeSet<String> = unused.iter().map(|(e, _)| (*e).to_owned()).collect();
    for entry in rules.difference(&used) {
        if !excused.contains(entry) && !incidental.contains(entry) {
            problems.push(format!("granted, never used: {entry}"));
        }
    }
    for entry in &excused {
        if used.contains(entry) {
            problems.push(format!("listed as unused, but used: {entry}"));
        } else if !rules.contains(entry) {
            problems.push(format!("listed as unused, but not granted: {entry}"));
        }
    }
    ensure(problems.is_empty(), || {
        format!("RBAC against the audit log:\n  {}", problems.join("\n  "))
    })?;
    eprintln!(
        "e2e:   audit log: every API request of both ServiceAccounts allowed by a chart rule; {} of {} rules used, {} unused on this run's code paths",
        used.len(),
        rules.len(),
        unused.len()
    );
    Ok(())
}

/// Whether `entry` (as `rbac_rules` spells it), of a role `holds` says the ServiceAccount holds,
/// allows request `r`.
fn allows(entry: &str, holds: &impl Fn(&str) -> bool, r: &AuditedRequest) -> bool {
    let [kind, role, resource, verb, name] = entry.split(' ').collect::<Vec<_>>()[..] else {
        return false;
    };
    let (namespace, role) = match (kind, role.split_once('/')) {
        ("Role", Some((ns, role))) => (Some(ns), role),
        _ => (None, role),
    };
    holds(role)
        && namespace.is_none_or(|ns| r.namespace.as_deref() == Some(ns))
        && resource == r.resource
        && verb == r.verb
        && (name == "*" || r.name.as_deref() == Some(name))
}

/// The API server's own authorizer (`kubectl auth can-i --as`) agrees that, with the default
/// values, the webhook's ServiceAccount (`fullname`) may touch its own Secret and webhook
/// configurations and nothing else — no other Secret by any verb, no Pod, no Lease, no Job — and
/// the controller's (`fullname-controller`) may do what the inventory and orphan detection need.
pub(super) fn service_account_permissions(env: &Env, ns: &str, fullname: &str) -> Result<()> {
    let tls = format!("secrets/{fullname}-tls");
    let lease = format!("leases.coordination.k8s.io/{fullname}");
    let mwc = format!("mutatingwebhookconfigurations/{fullname}");
    let vwc = format!("validatingwebhookconfigurations/{fullname}");
    let mut webhook: Vec<(Vec<&str>, bool)> = vec![
        (vec!["get", &tls, "-n", ns], true),
        (vec!["watch", &tls, "-n", ns], true),
        (vec!["watch", &vwc], true),
        (vec!["update", &tls, "-n", ns], true),
        (vec!["patch", &tls, "-n", ns], false),
        (vec!["delete", &tls, "-n", ns], false),
        // `create` cannot be limited to a name; hookguard creates its Secret on first start.
        (vec!["create", "secrets", "-n", ns], true),
        (vec!["get", &mwc], true),
        (vec!["patch", &mwc], true),
        (vec!["patch", &vwc], true),
        (vec!["patch", "mutatingwebhookconfigurations/other"], false),
        (vec!["update", &lease, "-n", ns], false),
        (
            vec!["create", "leases.coordination.k8s.io", "-n", ns],
            false,
        ),
        (vec!["watch", "jobs.batch", "-A"], false),
        (vec!["update", "configmaps", "-n", ns], false),
        (vec!["list", "configmaps", "-A"], false),
        (vec!["update", "deployments.apps", "-n", ns], false),
    ];
    const VERBS: [&str; 8] = [
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
    ];
    for verb in VERBS {
        webhook.push((vec![verb, "pods", "-A"], false));
        webhook.push((vec![verb, "pods", "-n", ns], false));
        if verb != "create" {
            webhook.push((vec![verb, "secrets/other", "-n", ns], false));
            webhook.push((vec![verb, "secrets/other", "-n", "default"], false));
        }
    }
    for verb in ["list", "watch", "deletecollection"] {
        webhook.push((vec![verb, "secrets", "-A"], false));
        webhook.push((vec![verb, "secrets", "-n", ns], false));
    }
    webhook.push((vec!["create", "secrets", "-n", "default"], false));
    let controller: Vec<(Vec<&str>, bool)> = vec![
        (vec!["update", &lease, "-n", ns], true),
        (vec!["patch", &lease, "-n", ns], false),
        (vec!["create", "leases.coordination.k8s.io", "-n", ns], true),
        (
            vec!["update", "leases.coordination.k8s.io/other", "-n", ns],
            false,
        ),
        (vec!["watch", "jobs.batch", "-A"], true),
        (vec!["list", "pods", "-A"], true),
        (vec!["list", "secrets", "-A"], true),
        (vec!["watch", "configmaps", "-A"], true),
        (vec!["update", &tls, "-n", ns], false),
        (vec!["create", "secrets", "-n", ns], false),
        (vec!["patch", &mwc], false),
        (vec!["delete", "pods", "-n", "default"], false),
        (vec!["delete", "jobs.batch", "-n", "default"], false),
        (vec!["create", "pods", "-n", ns], false),
        (vec!["update", "configmaps", "-n", ns], false),
    ];
    let mut wrong = Vec::new();
    let controller_sa = format!("{fullname}-controller");
    for (sa, checks) in [(fullname, webhook), (controller_sa.as_str(), controller)] {
        let user = format!("system:serviceaccount:{ns}:{sa}");
        for (args, want) in checks {
            let mut all = vec!["auth", "can-i", "--as", user.as_str()];
            all.extend_from_slice(&args);
            let out = env.cluster.kubectl(&all);
            let got = String::from_utf8_lossy(&out.stdout).trim() == "yes";
            if got != want {
                wrong.push(format!(
                    "{sa}: can-i {}: {}",
                    args.join(" "),
                    if got { "yes" } else { "no" }
                ));
            }
        }
    }
    ensure(wrong.is_empty(), || format!("ServiceAccounts: {wrong:?}"))
}

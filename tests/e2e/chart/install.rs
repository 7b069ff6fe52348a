//! 11-chart-helm{3,4}-install-upgrade-uninstall: the chart installed with real Helm, what the API
//! server stores checked, hookguard's container run as the chart's ServiceAccount (container.rs),
//! two upgrades that must keep what hookguard patched in, a restart that reuses the CA, and an
//! uninstall that leaves no webhook configuration or RBAC behind. Last, the NOTES' demo Pod.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::container::{PodEnv, run_container_locally};
use super::deployment::{Tls, check_deployment, container_args};
use super::rbac::{
    Grant, check_rbac, requests_use_exactly_the_grants, service_account_permissions,
};
use super::{chart, get, of_kind, parse_docs, run_ok, set_args, webhook_ca_bundles, webhooks};
use crate::Env;
use crate::proc::{Result, ensure, wait_for};

/// The release's webhooks point at a Service with no real backend (simulated pods): both are set
/// to Ignore so that nothing else in the cluster is refused while it is installed.
const RELEASE_VALUES: [&str; 3] = [
    "replicas=1",
    "webhook.validating.failurePolicy=Ignore",
    "webhook.mutating.failurePolicy=Ignore",
];

/// Uninstalls the release when dropped (also on panic), and removes the webhook configurations
/// by name if Helm could not: a dangling webhook must never outlive the scenario.
struct Release<'a> {
    env: &'a Env,
    bin: &'a str,
    name: &'a str,
    ns: &'a str,
    installed: bool,
}

impl Release<'_> {
    /// `<bin> install|upgrade <name> charts/hookguard` with RELEASE_VALUES, then `extra`.
    fn helm(&self, verb: &str, extra: &[&str]) -> Result<Output> {
        let mut args = vec![verb, self.name, chart(), "-n", self.ns];
        args.extend(set_args(&RELEASE_VALUES));
        args.extend_from_slice(&["--timeout", "90s"]);
        args.extend_from_slice(extra);
        run_ok(self.env, self.bin, &args, None)
    }

    fn uninstall(&mut self) -> Result<()> {
        if !self.installed {
            return Ok(());
        }
        self.installed = false;
        let res = run_ok(
            self.env,
            self.bin,
            &["uninstall", self.name, "-n", self.ns, "--timeout", "60s"],
            None,
        )
        .map(|_| ());
        if res.is_err() {
            for kind in [
                "mutatingwebhookconfiguration",
                "validatingwebhookconfiguration",
            ] {
                let _ =
                    self.env
                        .cluster
                        .kubectl(&["delete", kind, self.name, "--ignore-not-found"]);
            }
        }
        res
    }

    fn get(&self, args: &[&str]) -> Result<Value> {
        get(self.env, args)
    }

    /// The caBundles of every webhook of the configurations called `name`.
    fn ca_bundles(&self) -> Result<Vec<String>> {
        webhook_ca_bundles(self.env, self.name)
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let _ = self.uninstall();
    }
}

pub(super) fn install_upgrade_uninstall(env: &Env, bin: &str) -> Result<()> {
    let (name, ns) = if bin == "helm" {
        ("hookguard-chart", "hookguard-chart")
    } else {
        ("hookguard-chart-helm4", "hookguard-chart-helm4")
    };
    let svc_host = format!("{name}.{ns}.svc");
    let secret_name = format!("{name}-tls");
    let policy_name = format!("{name}-policy");
    // Uninstalled at the end in any case (Release's Drop).
    let mut release = Release {
        env,
        bin,
        name,
        ns,
        installed: true,
    };
    // Hooks only the controller's discovery finds (in a namespace the suite's webhook does not
    // label), created before the chart's webhook configurations exist.
    let unlabelled = format!("e2e-unguarded-{name}");
    env.cluster.namespace(&unlabelled)?;
    env.cluster.apply(&unlabelled_hooks(&unlabelled))?;
    let installed_at = Instant::now();
    let install = match release.helm("install", &["--create-namespace"]) {
        Ok(out) => out,
        Err(e) => {
            let _ = release.uninstall();
            return Err(e);
        }
    };
    let notes = String::from_utf8_lossy(&install.stdout).into_owned();
    manifest_holds_no_key_material(&release)?;
    let pod_name = running_pod(&release, "hookguard")?;
    let controller_pod = running_pod(&release, "hookguard-controller")?;
    let controller_name = format!("{name}-controller");
    let (deploy, stored_rbac) = check_installed(&release, &secret_name, &policy_name)?;
    let controller_deploy = release.get(&["-n", ns, "deployment", &controller_name])?;
    let policy_cm = release.get(&["-n", ns, "configmap", &policy_name])?;

    // What kwok cannot show: the container itself, as the chart's ServiceAccount.
    let kubeconfig = env
        .cluster
        .service_account_kubeconfig(ns, name, &format!("chart-{bin}"))?;
    let pod = PodEnv {
        ns,
        name: &pod_name,
        fullname: name,
        svc_host: &svc_host,
        kubeconfig: &kubeconfig,
        unlabelled_hooks_in: None,
    };
    let first = run_container_locally(env, bin, &deploy, &policy_cm, &pod, "first start")?;
    // The controller's container, as the controller's ServiceAccount.
    let controller_kubeconfig = env.cluster.service_account_kubeconfig(
        ns,
        &controller_name,
        &format!("chart-{bin}-controller"),
    )?;
    let controller = PodEnv {
        ns,
        name: &controller_pod,
        fullname: name,
        svc_host: &svc_host,
        kubeconfig: &controller_kubeconfig,
        unlabelled_hooks_in: Some(&unlabelled),
    };
    run_container_locally(
        env,
        bin,
        &controller_deploy,
        &policy_cm,
        &controller,
        "controller",
    )?;
    let bundles = release.ca_bundles()?;
    let secret_now = || get(env, &["-n", ns, "secret", &secret_name]);

    upgrades_keep_the_ca_bundle(&release, &bundles)?;
    ensure(secret_now()?["data"] == first["data"], || {
        "helm upgrade changed hookguard's Secret".into()
    })?;
    let final_deploy = release.get(&["-n", ns, "deployment", name])?;
    ensure(
        container_args(&final_deploy)
            .iter()
            .any(|a| a == "--cert-check-interval=30s"),
        || "the upgrade's values did not reach the Deployment".into(),
    )?;
    let final_cm = release.get(&["-n", ns, "configmap", &policy_name])?;
    ensure(final_cm["data"] == policy_cm["data"], || {
        "policy changed across upgrades".into()
    })?;

    // Restarted with the upgraded Deployment: the CA and the still valid certificate are reused.
    let second = run_container_locally(
        env,
        bin,
        &final_deploy,
        &final_cm,
        &pod,
        "restart after upgrade",
    )?;
    for key in ["ca.crt", "ca.key", "tls.crt"] {
        ensure(second["data"][key] == first["data"][key], || {
            format!("the restart replaced {key}, which was still valid")
        })?;
    }
    ensure(release.ca_bundles()? == bundles, || {
        "the restart changed the caBundle".into()
    })?;
    let secret_update = format!("Role {ns}/{name} /secrets update {secret_name}");
    // The hook run history acts when hooks run: whether this run's controller sees one depends
    // on what earlier scenarios left; the real-node suite (real-03) proves these grants suffice.
    let controller = format!("{name}-controller");
    let mut history: Vec<String> = ["configmaps", "pods/log", "secrets"]
        .iter()
        .map(|r| format!("ClusterRole {controller} /{r} get *"))
        .collect();
    history.extend(
        ["create", "delete", "get", "list", "update"]
            .iter()
            .map(|v| format!("Role {ns}/{controller} hookguard.io/hookrunhistories {v} *")),
    );
    requests_use_exactly_the_grants(
        env,
        &stored_rbac,
        name,
        ns,
        &[(
            &secret_update,
            "rotation writes the renewed certificate into the Secret (12-self-managed-certs-*)",
        )],
        &history,
    )?;

    release.uninstall()?;
    let window = installed_at.elapsed();
    nothing_left_behind(env, name, ns)?;
    // hookguard created the Secret, not Helm, so uninstall leaves it (as the chart's README says)
    // and a reinstall would reuse the CA.
    ensure(secret_now().is_ok(), || {
        "the Secret hookguard created is gone after uninstall; the README says it stays".into()
    })?;
    eprintln!(
        "e2e:   {bin}: install, hookguard as the ServiceAccount, 2 upgrades (caBundle kept by Helm), restart (CA reused), uninstall in {:.1}s; no webhook configuration or RBAC left behind",
        window.as_secs_f64()
    );
    for namespace in [ns, unlabelled.as_str()] {
        let _ = env
            .cluster
            .kubectl(&["delete", "namespace", namespace, "--wait=false"]);
    }

    // The NOTES' demo Pod, against the suite's real hookguard.
    notes_demo_pod_is_fixed(env, &notes)
}

/// No key material and no caBundle in what Helm stores: both are hookguard's.
fn manifest_holds_no_key_material(r: &Release) -> Result<()> {
    let manifest = parse_docs(&String::from_utf8_lossy(
        &run_ok(r.env, r.bin, &["get", "manifest", r.name, "-n", r.ns], None)?.stdout,
    ))?;
    let (m, v) = webhooks(&manifest)?;
    ensure(
        m["clientConfig"]["caBundle"].is_null()
            && v["clientConfig"]["caBundle"].is_null()
            && of_kind(&manifest, "Secret").is_empty()
            && !serde_json::to_string(&manifest)
                .map_err(|e| e.to_string())?
                .contains("LS0tLS1CRUdJTi"),
        || format!("{} get manifest holds certificate material", r.bin),
    )
}

/// The pod of the Deployment whose pods carry `app.kubernetes.io/name=<app>` (`hookguard`: the
/// webhook, `hookguard-controller`), which is SIMULATED: scheduled by the real scheduler onto
/// the kwok node, which reports it Running (readiness is not asserted: the simulated node does
/// not re-report it after a node-lifecycle blip, a real kubelet would). Returns its name.
fn running_pod(r: &Release, app: &str) -> Result<String> {
    let selector = format!(
        "app.kubernetes.io/name={app},app.kubernetes.io/instance={}",
        r.name
    );
    wait_for(
        &format!("the {app} Deployment's pod Running on the simulated node"),
        Duration::from_secs(60),
        || {
            let pods = r
                .env
                .cluster
                .get_json(&["-n", r.ns, "pods", "-l", &selector])?;
            let items = pods["items"].as_array()?.clone();
            (items.len() == 1
                && items[0]["spec"]["nodeName"] == "kwok-node-0"
                && items[0]["status"]["phase"] == "Running")
                .then(|| items[0]["metadata"]["name"].as_str().map(str::to_owned))
                .flatten()
        },
    )
}

/// What the API server stores after the install: the Deployment (returned), the Service and its
/// endpoint, no PDB for one replica, the RBAC as stored and as the authorizer sees it; and until
/// hookguard runs, no Secret and no caBundle.
/// The Deployment and the stored Roles, ClusterRoles and their bindings.
fn check_installed(
    r: &Release,
    secret_name: &str,
    policy_name: &str,
) -> Result<(Value, Vec<Value>)> {
    let (env, name, ns) = (r.env, r.name, r.ns);
    let deploy = r.get(&["-n", ns, "deployment", name])?;
    check_deployment(
        &deploy,
        1,
        Tls::SelfManaged { fullname: name, ns },
        policy_name,
        true,
    )?;
    let svc = r.get(&["-n", ns, "service", name])?;
    ensure(
        svc["spec"]["ports"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == "https" && p["port"] == 443)),
        || format!("Service ports {}", svc["spec"]["ports"]),
    )?;
    wait_for(
        "an endpoint of the Service",
        Duration::from_secs(60),
        || {
            let slices = env.cluster.get_json(&[
                "-n",
                ns,
                "endpointslices",
                "-l",
                &format!("kubernetes.io/service-name={name}"),
            ])?;
            slices["items"][0]["endpoints"]
                .as_array()
                .is_some_and(|e| !e.is_empty())
                .then_some(())
        },
    )?;
    ensure(
        r.get(&["-n", ns, "poddisruptionbudgets"])?["items"]
            .as_array()
            .is_some_and(Vec::is_empty),
        || "PDB with one replica".into(),
    )?;
    let controller = format!("{name}-controller");
    let mut stored_rbac = Vec::new();
    for who in [name, controller.as_str()] {
        stored_rbac.push(r.get(&["-n", ns, "role", who])?);
        stored_rbac.push(r.get(&["-n", ns, "rolebinding", who])?);
        stored_rbac.push(r.get(&["clusterrole", who])?);
        stored_rbac.push(r.get(&["clusterrolebinding", who])?);
    }
    check_rbac(
        &stored_rbac,
        name,
        ns,
        &[
            Grant::Certs,
            Grant::Lease,
            Grant::Inventory,
            Grant::History,
            Grant::Orphans,
        ],
    )?;
    service_account_permissions(env, ns, name)?;
    ensure(
        env.cluster
            .get_json(&["-n", ns, "secret", secret_name])
            .is_none(),
        || format!("Secret {secret_name} exists before hookguard ran"),
    )?;
    ensure(r.ca_bundles()?.iter().all(String::is_empty), || {
        "a caBundle exists before hookguard ran".into()
    })?;
    Ok((deploy, stored_rbac))
}

/// Upgrades while hookguard is stopped, so only Helm acts: the caBundle hookguard patched in
/// survives (Helm 3's three-way merge, Helm 4's server-side apply), also when the Deployment
/// changes.
fn upgrades_keep_the_ca_bundle(r: &Release, bundles: &[String]) -> Result<()> {
    r.helm("upgrade", &[])?;
    ensure(r.ca_bundles()? == *bundles, || {
        "helm upgrade removed or changed the caBundle hookguard patched in".into()
    })?;
    r.helm(
        "upgrade",
        &set_args(&["certs.selfManaged.checkInterval=30s", "logLevel=debug"]),
    )?;
    ensure(r.ca_bundles()? == *bundles, || {
        "an upgrade that changed the Deployment removed or changed the caBundle".into()
    })
}

/// After the uninstall: no webhook configuration and no RBAC of the release.
fn nothing_left_behind(env: &Env, name: &str, ns: &str) -> Result<()> {
    for kind in [
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
    ] {
        let left = get(
            env,
            &[kind, "-l", &format!("app.kubernetes.io/instance={name}")],
        )?;
        ensure(left["items"].as_array().is_some_and(Vec::is_empty), || {
            format!("{kind} left behind after uninstall: {}", left["items"])
        })?;
        ensure(env.cluster.get_json(&[kind, name]).is_none(), || {
            format!("{kind}/{name} left behind after uninstall")
        })?;
    }
    let controller = format!("{name}-controller");
    for who in [name, controller.as_str()] {
        for args in [
            ["-n", ns, "role", who],
            ["-n", ns, "rolebinding", who],
            ["", "", "clusterrole", who],
            ["", "", "clusterrolebinding", who],
        ] {
            let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
            ensure(env.cluster.get_json(&args).is_none(), || {
                format!("{} left behind after uninstall", args.join(" "))
            })?;
        }
    }
    Ok(())
}

/// The NOTES tell users to `kubectl apply` a test hook Pod and read back its restartPolicy:
/// applied (in a namespace of its own) against the suite's real hookguard, it says Never.
fn notes_demo_pod_is_fixed(env: &Env, notes: &str) -> Result<()> {
    let start = notes
        .find("<<'EOF'\n")
        .ok_or_else(|| format!("NOTES have no demo Pod:\n{notes}"))?
        + "<<'EOF'\n".len();
    let len = notes[start..]
        .find("\nEOF\n")
        .ok_or("NOTES' heredoc is not terminated by EOF at the start of a line")?;
    let pod_yaml = &notes[start..start + len + 1];
    ensure(
        pod_yaml.contains("helm.sh/hook: test") && !pod_yaml.contains("restartPolicy"),
        || format!("demo Pod: {pod_yaml}"),
    )?;
    ensure(notes.contains("-o jsonpath='{.spec.restartPolicy}"), || {
        "NOTES do not show how to read the restartPolicy".into()
    })?;
    let ns = "e2e-chart-notes";
    env.cluster.namespace(ns)?;
    run_ok(
        env,
        "kubectl",
        &["apply", "-n", ns, "-f", "-"],
        Some(pod_yaml),
    )?;
    let out = run_ok(
        env,
        "kubectl",
        &[
            "-n",
            ns,
            "get",
            "pod",
            "hookguard-demo",
            "-o",
            "jsonpath={.spec.restartPolicy}",
        ],
        None,
    )?;
    let _ = env
        .cluster
        .kubectl(&["-n", ns, "delete", "pod", "hookguard-demo", "--wait=false"]);
    let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    ensure(got == "Never", || {
        format!("the NOTES' demo Pod got restartPolicy {got:?}")
    })
}

/// A hook Job and a hook Pod in `ns`, as `kubectl apply` input.
fn unlabelled_hooks(ns: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: unlabelled-hook\n  namespace: {ns}\n  annotations:\n    helm.sh/hook: pre-install\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: c, image: registry.example/c:1}}]\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: unlabelled-hook\n  namespace: {ns}\n  annotations:\n    helm.sh/hook: test\nspec:\n  restartPolicy: Never\n  containers: [{{name: c, image: registry.example/c:1}}]\n"
    )
}

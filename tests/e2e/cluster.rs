//! A real control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, and one node: by default kwok playing the kubelet of a fake node (a
//! SIMULATION of nodes only: no container ever runs; kwok moves Pods through their phases as
//! tests/e2e/tools/kwok-stages.yaml says, and never finishes a `restartPolicy: Always` Pod, just
//! like a real kubelet); for the real-node suite a real kubelet with containerd
//! ([`crate::real_node`]).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::pki::{Pki, write};
use crate::proc::{Proc, Result, ensure, free_port, http_get, out_text, wait_for};
use crate::tools::repo;

/// What the simulated node prints for containers of these names (and one fixed line for any
/// other): deterministic, so scenarios can look for it in `helm --logs` output and the history.
pub const SIMULATED_LOGS: &[(&str, &[&str])] = &[
    (
        "history-ok",
        &["setup: schema is up to date", "setup: done"],
    ),
    (
        "history-fail",
        &[
            "check: connecting to the database",
            "check: FAILED: connection refused",
        ],
    ),
];

/// The running control plane.
pub struct Cluster {
    pub bin: PathBuf,
    pub work: PathBuf,
    pub kubeconfig: PathBuf,
    pub api_port: u16,
    /// The loopback port of the one webhook address (`127.0.0.1:<port>`) to which kube-apiserver
    /// presents a client certificate (see `webhook_admission_config`).
    pub mtls_webhook_port: u16,
    pki_dir: PathBuf,
    pub(crate) procs: Vec<Proc>,
    node: NodeKind,
}

/// The cluster's one node.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// kwok: a SIMULATED kubelet, no container runs.
    Simulated,
    /// A real kubelet with containerd and runc, and kube-proxy (`crate::real_node`).
    Real,
}

impl Cluster {
    pub fn start(bin: PathBuf, work: PathBuf, node: NodeKind) -> Result<Cluster> {
        let node_tools: &[&str] = match node {
            NodeKind::Simulated => &["kwok"],
            NodeKind::Real => &["kubelet", "kube-proxy"],
        };
        for tool in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubectl",
            "helm",
            "helm4",
        ]
        .iter()
        .chain(node_tools)
        {
            if !bin.join(tool).is_file() {
                return Err(format!(
                    "{tool} not found in {}: run `make tools` (builds it from its Go module; needs Go)",
                    bin.display()
                ));
            }
        }
        fs::create_dir_all(&work).map_err(|e| e.to_string())?;
        let pki = Pki::create(work.join("pki"))?;
        let logs = work.join("logs");
        fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
        let mtls_webhook_port = free_port();
        let admission_config = webhook_admission_config(&work, &pki, mtls_webhook_port)?;
        let audit_policy = work.join("audit-policy.yaml");
        write(&audit_policy, AUDIT_POLICY)?;
        let mut cluster = Cluster {
            kubeconfig: work.join("admin.kubeconfig"),
            bin: bin.clone(),
            work: work.clone(),
            api_port: 0,
            mtls_webhook_port,
            pki_dir: pki.dir.clone(),
            procs: Vec::new(),
            node,
        };

        let (etcd_port, peer_port) = (free_port(), free_port());
        cluster.procs.push(Proc::spawn(
            "etcd",
            &logs,
            &bin.join("etcd"),
            &[
                "--name=e2e".into(),
                format!("--data-dir={}", work.join("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                format!("--initial-cluster=e2e=http://127.0.0.1:{peer_port}"),
                "--unsafe-no-fsync".into(),
                "--log-level=warn".into(),
            ],
            &[],
        )?);
        wait_for("etcd health", Duration::from_secs(30), || {
            http_get(&format!("127.0.0.1:{etcd_port}"), "/health")
                .filter(|(_, body)| body.contains("\"health\":\"true\""))
        })?;

        let api_port = free_port();
        cluster.api_port = api_port;
        // A real node's pods reach the API server through the `kubernetes` Service (kube-proxy
        // sends 10.96.0.1 to the advertised address): the host's address, not loopback.
        let node_flags: Vec<String> = match node {
            NodeKind::Simulated => vec![
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                "--endpoint-reconciler-type=none".into(),
            ],
            NodeKind::Real => vec![
                "--bind-address=0.0.0.0".into(),
                format!("--advertise-address={}", crate::real_node::host_ip()?),
                "--endpoint-reconciler-type=lease".into(),
                "--kubelet-preferred-address-types=InternalIP".into(),
            ],
        };
        cluster.procs.push(Proc::spawn(
            "kube-apiserver",
            &logs,
            &bin.join("kube-apiserver"),
            &[
                format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                format!("--secure-port={api_port}"),
                format!("--tls-cert-file={}", pki.path("apiserver.crt")),
                format!("--tls-private-key-file={}", pki.path("apiserver.key")),
                format!("--client-ca-file={}", pki.path("ca.crt")),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", pki.path("sa.pub")),
                format!("--service-account-signing-key-file={}", pki.path("sa.key")),
                "--service-cluster-ip-range=10.96.0.0/16".into(),
                "--authorization-mode=Node,RBAC".into(),
                // As kubeadm and most distributions run it; otherwise the API server itself
                // rejects privileged pods before any validating webhook sees them.
                "--allow-privileged=true".into(),
                format!(
                    "--admission-control-config-file={}",
                    admission_config.display()
                ),
                format!("--audit-policy-file={}", audit_policy.display()),
                format!("--audit-log-path={}", work.join(AUDIT_LOG).display()),
                "--audit-log-format=json".into(),
            ]
            .into_iter()
            .chain(node_flags)
            .collect::<Vec<_>>(),
            &[],
        )?);
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    certificate-authority: {}\nusers:\n- name: admin\n  user:\n    client-certificate: {}\n    client-key: {}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: admin\n    namespace: default\ncurrent-context: e2e\n",
            pki.path("ca.crt"),
            pki.path("admin.crt"),
            pki.path("admin.key")
        );
        write(&cluster.kubeconfig, &kubeconfig)?;
        wait_for("kube-apiserver /readyz", Duration::from_secs(120), || {
            cluster
                .kubectl(&["get", "--raw", "/readyz"])
                .status
                .success()
                .then_some(())
        })?;

        let kc = cluster.kubeconfig.display().to_string();
        cluster.procs.push(Proc::spawn(
            "kube-controller-manager",
            &logs,
            &bin.join("kube-controller-manager"),
            &[
                component_args(&kc),
                vec![
                    "--controllers=*".into(),
                    "--use-service-account-credentials=true".into(),
                    format!("--service-account-private-key-file={}", pki.path("sa.key")),
                    format!("--root-ca-file={}", pki.path("ca.crt")),
                ],
            ]
            .concat(),
            &[],
        )?);
        cluster.procs.push(Proc::spawn(
            "kube-scheduler",
            &logs,
            &bin.join("kube-scheduler"),
            &component_args(&kc),
            &[],
        )?);
        match node {
            NodeKind::Simulated => cluster.start_kwok(&pki, &logs)?,
            NodeKind::Real => crate::real_node::start(&mut cluster, &pki, &logs)?,
        }
        Ok(cluster)
    }

    /// kwok as the kubelet of the one SIMULATED node `kwok-node-0`.
    fn start_kwok(&mut self, pki: &Pki, logs: &Path) -> Result<()> {
        let (work, bin) = (self.work.clone(), self.bin.clone());
        let kc = self.kubeconfig.display().to_string();
        let cluster = self;
        // Simulated container logs (CRI log format), so `helm test --logs` and the hook run
        // history have something to read: the text is chosen by the container's name
        // (SIMULATED_LOGS), and is one fixed line for any other container.
        let mut logs_yaml = String::from(
            "apiVersion: kwok.x-k8s.io/v1alpha1\nkind: ClusterLogs\nmetadata:\n  name: simulated\nspec:\n  selector: {}\n  logs:\n",
        );
        let default_log = ("", &["simulated by kwok: no container ran"][..]);
        for (container, lines) in SIMULATED_LOGS.iter().chain([&default_log]) {
            let file = work.join(format!(
                "kwok-{}.log",
                if container.is_empty() {
                    "pod"
                } else {
                    container
                }
            ));
            let text: String = lines
                .iter()
                .map(|l| format!("2026-11-23T00:00:00.000000000Z stdout F {l}\n"))
                .collect();
            write(&file, &text)?;
            if !container.is_empty() {
                logs_yaml.push_str(&format!(
                    "  - containers: [{container}]\n    logsFile: {}\n    follow: false\n",
                    file.display()
                ));
            } else {
                logs_yaml.push_str(&format!(
                    "  - logsFile: {}\n    follow: false\n",
                    file.display()
                ));
            }
        }
        let logs_config = work.join("kwok-logs.yaml");
        write(&logs_config, &logs_yaml)?;
        let kwok_port = free_port();
        cluster.procs.push(Proc::spawn(
            "kwok",
            logs,
            &bin.join("kwok"),
            &[
                format!("--kubeconfig={kc}"),
                format!(
                    "--config={}",
                    repo().join("tests/e2e/tools/kwok-stages.yaml").display()
                ),
                format!("--config={}", logs_config.display()),
                "--manage-all-nodes=false".into(),
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".into(),
                "--node-ip=127.0.0.1".into(),
                format!("--node-port={kwok_port}"),
                format!("--server-address=127.0.0.1:{kwok_port}"),
                format!("--tls-cert-file={}", pki.path("apiserver.crt")),
                format!("--tls-private-key-file={}", pki.path("apiserver.key")),
            ],
            &[("KWOK_WORKDIR", work.join("kwok").display().to_string())],
        )?);
        cluster.namespace("default")?;
        cluster.apply(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: kwok-node-0\n  annotations:\n    kwok.x-k8s.io/node: fake\n    node.alpha.kubernetes.io/ttl: \"0\"\n  labels:\n    kubernetes.io/arch: amd64\n    kubernetes.io/hostname: kwok-node-0\n    kubernetes.io/os: linux\n    type: kwok\n",
        )?;
        wait_for("kwok node Ready", Duration::from_secs(60), || {
            cluster
                .kubectl(&[
                    "wait",
                    "--for=condition=Ready",
                    "node/kwok-node-0",
                    "--timeout=1s",
                ])
                .status
                .success()
                .then_some(())
        })?;
        Ok(())
    }

    /// A file of the cluster's PKI, e.g. `webhook-client-ca.crt` (the CA of the client
    /// certificate kube-apiserver presents to the mutual-TLS webhook address).
    pub fn pki_file(&self, name: &str) -> PathBuf {
        self.pki_dir.join(name)
    }

    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(self.bin.join(name));
        c.env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.work.join("kube-cache"))
            .env("KUBERC", "off")
            .env("HELM_CACHE_HOME", self.work.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.work.join("helm/config"))
            .env("HELM_DATA_HOME", self.work.join("helm/data"))
            .stdin(Stdio::null());
        c
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.run("kubectl", args, None)
    }

    /// Runs `kubectl`, `helm` or `helm4`, optionally with standard input.
    pub fn run(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_with_env(tool, &[], args, stdin)
    }

    /// `run_ok` with extra environment variables, e.g. `HELM_DRIVER` (Helm has no flag for it).
    pub fn run_ok_env(&self, tool: &str, env: &[(&str, &str)], args: &[&str]) -> Result<Output> {
        succeeded(tool, args, self.run_with_env(tool, env, args, None))
    }

    /// `run` with extra environment variables.
    pub fn run_env(&self, tool: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
        self.run_with_env(tool, env, args, None)
    }

    fn run_with_env(
        &self,
        tool: &str,
        env: &[(&str, &str)],
        args: &[&str],
        stdin: Option<&str>,
    ) -> Output {
        let mut cmd = self.tool(tool);
        cmd.envs(env.iter().copied()).args(args);
        let result = match stdin {
            None => cmd.output(),
            Some(input) => cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    if let Some(mut s) = child.stdin.take() {
                        let _ = s.write_all(input.as_bytes());
                    }
                    child.wait_with_output()
                }),
        };
        result.unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
    }

    /// Runs a tool; Ok(output) when it succeeds, Err(command and all its output) when it fails.
    pub fn run_ok(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        succeeded(tool, args, self.run(tool, args, stdin))
    }

    /// Runs a tool that is expected to fail; Err when it succeeds.
    pub fn run_fails(&self, tool: &str, args: &[&str]) -> Result<Output> {
        let out = self.run(tool, args, None);
        if out.status.success() {
            Err(format!(
                "{tool} {} succeeded but should fail: {}",
                args.join(" "),
                out_text(&out)
            ))
        } else {
            Ok(out)
        }
    }

    /// `kubectl apply -f -`; Err carries stderr.
    pub fn apply(&self, yaml: &str) -> Result<Output> {
        let out = self.run("kubectl", &["apply", "-f", "-"], Some(yaml));
        if out.status.success() {
            Ok(out)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `kubectl get ... -o json` as JSON, `None` when it fails (e.g. not found).
    pub fn get_json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl(&all);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The caBundle (base64, as stored; empty when unset) of every webhook of the mutating and of
    /// the validating webhook configuration called `name`; one empty entry for a configuration
    /// that does not exist or has no webhooks.
    pub fn webhook_ca_bundles(&self, name: &str) -> Vec<String> {
        let mut bundles = Vec::new();
        for kind in [
            "mutatingwebhookconfiguration",
            "validatingwebhookconfiguration",
        ] {
            let config = self.get_json(&[kind, name]).unwrap_or_default();
            let webhooks = config["webhooks"].as_array().cloned().unwrap_or_default();
            if webhooks.is_empty() {
                bundles.push(String::new());
            }
            bundles.extend(webhooks.iter().map(|w| {
                w["clientConfig"]["caBundle"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            }));
        }
        bundles
    }

    /// Waits until `kubectl get <args>` answers NotFound (e.g. `-n NS pod/NAME`, `namespace NS`).
    pub fn wait_gone(&self, args: &[&str], timeout: Duration) -> Result<()> {
        let mut get = vec!["get"];
        get.extend_from_slice(args);
        wait_for(&format!("{} to be gone", args.join(" ")), timeout, || {
            let out = self.kubectl(&get);
            (!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound"))
                .then_some(())
        })
    }

    /// Applies one of the chart's CRDs (`charts/hookguard/crds/<plural>.yaml`) and waits until
    /// the API server serves it.
    pub fn install_chart_crd(&self, plural: &str) -> Result<()> {
        let file = repo().join(format!("charts/hookguard/crds/{plural}.yaml"));
        self.run_ok(
            "kubectl",
            &["apply", "-f", &file.display().to_string()],
            None,
        )?;
        self.run_ok(
            "kubectl",
            &[
                "wait",
                "--for=condition=Established",
                &format!("crd/{plural}.hookguard.io"),
                "--timeout=30s",
            ],
            None,
        )
        .map(|_| ())
    }

    /// Creates a namespace and waits for its default ServiceAccount (Pods need it).
    pub fn namespace(&self, name: &str) -> Result<()> {
        let _ = self.kubectl(&["create", "namespace", name]);
        wait_for(
            &format!("ServiceAccount default in {name}"),
            Duration::from_secs(60),
            || {
                self.kubectl(&["-n", name, "get", "serviceaccount", "default"])
                    .status
                    .success()
                    .then_some(())
            },
        )
    }

    /// The last lines of every component's log (for failures).
    pub fn logs(&self, lines: usize) -> String {
        self.procs
            .iter()
            .map(|p| {
                format!(
                    "===== {} ({}) =====\n{}",
                    p.name,
                    p.log.display(),
                    p.tail(lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn all_alive(&mut self) -> bool {
        self.procs.iter_mut().all(Proc::alive)
    }
}

/// The API server's audit log, relative to the cluster's working directory.
const AUDIT_LOG: &str = "logs/audit.log";

/// Records, at Metadata level, the requests made with ServiceAccount credentials outside
/// kube-system (the chart's processes run as their ServiceAccounts), and nothing else: the rest
/// of the suite acts as the admin.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    userGroups: [\"system:serviceaccounts:kube-system\"]
  - level: Metadata
    userGroups: [\"system:serviceaccounts\"]
  - level: None
";

/// One API request, as the audit log records it.
#[derive(Debug, Clone)]
pub struct AuditedRequest {
    pub verb: String,
    /// `group/resource`, or `group/resource/subresource`; the core group is empty.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub code: u16,
    pub uri: String,
}

impl Cluster {
    /// A kubeconfig (written as `<tag>-serviceaccount.kubeconfig`) that authenticates as
    /// ServiceAccount `sa` of `ns`, with a token from the TokenRequest API: the same kind of
    /// credential a pod's projected token is.
    pub fn service_account_kubeconfig(&self, ns: &str, sa: &str, tag: &str) -> Result<PathBuf> {
        let out = self.run_ok(
            "kubectl",
            &["create", "token", sa, "-n", ns, "--duration=1h"],
            None,
        )?;
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        ensure(!token.is_empty(), || {
            "kubectl create token printed nothing".into()
        })?;
        let admin: serde_json::Value = serde_saphyr::from_str(
            &fs::read_to_string(&self.kubeconfig).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("admin kubeconfig: {e}"))?;
        let cluster = &admin["clusters"][0]["cluster"];
        let (Some(server), Some(ca)) = (
            cluster["server"].as_str(),
            cluster["certificate-authority"].as_str(),
        ) else {
            return Err(format!("admin kubeconfig cluster {cluster}"));
        };
        let path = self.work.join(format!("{tag}-serviceaccount.kubeconfig"));
        fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {sa}\n  user:\n    token: \"{token}\"\ncontexts:\n- name: {sa}\n  context:\n    cluster: e2e\n    user: {sa}\n    namespace: {ns}\ncurrent-context: {sa}\n"
        ),
    )
    .map_err(|e| e.to_string())?;
        Ok(path)
    }

    /// Every resource request `user` made so far (requests to non-resource URLs such as
    /// discovery are left out: the API server's default roles allow them to everyone).
    pub fn audited_requests(&self, user: &str) -> Result<Vec<AuditedRequest>> {
        let path = self.work.join(AUDIT_LOG);
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut out = Vec::new();
        for line in text.lines() {
            let event: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("audit log line {line}: {e}"))?;
            let o = &event["objectRef"];
            if event["user"]["username"] != user
                || !event["impersonatedUser"].is_null()
                || o.is_null()
            {
                continue;
            }
            let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
            let mut resource = format!(
                "{}/{}",
                o["apiGroup"].as_str().unwrap_or_default(),
                o["resource"].as_str().unwrap_or_default()
            );
            if let Some(sub) = o["subresource"].as_str() {
                resource = format!("{resource}/{sub}");
            }
            out.push(AuditedRequest {
                verb: text(&event["verb"]).unwrap_or_default(),
                resource,
                namespace: text(&o["namespace"]),
                name: text(&o["name"]),
                code: event["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
                uri: text(&event["requestURI"]).unwrap_or_default(),
            });
        }
        Ok(out)
    }
}

/// Ok(output) when the tool succeeded, Err(command and all its output) when it failed.
fn succeeded(tool: &str, args: &[&str], out: Output) -> Result<Output> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!("{tool} {}: {}", args.join(" "), out_text(&out)))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop in reverse order of start.
        while let Some(mut p) = self.procs.pop() {
            p.stop(Duration::from_secs(5));
        }
        if self.node == NodeKind::Real {
            crate::real_node::clean_up(&self.work, &self.bin);
        }
    }
}

/// kube-apiserver's AdmissionConfiguration: both webhook admission plugins read a kubeconfig
/// whose only user entry is named `127.0.0.1:<port>`, so the API server presents the client
/// certificate `webhook-client.crt` to a webhook at exactly that address (entries are matched by
/// the host and port of the webhook's URL; a Service webhook's by `<svc>.<ns>.svc[:port]`) and to
/// no other: every other scenario's webhooks are called without one, as before.
fn webhook_admission_config(work: &Path, pki: &Pki, port: u16) -> Result<PathBuf> {
    let kubeconfig = work.join("webhook-client.kubeconfig");
    write(
        &kubeconfig,
        &format!(
            "apiVersion: v1\nkind: Config\nusers:\n- name: \"127.0.0.1:{port}\"\n  user:\n    client-certificate: {}\n    client-key: {}\n",
            pki.path("webhook-client.crt"),
            pki.path("webhook-client.key")
        ),
    )?;
    let plugin = |name: &str| {
        format!(
            "- name: {name}\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    kind: WebhookAdmissionConfiguration\n    kubeConfigFile: {}\n",
            kubeconfig.display()
        )
    };
    let config = work.join("admission-config.yaml");
    write(
        &config,
        &format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n{}{}",
            plugin("ValidatingAdmissionWebhook"),
            plugin("MutatingAdmissionWebhook")
        ),
    )?;
    Ok(config)
}

/// Flags kube-controller-manager and kube-scheduler share: admin kubeconfig for everything,
/// loopback serving on a free port, no leader election (one replica).
fn component_args(kubeconfig: &str) -> Vec<String> {
    vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", free_port()),
        "--leader-elect=false".into(),
    ]
}

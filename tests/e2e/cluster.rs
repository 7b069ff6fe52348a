//! A real control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, and kwok playing the kubelet of one fake node (a SIMULATION of nodes only: no
//! container ever runs; kwok moves Pods through their phases as tests/e2e/tools/kwok-stages.yaml
//! says, and never finishes a `restartPolicy: Always` Pod, just like a real kubelet).
//! Plus hookguard itself, registered with the webhook configurations the chart renders.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

pub type Result<T> = std::result::Result<T, String>;

/// Where the tools are: `HOOKGUARD_TOOLS_BIN`, else the last line of `tests/e2e/tools/build.sh`.
pub fn tools_bin() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("HOOKGUARD_TOOLS_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = repo().join("tests/e2e/tools/build.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}); it builds kube-apiserver, etcd, helm and kwok from their Go modules and needs Go (see tests/e2e/tools/README.md)",
            script.display(),
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default().trim().to_owned();
    Ok(PathBuf::from(last))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A loopback port nobody listens on right now, outside the kernel's ephemeral range: a port
/// inside it can be the local end of an outgoing connection by the time a component binds it.
pub fn free_port() -> u16 {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    static USED: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    static SEED: AtomicU64 = AtomicU64::new(0);
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            let mut it = r.split_whitespace().filter_map(|v| v.parse::<u32>().ok());
            Some((it.next()?, it.next()?))
        })
        .map(|(lo, hi)| {
            if lo > 11000 {
                (10000, lo - 1)
            } else {
                (hi + 1, 65000)
            }
        })
        .unwrap_or((10000, 32767));
    let mut x = SEED.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        ^ u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    let mut used = USED.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = (low + (x % u64::from(high - low + 1)) as u32) as u16;
        if !used.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            used.push(port);
            return port;
        }
    }
    panic!("no free loopback port in {low}-{high}");
}

/// `Ok(())` when `cond` holds, else the error `what` describes.
pub fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<()> {
    if cond { Ok(()) } else { Err(what()) }
}

/// Exit status, stdout and stderr of a command, for error messages.
pub fn out_text(o: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Polls `f` until it returns `Some`, or fails after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A child process whose output goes to a log file, killed (and reaped) when dropped. It also
/// dies with the test runner (PR_SET_PDEATHSIG), so an aborted run leaves nothing behind.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    pub fn spawn(
        name: &str,
        log_dir: &Path,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<Proc> {
        let log = log_dir.join(format!("{name}.log"));
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(file).stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // SAFETY: prctl is async-signal-safe and only affects the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({}): {e}", program.display()))?;
        Ok(Proc {
            name: name.to_owned(),
            log,
            child: Some(child),
        })
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: sending a signal to our own child.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let start = Instant::now();
            while start.elapsed() < grace {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// PEM files of a small PKI.
struct Pki {
    dir: PathBuf,
}

fn write(path: &Path, contents: &str) -> Result<()> {
    fs::write(path, contents).map_err(|e| format!("{}: {e}", path.display()))
}

impl Pki {
    fn create(dir: PathBuf) -> Result<Pki> {
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let e = |e: rcgen::Error| e.to_string();
        let ca_key = KeyPair::generate().map_err(e)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "hookguard-e2e-ca");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
        write(&dir.join("ca.crt"), &ca_cert.pem())?;
        write(&dir.join("ca.key"), &ca_key.serialize_pem())?;
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().map_err(e)?;
        let mut serving = CertificateParams::new(vec![
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
            "kubernetes.default.svc.cluster.local".to_owned(),
        ])
        .map_err(e)?;
        serving
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        serving
            .subject_alt_names
            .push(SanType::IpAddress([10, 96, 0, 1].into()));
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = serving.signed_by(&key, &issuer).map_err(e)?;
        write(&dir.join("apiserver.crt"), &cert.pem())?;
        write(&dir.join("apiserver.key"), &key.serialize_pem())?;

        let key = KeyPair::generate().map_err(e)?;
        let mut admin = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        admin
            .distinguished_name
            .push(DnType::CommonName, "hookguard-e2e-admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = admin.signed_by(&key, &issuer).map_err(e)?;
        write(&dir.join("admin.crt"), &cert.pem())?;
        write(&dir.join("admin.key"), &key.serialize_pem())?;

        // Service-account token signing key (ES256).
        let sa = KeyPair::generate().map_err(e)?;
        write(&dir.join("sa.key"), &sa.serialize_pem())?;
        write(&dir.join("sa.pub"), &sa.public_key_pem())?;

        // A CA of its own for the client certificate kube-apiserver presents to a webhook that
        // requires mutual TLS: the cluster CA above also signs the admin certificate, which such
        // a webhook must refuse.
        let client_ca_key = KeyPair::generate().map_err(e)?;
        let mut client_ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        client_ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        client_ca
            .distinguished_name
            .push(DnType::CommonName, "hookguard-e2e-webhook-client-ca");
        client_ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        write(
            &dir.join("webhook-client-ca.crt"),
            &client_ca.self_signed(&client_ca_key).map_err(e)?.pem(),
        )?;
        let client_issuer = Issuer::new(client_ca, client_ca_key);
        let key = KeyPair::generate().map_err(e)?;
        let mut client = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        client
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver-webhook-client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = client.signed_by(&key, &client_issuer).map_err(e)?;
        write(&dir.join("webhook-client.crt"), &cert.pem())?;
        write(&dir.join("webhook-client.key"), &key.serialize_pem())?;
        Ok(Pki { dir })
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

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
    procs: Vec<Proc>,
}

impl Cluster {
    pub fn start(bin: PathBuf, work: PathBuf) -> Result<Cluster> {
        for tool in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubectl",
            "helm",
            "helm4",
            "kwok",
        ] {
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
        let mut cluster = Cluster {
            kubeconfig: work.join("admin.kubeconfig"),
            bin: bin.clone(),
            work: work.clone(),
            api_port: 0,
            mtls_webhook_port,
            pki_dir: pki.dir.clone(),
            procs: Vec::new(),
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
        cluster.procs.push(Proc::spawn(
            "kube-apiserver",
            &logs,
            &bin.join("kube-apiserver"),
            &[
                format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={api_port}"),
                format!("--tls-cert-file={}", pki.path("apiserver.crt")),
                format!("--tls-private-key-file={}", pki.path("apiserver.key")),
                format!("--client-ca-file={}", pki.path("ca.crt")),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", pki.path("sa.pub")),
                format!("--service-account-signing-key-file={}", pki.path("sa.key")),
                "--service-cluster-ip-range=10.96.0.0/16".into(),
                "--authorization-mode=Node,RBAC".into(),
                "--endpoint-reconciler-type=none".into(),
                // As kubeadm and most distributions run it; otherwise the API server itself
                // rejects privileged pods before any validating webhook sees them.
                "--allow-privileged=true".into(),
                format!(
                    "--admission-control-config-file={}",
                    admission_config.display()
                ),
            ],
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
        // Simulated container logs for every pod (CRI log format), so `helm test --logs` works.
        let pod_log = work.join("kwok-pod.log");
        write(
            &pod_log,
            "2026-11-23T00:00:00.000000000Z stdout F simulated by kwok: no container ran\n",
        )?;
        let logs_config = work.join("kwok-logs.yaml");
        write(
            &logs_config,
            &format!(
                "apiVersion: kwok.x-k8s.io/v1alpha1\nkind: ClusterLogs\nmetadata:\n  name: simulated\nspec:\n  selector: {{}}\n  logs:\n  - logsFile: {}\n    follow: false\n",
                pod_log.display()
            ),
        )?;
        let kwok_port = free_port();
        cluster.procs.push(Proc::spawn(
            "kwok",
            &logs,
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
        wait_for("default ServiceAccount", Duration::from_secs(60), || {
            cluster
                .kubectl(&["get", "serviceaccount", "default"])
                .status
                .success()
                .then_some(())
        })?;
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
        Ok(cluster)
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
        let mut cmd = self.tool(tool);
        cmd.args(args);
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
        let out = self.run(tool, args, stdin);
        if out.status.success() {
            Ok(out)
        } else {
            Err(format!("{tool} {}: {}", args.join(" "), out_text(&out)))
        }
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

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop in reverse order of start.
        while let Some(mut p) = self.procs.pop() {
            p.stop(Duration::from_secs(5));
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

/// A plain HTTP/1.0 GET on loopback: (status, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// hookguard itself, run from the binary cargo built, with a certificate from its own CA.
pub struct Hookguard {
    pub exe: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
    pub admin_port: u16,
    pub ca_bundle: String,
    pub config: PathBuf,
    proc: Option<Proc>,
}

impl Hookguard {
    /// Generates a CA and serving certificate for 127.0.0.1 and starts `hookguard serve`.
    pub fn start(exe: PathBuf, dir: PathBuf, policy_yaml: &str) -> Result<Hookguard> {
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let certs = dir.join("certs");
        let out = Command::new(&exe)
            .args(["certs", "generate", "--out"])
            .arg(&certs)
            .args(["--ip", "127.0.0.1", "--dns", "localhost"])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "hookguard certs generate: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let ca_bundle = stdout
            .lines()
            .find_map(|l| l.strip_prefix("caBundle:"))
            .map(|s| s.trim().to_owned())
            .ok_or("no caBundle printed")?;
        let config = dir.join("policy.yaml");
        write(&config, policy_yaml)?;
        let mut hg = Hookguard {
            exe,
            dir,
            port: free_port(),
            admin_port: free_port(),
            ca_bundle,
            config,
            proc: None,
        };
        hg.restart()?;
        Ok(hg)
    }

    /// (Re)starts the process on the same ports and files.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let certs = self.dir.join("certs");
        let proc = Proc::spawn(
            "hookguard",
            &self.dir,
            &self.exe,
            &[
                "serve".into(),
                format!("--addr=127.0.0.1:{}", self.port),
                format!("--admin-addr=127.0.0.1:{}", self.admin_port),
                format!("--tls-cert={}", certs.join("tls.crt").display()),
                format!("--tls-key={}", certs.join("tls.key").display()),
                format!("--config={}", self.config.display()),
                "--reload-interval=200ms".into(),
                "--log=info".into(),
            ],
            &[],
        )?;
        self.proc = Some(proc);
        let admin = format!("127.0.0.1:{}", self.admin_port);
        wait_for("hookguard /readyz", Duration::from_secs(30), || {
            http_get(&admin, "/readyz").filter(|(s, _)| *s == 200)
        })?;
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop(Duration::from_secs(10));
        }
    }

    /// Issues a new serving certificate from the same CA (the registered caBundle stays valid).
    pub fn rotate_certificate(&self) -> Result<()> {
        let out = Command::new(&self.exe)
            .args(["certs", "generate", "--reuse-ca", "--out"])
            .arg(self.dir.join("certs"))
            .args(["--ip", "127.0.0.1", "--dns", "localhost"])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn metrics(&self) -> String {
        http_get(&format!("127.0.0.1:{}", self.admin_port), "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// The value of one sample line of the metrics, 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics(), series)
    }

    /// The sum of every sample of a family whose labels contain all `must_contain` strings.
    pub fn metric_sum(&self, family: &str, must_contain: &[&str]) -> f64 {
        metric_sum_of(&self.metrics(), family, must_contain)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.proc
            .as_ref()
            .map(|p| p.tail(lines))
            .unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for Hookguard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The value of one sample line (`name{labels}` exactly, or a bare name) in a scrape, 0 when absent.
pub fn metric_value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .filter(|rest| rest.starts_with(' '))
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// The sum of every sample of a family whose labels contain all `must_contain` strings.
pub fn metric_sum_of(scrape: &str, family: &str, must_contain: &[&str]) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .filter(|l| must_contain.iter().all(|m| l.contains(m)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Every series name a scrape exports: the sample names, plus, from the `# TYPE` lines, the
/// suffixed names of counters and histograms (so a query may use either spelling).
pub fn exported_metric_names(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                names.insert(name.to_owned());
                let suffixes: &[&str] = match kind {
                    "counter" => &["_total"],
                    "histogram" => &["_bucket", "_sum", "_count"],
                    _ => &[],
                };
                for s in suffixes {
                    names.insert(format!("{name}{s}"));
                }
            }
        } else if !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            if end > 0 {
                names.insert(line[..end].to_owned());
            }
        }
    }
    names
}

/// Standard base64 (a Secret's `data`, a caBundle) decoded.
pub fn b64_decode(s: &str) -> Result<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("bad base64: {e}"))
}

/// `hookguard serve` or `hookguard controller` with arguments of a scenario's choosing, on free
/// loopback ports (`port` is 0 for a controller: it has no webhook).
pub struct Served {
    pub port: u16,
    pub admin_port: u16,
    proc: Proc,
}

impl Served {
    /// Starts `hookguard serve --addr --admin-addr <args>` and waits until /livez answers
    /// (not /readyz: some modes become ready only after talking to the API server).
    pub fn start(
        name: &str,
        dir: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<Served> {
        Served::start_at(free_port(), name, dir, args, env)
    }

    /// The same, with the webhook on `127.0.0.1:port` (an address the API server was configured
    /// for, e.g. `Cluster::mtls_webhook_port`).
    pub fn start_at(
        port: u16,
        name: &str,
        dir: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<Served> {
        Served::spawn("serve", Some(port), name, dir, args, env)
    }

    /// Starts `hookguard controller --admin-addr <args>` (the inventory, orphans, janitor and
    /// leader election; no webhook port) and waits until /livez answers.
    pub fn controller(
        name: &str,
        dir: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<Served> {
        Served::spawn("controller", None, name, dir, args, env)
    }

    fn spawn(
        command: &str,
        port: Option<u16>,
        name: &str,
        dir: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<Served> {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let admin_port = free_port();
        let mut all = vec![command.to_owned()];
        all.extend(port.map(|p| format!("--addr=127.0.0.1:{p}")));
        all.push(format!("--admin-addr=127.0.0.1:{admin_port}"));
        all.extend_from_slice(args);
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_hookguard"));
        let proc = Proc::spawn(name, dir, &exe, &all, env)?;
        let served = Served {
            port: port.unwrap_or(0),
            admin_port,
            proc,
        };
        wait_for(&format!("{name} /livez"), Duration::from_secs(30), || {
            http_get(&served.admin(), "/livez").filter(|(s, _)| *s == 200)
        })?;
        Ok(served)
    }

    pub fn admin(&self) -> String {
        format!("127.0.0.1:{}", self.admin_port)
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn ready(&self) -> bool {
        http_get(&self.admin(), "/readyz").is_some_and(|(s, _)| s == 200)
    }

    pub fn metrics(&self) -> String {
        http_get(&self.admin(), "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    pub fn metric_sum(&self, family: &str, must_contain: &[&str]) -> f64 {
        metric_sum_of(&self.metrics(), family, must_contain)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.tail(lines)
    }

    pub fn stop(mut self) {
        self.proc.stop(Duration::from_secs(10));
    }
}

/// A tool from Debian's `prometheus` package (`prometheus`, `promtool`) on PATH, or an error
/// saying how to get it.
pub fn prometheus_tool(tool: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "{tool} not found on PATH: run scripts/install-test-deps.sh (Debian package `prometheus`; DESIGN.md: the tests run promtool and a real Prometheus)"
            )
        })
}

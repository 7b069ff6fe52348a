//! A REAL node for the real-node suite (`make e2e-real-node`): containerd (Debian's, with runc and
//! the CNI plugins), the kubelet and kube-proxy built from the same `k8s.io/kubernetes` module
//! as the control plane. Containers really run; images come from archives built on this machine
//! (`scripts/image-offline.sh`) and imported into containerd, since there is no registry.
//!
//! Settings that matter on these machines (cgroup v1, no registry, unprivileged oom_score_adj):
//! `failCgroupV1: false` and `cgroupDriver: cgroupfs` for the kubelet; `restrict_oom_score_adj`
//! and a local `sandbox_image` for containerd; image garbage collection off (an evicted image
//! cannot be pulled again). Pods get addresses on a bridge (10.244.7.0/24) the host routes to.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::pki::{Pki, write};
use crate::proc::{Proc, Result, free_port, out_text, wait_for};

pub const NODE_NAME: &str = "real-node-0";
/// Images the archives hold, as charts and scenarios name them.
pub const BUSYBOX_IMAGE: &str = "hookguard.test/busybox:1.35";
const PAUSE_IMAGE: &str = "hookguard.test/pause:1.35";
const POD_SUBNET: &str = "10.244.7.0/24";
const BRIDGE: &str = "hg0";
const ARCHIVES: [&str; 3] = ["pause.oci.tar", "busybox.oci.tar", "hookguard.oci.tar"];

/// The host's address on its default route (no packet is sent): what pods reach the host by.
pub fn host_ip() -> Result<String> {
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    socket
        .connect("10.255.255.255:9")
        .map_err(|e| format!("no default route to find the host's address by: {e}"))?;
    let ip = socket.local_addr().map_err(|e| e.to_string())?.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        return Err(format!("the host's address on its default route is {ip}"));
    }
    Ok(ip.to_string())
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default() + ":/usr/sbin:/sbin";
    path.split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// Where `scripts/image-offline.sh` put the archives.
fn images_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("HOOKGUARD_IMAGES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::tools::repo().join("target/images"));
    for archive in ARCHIVES {
        if !dir.join(archive).is_file() {
            return Err(format!(
                "{} missing: run `scripts/image-offline.sh` (or `make image-offline`), or set HOOKGUARD_IMAGES_DIR",
                dir.join(archive).display()
            ));
        }
    }
    Ok(dir)
}

fn ctr(socket: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("ctr")
        .arg(format!("--address={}", socket.display()))
        .args(["-n", "k8s.io"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ctr: {e}"))?;
    if out.status.success() {
        Ok(out_text(&out))
    } else {
        Err(format!("ctr {}: {}", args.join(" "), out_text(&out)))
    }
}

/// containerd, the images, the kubelet and kube-proxy; returns once the Node is Ready.
pub fn start(cluster: &mut Cluster, pki: &Pki, logs: &Path) -> Result<()> {
    for tool in ["containerd", "ctr", "runc", "iptables", "conntrack"] {
        which(tool).ok_or_else(|| {
            format!(
                "{tool} not found: run scripts/install-test-deps.sh --real-node (Debian packages)"
            )
        })?;
    }
    if !Path::new("/usr/lib/cni/bridge").is_file() {
        return Err(
            "/usr/lib/cni/bridge not found: run scripts/install-test-deps.sh --real-node (containernetworking-plugins)"
                .into(),
        );
    }
    let images = images_dir()?;
    let work = cluster.work.join("node");
    let (containerd_dir, cni_dir, kubelet_dir) = (
        work.join("containerd"),
        work.join("cni"),
        work.join("kubelet"),
    );
    for d in [&containerd_dir, &cni_dir, &kubelet_dir] {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    let socket = containerd_dir.join("containerd.sock");
    let config = containerd_dir.join("config.toml");
    write(
        &config,
        &format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # Processes here may not lower oom_score_adj: without this every sandbox fails in runc.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
"#,
            root = containerd_dir.join("root").display(),
            state = containerd_dir.join("state").display(),
            socket = socket.display(),
            cni = cni_dir.display(),
        ),
    )?;
    write(
        &cni_dir.join("10-hookguard-e2e.conflist"),
        &format!(
            r#"{{"cniVersion": "0.4.0", "name": "hookguard-e2e", "plugins": [
  {{"type": "bridge", "bridge": "{BRIDGE}", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{POD_SUBNET}"}}]],
            "routes": [{{"dst": "0.0.0.0/0"}}], "dataDir": "{ipam}"}}}},
  {{"type": "portmap", "capabilities": {{"portMappings": true}}}},
  {{"type": "loopback"}}
]}}
"#,
            ipam = cni_dir.join("ipam").display()
        ),
    )?;
    let containerd = which("containerd").ok_or("containerd not found")?;
    cluster.procs.push(Proc::spawn(
        "containerd",
        logs,
        &containerd,
        &[format!("--config={}", config.display())],
        &[],
    )?);
    wait_for("containerd", Duration::from_secs(30), || {
        ctr(&socket, &["version"]).ok()
    })?;
    for archive in ARCHIVES {
        ctr(
            &socket,
            &[
                "images",
                "import",
                &images.join(archive).display().to_string(),
            ],
        )?;
    }

    let node_ip = host_ip()?;
    let kubelet_config = kubelet_dir.join("config.yaml");
    write(
        &kubelet_config,
        &format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# These machines have cgroup v1: the kubelet refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://{socket}
address: {node_ip}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
# Test-only: the API server presents no client certificate to kubelets in this cluster.
authentication:
  anonymous: {{enabled: true}}
  webhook: {{enabled: false}}
authorization: {{mode: AlwaysAllow}}
tlsCertFile: {cert}
tlsPrivateKeyFile: {key}
failSwapOn: false
# Imported images cannot be pulled again: never collect them, never evict for disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}}
serializeImagePulls: false
resolvConf: ""
clusterDomain: cluster.local
"#,
            socket = socket.display(),
            port = free_port(),
            healthz = free_port(),
            cert = pki.path("apiserver.crt"),
            key = pki.path("apiserver.key"),
        ),
    )?;
    let kc = cluster.kubeconfig.display().to_string();
    cluster.procs.push(Proc::spawn(
        "kubelet",
        logs,
        &cluster.bin.join("kubelet"),
        &[
            format!("--config={}", kubelet_config.display()),
            format!("--kubeconfig={kc}"),
            format!("--hostname-override={NODE_NAME}"),
            format!("--node-ip={node_ip}"),
            format!("--root-dir={}", kubelet_dir.join("root").display()),
            format!("--cert-dir={}", kubelet_dir.join("pki").display()),
        ],
        &[],
    )?);
    cluster.procs.push(Proc::spawn(
        "kube-proxy",
        logs,
        &cluster.bin.join("kube-proxy"),
        &[
            format!("--kubeconfig={kc}"),
            format!("--hostname-override={NODE_NAME}"),
            "--proxy-mode=iptables".into(),
            format!("--cluster-cidr={POD_SUBNET}"),
            // Leave the host's conntrack sysctls alone.
            "--conntrack-max-per-core=0".into(),
            format!("--metrics-bind-address=127.0.0.1:{}", free_port()),
            format!("--healthz-bind-address=127.0.0.1:{}", free_port()),
        ],
        &[],
    )?);
    wait_for("the real node Ready", Duration::from_secs(120), || {
        cluster
            .kubectl(&[
                "wait",
                "--for=condition=Ready",
                &format!("node/{NODE_NAME}"),
                "--timeout=2s",
            ])
            .status
            .success()
            .then_some(())
    })?;
    cluster.namespace("default")
}

/// After the node's processes stopped: the containers they leave (containerd's shims outlive
/// it), their mounts, kube-proxy's iptables rules and the bridge.
pub fn clean_up(cluster_work: &Path, bin: &Path) {
    let socket = cluster_work.join("node/containerd/containerd.sock");
    let socket = socket.display().to_string();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("containerd-shim")
                && cmdline.contains(&socket)
                && let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>()
            {
                // The shim's children (the containers) die with their process group.
                kill_group(pid);
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let work = cluster_work.display().to_string();
    if let Ok(mounts) = std::fs::read_to_string("/proc/mounts") {
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&work))
            .collect();
        points.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in points {
            let _ = Command::new("umount").args(["-l", m]).output();
        }
    }
    let _ = Command::new(bin.join("kube-proxy"))
        .arg("--cleanup")
        .output();
    remove_kube_chains();
    let _ = Command::new("ip").args(["link", "delete", BRIDGE]).output();
}

/// The kubelet's and kube-proxy's iptables chains (`KUBE-*`) and the jumps into them: gone, so
/// the host's firewall is as before the suite.
fn remove_kube_chains() {
    for tool in ["iptables", "ip6tables"] {
        for table in ["filter", "nat", "mangle"] {
            let Ok(out) = Command::new(tool).args(["-t", table, "-S"]).output() else {
                continue;
            };
            let rules = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut chains = Vec::new();
            for line in rules.lines() {
                let words = split_rule(line);
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                match words.as_slice() {
                    ["-N", chain] if chain.starts_with("KUBE-") => chains.push(chain.to_string()),
                    ["-A", chain, rest @ ..]
                        if !chain.starts_with("KUBE-")
                            && rest
                                .windows(2)
                                .any(|w| w[0] == "-j" && w[1].starts_with("KUBE-")) =>
                    {
                        let _ = Command::new(tool)
                            .args(["-t", table, "-D", chain])
                            .args(rest)
                            .output();
                    }
                    _ => {}
                }
            }
            for verb in ["-F", "-X"] {
                for chain in &chains {
                    let _ = Command::new(tool).args(["-t", table, verb, chain]).output();
                }
            }
        }
    }
}

fn kill_group(pid: i32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .output();
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .output();
}

/// The words of an `iptables -S` line; double-quoted words (comments) are one word.
fn split_rule(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

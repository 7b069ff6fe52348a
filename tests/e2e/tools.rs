//! Where the suite finds its tools: the control plane's binaries, the repository, Prometheus.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::proc::Result;

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

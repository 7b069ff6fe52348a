//! hookguard processes, run from the binary cargo built: the suite's own `hookguard serve`
//! (`Hookguard`, registered with the webhook configurations the chart renders), and the ones a
//! scenario starts with arguments of its choosing (`Served`).

use std::fs;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::pki::write;
use crate::proc::{Proc, Result, free_port, http_get, wait_for};
use crate::scrape::{metric_sum_of, metric_value};

/// The hookguard binary cargo built for this test.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hookguard"))
}

/// hookguard itself, run from the binary cargo built, with a certificate from its own CA.
/// A `Served` (its ports, URL, metrics and log are the `Served`'s) that keeps its ports,
/// certificate and policy file across restarts.
pub struct Hookguard {
    pub dir: PathBuf,
    pub ca_bundle: String,
    pub config: PathBuf,
    served: Served,
}

impl Hookguard {
    /// Generates a CA and serving certificate for 127.0.0.1 and starts `hookguard serve`.
    pub fn start(dir: PathBuf, policy_yaml: &str) -> Result<Hookguard> {
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let certs = dir.join("certs");
        let out = Command::new(exe())
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
        let (port, admin_port) = (free_port(), free_port());
        let served = Hookguard::spawn(&dir, &config, port, admin_port)?;
        let hg = Hookguard {
            dir,
            ca_bundle,
            config,
            served,
        };
        hg.served.wait_answers("/readyz")?;
        Ok(hg)
    }

    /// (Re)starts the process on the same ports and files.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let (port, admin_port) = (self.served.port, self.served.admin_port);
        self.served = Hookguard::spawn(&self.dir, &self.config, port, admin_port)?;
        self.served.wait_answers("/readyz")
    }

    /// `hookguard serve` on `port` and `admin_port` with the certificate in `dir/certs` and the
    /// policy `config`, not yet waited for.
    fn spawn(dir: &Path, config: &Path, port: u16, admin_port: u16) -> Result<Served> {
        let certs = dir.join("certs");
        Served::spawn(
            "serve",
            Some(port),
            admin_port,
            "hookguard",
            dir,
            &[
                format!("--tls-cert={}", certs.join("tls.crt").display()),
                format!("--tls-key={}", certs.join("tls.key").display()),
                format!("--config={}", config.display()),
                "--reload-interval=200ms".into(),
                "--log=info".into(),
            ],
            &[],
        )
    }

    pub fn stop(&mut self) {
        self.served.halt();
    }

    /// Issues a new serving certificate from the same CA (the registered caBundle stays valid).
    pub fn rotate_certificate(&self) -> Result<()> {
        let out = Command::new(exe())
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
}

impl Deref for Hookguard {
    type Target = Served;

    fn deref(&self) -> &Served {
        &self.served
    }
}

impl Drop for Hookguard {
    fn drop(&mut self) {
        self.stop();
    }
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
        Served::spawn("serve", Some(port), free_port(), name, dir, args, env)?.live()
    }

    /// Starts `hookguard controller --admin-addr <args>` (the inventory, orphans, janitor and
    /// leader election; no webhook port) and waits until /livez answers.
    pub fn controller(
        name: &str,
        dir: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<Served> {
        Served::spawn("controller", None, free_port(), name, dir, args, env)?.live()
    }

    /// Starts `hookguard <command> [--addr=127.0.0.1:<port>] --admin-addr=127.0.0.1:<admin_port>
    /// <args>`, logging to `<dir>/<name>.log`, without waiting for it to answer.
    fn spawn(
        command: &str,
        port: Option<u16>,
        admin_port: u16,
        name: &str,
        dir: &Path,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<Served> {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let mut all = vec![command.to_owned()];
        all.extend(port.map(|p| format!("--addr=127.0.0.1:{p}")));
        all.push(format!("--admin-addr=127.0.0.1:{admin_port}"));
        all.extend_from_slice(args);
        let proc = Proc::spawn(name, dir, &exe(), &all, env)?;
        Ok(Served {
            port: port.unwrap_or(0),
            admin_port,
            proc,
        })
    }

    /// Itself once /livez answers.
    fn live(self) -> Result<Served> {
        self.wait_answers("/livez")?;
        Ok(self)
    }

    /// Waits until the admin endpoint `path` (e.g. /livez, /readyz) answers 200.
    fn wait_answers(&self, path: &str) -> Result<()> {
        wait_for(
            &format!("{} {path}", self.proc.name),
            Duration::from_secs(30),
            || http_get(&self.admin(), path).filter(|(s, _)| *s == 200),
        )?;
        Ok(())
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

    /// The value of one sample line of the metrics, 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics(), series)
    }

    /// The sum of every sample of a family whose labels contain all `must_contain` strings.
    pub fn metric_sum(&self, family: &str, must_contain: &[&str]) -> f64 {
        metric_sum_of(&self.metrics(), family, must_contain)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.tail(lines)
    }

    pub fn stop(mut self) {
        self.halt();
    }

    /// SIGTERM, then SIGKILL after 10 s.
    fn halt(&mut self) {
        self.proc.stop(Duration::from_secs(10));
    }
}

//! Where the webhook's serving certificate comes from, and the listener's TLS settings.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{ServeError, ServeOptions, to_time};
use crate::managed_certs::ManagedCerts;
use crate::metrics::CertMetrics;
use crate::server::{reload, tls};

/// The certificate modes of `hookguard serve`.
pub enum CertSource {
    /// `--tls-cert`/`--tls-key`: files, reloaded when they change (a mounted Secret).
    Files {
        cert: PathBuf,
        key: PathBuf,
        reload_interval: Duration,
    },
    /// Neither: a self-signed CA and serving certificate generated into `--cert-dir` (for
    /// development; the CA is reused across restarts), then served like files.
    Generated {
        dir: PathBuf,
        dns: Vec<String>,
        ips: Vec<IpAddr>,
        reload_interval: Duration,
    },
    /// `--cert-secret`: issued, rotated and published by hookguard itself, read through the API.
    Secret(Box<ManagedCerts>),
}

impl CertSource {
    /// The mode the flags select; `--cert-secret` connects to the Kubernetes API.
    pub async fn from_options(
        opts: &ServeOptions,
        own_namespace: &str,
    ) -> Result<Self, ServeError> {
        let mut dns = vec!["localhost".to_owned()];
        dns.extend(opts.dns.iter().cloned());
        let mut ips: Vec<IpAddr> =
            vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
        ips.extend(opts.ip.iter().copied());
        let reload_interval = opts.reload_interval;
        if let Some(secret) = &opts.cert_secret {
            let settings = crate::managed_certs::Settings {
                serving_validity: to_time(opts.serving_cert_validity),
                serving_renew_before: to_time(opts.serving_cert_renew_before),
                ca_validity: to_time(opts.ca_validity),
                ca_renew_before: to_time(opts.ca_renew_before),
                dns,
                ips,
            };
            settings.validate()?;
            let conn = crate::cluster::connect(opts.kubeconfig.as_deref()).await?;
            let namespace = if own_namespace.is_empty() {
                conn.default_namespace.clone()
            } else {
                own_namespace.to_owned()
            };
            tracing::info!(%namespace, %secret, webhook_config = ?opts.webhook_config_name, "self-managed certificates");
            return Ok(CertSource::Secret(Box::new(ManagedCerts {
                client: conn.client,
                namespace,
                secret: secret.clone(),
                webhook_config: opts.webhook_config_name.clone(),
                settings,
                interval: opts.cert_check_interval,
            })));
        }
        Ok(match (&opts.tls_cert, &opts.tls_key) {
            (Some(cert), Some(key)) => CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
                reload_interval,
            },
            _ => CertSource::Generated {
                dir: opts.cert_dir.clone(),
                dns,
                ips,
                reload_interval,
            },
        })
    }

    /// Loads the first certificate and starts keeping it current until `stop`. `None`:
    /// `shutdown` came before a certificate could be had (self-managed mode retries until then).
    pub async fn start(
        self,
        metrics: &CertMetrics,
        shutdown: &CancellationToken,
        stop: CancellationToken,
    ) -> Result<Option<Arc<tls::ReloadingResolver>>, ServeError> {
        match self {
            CertSource::Secret(managed) => {
                let Some(material) = managed.first(metrics, shutdown).await else {
                    return Ok(None);
                };
                let loaded = crate::managed_certs::load(&material)?;
                if let Some(t) = loaded.not_after {
                    metrics.tls_cert_expiry.set(t);
                }
                if let Some(t) = material.earliest_ca_expiry() {
                    metrics.tls_ca_expiry.set(t);
                }
                let resolver = Arc::new(tls::ReloadingResolver::new(loaded.key));
                tokio::spawn(managed.run(material, resolver.clone(), metrics.clone(), stop));
                Ok(Some(resolver))
            }
            CertSource::Generated {
                dir,
                dns,
                ips,
                reload_interval,
            } => {
                let written = crate::certs::write_certs(
                    &dir,
                    &dns,
                    &ips,
                    true,
                    time::OffsetDateTime::now_utc(),
                )?;
                tracing::info!(
                    ca_cert = %written.ca_cert.display(),
                    reused_ca = written.reused_ca,
                    "no --tls-cert given: generated a self-signed serving certificate; register the CA as the webhook caBundle"
                );
                println!("hookguard: CA certificate: {}", written.ca_cert.display());
                println!("hookguard: caBundle: {}", written.ca_bundle);
                files(
                    written.tls_cert,
                    written.tls_key,
                    reload_interval,
                    metrics,
                    stop,
                )
                .map(Some)
            }
            CertSource::Files {
                cert,
                key,
                reload_interval,
            } => files(cert, key, reload_interval, metrics, stop).map(Some),
        }
    }
}

/// Serves the certificate files and swaps in a changed pair; a pair that does not parse is
/// rejected (counted as a failed reload) and the current one kept.
fn files(
    cert_path: PathBuf,
    key_path: PathBuf,
    reload_interval: Duration,
    metrics: &CertMetrics,
    stop: CancellationToken,
) -> Result<Arc<tls::ReloadingResolver>, ServeError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| tls::TlsError::Read {
            path: path.clone(),
            source,
        })
    };
    let cert_bytes = read(&cert_path)?;
    let key_bytes = read(&key_path)?;
    let loaded = tls::parse_cert(&cert_bytes, &key_bytes, &cert_path, &key_path)?;
    if let Some(t) = loaded.not_after {
        metrics.tls_cert_expiry.set(t);
    }
    let resolver = Arc::new(tls::ReloadingResolver::new(loaded.key));
    let (metrics, target) = (metrics.clone(), resolver.clone());
    reload::watch_files(
        vec![cert_path.clone(), key_path.clone()],
        vec![cert_bytes, key_bytes],
        reload_interval,
        stop,
        move |files| match tls::parse_cert(&files[0], &files[1], &cert_path, &key_path) {
            Ok(loaded) => {
                target.replace(loaded.key);
                if let Some(t) = loaded.not_after {
                    metrics.tls_cert_expiry.set(t);
                }
                metrics.record_reload("success");
                tracing::info!(cert = %cert_path.display(), "reloaded serving certificate");
            }
            Err(e) => {
                metrics.record_reload("failure");
                tracing::warn!(error = %e, "new serving certificate rejected; keeping the current one");
            }
        },
    );
    Ok(resolver)
}

/// The webhook listener's TLS settings. With `--client-ca`, the CA file is watched like the
/// serving certificate: a changed bundle applies to connections accepted from then on, and one
/// that does not parse is rejected (counted as a failed TLS reload) and the current one kept.
pub(super) fn tls_config(
    opts: &ServeOptions,
    metrics: &CertMetrics,
    resolver: Arc<tls::ReloadingResolver>,
    stop: &CancellationToken,
) -> Result<tls::SharedServerConfig, ServeError> {
    let Some(path) = opts.client_ca.clone() else {
        let config = tls::server_config(resolver, None)?;
        return Ok(Arc::new(arc_swap::ArcSwap::from_pointee(config)));
    };
    let pem = tls::read_client_ca(&path)?;
    let config = tls::server_config(
        resolver.clone(),
        Some(tls::ClientCa {
            path: &path,
            pem: &pem,
        }),
    )?;
    let shared = Arc::new(arc_swap::ArcSwap::from_pointee(config));
    let (metrics, target) = (metrics.clone(), shared.clone());
    reload::watch_files(
        vec![path.clone()],
        vec![pem],
        opts.reload_interval,
        stop.child_token(),
        move |files| {
            let client_ca = tls::ClientCa {
                path: &path,
                pem: &files[0],
            };
            match tls::server_config(resolver.clone(), Some(client_ca)) {
                Ok(config) => {
                    target.store(Arc::new(config));
                    metrics.record_reload("success");
                    tracing::info!(client_ca = %path.display(), "reloaded client CA");
                }
                Err(e) => {
                    metrics.record_reload("failure");
                    tracing::warn!(error = %e, "new client CA rejected; keeping the current one");
                }
            }
        },
    );
    Ok(shared)
}

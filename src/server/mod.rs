//! `hookguard serve`: the webhook over HTTPS and the admin server over plain HTTP.

pub mod budget;
pub mod connections;
pub mod reload;
pub mod routes;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::policy::{Config, ConfigError, Policy};
pub use routes::{AppState, Limits};

/// Options of `hookguard serve`. Every flag can also be set with a `HOOKGUARD_*` variable.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeOptions {
    /// HTTPS address of the webhook (`POST /mutate`, `POST /validate`).
    #[arg(long, env = "HOOKGUARD_ADDR", default_value = "0.0.0.0:8443")]
    pub addr: SocketAddr,
    /// Plain-HTTP address of the admin server (`/livez`, `/readyz`, `/metrics`).
    #[arg(long, env = "HOOKGUARD_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
    /// Serving certificate (PEM, leaf first; chains accepted). Reloaded when the file changes.
    #[arg(long, env = "HOOKGUARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the serving certificate (PEM).
    #[arg(long, env = "HOOKGUARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "HOOKGUARD_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// kubeconfig for the Kubernetes API (self-managed certificates, inventory, janitor).
    /// Without it: $KUBECONFIG, ~/.kube/config, then the in-cluster service account.
    #[arg(long, env = "HOOKGUARD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Self-managed certificates: keep the CA and serving certificate in this Secret (in
    /// --namespace), create and rotate them, and serve from it. Every replica must get the same
    /// --dns/--ip.
    #[arg(long, env = "HOOKGUARD_CERT_SECRET", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub cert_secret: Option<String>,
    /// With --cert-secret: the MutatingWebhookConfiguration and ValidatingWebhookConfiguration
    /// (same name) whose caBundle is kept current.
    #[arg(long, env = "HOOKGUARD_WEBHOOK_CONFIG_NAME", requires = "cert_secret")]
    pub webhook_config_name: Option<String>,
    /// With --cert-secret: validity of each serving certificate.
    #[arg(long, env = "HOOKGUARD_SERVING_CERT_VALIDITY", default_value = "30d", value_parser = humantime::parse_duration)]
    pub serving_cert_validity: Duration,
    /// With --cert-secret: re-issue the serving certificate this long before it expires.
    #[arg(long, env = "HOOKGUARD_SERVING_CERT_RENEW_BEFORE", default_value = "10d", value_parser = humantime::parse_duration)]
    pub serving_cert_renew_before: Duration,
    /// With --cert-secret: validity of each CA.
    #[arg(long, env = "HOOKGUARD_CA_VALIDITY", default_value = "365d", value_parser = humantime::parse_duration)]
    pub ca_validity: Duration,
    /// With --cert-secret: start replacing the CA this long before it expires.
    #[arg(long, env = "HOOKGUARD_CA_RENEW_BEFORE", default_value = "90d", value_parser = humantime::parse_duration)]
    pub ca_renew_before: Duration,
    /// With --cert-secret: how often the Secret and caBundles are checked (also on every change).
    #[arg(long, env = "HOOKGUARD_CERT_CHECK_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub cert_check_interval: Duration,
    /// Without --tls-cert/--tls-key: where the self-signed CA and serving certificate are written.
    #[arg(long, env = "HOOKGUARD_CERT_DIR", default_value = "certs/dev")]
    pub cert_dir: PathBuf,
    /// Extra DNS names for the generated serving certificate (localhost is always included).
    #[arg(long = "dns", env = "HOOKGUARD_DNS", value_delimiter = ',')]
    pub dns: Vec<String>,
    /// Extra IP addresses for the generated serving certificate (127.0.0.1 and ::1 are included).
    #[arg(long = "ip", env = "HOOKGUARD_IP", value_delimiter = ',')]
    pub ip: Vec<IpAddr>,
    /// Policy file (YAML). Reloaded when it changes; a bad new file is rejected and the old kept.
    #[arg(long, env = "HOOKGUARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// hookguard's own namespace: never judged (no self-deadlock). Defaults to POD_NAMESPACE.
    #[arg(long, env = "HOOKGUARD_NAMESPACE")]
    pub namespace: Option<String>,
    /// How often the policy file and certificate files are checked for changes.
    #[arg(long, env = "HOOKGUARD_RELOAD_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub reload_interval: Duration,
    /// Largest accepted request body in bytes (larger bodies get 413). The default, 7 MiB, is
    /// the largest review kube-apiserver sends: it refuses request bodies over 3 MiB, and an
    /// UPDATE's review carries the object and the old object, plus the envelope.
    #[arg(long, env = "HOOKGUARD_MAX_BODY_BYTES", default_value_t = 7 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Time allowed to answer one request (the API server's own timeout is usually shorter).
    #[arg(long, env = "HOOKGUARD_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Time allowed for a client to send request headers, and for the TLS handshake.
    #[arg(long, env = "HOOKGUARD_HEADER_READ_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,
    /// On SIGTERM: time between turning /readyz false and no longer accepting connections
    /// (lets endpoints update; set a few seconds in Kubernetes).
    #[arg(long, env = "HOOKGUARD_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,
    /// On SIGTERM: longest wait for in-flight requests to finish.
    #[arg(long, env = "HOOKGUARD_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Report the namespace label of the hook metrics (admissions, inventory, churn, janitor);
    /// turn off for clusters with very many namespaces.
    #[arg(long, env = "HOOKGUARD_METRICS_NAMESPACE_LABEL", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_namespace_label: bool,
    #[command(flatten)]
    pub inventory: crate::inventory::InventoryOptions,
    #[command(flatten)]
    pub connections: connections::ConnectionOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("policy config {path}: cannot read: {source}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("policy config {path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Certs(#[from] crate::certs::CertError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("--cert-secret: {0}")]
    CertSettings(#[from] crate::managed_certs::SettingsError),
    #[error("--cert-secret: {0}")]
    CertServe(#[from] crate::managed_certs::ManagedCertError),
    #[error(transparent)]
    Inventory(#[from] crate::inventory::InventoryError),
}

/// Loads and validates a policy file.
pub fn load_policy(path: &std::path::Path) -> Result<(Policy, Vec<u8>), ServeError> {
    let bytes = std::fs::read(path).map_err(|source| ServeError::ReadConfig {
        path: path.to_owned(),
        source,
    })?;
    let policy = policy_from_bytes(&bytes).map_err(|source| ServeError::Config {
        path: path.to_owned(),
        source,
    })?;
    Ok((policy, bytes))
}

fn policy_from_bytes(bytes: &[u8]) -> Result<Policy, ConfigError> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| ConfigError::Parse(format!("not UTF-8: {e}")))?;
    Config::from_yaml(text)
}

/// Runs until SIGTERM or SIGINT (or `shutdown` turning true, for tests), then drains.
pub async fn serve(
    opts: ServeOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let own_namespace = opts
        .namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_default();
    let (policy, policy_bytes) = match &opts.config {
        Some(path) => {
            let (p, bytes) = load_policy(path)?;
            tracing::info!(path = %path.display(), "loaded policy config");
            (p, Some(bytes))
        }
        None => {
            tracing::info!("no --config given: using the built-in policy");
            (Policy::default(), None)
        }
    };
    let policy = policy.with_exempt_namespace(&own_namespace);
    let metrics = Metrics::new(opts.metrics_namespace_label);
    let state = AppState::new(policy, metrics);

    let (stop_tx, stop_rx) = watch::channel(false);

    // Admin server (plain HTTP) first: /livez and /metrics answer while certificates are set up.
    let admin_listener = tokio::net::TcpListener::bind(opts.admin_addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: opts.admin_addr,
            source,
        })?;
    let admin_addr = admin_listener.local_addr()?;
    let admin = connections::Listener {
        listener: admin_listener,
        tls: None,
        app: routes::admin_router(state.clone()),
        timeouts: connections::Timeouts {
            first_request: opts.header_read_timeout,
            handshake: opts.header_read_timeout,
            idle: opts.connections.idle_timeout,
            max_age: None,
            close_grace: opts.shutdown_grace,
        },
        max_connections: opts.connections.admin_max_connections,
        http: connections::admin_http(opts.header_read_timeout),
        refused: state
            .metrics
            .connections_refused
            .get_or_create(&crate::metrics::ServerLabels { server: "admin" })
            .clone(),
    };
    let admin = tokio::spawn(admin.run(stop_rx.clone()));

    let mut dns = vec!["localhost".to_owned()];
    dns.extend(opts.dns.iter().cloned());
    let mut ips: Vec<IpAddr> = vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
    ips.extend(opts.ip.iter().copied());

    // The Kubernetes API, for what needs it.
    opts.inventory.validate()?;
    let connection = if opts.cert_secret.is_some() {
        Some(crate::cluster::connect(opts.kubeconfig.as_deref()).await?)
    } else if opts.inventory.inventory {
        match crate::cluster::connect(opts.kubeconfig.as_deref()).await {
            Ok(c) => Some(c),
            // Outside a cluster with no kubeconfig: admission works without the API.
            Err(e @ crate::cluster::ClusterError::NotFound(_)) => {
                tracing::warn!(error = %e, "running without the inventory");
                None
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let mut inventory_task = None;
    if let (true, Some(conn)) = (opts.inventory.inventory, &connection) {
        let namespace = if own_namespace.is_empty() {
            conn.default_namespace.clone()
        } else {
            own_namespace.clone()
        };
        inventory_task = Some(tokio::spawn(crate::inventory::run(
            conn.client.clone(),
            namespace,
            opts.inventory.clone(),
            state.clone(),
            stop_rx.clone(),
        )));
    }

    let resolver = if let (Some(secret), Some(conn)) = (&opts.cert_secret, &connection) {
        // Self-managed: the Secret is the source of truth, read through the API.
        let settings = crate::managed_certs::Settings {
            serving_validity: to_time(opts.serving_cert_validity),
            serving_renew_before: to_time(opts.serving_cert_renew_before),
            ca_validity: to_time(opts.ca_validity),
            ca_renew_before: to_time(opts.ca_renew_before),
            dns,
            ips,
        };
        settings.validate()?;
        let namespace = if own_namespace.is_empty() {
            conn.default_namespace.clone()
        } else {
            own_namespace.clone()
        };
        let managed = crate::managed_certs::ManagedCerts {
            client: conn.client.clone(),
            namespace: namespace.clone(),
            secret: secret.clone(),
            webhook_config: opts.webhook_config_name.clone(),
            settings,
            interval: opts.cert_check_interval,
        };
        tracing::info!(%namespace, %secret, webhook_config = ?opts.webhook_config_name, "self-managed certificates");
        let mut first_stop = shutdown.clone();
        let Some(material) = managed.first(&state.metrics, &mut first_stop).await else {
            let _ = stop_tx.send(true);
            let _ = admin.await;
            return Ok(());
        };
        let loaded = crate::managed_certs::load(&material)?;
        if let Some(t) = loaded.not_after {
            state.metrics.tls_cert_expiry.set(t);
        }
        if let Some(t) = material.earliest_ca_expiry() {
            state.metrics.tls_ca_expiry.set(t);
        }
        let resolver = Arc::new(tls::ReloadingResolver::new(loaded.key));
        tokio::spawn(managed.run(material, resolver.clone(), state.clone(), stop_rx.clone()));
        resolver
    } else {
        file_certificates(&opts, &state, dns, ips, stop_rx.clone())?
    };
    let server_config = tls_config(&opts, &state, resolver, stop_rx.clone())?;

    // Watch the policy file.
    if let (Some(path), Some(bytes)) = (&opts.config, policy_bytes) {
        let state = state.clone();
        let path = path.clone();
        let own_namespace = own_namespace.clone();
        reload::watch_files(
            vec![path.clone()],
            vec![bytes],
            opts.reload_interval,
            stop_rx.clone(),
            move |files| match policy_from_bytes(&files[0]) {
                Ok(policy) => {
                    state
                        .policy
                        .store(Arc::new(policy.with_exempt_namespace(&own_namespace)));
                    state
                        .metrics
                        .config_reloads
                        .get_or_create(&crate::metrics::ResultLabels { result: "success" })
                        .inc();
                    tracing::info!(path = %path.display(), "reloaded policy config");
                }
                Err(e) => {
                    state
                        .metrics
                        .config_reloads
                        .get_or_create(&crate::metrics::ResultLabels { result: "failure" })
                        .inc();
                    tracing::warn!(path = %path.display(), error = %e, "new policy config rejected; keeping the current one");
                }
            },
        );
    }

    // Webhook server (HTTPS).
    let listener = std::net::TcpListener::bind(opts.addr).map_err(|source| ServeError::Bind {
        addr: opts.addr,
        source,
    })?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    let app = routes::webhook_router(
        state.clone(),
        Limits {
            max_body_bytes: opts.max_body_bytes,
            request_timeout: opts.request_timeout,
        },
    )
    .layer(axum::middleware::from_fn_with_state(
        budget::BodyBudget::new(
            opts.connections.max_body_bytes_in_flight,
            opts.max_body_bytes,
            state
                .metrics
                .requests_shed
                .get_or_create(&crate::metrics::ShedLabels {
                    reason: "body_budget",
                })
                .clone(),
        ),
        budget::limit_body_bytes,
    ));
    let webhook = connections::Listener {
        listener,
        tls: Some(server_config),
        app,
        timeouts: connections::Timeouts {
            first_request: opts.connections.first_request_timeout,
            handshake: opts.header_read_timeout,
            idle: opts.connections.idle_timeout,
            max_age: Some(opts.connections.max_connection_age),
            close_grace: opts.shutdown_grace,
        },
        max_connections: opts.connections.max_connections,
        http: connections::webhook_http(&opts.connections),
        refused: state
            .metrics
            .connections_refused
            .get_or_create(&crate::metrics::ServerLabels { server: "webhook" })
            .clone(),
    };
    let (drain_tx, drain_rx) = watch::channel(false);
    let webhook = tokio::spawn(webhook.run(drain_rx));

    state.ready.store(true, Ordering::Relaxed);
    tracing::info!(%addr, %admin_addr, version = env!("CARGO_PKG_VERSION"), "hookguard serving");

    // Wait for a signal.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
        _ = shutdown.wait_for(|s| *s) => tracing::info!("shutdown requested: draining"),
    }
    state.ready.store(false, Ordering::Relaxed);
    if !opts.shutdown_delay.is_zero() {
        tokio::time::sleep(opts.shutdown_delay).await;
    }
    // Closes the listener; HTTP/2 connections get GOAWAY, HTTP/1.1 ones `Connection: close`;
    // in-flight requests finish within --shutdown-grace.
    let _ = drain_tx.send(true);
    if let Err(e) = webhook.await {
        tracing::warn!(error = %e, "webhook server task failed");
    }
    let _ = stop_tx.send(true);
    if let Some(task) = inventory_task {
        // Lets the leader release its Lease, so another replica takes over at once.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let _ = admin.await;
    tracing::info!("hookguard stopped");
    Ok(())
}

fn to_time(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// The webhook listener's TLS settings. With `--client-ca`, the CA file is watched like the
/// serving certificate: a changed bundle applies to connections accepted from then on, and one
/// that does not parse is rejected (counted as a failed TLS reload) and the current one kept.
fn tls_config(
    opts: &ServeOptions,
    state: &Arc<AppState>,
    resolver: Arc<tls::ReloadingResolver>,
    stop_rx: watch::Receiver<bool>,
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
    let (state, target) = (state.clone(), shared.clone());
    reload::watch_files(
        vec![path.clone()],
        vec![pem],
        opts.reload_interval,
        stop_rx,
        move |files| {
            let client_ca = tls::ClientCa {
                path: &path,
                pem: &files[0],
            };
            let result = match tls::server_config(resolver.clone(), Some(client_ca)) {
                Ok(config) => {
                    target.store(Arc::new(config));
                    tracing::info!(client_ca = %path.display(), "reloaded client CA");
                    "success"
                }
                Err(e) => {
                    tracing::warn!(error = %e, "new client CA rejected; keeping the current one");
                    "failure"
                }
            };
            state
                .metrics
                .tls_reloads
                .get_or_create(&crate::metrics::ResultLabels { result })
                .inc();
        },
    );
    Ok(shared)
}

/// Certificates from files (--tls-cert/--tls-key, reloaded on change), or generated into
/// --cert-dir for development.
fn file_certificates(
    opts: &ServeOptions,
    state: &Arc<AppState>,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    stop_rx: watch::Receiver<bool>,
) -> Result<Arc<tls::ReloadingResolver>, ServeError> {
    // Certificates: given, or generated into --cert-dir.
    let (cert_path, key_path) = match (&opts.tls_cert, &opts.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let written = crate::certs::write_certs(
                &opts.cert_dir,
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
            (written.tls_cert, written.tls_key)
        }
    };
    let cert_bytes = std::fs::read(&cert_path).map_err(|source| tls::TlsError::Read {
        path: cert_path.clone(),
        source,
    })?;
    let key_bytes = std::fs::read(&key_path).map_err(|source| tls::TlsError::Read {
        path: key_path.clone(),
        source,
    })?;
    let loaded = tls::parse_cert(&cert_bytes, &key_bytes, &cert_path, &key_path)?;
    if let Some(t) = loaded.not_after {
        state.metrics.tls_cert_expiry.set(t);
    }
    let resolver = Arc::new(tls::ReloadingResolver::new(loaded.key));

    // Watch the certificate files.
    {
        let state = state.clone();
        let resolver = resolver.clone();
        let (cert_path, key_path) = (cert_path.clone(), key_path.clone());
        reload::watch_files(
            vec![cert_path.clone(), key_path.clone()],
            vec![cert_bytes, key_bytes],
            opts.reload_interval,
            stop_rx,
            move |files| match tls::parse_cert(&files[0], &files[1], &cert_path, &key_path) {
                Ok(loaded) => {
                    resolver.replace(loaded.key);
                    if let Some(t) = loaded.not_after {
                        state.metrics.tls_cert_expiry.set(t);
                    }
                    state
                        .metrics
                        .tls_reloads
                        .get_or_create(&crate::metrics::ResultLabels { result: "success" })
                        .inc();
                    tracing::info!(cert = %cert_path.display(), "reloaded serving certificate");
                }
                Err(e) => {
                    state
                        .metrics
                        .tls_reloads
                        .get_or_create(&crate::metrics::ResultLabels { result: "failure" })
                        .inc();
                    tracing::warn!(error = %e, "new serving certificate rejected; keeping the current one");
                }
            },
        );
    }
    Ok(resolver)
}

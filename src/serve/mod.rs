//! `hookguard serve`, the composition root of the webhook process: the webhook over HTTPS, the
//! admin server over plain HTTP, the policy file and the certificates. Nothing else: the
//! inventory, orphan detection and janitor run in `hookguard controller`, so the process every
//! pod can reach holds no read permission on the cluster's Secrets or Pods.
//!
//! Shutdown is one cancellation token tree: `shutdown` (a signal, or the caller) starts the
//! drain; the webhook listener's token is cancelled after `--shutdown-delay`; the background
//! token (admin server, reloads, certificate loop) last, once the webhook has drained.

mod certs;
mod exceptions;
mod namespaces;

pub use certs::CertSource;
pub use exceptions::{ExceptionCache, compile_exception, exception_resource};
pub use namespaces::NamespaceLabelCache;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::admin::Readiness;
use crate::metrics::WebhookMetrics;
use crate::policy::{Config, ConfigError, Policy};
use crate::server::{AppState, Limits, budget, connections, reload, routes, tls};

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
    /// kubeconfig for the Kubernetes API (self-managed certificates only).
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
    /// Watch Namespaces (metadata only) for their labels, which policy `overrides` with a
    /// `namespaceSelector` need; uses --kubeconfig. Needs get/list/watch on namespaces.
    #[arg(long, env = "HOOKGUARD_NAMESPACE_LABELS")]
    pub namespace_labels: bool,
    /// Watch HookPolicyExceptions (hookguard.io/v1alpha1) in every namespace; those in the
    /// policy's `exceptions.namespaces` (default: --namespace) waive the rules they name for the
    /// objects they match. Uses --kubeconfig; needs get/list/watch on hookpolicyexceptions.
    #[arg(long, env = "HOOKGUARD_POLICY_EXCEPTIONS")]
    pub policy_exceptions: bool,
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
    /// Report the namespace label of the admission metrics; turn off for clusters with very
    /// many namespaces.
    #[arg(long, env = "HOOKGUARD_METRICS_NAMESPACE_LABEL", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_namespace_label: bool,
    /// Moved: the inventory runs in `hookguard controller`. Kept only to say so.
    #[arg(long, env = "HOOKGUARD_INVENTORY", hide = true)]
    pub inventory: bool,
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
    #[error(
        "policy config {path}: an override selects namespaces by label (namespaceSelector): start hookguard serve with --namespace-labels, which reads Namespaces' labels"
    )]
    NamespaceLabelsOff { path: PathBuf },
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
    #[error(
        "--inventory: the inventory, orphan detection and the janitor run in `hookguard controller` (with its own, wider permissions); `hookguard serve` is the webhook only"
    )]
    InventoryMoved,
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

/// Runs until `shutdown` is cancelled (see [`crate::admin::cancel_on_signal`]), then drains.
pub async fn serve(opts: ServeOptions, shutdown: CancellationToken) -> Result<(), ServeError> {
    if opts.inventory {
        return Err(ServeError::InventoryMoved);
    }
    let own_namespace = opts
        .namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_default();
    let (policy, policy_bytes) = match &opts.config {
        Some(path) => {
            let (p, bytes) = load_policy(path)?;
            if p.uses_namespace_labels() && !opts.namespace_labels {
                return Err(ServeError::NamespaceLabelsOff { path: path.clone() });
            }
            tracing::info!(path = %path.display(), "loaded policy config");
            (p, Some(bytes))
        }
        None => {
            tracing::info!("no --config given: using the built-in policy");
            (Policy::default(), None)
        }
    };
    let metrics = WebhookMetrics::new(opts.metrics_namespace_label);
    let background = CancellationToken::new();
    let client = if opts.namespace_labels || opts.policy_exceptions {
        Some(
            crate::cluster::connect(opts.kubeconfig.as_deref())
                .await?
                .client,
        )
    } else {
        None
    };
    let namespace_labels = match (&client, opts.namespace_labels) {
        (Some(client), true) => {
            let cache = NamespaceLabelCache::new(client.clone(), metrics.namespaces.clone());
            tokio::spawn(cache.clone().run(background.child_token()));
            Some(Arc::new(cache) as Arc<dyn crate::server::NamespaceLabels>)
        }
        _ => None,
    };
    let exceptions = match (&client, opts.policy_exceptions) {
        (Some(client), true) => {
            let cache = ExceptionCache::default();
            tokio::spawn(cache.clone().run(client.clone(), background.child_token()));
            Some(Arc::new(cache) as Arc<dyn crate::server::PolicyExceptions>)
        }
        _ => None,
    };
    let state = AppState::with_sources(
        policy.with_own_namespace(&own_namespace),
        metrics.admission.clone(),
        namespace_labels,
        exceptions,
    );
    let readiness = Readiness::default();

    // Admin server (plain HTTP) first: /livez and /metrics answer while certificates are set up.
    let admin = connections::bind_admin(
        opts.admin_addr,
        crate::admin::admin_router(readiness.clone(), metrics.registry.clone()),
        connections::AdminSettings {
            header_read_timeout: opts.header_read_timeout,
            idle_timeout: opts.connections.idle_timeout,
            max_connections: opts.connections.admin_max_connections,
            close_grace: opts.shutdown_grace,
        },
        metrics.connections.refused("admin"),
    )
    .await
    .map_err(|(addr, source)| ServeError::Bind { addr, source })?;
    let admin_addr = admin.local_addr()?;
    let admin = tokio::spawn(admin.run(background.child_token()));

    let source = CertSource::from_options(&opts, &own_namespace).await?;
    let Some(resolver) = source
        .start(&metrics.certs, &shutdown, background.child_token())
        .await?
    else {
        background.cancel();
        let _ = admin.await;
        return Ok(());
    };
    let server_config = certs::tls_config(&opts, &metrics.certs, resolver, &background)?;

    if let (Some(path), Some(bytes)) = (&opts.config, policy_bytes) {
        watch_policy(
            path.clone(),
            bytes,
            &opts,
            state.clone(),
            own_namespace.clone(),
            background.child_token(),
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
            metrics.admission.shed("body_budget"),
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
        refused: metrics.connections.refused("webhook"),
    };
    // Not a child of `shutdown`: the drain begins only after --shutdown-delay.
    let drain = CancellationToken::new();
    let webhook = tokio::spawn(webhook.run(drain.clone()));

    readiness.set(true);
    tracing::info!(%addr, %admin_addr, version = env!("CARGO_PKG_VERSION"), "hookguard serving");

    shutdown.cancelled().await;
    tracing::info!("shutting down: draining");
    readiness.set(false);
    if !opts.shutdown_delay.is_zero() {
        tokio::time::sleep(opts.shutdown_delay).await;
    }
    // Closes the listener; HTTP/2 connections get GOAWAY, HTTP/1.1 ones `Connection: close`;
    // in-flight requests finish within --shutdown-grace.
    drain.cancel();
    if let Err(e) = webhook.await {
        tracing::warn!(error = %e, "webhook server task failed");
    }
    background.cancel();
    let _ = admin.await;
    tracing::info!("hookguard stopped");
    Ok(())
}

/// Polls the policy file; a new file that does not validate is rejected and the current policy
/// kept.
fn watch_policy(
    path: PathBuf,
    initial: Vec<u8>,
    opts: &ServeOptions,
    state: Arc<AppState>,
    own_namespace: String,
    stop: CancellationToken,
) {
    reload::watch_files(
        vec![path.clone()],
        vec![initial],
        opts.reload_interval,
        stop,
        move |files| match policy_from_bytes(&files[0]) {
            Ok(policy) if policy.uses_namespace_labels() && !state.knows_namespace_labels() => {
                state.metrics.record_config_reload("failure");
                tracing::warn!(path = %path.display(), error = %ServeError::NamespaceLabelsOff { path: path.clone() }, "new policy config rejected; keeping the current one");
            }
            Ok(policy) => {
                state
                    .policy
                    .store(Arc::new(policy.with_own_namespace(&own_namespace)));
                state.metrics.record_config_reload("success");
                tracing::info!(path = %path.display(), "reloaded policy config");
            }
            Err(e) => {
                state.metrics.record_config_reload("failure");
                tracing::warn!(path = %path.display(), error = %e, "new policy config rejected; keeping the current one");
            }
        },
    );
}

fn to_time(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

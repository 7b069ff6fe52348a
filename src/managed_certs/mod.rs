//! Self-managed certificates, the shell: keeps the Secret, the webhook configurations' caBundle
//! and the served certificate in line with [`plan`].
//!
//! Every replica runs this loop; no leader is needed. The Secret is only ever written with its
//! resourceVersion as a precondition (or created, which fails if another replica was first), so
//! concurrent replicas cannot overwrite each other: the loser re-reads and converges. Patching the
//! caBundle is idempotent and guarded by a `test` of the webhook's name. Each replica serves the
//! certificate it reads from the Secret through the API (no volume, so no kubelet sync delay).
//! A check runs every interval and whenever the Secret or a webhook configuration changes.

pub mod plan;
pub mod secret;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::CertMetrics;
use crate::server::tls::{self, ReloadingResolver};
pub use plan::{Change, Settings, SettingsError};
pub use secret::Material;

const FIELD_MANAGER: &str = "hookguard";

#[derive(Debug, thiserror::Error)]
pub enum ManagedCertError {
    #[error("Secret {namespace}/{name}: {source}")]
    Secret {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{kind} {name}: {source}")]
    WebhookConfig {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Generate(#[from] crate::certs::CertError),
    #[error("the serving certificate in the Secret cannot be served: {0}")]
    Serve(#[from] tls::TlsError),
}

/// Where the certificates live and what to keep current.
#[derive(Clone)]
pub struct ManagedCerts {
    pub client: kube::Client,
    pub namespace: String,
    pub secret: String,
    /// Name of the Mutating- and ValidatingWebhookConfiguration whose caBundle is kept current.
    pub webhook_config: Option<String>,
    pub settings: Settings,
    pub interval: Duration,
}

/// `(webhook name, caBundle PEM)` of each webhook of a configuration.
type Webhooks = Vec<(String, Vec<u8>)>;

/// The two webhook configurations, each `None` when it does not exist.
struct Configs {
    mutating: Option<Webhooks>,
    validating: Option<Webhooks>,
}

impl Configs {
    /// The caBundles they carry; `None` when neither exists (nothing to keep current, so a
    /// staged CA is promoted at once).
    fn published(&self) -> Option<Vec<String>> {
        if self.mutating.is_none() && self.validating.is_none() {
            return None;
        }
        let all = self.mutating.iter().chain(self.validating.iter()).flatten();
        Some(
            all.map(|(_, ca)| String::from_utf8_lossy(ca).into_owned())
                .collect(),
        )
    }
}

/// What hookguard reads and patches in both kinds of webhook configuration.
trait WebhookConfig:
    kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
    const KIND: &'static str;
    /// `(webhook name, clientConfig)` of each webhook, in order.
    fn client_configs(&self) -> Vec<(&String, &WebhookClientConfig)>;
}

impl WebhookConfig for MutatingWebhookConfiguration {
    const KIND: &'static str = "MutatingWebhookConfiguration";
    fn client_configs(&self) -> Vec<(&String, &WebhookClientConfig)> {
        let hooks = self.webhooks.iter().flatten();
        hooks.map(|w| (&w.name, &w.client_config)).collect()
    }
}

impl WebhookConfig for ValidatingWebhookConfiguration {
    const KIND: &'static str = "ValidatingWebhookConfiguration";
    fn client_configs(&self) -> Vec<(&String, &WebhookClientConfig)> {
        let hooks = self.webhooks.iter().flatten();
        hooks.map(|w| (&w.name, &w.client_config)).collect()
    }
}

impl ManagedCerts {
    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn secret_err(&self) -> impl FnOnce(kube::Error) -> ManagedCertError + '_ {
        move |source| ManagedCertError::Secret {
            namespace: self.namespace.clone(),
            name: self.secret.clone(),
            source,
        }
    }

    fn config_err<C: WebhookConfig>(name: &str) -> impl FnOnce(kube::Error) -> ManagedCertError {
        let name = name.to_owned();
        move |source| ManagedCertError::WebhookConfig {
            kind: C::KIND,
            name,
            source,
        }
    }

    /// `(webhook name, caBundle PEM)` of each webhook of one configuration (`None`: it does not
    /// exist).
    async fn webhooks<C: WebhookConfig>(
        &self,
        name: &str,
    ) -> Result<Option<Webhooks>, ManagedCertError> {
        let config = Api::<C>::all(self.client.clone())
            .get_opt(name)
            .await
            .map_err(Self::config_err::<C>(name))?;
        Ok(config.map(|c| {
            c.client_configs()
                .into_iter()
                .map(|(webhook, client)| {
                    let ca = client.ca_bundle.as_ref().map(|b| b.0.clone());
                    (webhook.clone(), ca.unwrap_or_default())
                })
                .collect()
        }))
    }

    /// Both webhook configurations as read now (`None`: no `--webhook-config-name`). One read per
    /// check serves both the plan and the patch; the patch's `test` guards against changes since.
    async fn read_configs(&self) -> Result<Option<Configs>, ManagedCertError> {
        let Some(name) = &self.webhook_config else {
            return Ok(None);
        };
        Ok(Some(Configs {
            mutating: self.webhooks::<MutatingWebhookConfiguration>(name).await?,
            validating: self
                .webhooks::<ValidatingWebhookConfiguration>(name)
                .await?,
        }))
    }

    /// Sets `bundle` as the caBundle of every webhook in `webhooks` (as read from configuration
    /// `name` of kind `C`) that lacks it.
    async fn publish_to<C: WebhookConfig>(
        &self,
        name: &str,
        webhooks: &[(String, Vec<u8>)],
        bundle: &str,
    ) -> Result<(), ManagedCertError> {
        let ops = bundle_patch(webhooks, bundle);
        if ops.is_empty() {
            return Ok(());
        }
        // Built above from known-good shapes: this cannot fail.
        let Ok(patch) = serde_json::from_value::<json_patch::Patch>(ops.into()) else {
            return Ok(());
        };
        Api::<C>::all(self.client.clone())
            .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .map_err(Self::config_err::<C>(name))?;
        tracing::info!(kind = C::KIND, %name, "published the caBundle");
        Ok(())
    }

    /// Sets `bundle` as the caBundle of every webhook of both configurations.
    async fn publish(&self, configs: &Configs, bundle: &str) -> Result<(), ManagedCertError> {
        let Some(name) = &self.webhook_config else {
            return Ok(());
        };
        if let Some(webhooks) = &configs.mutating {
            self.publish_to::<MutatingWebhookConfiguration>(name, webhooks, bundle)
                .await?;
        }
        if let Some(webhooks) = &configs.validating {
            self.publish_to::<ValidatingWebhookConfiguration>(name, webhooks, bundle)
                .await?;
        }
        Ok(())
    }

    /// One check, repeated (up to 3 times) when another replica wrote the Secret first.
    pub async fn reconcile(
        &self,
        metrics: &CertMetrics,
    ) -> Result<(Material, Vec<Change>), ManagedCertError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.reconcile_once(metrics).await {
                Err(ManagedCertError::Secret {
                    source: kube::Error::Api(status),
                    ..
                }) if status.code == 409 && attempt < 3 => {
                    tracing::debug!(
                        "another replica updated the certificate Secret first; re-reading it"
                    );
                }
                other => return other,
            }
        }
    }

    /// One check: plan, write the Secret if needed, publish the bundle. Returns what is in force.
    async fn reconcile_once(
        &self,
        metrics: &CertMetrics,
    ) -> Result<(Material, Vec<Change>), ManagedCertError> {
        let secrets = self.secrets();
        let current = secrets
            .get_opt(&self.secret)
            .await
            .map_err(self.secret_err())?;
        let data = current.as_ref().map(secret_data);
        let configs = self.read_configs().await?;
        let published = configs.as_ref().and_then(Configs::published);
        let request = current
            .as_ref()
            .and_then(|s| s.metadata.annotations.as_ref())
            .and_then(|a| a.get(plan::ROTATE_ANNOTATION));
        let requested = request.and_then(|v| plan::Requested::parse(v));
        if let (Some(value), None) = (request, requested) {
            tracing::warn!(secret = %self.secret, %value, "ignoring {}: use serving, ca or replace-ca", plan::ROTATE_ANNOTATION);
        }
        let planned = plan::plan_requested(
            data.as_ref(),
            published.as_deref(),
            time::OffsetDateTime::now_utc(),
            &self.settings,
            requested,
        )?;
        if !planned.changes.is_empty() || planned.request_done {
            let data: BTreeMap<String, ByteString> = planned
                .material
                .to_data()
                .into_iter()
                .map(|(k, v)| (k, ByteString(v)))
                .collect();
            match current {
                None => {
                    let secret = Secret {
                        metadata: ObjectMeta {
                            name: Some(self.secret.clone()),
                            namespace: Some(self.namespace.clone()),
                            labels: Some(BTreeMap::from([(
                                "app.kubernetes.io/managed-by".to_owned(),
                                "hookguard".to_owned(),
                            )])),
                            ..ObjectMeta::default()
                        },
                        type_: Some("kubernetes.io/tls".to_owned()),
                        data: Some(data),
                        ..Secret::default()
                    };
                    let params = PostParams {
                        field_manager: Some(FIELD_MANAGER.to_owned()),
                        ..PostParams::default()
                    };
                    secrets
                        .create(&params, &secret)
                        .await
                        .map_err(self.secret_err())?;
                }
                Some(mut secret) => {
                    // `replace` sends the resourceVersion read above: a concurrent writer makes
                    // this a 409 Conflict, and the next check starts from what it wrote.
                    secret.data = Some(data);
                    secret.string_data = None;
                    if planned.request_done
                        && let Some(annotations) = secret.metadata.annotations.as_mut()
                    {
                        annotations.remove(plan::ROTATE_ANNOTATION);
                        tracing::info!(secret = %self.secret, request = ?requested, "requested rotation under way");
                    }
                    let params = PostParams {
                        field_manager: Some(FIELD_MANAGER.to_owned()),
                        ..PostParams::default()
                    };
                    secrets
                        .replace(&self.secret, &params, &secret)
                        .await
                        .map_err(self.secret_err())?;
                }
            }
            for change in &planned.changes {
                tracing::info!(secret = %self.secret, change = ?change, "updated the certificate Secret");
                for cert in change.rotated() {
                    metrics.record_rotation(cert);
                }
            }
        }
        if let Some(configs) = &configs {
            self.publish(configs, &planned.material.bundle_pem())
                .await?;
        }
        Ok((planned.material, planned.changes))
    }

    /// The Secret's material if it can be served as it is ([`plan::servable`]).
    async fn servable_secret(&self) -> Option<Material> {
        let secret = self.secrets().get_opt(&self.secret).await.ok()??;
        let material = Material::from_data(&secret_data(&secret)).ok()?;
        plan::servable(&material, time::OffsetDateTime::now_utc()).then_some(material)
    }

    /// Runs checks until the first one succeeds (retrying with backoff), so the webhook never
    /// starts without a certificate; or until the Secret holds one that can be served as it is. Returns `None` if `stop` is cancelled first.
    pub async fn first(&self, metrics: &CertMetrics, stop: &CancellationToken) -> Option<Material> {
        let mut delay = Duration::from_millis(500);
        loop {
            match self.reconcile(metrics).await {
                Ok((material, _)) => {
                    record(metrics, "success");
                    return Some(material);
                }
                Err(e) => {
                    record(metrics, "failure");
                    if let Some(material) = self.servable_secret().await {
                        // E.g. the webhook configurations cannot be read: what an earlier check
                        // published is most likely still trusted, and not serving would take
                        // this replica out for nothing. The loop keeps checking.
                        tracing::warn!(error = %e, "certificate check failed; serving the valid certificate in the Secret meanwhile");
                        return Some(material);
                    }
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot set up the certificates yet");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return None,
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    /// Keeps checking until `stop`; swaps the served certificate when the Secret's changes.
    pub async fn run(
        self,
        mut served: Material,
        resolver: Arc<ReloadingResolver>,
        metrics: CertMetrics,
        stop: CancellationToken,
    ) {
        let wake = Arc::new(Notify::new());
        let mut watchers = Vec::new();
        let by_name =
            |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
        watchers.push(tokio::spawn(notify_on_change(
            watcher::watcher(self.secrets(), by_name(&self.secret)),
            wake.clone(),
        )));
        if let Some(name) = &self.webhook_config {
            watchers.push(tokio::spawn(notify_on_change(
                watcher::watcher(
                    Api::<MutatingWebhookConfiguration>::all(self.client.clone()),
                    by_name(name),
                ),
                wake.clone(),
            )));
            watchers.push(tokio::spawn(notify_on_change(
                watcher::watcher(
                    Api::<ValidatingWebhookConfiguration>::all(self.client.clone()),
                    by_name(name),
                ),
                wake.clone(),
            )));
        }
        let metrics = &metrics;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = wake.notified() => {
                    // Let a burst of events (our own writes included) settle into one check.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ = stop.cancelled() => break,
            }
            match self.reconcile(metrics).await {
                Ok((material, _)) => {
                    record(metrics, "success");
                    if material.serving != served.serving {
                        match serve_material(&material, &resolver, metrics) {
                            Ok(()) => {
                                tracing::info!("serving the new certificate from the Secret");
                                served = material;
                            }
                            Err(e) => tracing::warn!(error = %e, "keeping the current certificate"),
                        }
                    } else {
                        set_ca_expiry(&material, metrics);
                    }
                }
                Err(e) => {
                    record(metrics, "failure");
                    tracing::warn!(error = %e, "certificate check failed; retrying at the next check");
                }
            }
        }
        for w in watchers {
            w.abort();
        }
    }
}

/// A Secret's data, decoded.
fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let data = secret.data.iter().flatten();
    data.map(|(k, v)| (k.clone(), v.0.clone())).collect()
}

fn record(metrics: &CertMetrics, result: &'static str) {
    metrics.record_reconcile(result);
}

fn set_ca_expiry(material: &Material, metrics: &CertMetrics) {
    if let Some(t) = material.earliest_ca_expiry() {
        metrics.tls_ca_expiry.set(t);
    }
}

/// The JSONPatch that sets `bundle` on every webhook of `webhooks` (as read) lacking it. Each
/// change is conditional on what was read, and so planned from: the webhook's name (the list
/// may have changed, e.g. a concurrent helm upgrade) and its current caBundle (another replica
/// may have published since). Either `test` failing fails the whole patch, and the next check
/// starts from what is there then.
fn bundle_patch(webhooks: &[(String, Vec<u8>)], bundle: &str) -> Vec<serde_json::Value> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let encoded = b64(bundle.as_bytes());
    let mut ops = Vec::new();
    for (i, (webhook, ca)) in webhooks.iter().enumerate() {
        if ca.as_slice() == bundle.as_bytes() {
            continue;
        }
        let path = format!("/webhooks/{i}/clientConfig/caBundle");
        ops.push(serde_json::json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": webhook}));
        // An absent caBundle reads as empty; JSONPatch cannot test for absence, and there is
        // no trust to lose then.
        if !ca.is_empty() {
            ops.push(serde_json::json!({"op": "test", "path": path, "value": b64(ca)}));
        }
        ops.push(serde_json::json!({"op": "add", "path": path, "value": encoded}));
    }
    ops
}

/// Puts the Secret's serving certificate into the TLS resolver and updates the expiry metrics.
pub fn serve_material(
    material: &Material,
    resolver: &ReloadingResolver,
    metrics: &CertMetrics,
) -> Result<(), tls::TlsError> {
    let loaded = load(material)?;
    resolver.replace(loaded.key);
    if let Some(t) = loaded.not_after {
        metrics.tls_cert_expiry.set(t);
    }
    set_ca_expiry(material, metrics);
    metrics.record_reload("success");
    Ok(())
}

/// Parses the Secret's serving key pair.
pub fn load(material: &Material) -> Result<tls::LoadedCert, tls::TlsError> {
    let path = std::path::Path::new("Secret");
    tls::parse_cert(
        material.serving.cert_pem.as_bytes(),
        material.serving.key_pem.as_bytes(),
        &path.join(secret::TLS_CERT),
        &path.join(secret::TLS_KEY),
    )
}

async fn notify_on_change<K>(
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    wake: Arc<Notify>,
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => {
                wake.notify_one()
            }
            Ok(_) => {}
            Err(e) => {
                // Checks still run every interval; a lasting failure here is usually RBAC.
                tracing::warn!(error = %e, "certificate watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bundle_patch;

    #[test]
    fn the_bundle_patch_is_conditional_on_what_was_read() {
        let webhooks = vec![
            ("mutate.hookguard.io".to_owned(), b"OLD".to_vec()),
            ("validate.hookguard.io".to_owned(), b"NEW".to_vec()),
            ("count-deletes.hookguard.io".to_owned(), Vec::new()),
        ];
        let ops = bundle_patch(&webhooks, "NEW");
        let ops: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        assert_eq!(
            ops,
            [
                r#"{"op":"test","path":"/webhooks/0/name","value":"mutate.hookguard.io"}"#,
                r#"{"op":"test","path":"/webhooks/0/clientConfig/caBundle","value":"T0xE"}"#,
                r#"{"op":"add","path":"/webhooks/0/clientConfig/caBundle","value":"TkVX"}"#,
                r#"{"op":"test","path":"/webhooks/2/name","value":"count-deletes.hookguard.io"}"#,
                r#"{"op":"add","path":"/webhooks/2/clientConfig/caBundle","value":"TkVX"}"#,
            ]
        );
        assert!(bundle_patch(&webhooks[1..2], "NEW").is_empty());
    }
}

//! Connecting to the Kubernetes API: `--kubeconfig`, else `$KUBECONFIG` or `~/.kube/config`, else
//! the in-cluster service account.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no Kubernetes API to talk to ({0}); pass --kubeconfig or set KUBECONFIG, or run in a cluster"
    )]
    NotFound(String),
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client and the namespace the configuration defaults to.
pub struct Connection {
    pub client: kube::Client,
    pub default_namespace: String,
}

/// Builds a client from `kubeconfig` if given, else by inference.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Connection, ClusterError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|source| ClusterError::Kubeconfig {
                path: path.to_owned(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|source| ClusterError::Kubeconfig {
                    path: path.to_owned(),
                    source,
                })?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| ClusterError::NotFound(e.to_string()))?,
    };
    let default_namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config)?;
    Ok(Connection {
        client,
        default_namespace,
    })
}

/// `namespace`'s objects of kind `K`, or every namespace's when `None`.
pub fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> kube::Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => kube::Api::namespaced(client.clone(), ns),
        None => kube::Api::all(client.clone()),
    }
}

/// Lists `api` page by page (`params` sets the page size), handing each object to `visit`: only
/// what `visit` keeps stays in memory.
pub async fn each_listed<K>(
    api: &kube::Api<K>,
    mut params: kube::api::ListParams,
    mut visit: impl FnMut(&K),
) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    loop {
        let page = api.list(&params).await?;
        page.items.iter().for_each(&mut visit);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

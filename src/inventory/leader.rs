//! Leader election on a Lease: with several replicas, only the holder runs the inventory and the
//! janitor, so API-server load and metrics do not multiply with replicas.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{InventoryOptions, work};
use crate::managed_certs::stopped;
use crate::server::AppState;

/// Runs the inventory (and janitor) until `stop`: on every replica when leader election is off,
/// else only while this replica holds the Lease.
pub async fn run(
    client: kube::Client,
    namespace: String,
    opts: InventoryOptions,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
) {
    if !opts.leader_election {
        state.metrics.leader.set(1);
        work(client, opts, state.clone(), stop).await;
        state.metrics.leader.set(0);
        return;
    }
    let identity = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let duration = opts.lease_duration.as_secs().max(2);
    let manager = loop {
        let built = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &opts.lease_name)
            .with_namespace(&namespace)
            .with_identity(&identity)
            .with_duration(duration)
            .with_grace((duration / 3).max(1))
            .build()
            .await;
        match built {
            Ok(m) => break m,
            Err(e) => {
                tracing::warn!(error = %e, lease = %opts.lease_name, %namespace, "cannot use the leader Lease yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
        }
    };
    let (mut leader, lease_task) = manager.watch().await;
    let mut worker: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)> = None;
    loop {
        let is_leader = *leader.borrow_and_update();
        match (is_leader, worker.is_some()) {
            (true, false) => {
                tracing::info!(%identity, lease = %opts.lease_name, "leader: running the inventory");
                state.metrics.leader.set(1);
                let (tx, rx) = watch::channel(false);
                let task = tokio::spawn(work(client.clone(), opts.clone(), state.clone(), rx));
                worker = Some((tx, task));
            }
            (false, true) => {
                tracing::info!(%identity, "lost the leader Lease: stopping the inventory");
                state.metrics.leader.set(0);
                if let Some((tx, task)) = worker.take() {
                    let _ = tx.send(true);
                    let _ = task.await;
                }
            }
            _ => {}
        }
        tokio::select! {
            changed = leader.changed() => if changed.is_err() { break },
            _ = stopped(&mut stop) => break,
        }
    }
    if let Some((tx, task)) = worker.take() {
        let _ = tx.send(true);
        let _ = task.await;
    }
    state.metrics.leader.set(0);
    // Dropping the receiver makes the manager release the Lease, so another replica takes over
    // at once instead of after the Lease expires.
    drop(leader);
    let _ = tokio::time::timeout(Duration::from_secs(5), lease_task).await;
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "hookguard".to_owned())
}

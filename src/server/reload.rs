//! Reloading files that change on disk: the policy config and the serving certificate.
//!
//! Polling rather than inotify: Kubernetes updates mounted Secrets and ConfigMaps by swapping a
//! `..data` symlink, which inotify watches on the file path miss. Reading two small files every
//! few seconds is cheap and sees every kind of update.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Polls `paths` every `interval`; calls `on_change` with their contents whenever any of them
/// differs from what was last seen (unreadable files are retried at the next tick).
pub fn watch_files<F>(
    paths: Vec<PathBuf>,
    initial: Vec<Vec<u8>>,
    interval: Duration,
    shutdown: CancellationToken,
    mut on_change: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut(&[Vec<u8>]) + Send + 'static,
{
    tokio::spawn(async move {
        let mut last = initial;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let mut current = Vec::with_capacity(paths.len());
            for p in &paths {
                match tokio::fs::read(p).await {
                    Ok(bytes) => current.push(bytes),
                    Err(e) => {
                        tracing::warn!(path = %p.display(), error = %e, "cannot read watched file; will retry");
                        break;
                    }
                }
            }
            if current.len() == paths.len() && current != last {
                on_change(&current);
                last = current;
            }
        }
    })
}

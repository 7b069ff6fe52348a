//! Not a test, a measurement: what hookguard adds to a hook object's create through a real
//! kube-apiserver (DESIGN.md's budget: < 2 ms at p99). Run with
//! `cargo test --release --locked --test e2e -- --measure-admission-latency` (release build of
//! hookguard; tools as for `make e2e`). It creates ConfigMaps one at a time through the API
//! server, alternating blocks with the `helm.sh/hook` annotation (both webhooks called) and
//! without it (`matchConditions` skip the webhooks), and prints the client-side latency
//! percentiles of each and their difference. Nothing is asserted: timings are noisy.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::Env;
use crate::proc::Result;

const NS: &str = "e2e-latency";
const BLOCK: usize = 50;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

pub fn measure(env: &Env, per_kind: usize) -> Result<()> {
    env.cluster.namespace(NS)?;
    let server_time = || -> Result<(f64, f64)> {
        let hg = env.hookguard.lock().map_err(|e| e.to_string())?;
        Ok((
            hg.metric_sum("hookguard_admission_duration_seconds_sum", &[]),
            hg.metric_sum("hookguard_admission_duration_seconds_count", &[]),
        ))
    };
    let before = server_time()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (hooked, plain) = runtime.block_on(async {
        let file = Kubeconfig::read_from(&env.cluster.kubeconfig).map_err(|e| e.to_string())?;
        let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
        let api: Api<ConfigMap> = Api::namespaced(client, NS);
        let mut n = 0usize;
        let mut create = async |hook: bool| -> Result<Duration> {
            n += 1;
            let mut cm: ConfigMap = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("lat-{n}")},
                "data": {"n": n.to_string()}
            }))
            .map_err(|e| e.to_string())?;
            if hook {
                cm.metadata.annotations =
                    Some([("helm.sh/hook".to_owned(), "pre-install".to_owned())].into());
            }
            let t = Instant::now();
            api.create(&PostParams::default(), &cm)
                .await
                .map_err(|e| e.to_string())?;
            Ok(t.elapsed())
        };
        // Warm up connections and caches on both paths.
        for i in 0..200 {
            create(i % 2 == 0).await?;
        }
        let (mut hooked, mut plain) = (Vec::new(), Vec::new());
        while hooked.len() < per_kind {
            for _ in 0..BLOCK {
                hooked.push(create(true).await?);
            }
            for _ in 0..BLOCK {
                plain.push(create(false).await?);
            }
        }
        Ok::<_, String>((hooked, plain))
    })?;
    let after = server_time()?;
    let calls = after.1 - before.1;
    let server_us = (after.0 - before.0) / calls.max(1.0) * 1e6;
    let stats = |mut v: Vec<Duration>| {
        v.sort();
        [
            percentile(&v, 0.5),
            percentile(&v, 0.9),
            percentile(&v, 0.99),
        ]
    };
    let (h, p) = (stats(hooked), stats(plain));
    println!("| creates per kind | {per_kind} |");
    println!("| | p50 ms | p90 ms | p99 ms |");
    println!("|---|---|---|---|");
    println!(
        "| hook ConfigMap (mutate + validate) | {:.2} | {:.2} | {:.2} |",
        h[0], h[1], h[2]
    );
    println!(
        "| plain ConfigMap (webhooks skipped) | {:.2} | {:.2} | {:.2} |",
        p[0], p[1], p[2]
    );
    println!(
        "| added by hookguard | {:.2} | {:.2} | {:.2} |",
        h[0] - p[0],
        h[1] - p[1],
        h[2] - p[2]
    );
    println!(
        "hookguard's own time per webhook call (from its histogram): {server_us:.0} µs mean over {calls} calls"
    );
    let _ = env
        .cluster
        .kubectl(&["delete", "namespace", NS, "--wait=false"]);
    Ok(())
}

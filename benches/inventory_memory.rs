//! Memory of the hook inventory for 10k and 100k hook objects: synthetic watch events (hook Jobs
//! and Pods shaped like what the API server sends, decoded into k8s-openapi types as the watcher
//! does) go through the same code as in `serve`: record extraction, then the inventory's upsert,
//! then one metrics summary. A counting allocator reports the heap the inventory keeps.
//!
//! Run: `cargo bench --bench inventory_memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use hookguard::inventory::record::{from_job, from_pod};
use hookguard::inventory::store::{Inventory, summarize};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The i-th synthetic hook: 4 in 5 are Jobs (finished or running), 1 in 5 a test Pod.
fn event(i: usize) -> serde_json::Value {
    let ns = format!("team-{:03}", i % 200);
    let release = format!("app-{}", i / 5 % 2000);
    let meta = json!({
        "name": format!("{release}-migrate-{i}"),
        "namespace": ns,
        "uid": format!("{:08x}-7d3c-4b59-9a7e-{:012x}", i, i),
        "resourceVersion": format!("{}", 100000 + i),
        "creationTimestamp": "2026-11-20T10:00:00Z",
        "labels": {"app.kubernetes.io/instance": release, "hookguard.io/hook": "true",
                   "app.kubernetes.io/name": "app", "helm.sh/chart": "app-1.2.3"},
        "annotations": {"helm.sh/hook": "pre-upgrade", "helm.sh/hook-weight": "-5",
                        "helm.sh/hook-delete-policy": "before-hook-creation",
                        "hookguard.io/mutated": "job-ttl,restart-policy"},
        "managedFields": [{"manager": "helm", "operation": "Update", "apiVersion": "batch/v1",
                           "time": "2026-11-20T10:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]
    });
    if i % 5 == 4 {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
               "spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "busybox:1.36", "command": ["wget", "app:80"]}]},
               "status": {"phase": "Succeeded", "startTime": "2026-11-20T10:00:02Z"}})
    } else {
        let status = if i.is_multiple_of(10) {
            json!({"startTime": "2026-11-20T10:00:01Z", "active": 1})
        } else {
            json!({"startTime": "2026-11-20T10:00:01Z", "completionTime": "2026-11-20T10:01:00Z", "succeeded": 1,
                   "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-20T10:01:00Z"}]})
        };
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
               "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 600,
                        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "app:1.2.3", "command": ["/migrate", "up"]}]}}},
               "status": status})
    }
}

fn run(n: usize) {
    // Encoded events are built first (they stand for bytes on the wire, not inventory memory).
    let events: Vec<Vec<u8>> = (0..n)
        .map(|i| serde_json::to_vec(&event(i)).unwrap())
        .collect();
    let rss_before = rss_kib();
    let heap_before = LIVE.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut inventory = Inventory::default();
    for (i, bytes) in events.iter().enumerate() {
        let record = if i % 5 == 4 {
            from_pod(&serde_json::from_slice::<Pod>(bytes).unwrap())
        } else {
            from_job(&serde_json::from_slice::<Job>(bytes).unwrap())
        };
        let (uid, record) = record.unwrap();
        inventory.upsert(uid, record, true);
    }
    let took = started.elapsed();
    let heap = LIVE.load(Ordering::Relaxed) - heap_before;
    let summary_started = Instant::now();
    let summary = summarize(&inventory, None, 1_795_200_000, true);
    let summary_took = summary_started.elapsed();
    let rss = rss_kib().saturating_sub(rss_before);
    println!(
        "{n:>7} hooks: inventory heap {:.1} MiB ({} B/hook), RSS growth {:.1} MiB, ingest {:.0} events/s, summary {:.1} ms ({} series)",
        heap as f64 / 1048576.0,
        heap / n as isize,
        rss as f64 / 1024.0,
        n as f64 / took.as_secs_f64(),
        summary_took.as_secs_f64() * 1000.0,
        summary.objects.len()
    );
    assert_eq!(inventory.len(), n);
    drop(events);
}

fn main() {
    // `cargo test --benches` runs this too; keep that quick.
    if std::env::args().any(|a| a == "--bench") {
        run(10_000);
        run(100_000);
    } else {
        run(1_000);
    }
}

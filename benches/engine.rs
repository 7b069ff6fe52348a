//! Engine benchmarks: one AdmissionReview answered end to end by `admission::review` (parse,
//! evaluate, patch serialization, base64, response serialization), compared with a generic
//! `serde_json::Value` parse of the same body.
//!
//! Budget (shared/DESIGN.md, Budgets): median evaluate+patch for a typical hook Job review < 10 µs.
//! Run with `cargo bench --bench engine`; results and machine facts are in BENCHMARKS.md.
//!
//! Criterion measures wall time, which other processes on the same cores inflate. With
//! `BENCH_CPU_TIME=1` it measures the benchmark thread's CPU time instead
//! (`CLOCK_THREAD_CPUTIME_ID`, Linux only; group names get a `-cputime` suffix): time slices lost
//! to other processes no longer count, their cache pollution still does.

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput};
use serde_json::{Value, json};

use hookguard::admission::{Webhook, review};
use hookguard::object::{Object, group_of};
use hookguard::policy::{Operation, Policy, Request, evaluate};

/// A defaulted hook Job in the AdmissionReview envelope kube-apiserver sends a mutating webhook
/// on CREATE (1,700 bytes). The load test (`scripts/load-test.sh`) posts the same file.
const JOB_REVIEW: &str = include_str!("../scripts/bench-fixtures/job-review.json");

fn envelope_of(review: &Value, object: Value, kind: &str, group: &str, resource: &str) -> Vec<u8> {
    let mut r = review.clone();
    let req = &mut r["request"];
    for key in ["kind", "requestKind"] {
        req[key] = json!({"group": group, "version": "v1", "kind": kind});
    }
    for key in ["resource", "requestResource"] {
        req[key] = json!({"group": group, "version": "v1", "resource": resource});
    }
    req["name"] = object["metadata"]["name"].clone();
    req["object"] = object;
    serde_json::to_vec(&r).expect("fixture serializes")
}

fn response_of(bytes: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(bytes).expect("response is JSON");
    v["response"].clone()
}

/// The Job review after the API server applied hookguard's patch: needs no second patch.
fn already_mutated_job(policy: &Policy) -> Vec<u8> {
    let (bytes, outcome) =
        review(Webhook::Mutate, policy, JOB_REVIEW.as_bytes(), None).expect("job review answers");
    assert_eq!(
        outcome.result, "patched",
        "the typical Job fixture must be patched"
    );
    let patch = base64::engine::general_purpose::STANDARD
        .decode(response_of(&bytes)["patch"].as_str().expect("patch"))
        .expect("base64 patch");
    let ops: Vec<json_patch::PatchOperation> = serde_json::from_slice(&patch).expect("JSONPatch");
    let mut r: Value = serde_json::from_str(JOB_REVIEW).expect("fixture is JSON");
    json_patch::patch(&mut r["request"]["object"], &ops).expect("patch applies");
    let body = serde_json::to_vec(&r).expect("serializes");
    let (bytes, outcome) =
        review(Webhook::Mutate, policy, &body, None).expect("mutated review answers");
    assert_eq!(outcome.result, "allowed");
    assert!(
        response_of(&bytes).get("patch").is_none(),
        "mutated Job needs no patch"
    );
    body
}

fn configmap(name: &str, annotations: Value, data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "creationTimestamp": null,
            "labels": {"app.kubernetes.io/instance": "shop", "app.kubernetes.io/managed-by": "Helm"},
            "annotations": annotations
        },
        "data": data
    })
}

/// A ConfigMap without `helm.sh/hook` (most of what a webhook scoped to ConfigMaps sees).
fn non_hook_configmap(base: &Value) -> Vec<u8> {
    let cm = configmap(
        "shop-config",
        json!({"meta.helm.sh/release-name": "shop", "meta.helm.sh/release-namespace": "shop"}),
        json!({"LOG_LEVEL": "info", "FEATURE_FLAGS": "checkout,search", "config.yaml": "server:\n  port: 8080\n"}),
    );
    envelope_of(base, cm, "ConfigMap", "", "configmaps")
}

/// A hook ConfigMap carrying ~1 MiB of data (64 keys of 16 KiB, the size limit of an object in
/// etcd is 1.5 MiB).
fn large_configmap_hook(base: &Value) -> Vec<u8> {
    let line = "key_0123456789: value with some text that is not escaped, repeated for size\\n";
    let chunk: String = line.repeat(16 * 1024 / line.len() + 1);
    let data: serde_json::Map<String, Value> = (0..64)
        .map(|i| (format!("file-{i:02}.yaml"), Value::String(chunk.clone())))
        .collect();
    let cm = configmap(
        "shop-seed-data",
        json!({"helm.sh/hook": "pre-install", "helm.sh/hook-weight": "-10",
               "helm.sh/hook-delete-policy": "before-hook-creation"}),
        Value::Object(data),
    );
    envelope_of(base, cm, "ConfigMap", "", "configmaps")
}

/// Forged reviews of nearly the default body limit (7 MiB) that each aim at one cost: findings
/// that grow with the input, edit distance over a huge word, per-container messages. The
/// reliability budget: each answer at most 64 KiB, engine time a few milliseconds.
/// `list` cut so that the object's annotations nearly fill the API server's limit (1 KiB is
/// left for the other annotations of the fixture).
fn at_limit(mut list: String) -> String {
    list.truncate(hookguard::object::MAX_STORED_ANNOTATIONS_BYTES - 1024);
    list
}

fn adversarial_reviews(base: &Value) -> Vec<(&'static str, Vec<u8>)> {
    let job = base["request"]["object"].clone();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut r = base.clone();
        let mut object = job.clone();
        change(&mut object);
        r["request"]["object"] = object;
        serde_json::to_vec(&r).expect("serializes")
    };
    let annotate = |key: &'static str, value: String| {
        with(&move |o: &mut Value| {
            o["metadata"]["annotations"][key] = Value::String(value.clone());
        })
    };
    vec![
        (
            "hook_event_list_4mb",
            annotate("helm.sh/hook", "ab,".repeat(1_400_000)),
        ),
        (
            "delete_policy_list_4mb",
            annotate("helm.sh/hook-delete-policy", "xy,".repeat(1_400_000)),
        ),
        // The longest lists that are parsed: the API server stores at most 256 KiB of
        // annotations (keys plus values); beyond that hookguard does not parse them.
        (
            "hook_event_list_at_limit",
            annotate("helm.sh/hook", at_limit("ab,".repeat(90_000))),
        ),
        (
            "alternating_events_at_limit",
            annotate(
                "helm.sh/hook",
                at_limit(
                    ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"]
                        .repeat(30_000)
                        .join(","),
                ),
            ),
        ),
        (
            "distinct_events_at_limit",
            annotate(
                "helm.sh/hook",
                at_limit((0..40_000).map(|i| format!("e{i:05},")).collect()),
            ),
        ),
        (
            "distinct_events_100k",
            annotate(
                "helm.sh/hook",
                (0..100_000).map(|i| format!("e{i},")).collect(),
            ),
        ),
        (
            "single_event_3mb",
            annotate("helm.sh/hook", "q".repeat(3_000_000)),
        ),
        (
            "privileged_containers_40k",
            with(&|o: &mut Value| {
                let containers: Vec<Value> = (0..40_000)
                    .map(|i| {
                        json!({"name": format!("c{i}"), "image": "busybox:latest",
                               "securityContext": {"privileged": true}})
                    })
                    .collect();
                o["spec"]["template"]["spec"]["containers"] = Value::Array(containers);
            }),
        ),
    ]
}

fn benches<M: Measurement>(c: &mut Criterion<M>, suffix: &str) {
    let policy = Policy::default();
    let base: Value = serde_json::from_str(JOB_REVIEW).expect("fixture is JSON");
    let job = JOB_REVIEW.as_bytes().to_vec();
    let mutated = already_mutated_job(&policy);
    let cm = non_hook_configmap(&base);
    let large = large_configmap_hook(&base);
    // A Helm 3 hook Job review exactly as kube-apiserver v1.36.3 sent it (with managedFields),
    // when the captured fixtures are present (tests/fixtures/captured, recorded by the e2e tools).
    let captured = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/captured/job-shop-hooks-helm3-pre-install-create.json"
    ))
    .ok()
    .and_then(|pretty| serde_json::from_slice::<Value>(&pretty).ok())
    .map(|v| serde_json::to_vec(&v).expect("serializes"));
    {
        let (_, o) = review(Webhook::Mutate, &policy, &cm, None).expect("configmap answers");
        assert!(!o.is_hook(), "non-hook ConfigMap must not be judged");
        let (_, o) =
            review(Webhook::Mutate, &policy, &large, None).expect("large configmap answers");
        assert!(o.is_hook(), "large ConfigMap must be a hook");
        eprintln!(
            "fixture sizes: job {} B, mutated job {} B, configmap {} B, large configmap {} B, captured helm3 job {} B",
            job.len(),
            mutated.len(),
            cm.len(),
            large.len(),
            captured.as_ref().map_or(0, Vec::len)
        );
    }

    let mut g = c.benchmark_group(format!("{}{suffix}", "review"));
    for (name, webhook, body) in [
        ("mutate_job", Webhook::Mutate, &job),
        ("validate_job", Webhook::Validate, &job),
        ("mutate_already_mutated_job", Webhook::Mutate, &mutated),
        ("validate_already_mutated_job", Webhook::Validate, &mutated),
        ("non_hook_configmap", Webhook::Mutate, &cm),
    ] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| review(webhook, black_box(&policy), black_box(body), None).expect("answers"))
        });
    }
    if let Some(body) = &captured {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function("mutate_captured_helm3_job", |b| {
            b.iter(|| {
                review(Webhook::Mutate, black_box(&policy), black_box(body), None).expect("answers")
            })
        });
    }
    g.throughput(Throughput::Bytes(large.len() as u64));
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("large_configmap_hook", |b| {
        b.iter(|| {
            review(Webhook::Mutate, black_box(&policy), black_box(&large), None).expect("answers")
        })
    });
    g.finish();

    // The engine alone: the object is parsed once outside the loop (evaluate still parses the
    // Job spec, which it keeps raw until it knows the kind).
    let object_json = serde_json::to_string(&base["request"]["object"]).expect("serializes");
    let object: Object<'_> = serde_json::from_str(&object_json).expect("object parses");
    let api_version = object.api_version.as_deref().unwrap_or("v1").to_owned();
    let kind = object.kind.as_deref().unwrap_or_default().to_owned();
    let mut g = c.benchmark_group(format!("{}{suffix}", "engine"));
    g.bench_function("evaluate_job", |b| {
        b.iter(|| {
            let req = Request {
                operation: Operation::Create,
                group: group_of(&api_version),
                kind: &kind,
                subresource: false,
                namespace: "shop",
                namespace_labels: None,
                exceptions: Default::default(),
                object: Some(black_box(&object)),
                old_object: None,
            };
            evaluate(black_box(&policy), &req).expect("evaluates")
        })
    });
    g.finish();

    let mut g = c.benchmark_group(format!("{}{suffix}", "adversarial"));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    for (name, body) in adversarial_reviews(&base) {
        let (bytes, _) = review(Webhook::Validate, &policy, &body, None).expect("answers");
        eprintln!(
            "adversarial {name}: body {} B, answer {} B",
            body.len(),
            bytes.len()
        );
        assert!(bytes.len() <= hookguard::admission::MAX_RESPONSE_BYTES);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                review(
                    Webhook::Validate,
                    black_box(&policy),
                    black_box(&body),
                    None,
                )
                .expect("answers")
            })
        });
        g.bench_function(format!("{name}_serde_json_value"), |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(&body)).expect("parses"))
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("{}{suffix}", "parse"));
    g.throughput(Throughput::Bytes(job.len() as u64));
    g.bench_function("serde_json_value", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&job)).expect("parses"))
    });
    if let Some(body) = &captured {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function("serde_json_value_captured_helm3_job", |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(body)).expect("parses"))
        });
    }
    g.throughput(Throughput::Bytes(large.len() as u64));
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("serde_json_value_large_configmap", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&large)).expect("parses"))
    });
    g.finish();
}

/// CPU time of the calling thread, in nanoseconds.
#[cfg(target_os = "linux")]
fn thread_cpu_ns() -> u64 {
    #[repr(C)]
    struct Timespec {
        tv_sec: std::ffi::c_long,
        tv_nsec: std::ffi::c_long,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: std::ffi::c_int, tp: *mut Timespec) -> std::ffi::c_int;
    }
    const CLOCK_THREAD_CPUTIME_ID: std::ffi::c_int = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is defined on every Linux.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Criterion measurement of the benchmark thread's CPU time.
#[cfg(target_os = "linux")]
struct ThreadCpuTime;

#[cfg(target_os = "linux")]
impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NanosFormatter
    }
}

/// Formats nanoseconds like criterion's wall-time formatter.
struct NanosFormatter;

impl ValueFormatter for NanosFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = match typical {
            t if t < 1e3 => (1.0, "ns"),
            t if t < 1e6 => (1e3, "µs"),
            t if t < 1e9 => (1e6, "ms"),
            _ => (1e9, "s"),
        };
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }
    fn scale_throughputs(
        &self,
        typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (per_iter, units): (f64, [&'static str; 4]) = match *throughput {
            Throughput::Bytes(b) | Throughput::BytesDecimal(b) => {
                (b as f64, ["B/s", "KiB/s", "MiB/s", "GiB/s"])
            }
            Throughput::Elements(e) | Throughput::ElementsAndBytes { elements: e, .. } => {
                (e as f64, ["elem/s", "Kelem/s", "Melem/s", "Gelem/s"])
            }
            Throughput::Bits(b) => (b as f64, ["b/s", "Kib/s", "Mib/s", "Gib/s"]),
        };
        let per_sec = per_iter * 1e9 / typical;
        let exp = (0..4)
            .rev()
            .find(|&i| per_sec >= 1024f64.powi(i))
            .unwrap_or(0);
        let div = 1024f64.powi(exp);
        values
            .iter_mut()
            .for_each(|v| *v = per_iter * 1e9 / *v / div);
        units[exp as usize]
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn main() {
    let cpu_time = std::env::var_os("BENCH_CPU_TIME").is_some_and(|v| v != "0" && !v.is_empty());
    #[cfg(target_os = "linux")]
    if cpu_time {
        let mut c = Criterion::default()
            .with_measurement(ThreadCpuTime)
            .configure_from_args();
        benches(&mut c, "-cputime");
        c.final_summary();
        return;
    }
    assert!(!cpu_time, "BENCH_CPU_TIME needs Linux");
    let mut c = Criterion::default()
        .with_measurement(WallTime)
        .configure_from_args();
    benches(&mut c, "");
    c.final_summary();
}

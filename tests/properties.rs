//! Properties of the whole admission path over generated hook objects (proptest): Pods, Jobs and
//! CronJobs shaped like the defaulted objects kube-apiserver sends (tests/fixtures), random
//! annotation values (long, comma-heavy, typos), random specs, CREATE/UPDATE/DELETE.
//!
//! The invariants and the model are the fuzz targets' own (fuzz/src/invariants.rs and
//! fuzz/src/model.rs, compiled in here), so `cargo test` and `cargo fuzz` assert the same thing:
//! no panic, 200 or 400, response <= 64 KiB, the patch applies to request.object with json-patch,
//! /mutate on the patched object asks for no further patch, /validate accepts the mutated object.
//!
//! `PROPTEST_CASES=N` runs more cases than the default below.

mod common;

// Shared with the fuzz crate, which uses the rest of them.
#[allow(dead_code)]
#[path = "../fuzz/src/invariants.rs"]
mod invariants;
#[allow(dead_code)]
#[path = "../fuzz/src/model.rs"]
mod model;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use serde_json::Value;
use tower::ServiceExt;

use hookguard::admission::Webhook;
use hookguard::metrics::WebhookMetrics;
use hookguard::policy::Policy;
use hookguard::server::routes::webhook_router;
use hookguard::server::{AppState, Limits};

use invariants::{Answer, MAX_RESPONSE_BYTES, answer, round};
use model::{
    CAPABILITIES, Container, DELETE_POLICIES, FINALIZERS, HOOK_EVENTS, HOST_PATHS, IMAGES, JobSpec,
    Kind, NAMESPACES, OUTPUT_LOG_POLICIES, Object, Operation, PodSpec, RESTART_POLICIES, RULE_IDS,
    Review, Spec, Volume, WEIGHTS, check_ratcheting, check_untouched,
};

/// Cases per property unless `PROPTEST_CASES` says otherwise: a few seconds in all.
const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(CASES),
        // Failures are reported with their minimized input; no regression files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One item of a Helm list: a known spelling, mangled, or junk.
fn item(pool: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        6 => select(pool).prop_map(str::to_owned),
        1 => select(pool).prop_map(|t| format!(" {} ", t.to_uppercase())),
        1 => (select(pool), "[a-z]").prop_map(|(t, c)| format!("{t}{c}")),
        1 => "[a-z0-9 ,.-]{0,12}",
    ]
    .boxed()
}

/// An annotation value: one item, a list, a long comma-heavy repetition, a long word, any text.
fn annotation(pool: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        8 => item(pool),
        4 => prop::collection::vec(item(pool), 1..8).prop_map(|v| v.join(",")),
        1 => (item(pool), 1usize..30_000).prop_map(|(t, n)| vec![t; n].join(",")),
        1 => (item(pool), 1usize..8_000).prop_map(|(t, n)| t.repeat(n)),
        1 => ",{0,64}",
        1 => "\\PC{0,40}",
    ]
    .boxed()
}

fn hook_annotations() -> BoxedStrategy<Vec<(String, String)>> {
    (
        prop::option::weighted(0.95, annotation(HOOK_EVENTS)),
        prop::option::of(annotation(WEIGHTS)),
        prop::option::of(annotation(DELETE_POLICIES)),
        prop::option::weighted(0.1, annotation(OUTPUT_LOG_POLICIES)),
        prop::option::weighted(0.1, annotation(RULE_IDS)),
        prop::option::weighted(0.1, annotation(RULE_IDS)),
    )
        .prop_map(|(hook, weight, delete, log, exempt, mutated)| {
            [
                ("helm.sh/hook", hook),
                ("helm.sh/hook-weight", weight),
                ("helm.sh/hook-delete-policy", delete),
                ("helm.sh/hook-output-log-policy", log),
                ("hookguard.io/exempt", exempt),
                ("hookguard.io/mutated", mutated),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect()
        })
        .boxed()
}

fn labels() -> BoxedStrategy<Option<Vec<(String, String)>>> {
    prop::option::weighted(
        0.75,
        prop::option::of(prop_oneof![Just("true".to_owned()), "[a-z]{0,5}"]).prop_map(|hook| {
            let mut labels = vec![
                ("app.kubernetes.io/instance".to_owned(), "shop".to_owned()),
                ("app.kubernetes.io/managed-by".to_owned(), "Helm".to_owned()),
            ];
            labels.extend(hook.map(|h| ("hookguard.io/hook".to_owned(), h)));
            labels
        }),
    )
    .boxed()
}

fn container() -> BoxedStrategy<Container> {
    (
        "[a-z][a-z0-9-]{0,10}",
        prop_oneof![4 => select(IMAGES).prop_map(str::to_owned), 1 => "\\PC{0,20}"],
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::collection::vec(select(CAPABILITIES).prop_map(str::to_owned), 0..3),
        prop::collection::vec(0i64..65536, 0..2),
        prop::option::weighted(0.1, any::<bool>()),
    )
        .prop_map(
            |(name, image, privileged, escalation, caps, ports, host_process)| Container {
                name,
                image,
                privileged,
                allow_privilege_escalation: escalation,
                capabilities_add: caps,
                host_ports: ports,
                windows_host_process: host_process,
            },
        )
        .boxed()
}

fn volume() -> BoxedStrategy<Volume> {
    prop_oneof![
        (0u8..8, select(HOST_PATHS)).prop_map(|(i, p)| Volume::HostPath {
            name: format!("host-{i}"),
            path: p.to_owned()
        }),
        (0u8..8).prop_map(|i| Volume::EmptyDir {
            name: format!("scratch-{i}")
        }),
        (0u8..8, "[a-z-]{1,10}").prop_map(|(i, c)| Volume::ConfigMap {
            name: format!("config-{i}"),
            config_map: c
        }),
        Just(Volume::KubeApiAccess {
            name: "kube-api-access-7xk2p".to_owned()
        }),
    ]
    .boxed()
}

fn containers(most: usize) -> BoxedStrategy<Vec<Container>> {
    prop_oneof![
        20 => prop::collection::vec(container(), 0..=most),
        // Very many containers: the findings must stay bounded.
        1 => (container(), 100usize..2_000).prop_map(|(c, n)| vec![c; n]),
    ]
    .boxed()
}

fn pod_spec() -> BoxedStrategy<PodSpec> {
    (
        prop::option::weighted(0.9, select(RESTART_POLICIES).prop_map(str::to_owned)),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        (container(), containers(2)),
        prop::collection::vec(container(), 0..2),
        prop::option::weighted(0.1, prop::collection::vec(container(), 1..2)),
        prop::collection::vec(volume(), 0..3),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(restart, net, pid, ipc, (first, more), init, ephemeral, volumes, non_root)| PodSpec {
                restart_policy: restart,
                host_network: net,
                host_pid: pid,
                host_ipc: ipc,
                containers: std::iter::once(first).chain(more).collect(),
                init_containers: init,
                ephemeral_containers: ephemeral.unwrap_or_default(),
                volumes,
                run_as_non_root: non_root,
            },
        )
        .boxed()
}

fn job_spec() -> BoxedStrategy<JobSpec> {
    (
        prop_oneof![
            2 => Just(None),
            1 => (0i64..120).prop_map(Some),
            1 => (0i64..100_000).prop_map(Some),
            1 => any::<i64>().prop_map(Some),
        ],
        0i64..7,
        prop::option::weighted(0.95, pod_spec()),
    )
        .prop_map(|(ttl, backoff, template)| JobSpec {
            ttl_seconds_after_finished: ttl,
            backoff_limit: backoff,
            template,
        })
        .boxed()
}

fn kind() -> BoxedStrategy<Kind> {
    prop_oneof![
        4 => Just(Kind::Pod),
        4 => Just(Kind::Job),
        1 => Just(Kind::CronJob),
        1 => select(&[Kind::Deployment, Kind::Service, Kind::ConfigMap, Kind::Custom][..]),
    ]
    .boxed()
}

fn spec(kind: &Kind) -> BoxedStrategy<Spec> {
    match kind {
        Kind::Pod => pod_spec().prop_map(Spec::Pod).boxed(),
        Kind::Job => job_spec().prop_map(Spec::Job).boxed(),
        Kind::CronJob => job_spec().prop_map(Spec::CronJob).boxed(),
        Kind::ConfigMap => Just(Spec::Absent).boxed(),
        Kind::Deployment | Kind::Service | Kind::Custom => prop_oneof![
            Just(Spec::Raw(
                serde_json::json!({"replicas": 1, "template": {"spec": {"containers": []}}})
            )),
            Just(Spec::Raw(
                serde_json::json!({"containers": "not-a-list", "template": 7})
            )),
        ]
        .boxed(),
    }
}

fn object(kind: Kind) -> BoxedStrategy<Object> {
    (
        prop_oneof![4 => Just("shop-hook".to_owned()), 1 => "[a-z0-9.-]{1,30}"],
        prop::bool::weighted(0.1),
        hook_annotations(),
        labels(),
        prop::bool::weighted(0.15),
        prop::collection::vec(select(FINALIZERS).prop_map(str::to_owned), 0..2),
        spec(&kind),
    )
        .prop_map(
            |(name, generate_name, annotations, labels, deleting, finalizers, spec)| Object {
                name,
                generate_name,
                annotations,
                labels,
                deleting,
                finalizers,
                spec,
            },
        )
        .boxed()
}

/// What an UPDATE changes in the stored object.
#[derive(Debug, Clone)]
enum Change {
    Nothing,
    RemoveFinalizers,
    StartDeletion,
    AddLabel,
    Annotation(&'static str, String),
    Replace(Box<Object>),
}

fn change(kind: Kind) -> BoxedStrategy<Change> {
    prop_oneof![
        Just(Change::Nothing),
        Just(Change::RemoveFinalizers),
        Just(Change::StartDeletion),
        Just(Change::AddLabel),
        annotation(HOOK_EVENTS).prop_map(|v| Change::Annotation("helm.sh/hook", v)),
        annotation(WEIGHTS).prop_map(|v| Change::Annotation("helm.sh/hook-weight", v)),
        annotation(DELETE_POLICIES)
            .prop_map(|v| Change::Annotation("helm.sh/hook-delete-policy", v)),
        object(kind).prop_map(|o| Change::Replace(Box::new(o))),
    ]
    .boxed()
}

fn apply(change: Change, old: &Object) -> Object {
    let mut new = old.clone();
    match change {
        Change::Nothing => {}
        Change::RemoveFinalizers => new.finalizers.clear(),
        Change::StartDeletion => new.deleting = true,
        Change::AddLabel => new
            .labels
            .get_or_insert_with(Vec::new)
            .push(("team".to_owned(), "a".to_owned())),
        Change::Annotation(key, value) => new.set_annotation(key, value),
        Change::Replace(object) => new = *object,
    }
    new
}

fn review() -> BoxedStrategy<Review> {
    (
        prop_oneof![
            4 => Just(Operation::Create),
            3 => Just(Operation::Update),
            1 => Just(Operation::Delete),
            1 => Just(Operation::Connect),
        ],
        kind(),
        select(NAMESPACES).prop_map(str::to_owned),
        prop::option::weighted(0.05, select(&["status", "ephemeralcontainers", ""][..])),
        any::<bool>(),
    )
        .prop_flat_map(|(operation, kind, namespace, sub, dry_run)| {
            (
                object(kind.clone()),
                change(kind.clone()),
                Just((operation, kind, namespace, sub, dry_run)),
            )
        })
        .prop_map(
            |(object, change, (operation, kind, namespace, sub, dry_run))| {
                let (object, old_object) = match operation {
                    Operation::Create | Operation::Connect => (Some(object), None),
                    Operation::Update => (Some(apply(change, &object)), Some(object)),
                    Operation::Delete => (None, Some(object)),
                };
                Review {
                    operation,
                    kind,
                    namespace,
                    subresource: sub.map(str::to_owned),
                    dry_run,
                    object,
                    old_object,
                }
            },
        )
        .boxed()
}

proptest! {
    #![proptest_config(config())]

    /// The API server's sequence on any generated review: /mutate, the patch applied with
    /// json-patch, /mutate again (no further patch), /validate on the mutated object; every answer
    /// 200 or 400 and at most 64 KiB; non-hooks, DELETE, CONNECT, subresources and exempt
    /// namespaces untouched; objects being deleted neither mutated nor denied; a no-op UPDATE never
    /// denied.
    #[test]
    fn every_generated_review_keeps_the_invariants(review in review()) {
        let policy = Policy::default();
        let found = round(&policy, &review.to_body());
        check_untouched(&review, &policy, &found);
        check_ratcheting(&review, &found);
    }

    /// A CREATE of a hook Pod or Job without annotations the rules deny is made safe by /mutate
    /// and then allowed by /validate, whatever its spec (as long as it is not privileged).
    #[test]
    fn a_mutated_hook_job_is_allowed(job in job_spec(), weight in prop::option::of(-100i64..100)) {
        let mut object = Object {
            name: "shop-hook".to_owned(),
            generate_name: false,
            annotations: vec![("helm.sh/hook".to_owned(), "pre-install,pre-upgrade".to_owned())],
            labels: None,
            deleting: false,
            finalizers: Vec::new(),
            spec: Spec::Job(job),
        };
        if let Some(w) = weight {
            object.set_annotation("helm.sh/hook-weight", w.to_string());
        }
        let review = Review {
            operation: Operation::Create,
            kind: Kind::Job,
            namespace: "shop".to_owned(),
            subresource: None,
            dry_run: false,
            object: Some(object.clone()),
            old_object: None,
        };
        let found = round(&Policy::default(), &review.to_body());
        prop_assert_eq!(found.statuses, [200, 200]);
        prop_assert!(found.patched, "at least the label and the delete policy are added");
        let Spec::Job(job) = &object.spec else { unreachable!() };
        let dangerous = job.template.as_ref().is_some_and(|t| {
            t.host_network == Some(true)
                || t.host_pid == Some(true)
                || t.host_ipc == Some(true)
                || t.volumes.iter().any(|v| matches!(v, Volume::HostPath { .. }))
                || t.containers
                    .iter()
                    .chain(&t.init_containers)
                    .chain(&t.ephemeral_containers)
                    .any(|c| {
                        c.privileged == Some(true)
                            || c.allow_privilege_escalation == Some(true)
                            || c.windows_host_process == Some(true)
                            || !c.host_ports.is_empty()
                            || !c.capabilities_add.is_empty()
                    })
        });
        if !dangerous {
            prop_assert!(!found.denied, "a safe hook Job is allowed once mutated: {:?}", object);
        }
    }

    /// Arbitrary bytes and mangled fixtures are answered 200 or 400 by `review` and never panic.
    #[test]
    fn any_body_is_answered_or_rejected(body in body()) {
        round(&Policy::default(), &body);
    }
}

/// Bodies: arbitrary bytes, and fixtures with a byte range replaced or cut.
fn body() -> impl Strategy<Value = Vec<u8>> {
    const FIXTURES: &[&str] = &[
        "job-migrate-create.json",
        "job-migrate-update.json",
        "job-migrate-delete.json",
        "pod-test-create.json",
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        (
            select(FIXTURES),
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            "\\PC{0,8}"
        )
            .prop_map(|(name, at, len, with)| {
                let text = serde_json::to_string(&common::fixture(name)).expect("fixture");
                let mut bytes = text.into_bytes();
                let start = at.index(bytes.len());
                let end = start + len.index(bytes.len() - start).min(16);
                bytes.splice(start..end, with.into_bytes());
                bytes
            }),
    ]
}

/// The HTTP layer answers exactly what `review` decided: 200 with the review, or 400; never a 5xx,
/// never more than 64 KiB.
#[tokio::test]
async fn the_router_answers_200_or_400_as_review_decides() {
    let state = AppState::new(Policy::default(), WebhookMetrics::new(true).admission);
    let router = webhook_router(
        state,
        Limits {
            max_body_bytes: 3 << 20,
            request_timeout: Duration::from_secs(5),
        },
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        ..config()
    });
    let strategy = (
        prop_oneof![review().prop_map(|r| r.to_body()), body()],
        any::<bool>(),
    );
    for _ in 0..runner.config().cases {
        let (body, mutate) = strategy.new_tree(&mut runner).expect("a value").current();
        let (webhook, path) = if mutate {
            (Webhook::Mutate, "/mutate")
        } else {
            (Webhook::Validate, "/validate")
        };
        let expected = answer(webhook, &Policy::default(), &body);
        let req = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.clone()))
            .expect("request");
        let res = router.clone().oneshot(req).await.expect("router answers");
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(
            status,
            expected.status(),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        assert!(bytes.len() <= MAX_RESPONSE_BYTES, "{} bytes", bytes.len());
        if let Answer::Ok(review) = expected {
            let got: Value = serde_json::from_slice(&bytes).expect("JSON");
            assert_eq!(got, review);
        }
    }
}

//! Builds [`model`](crate::model) values and policies from fuzzer bytes (`arbitrary`), biased
//! towards what reaches the rules: hook annotations Helm knows, typos, long and comma-heavy values,
//! defaulted Pod and Job specs with dangerous fields, CREATE/UPDATE/DELETE with object and
//! oldObject, deletionTimestamp and finalizers.

use std::collections::BTreeMap;

use arbitrary::{Result, Unstructured};

use hookguard::policy::{Config, LabelSelector, Mode, Override, Policy, RULES};

use crate::model::{
    CAPABILITIES, Container, DELETE_POLICIES, FINALIZERS, HOOK_EVENTS, HOST_PATHS, IMAGES, JobSpec,
    Kind, NAMESPACES, OUTPUT_LOG_POLICIES, Object, Operation, PodSpec, RESTART_POLICIES, RULE_IDS,
    Review, Spec, Volume, WEIGHTS,
};

/// Longest repetition of one item in a generated list (`ab,ab,...`): far past the 64 KiB answer.
const MAX_REPEAT: usize = 8_000;

/// A short arbitrary string (names, stray tokens).
fn short(u: &mut Unstructured<'_>) -> Result<String> {
    let len = u.int_in_range(0..=12)?;
    let mut s = String::with_capacity(len);
    for _ in 0..len {
        s.push(u.arbitrary::<char>()?);
    }
    Ok(s)
}

fn pick(u: &mut Unstructured<'_>, pool: &[&str]) -> Result<String> {
    Ok((*u.choose(pool)?).to_owned())
}

/// One item of a Helm list: a known spelling, mangled (case, spaces, one-letter typo), or junk.
fn item(u: &mut Unstructured<'_>, pool: &[&str]) -> Result<String> {
    let base = pick(u, pool)?;
    Ok(match u.int_in_range(0..=5)? {
        0..=2 => base,
        3 => format!(" {} ", base.to_uppercase()),
        4 => {
            let mut chars: Vec<char> = base.chars().collect();
            if !chars.is_empty() {
                let at = u.choose_index(chars.len())?;
                match u.int_in_range(0..=2)? {
                    0 => {
                        chars.remove(at);
                    }
                    1 => chars.insert(at, u.arbitrary()?),
                    _ => chars[at] = u.arbitrary()?,
                }
            }
            chars.into_iter().collect()
        }
        _ => short(u)?,
    })
}

/// An annotation value built from `pool`: one item, a list, a huge repetition, a long word, or
/// arbitrary text.
pub fn annotation(u: &mut Unstructured<'_>, pool: &[&str]) -> Result<String> {
    Ok(match u.int_in_range(0..=9)? {
        0..=3 => item(u, pool)?,
        4..=5 => {
            let n = u.int_in_range(1..=8)?;
            let items: Vec<String> = (0..n).map(|_| item(u, pool)).collect::<Result<_>>()?;
            items.join(if u.arbitrary()? { "," } else { ", " })
        }
        6 => {
            let one = item(u, pool)?;
            let n = u.int_in_range(1..=MAX_REPEAT)?;
            vec![one; n].join(",")
        }
        7 => {
            let one = item(u, pool)?;
            let n = u.int_in_range(1..=MAX_REPEAT / 4)?;
            one.repeat(n)
        }
        8 => ",".repeat(u.int_in_range(0..=64)?),
        _ => u.arbitrary::<String>()?,
    })
}

fn opt_bool(u: &mut Unstructured<'_>) -> Result<Option<bool>> {
    Ok(match u.int_in_range(0..=3)? {
        0 => Some(true),
        1 => Some(false),
        _ => None,
    })
}

fn container(u: &mut Unstructured<'_>, i: usize) -> Result<Container> {
    let caps = u.int_in_range(0..=2)?;
    let ports = u.int_in_range(0..=1)?;
    Ok(Container {
        name: if u.ratio(1, 8)? {
            short(u)?
        } else {
            format!("c{i}")
        },
        image: if u.ratio(1, 8)? {
            u.arbitrary()?
        } else {
            pick(u, IMAGES)?
        },
        privileged: opt_bool(u)?,
        allow_privilege_escalation: opt_bool(u)?,
        capabilities_add: (0..caps)
            .map(|_| pick(u, CAPABILITIES))
            .collect::<Result<_>>()?,
        host_ports: (0..ports)
            .map(|_| u.int_in_range(0..=65535))
            .collect::<Result<_>>()?,
        windows_host_process: if u.ratio(1, 8)? {
            Some(u.arbitrary()?)
        } else {
            None
        },
    })
}

fn containers(u: &mut Unstructured<'_>, max: usize) -> Result<Vec<Container>> {
    // Mostly a few; sometimes very many (a findings list that must stay bounded).
    let n = if u.ratio(1, 16)? {
        u.int_in_range(0..=600)?
    } else {
        u.int_in_range(0..=max)?
    };
    (0..n).map(|i| container(u, i)).collect()
}

fn volume(u: &mut Unstructured<'_>, i: usize) -> Result<Volume> {
    let name = format!("v{i}");
    Ok(match u.int_in_range(0..=3)? {
        0 => Volume::HostPath {
            name,
            path: pick(u, HOST_PATHS)?,
        },
        1 => Volume::EmptyDir { name },
        2 => Volume::ConfigMap {
            name,
            config_map: short(u)?,
        },
        _ => Volume::KubeApiAccess {
            name: "kube-api-access-7xk2p".to_owned(),
        },
    })
}

/// A pod spec as the API server defaults it (restartPolicy always present unless `raw`).
pub fn pod_spec(u: &mut Unstructured<'_>) -> Result<PodSpec> {
    let volumes = u.int_in_range(0..=3)?;
    Ok(PodSpec {
        restart_policy: if u.ratio(1, 8)? {
            None
        } else {
            Some(pick(u, RESTART_POLICIES)?)
        },
        host_network: opt_bool(u)?,
        host_pid: opt_bool(u)?,
        host_ipc: opt_bool(u)?,
        containers: {
            let mut c = containers(u, 3)?;
            if c.is_empty() {
                c.push(container(u, 0)?);
            }
            c
        },
        init_containers: containers(u, 1)?,
        ephemeral_containers: if u.ratio(1, 8)? {
            containers(u, 1)?
        } else {
            Vec::new()
        },
        volumes: (0..volumes).map(|i| volume(u, i)).collect::<Result<_>>()?,
        run_as_non_root: opt_bool(u)?,
    })
}

fn job_spec(u: &mut Unstructured<'_>) -> Result<JobSpec> {
    Ok(JobSpec {
        ttl_seconds_after_finished: match u.int_in_range(0..=4)? {
            0 | 1 => None,
            2 => Some(u.int_in_range(0..=120)?),
            3 => Some(u.int_in_range(0..=100_000)?),
            _ => Some(u.arbitrary()?),
        },
        backoff_limit: u.int_in_range(0..=6)?,
        template: if u.ratio(1, 16)? {
            None
        } else {
            Some(pod_spec(u)?)
        },
    })
}

fn raw_spec(u: &mut Unstructured<'_>) -> Result<serde_json::Value> {
    Ok(match u.int_in_range(0..=3)? {
        0 => {
            serde_json::json!({"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}})
        }
        1 => serde_json::json!({"containers": "not-a-list", "template": 7}),
        2 => serde_json::json!({"type": "ClusterIP", "ports": [{"port": 80}]}),
        _ => serde_json::Value::String(u.arbitrary()?),
    })
}

fn spec(u: &mut Unstructured<'_>, kind: &Kind) -> Result<Spec> {
    if u.ratio(1, 32)? {
        return Ok(Spec::Absent);
    }
    Ok(match kind {
        Kind::Pod => Spec::Pod(pod_spec(u)?),
        Kind::Job => Spec::Job(job_spec(u)?),
        Kind::CronJob => Spec::CronJob(job_spec(u)?),
        Kind::ConfigMap => Spec::Absent,
        Kind::Deployment | Kind::Service | Kind::Custom => Spec::Raw(raw_spec(u)?),
    })
}

/// Helm's and hookguard's annotations (each maybe absent), plus ordinary ones.
fn annotations(u: &mut Unstructured<'_>) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    // Almost always a hook: the rules only run on hooks.
    if !u.ratio(1, 16)? {
        out.push(("helm.sh/hook".to_owned(), annotation(u, HOOK_EVENTS)?));
    }
    if u.ratio(1, 2)? {
        out.push(("helm.sh/hook-weight".to_owned(), annotation(u, WEIGHTS)?));
    }
    if u.ratio(1, 2)? {
        out.push((
            "helm.sh/hook-delete-policy".to_owned(),
            annotation(u, DELETE_POLICIES)?,
        ));
    }
    if u.ratio(1, 8)? {
        out.push((
            "helm.sh/hook-output-log-policy".to_owned(),
            annotation(u, OUTPUT_LOG_POLICIES)?,
        ));
    }
    if u.ratio(1, 8)? {
        out.push(("hookguard.io/exempt".to_owned(), annotation(u, RULE_IDS)?));
    }
    if u.ratio(1, 8)? {
        out.push(("hookguard.io/mutated".to_owned(), annotation(u, RULE_IDS)?));
    }
    if u.ratio(1, 4)? {
        out.push(("meta.helm.sh/release-name".to_owned(), "shop".to_owned()));
    }
    Ok(out)
}

fn labels(u: &mut Unstructured<'_>) -> Result<Option<Vec<(String, String)>>> {
    if u.ratio(1, 4)? {
        return Ok(None);
    }
    let mut out = vec![
        ("app.kubernetes.io/instance".to_owned(), "shop".to_owned()),
        ("app.kubernetes.io/managed-by".to_owned(), "Helm".to_owned()),
    ];
    match u.int_in_range(0..=3)? {
        0 => out.push(("hookguard.io/hook".to_owned(), "true".to_owned())),
        1 => out.push(("hookguard.io/hook".to_owned(), short(u)?)),
        _ => {}
    }
    Ok(Some(out))
}

/// One object of `kind`.
pub fn object(u: &mut Unstructured<'_>, kind: &Kind) -> Result<Object> {
    let finalizers = u.int_in_range(0..=2)?;
    Ok(Object {
        name: if u.ratio(1, 8)? {
            short(u)?
        } else {
            "shop-hook".to_owned()
        },
        generate_name: u.ratio(1, 8)?,
        annotations: annotations(u)?,
        labels: labels(u)?,
        deleting: u.ratio(1, 8)?,
        finalizers: (0..finalizers)
            .map(|_| pick(u, FINALIZERS))
            .collect::<Result<_>>()?,
        spec: spec(u, kind)?,
    })
}

/// A change an UPDATE makes to the stored object.
fn changed(u: &mut Unstructured<'_>, old: &Object, kind: &Kind) -> Result<Object> {
    let mut new = old.clone();
    match u.int_in_range(0..=6)? {
        // No change at all (a no-op apply): must never be denied.
        0 => {}
        // Finalizer removed (Argo CD releasing a hook).
        1 => new.finalizers.clear(),
        // Deletion started.
        2 => new.deleting = true,
        // A label added.
        3 => {
            new.labels
                .get_or_insert_with(Vec::new)
                .push(("team".to_owned(), "a".to_owned()));
        }
        // One hook annotation changed.
        4 => {
            let (key, pool) = *u.choose(&[
                ("helm.sh/hook", HOOK_EVENTS),
                ("helm.sh/hook-weight", WEIGHTS),
                ("helm.sh/hook-delete-policy", DELETE_POLICIES),
            ])?;
            new.set_annotation(key, annotation(u, pool)?);
        }
        // A new violation in the spec (which the API server would reject for Pods; the webhook
        // still sees it first).
        5 => {
            if let Spec::Pod(pod) = &mut new.spec
                && let Some(c) = pod.containers.first_mut()
            {
                c.privileged = Some(true);
            }
        }
        // Anything.
        _ => new = object(u, kind)?,
    }
    Ok(new)
}

/// One AdmissionReview request.
pub fn review(u: &mut Unstructured<'_>) -> Result<Review> {
    let operation = *u.choose(&Operation::ALL)?;
    let kind = u.choose(&Kind::ALL)?.clone();
    let namespace = if u.ratio(1, 16)? {
        short(u)?
    } else {
        pick(u, NAMESPACES)?
    };
    let subresource = if u.ratio(1, 16)? {
        Some(pick(u, &["status", "ephemeralcontainers", "", "scale"])?)
    } else {
        None
    };
    let (object, old_object) = match operation {
        Operation::Create | Operation::Connect => (Some(object(u, &kind)?), None),
        Operation::Update => {
            let old = object(u, &kind)?;
            let new = changed(u, &old, &kind)?;
            (Some(new), Some(old))
        }
        Operation::Delete => (None, Some(object(u, &kind)?)),
    };
    Ok(Review {
        operation,
        kind,
        namespace,
        subresource,
        dry_run: u.arbitrary()?,
        object,
        old_object,
    })
}

/// A policy: mostly the default, otherwise random modes, thresholds and exemptions.
pub fn policy(u: &mut Unstructured<'_>) -> Result<Policy> {
    if u.ratio(1, 2)? {
        return Ok(Policy::default());
    }
    let mut config = Config::default();
    let mut rules = BTreeMap::new();
    for rule in RULES {
        match u.int_in_range(0..=3)? {
            0 => {
                rules.insert(rule.info().id.to_owned(), Mode::Enforce);
            }
            1 => {
                rules.insert(rule.info().id.to_owned(), Mode::Warn);
            }
            2 => {
                rules.insert(rule.info().id.to_owned(), Mode::Off);
            }
            _ => {}
        }
    }
    config.rules = rules;
    config.job_ttl.floor_seconds = u.int_in_range(1..=3600)?;
    config.job_ttl.default_seconds = config.job_ttl.floor_seconds + u.int_in_range(0..=100_000)?;
    config.image_tag.require_tag = u.arbitrary()?;
    if u.arbitrary()? {
        config.image_tag.mutable_tags.push("main".to_owned());
    }
    config.exemptions.object_rules = match u.int_in_range(0..=2)? {
        0 => Vec::new(),
        1 => vec!["*".to_owned()],
        _ => vec!["image-tag".to_owned(), "job-ttl".to_owned()],
    };
    if u.arbitrary()? {
        config.exemptions.namespaces.push("team-*".to_owned());
    }
    // Scoped modes: by name or glob (these namespaces are generated), and by a label selector
    // (the review path knows no labels: it never matches, as when a namespace's labels are not
    // known).
    for _ in 0..u.int_in_range(0..=3)? {
        let mut rules = BTreeMap::new();
        for rule in RULES {
            if u.ratio(1, 3)? {
                let mode = *u.choose(&[Mode::Enforce, Mode::Warn, Mode::Off])?;
                rules.insert(rule.info().id.to_owned(), mode);
            }
        }
        if rules.is_empty() {
            rules.insert("pod-security".to_owned(), Mode::Warn);
        }
        let by_label = u.ratio(1, 4)?;
        config.overrides.push(Override {
            namespaces: if by_label && u.arbitrary()? {
                Vec::new()
            } else {
                vec![pick(u, &["shop", "team-*", "default", "*"])?]
            },
            namespace_selector: by_label.then(|| LabelSelector {
                match_labels: BTreeMap::from([("tier".to_owned(), "strict".to_owned())]),
                match_expressions: Vec::new(),
            }),
            rules,
        });
    }
    let policy = Policy::new(config).expect("generated policies are valid");
    Ok(policy.with_exempt_namespace("hookguard"))
}

//! The policy engine: pure, synchronous, no I/O and no clock. `evaluate` turns one request into a
//! [`Decision`]; the webhook, `lint` and later commands all call it.

pub mod config;
pub mod did_you_mean;
pub mod rules;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use serde_json::Value;

pub use config::{Config, ConfigError, Mode, Policy};
pub use rules::{RULES, Rule, RuleInfo};

use crate::hook::{HookAnnotations, HookEvent};
use crate::object::{HOOK_LABEL, JobSpec, MUTATED_ANNOTATION, Object, PodSpec};

/// The admission operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CREATE" => Some(Operation::Create),
            "UPDATE" => Some(Operation::Update),
            "DELETE" => Some(Operation::Delete),
            "CONNECT" => Some(Operation::Connect),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// What the engine is asked about.
#[derive(Debug)]
pub struct Request<'r, 'a> {
    pub operation: Operation,
    /// API group of the object's kind (`""` for core).
    pub group: &'r str,
    pub kind: &'r str,
    /// Requests on a subresource (`pods/status`, `jobs/status`, ...) are never judged.
    pub subresource: bool,
    /// The namespace of the request (`""` for cluster-scoped objects or unknown).
    pub namespace: &'r str,
    /// The new object (`None` for DELETE).
    pub object: Option<&'r Object<'a>>,
    /// The old object (DELETE and UPDATE); read only for hook accounting on DELETE.
    pub old_object: Option<&'r Object<'a>>,
}

/// Why an object was not judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// No `helm.sh/hook` annotation.
    NotAHook,
    /// DELETE is never denied or mutated.
    Delete,
    /// CONNECT or a subresource.
    NotAnObjectWrite,
    /// The namespace matches an exemption glob.
    ExemptNamespace,
}

/// A message from one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub message: String,
}

/// What the engine decided.
#[derive(Debug, Default)]
pub struct Decision {
    /// Set when the object was not judged.
    pub skipped: Option<Skip>,
    /// The parsed hook annotations (of the old object for DELETE), for accounting.
    pub hook: Option<HookAnnotations>,
    /// JSONPatch operations (mutating rules in `enforce` mode plus hookguard's label and annotation).
    pub patch: Vec<PatchOperation>,
    /// The rules whose mutations are in `patch`, with what each one fixes.
    pub mutations: Vec<Finding>,
    /// Findings of rules in `enforce` mode that reject the object.
    pub denials: Vec<Finding>,
    /// Findings of rules in `warn` mode (and of mutating rules in `warn` mode).
    pub warnings: Vec<Finding>,
    /// Rules the object exempted itself from through its annotation, that would have fired.
    pub exempted: Vec<&'static str>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.denials.is_empty()
    }

    /// Ids of the rules whose mutations are in `patch`.
    pub fn mutated_rules(&self) -> Vec<&'static str> {
        self.mutations.iter().map(|f| f.rule).collect()
    }

    /// Every rule id that fired, in rule order, without duplicates (for audit annotations).
    pub fn fired_rules(&self) -> Vec<&'static str> {
        let mut ids: Vec<&'static str> = Vec::new();
        for id in self
            .mutations
            .iter()
            .map(|f| f.rule)
            .chain(self.denials.iter().map(|f| f.rule))
            .chain(self.warnings.iter().map(|f| f.rule))
        {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// Known hook events as label values (`unknown` when none is known).
    pub fn event_labels(&self) -> Vec<&'static str> {
        match &self.hook {
            None => Vec::new(),
            Some(h) => {
                let events: Vec<&'static str> = h
                    .known_events()
                    .into_iter()
                    .map(HookEvent::as_str)
                    .collect();
                if events.is_empty() {
                    vec!["unknown"]
                } else {
                    events
                }
            }
        }
    }
}

/// Errors the engine reports instead of a decision: the object cannot be read as its kind.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("object.spec is not a valid {kind} spec: {source}")]
    Spec {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// The spec of the object, when its kind has spec rules.
#[derive(Debug)]
pub enum Workload<'a> {
    Pod(PodSpec<'a>),
    Job(JobSpec<'a>),
    Other,
}

impl<'a> Workload<'a> {
    /// The pod spec, and the JSON pointer of it.
    pub fn pod_spec(&self) -> Option<(&PodSpec<'a>, &'static str)> {
        match self {
            Workload::Pod(spec) => Some((spec, "/spec")),
            Workload::Job(job) => job
                .template
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .map(|spec| (spec, "/spec/template/spec")),
            Workload::Other => None,
        }
    }
}

/// Everything a rule may read.
pub struct Context<'c, 'a> {
    pub operation: Operation,
    pub group: &'c str,
    pub kind: &'c str,
    pub object: &'c Object<'a>,
    pub hook: &'c HookAnnotations,
    pub workload: &'c Workload<'a>,
    pub policy: &'c Policy,
}

impl Context<'_, '_> {
    /// Pod `spec` and Job `spec.template` are immutable after creation.
    pub fn spec_is_mutable(&self) -> bool {
        self.operation == Operation::Create
    }

    /// `Kind` or `Kind.group`, as kubectl names kinds.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_owned()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// What one rule found: a message saying what is wrong and how to fix it, and for mutating rules
/// the patch that fixes it.
#[derive(Debug)]
pub struct Violation {
    pub message: String,
    pub patch: Vec<PatchOperation>,
}

impl Violation {
    pub fn new(message: impl Into<String>) -> Self {
        Violation {
            message: message.into(),
            patch: Vec::new(),
        }
    }

    pub fn with_patch(message: impl Into<String>, patch: Vec<PatchOperation>) -> Self {
        Violation {
            message: message.into(),
            patch,
        }
    }
}

/// A JSONPatch `add` (which replaces an existing member, RFC 6902 §4.1).
pub fn add_op<'t>(tokens: impl IntoIterator<Item = &'t str>, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(tokens),
        value,
    })
}

/// A JSONPatch `add` at a pointer given as text (`/spec/template/spec`) plus one more token.
pub fn add_under(base: &str, token: &str, value: Value) -> PatchOperation {
    let tokens = base.split('/').filter(|t| !t.is_empty()).chain([token]);
    add_op(tokens, value)
}

/// Judges one request.
pub fn evaluate(policy: &Policy, req: &Request<'_, '_>) -> Result<Decision, EngineError> {
    let mut decision = Decision::default();

    if req.operation == Operation::Delete {
        decision.hook = req.old_object.and_then(Object::hook);
        decision.skipped = Some(Skip::Delete);
        return Ok(decision);
    }
    if req.operation == Operation::Connect || req.subresource {
        decision.skipped = Some(Skip::NotAnObjectWrite);
        return Ok(decision);
    }
    let Some(object) = req.object else {
        decision.skipped = Some(Skip::NotAHook);
        return Ok(decision);
    };
    let Some(hook) = object.hook() else {
        decision.skipped = Some(Skip::NotAHook);
        return Ok(decision);
    };
    if policy.namespace_is_exempt(req.namespace) {
        decision.hook = Some(hook);
        decision.skipped = Some(Skip::ExemptNamespace);
        return Ok(decision);
    }

    let workload = parse_workload(req.group, req.kind, object)?;
    let annotations = object.annotations();
    let exempt_list: Vec<String> = annotations
        .and_then(|a| a.exempt.as_deref())
        .map(|v| crate::hook::split_helm_list(v).collect())
        .unwrap_or_default();

    let ctx = Context {
        operation: req.operation,
        group: req.group,
        kind: req.kind,
        object,
        hook: &hook,
        workload: &workload,
        policy,
    };

    for (index, rule) in RULES.iter().enumerate() {
        let mode = policy.mode_at(index);
        if mode == Mode::Off {
            continue;
        }
        let info = rule.info();
        let Some(violation) = rule.check(&ctx) else {
            continue;
        };
        if policy.object_may_exempt(info.id) && exempt_list.iter().any(|e| e == "*" || e == info.id)
        {
            decision.exempted.push(info.id);
            continue;
        }
        let finding = Finding {
            rule: info.id,
            message: violation.message,
        };
        match (mode, violation.patch.is_empty()) {
            (Mode::Enforce, false) => {
                decision.patch.extend(violation.patch);
                decision.mutations.push(finding);
            }
            (Mode::Enforce, true) => decision.denials.push(finding),
            (Mode::Warn, _) => decision.warnings.push(finding),
            (Mode::Off, _) => {}
        }
    }

    bookkeeping(object, &mut decision);
    decision.hook = Some(hook);
    Ok(decision)
}

fn parse_workload<'a>(
    group: &str,
    kind: &str,
    object: &Object<'a>,
) -> Result<Workload<'a>, EngineError> {
    let Some(raw) = object.spec else {
        return Ok(Workload::Other);
    };
    match (group, kind) {
        ("", "Pod") => serde_json::from_str(raw.get())
            .map(Workload::Pod)
            .map_err(|source| EngineError::Spec {
                kind: "Pod",
                source,
            }),
        ("batch", "Job") => serde_json::from_str(raw.get())
            .map(Workload::Job)
            .map_err(|source| EngineError::Spec {
                kind: "Job",
                source,
            }),
        _ => Ok(Workload::Other),
    }
}

/// The label that makes hooks selectable and the annotation that records what was changed.
/// Both are written only when missing or different, so the engine's own output needs no patch.
fn bookkeeping(object: &Object<'_>, decision: &mut Decision) {
    match object.metadata.as_ref().and_then(|m| m.labels.as_ref()) {
        None => decision.patch.push(add_op(
            ["metadata", "labels"],
            serde_json::json!({ HOOK_LABEL: "true" }),
        )),
        Some(labels) if labels.hook.as_deref() != Some("true") => decision.patch.push(add_op(
            ["metadata", "labels", HOOK_LABEL],
            Value::String("true".to_owned()),
        )),
        Some(_) => {}
    }

    if decision.mutations.is_empty() {
        return;
    }
    let previous: Option<&str> = object.annotations().and_then(|a| a.mutated.as_deref());
    let mut ids: Vec<&str> = previous
        .map(|p| {
            p.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    for id in decision.mutations.iter().map(|f| f.rule) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let value = ids.join(",");
    if previous != Some(value.as_str()) {
        // Hook objects always have an annotations map: it holds `helm.sh/hook`.
        decision.patch.push(add_op(
            ["metadata", "annotations", MUTATED_ANNOTATION],
            Value::String(value),
        ));
    }
}

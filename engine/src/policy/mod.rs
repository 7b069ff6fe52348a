//! The policy engine: pure, synchronous, no I/O and no clock. `evaluate` turns one request into a
//! [`Decision`]; the webhook, `lint` and later commands all call it.

pub mod config;
pub mod did_you_mean;
pub mod exception;
pub mod rules;
pub mod selector;
pub mod ways_out;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation};
use serde_json::Value;

pub use config::{Config, ConfigError, Mode, Override, Policy};
pub use exception::{Exception, ExceptionSpec, Exceptions};
pub use rules::{RULES, Rule, RuleInfo};
pub use selector::{LabelSelector, Labels};

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
    /// Its labels, for `overrides` that select namespaces by label (`None`: not known).
    pub namespace_labels: Option<&'r Labels>,
    /// The HookPolicyExceptions that exist (only those the policy honours count), and the time.
    pub exceptions: Exceptions<'r>,
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
    /// The object has a `deletionTimestamp`: it is on its way out, and denying or changing it
    /// (finalizer removal, say) would only strand it.
    Terminating,
    /// Its annotations exceed what the API server stores
    /// ([`crate::object::MAX_STORED_ANNOTATIONS_BYTES`]): it rejects the object itself, with its
    /// own message, after the mutating webhooks; a validating webhook never sees such an object.
    AnnotationsTooLarge,
}

/// A message from one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub message: String,
    /// The problems the message lists (for comparing an UPDATE's object with its old object).
    pub problems: Problems,
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
    /// Rules a HookPolicyException waived, with the exception's `namespace/name`.
    pub excepted: Vec<(&'static str, String)>,
    /// Rules that fired although a HookPolicyException matched: it has expired.
    pub expired_exceptions: Vec<(&'static str, String)>,
    /// Rules whose violation was already present in the UPDATE's old object: reported as
    /// warnings instead of denials (ratcheting), so existing objects are never trapped.
    pub ratcheted: Vec<&'static str>,
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

/// At most this many problems are listed in one finding; the others are counted ("... and 12 more").
pub const MAX_SHOWN_PROBLEMS: usize = 5;

/// Problems offered after this many are only counted, never formatted: a forged object may carry a
/// hundred thousand privileged containers, and formatting each one would be the attack.
const MAX_OFFERED_PROBLEMS: usize = 64;

/// At most this many bytes of a value from the object are echoed in a message.
pub const MAX_ECHO_BYTES: usize = 64;

/// What one rule found wrong, item by item: the first few distinct problems, and how many more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    shown: Vec<String>,
    offered: usize,
    not_shown: usize,
}

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a problem, formatting it only while the list is not full. Duplicates of a listed
    /// problem are dropped.
    pub fn push_with(&mut self, problem: impl FnOnce() -> String) {
        self.offered += 1;
        if self.shown.len() >= MAX_SHOWN_PROBLEMS || self.offered > MAX_OFFERED_PROBLEMS {
            self.not_shown += 1;
            return;
        }
        let problem = problem();
        if !self.shown.contains(&problem) {
            self.shown.push(problem);
        }
    }

    pub fn push(&mut self, problem: String) {
        self.push_with(|| problem);
    }

    /// Counts problems that were found but not offered one by one.
    pub fn add_not_shown(&mut self, count: usize) {
        self.not_shown = self.not_shown.saturating_add(count);
    }

    pub fn is_empty(&self) -> bool {
        self.shown.is_empty() && self.not_shown == 0
    }

    pub fn shown(&self) -> &[String] {
        &self.shown
    }

    pub fn not_shown(&self) -> usize {
        self.not_shown
    }

    /// The listed problems joined by `separator`, then "and N more" when some are not listed.
    pub fn join(&self, separator: &str) -> String {
        let mut text = self.shown.join(separator);
        if self.not_shown > 0 {
            text.push_str(&format!("{separator}and {} more", self.not_shown));
        }
        text
    }

    /// Whether every problem here was already among `old`'s: `self` adds nothing new. When `old`
    /// could not list all of its problems, only the totals can be compared.
    pub fn is_within(&self, old: &Problems) -> bool {
        if old.not_shown > 0 {
            return self.shown.len() + self.not_shown <= old.shown.len() + old.not_shown;
        }
        self.not_shown == 0 && self.shown.iter().all(|p| old.shown.contains(p))
    }
}

/// `value` quoted like `{:?}`, cut to [`MAX_ECHO_BYTES`] with its length noted: for messages
/// that name a value from the object.
pub fn echo(value: &str) -> String {
    let cut = crate::hook::truncate_str(value, MAX_ECHO_BYTES);
    if cut.len() == value.len() {
        format!("{value:?}")
    } else {
        format!("{cut:?}... ({} bytes)", value.len())
    }
}

/// What one rule found: a message saying what is wrong and how to fix it, the problems it lists,
/// and for mutating rules the patch that fixes it.
#[derive(Debug)]
pub struct Violation {
    pub message: String,
    pub problems: Problems,
    pub patch: Vec<PatchOperation>,
}

impl Violation {
    /// A violation that is one problem, the message itself.
    pub fn new(message: impl Into<String>) -> Self {
        let message = message.into();
        let mut problems = Problems::new();
        problems.push(message.clone());
        Violation {
            message,
            problems,
            patch: Vec::new(),
        }
    }

    /// A violation listing `problems` (`None` when there are none); `message` wraps their list.
    pub fn listing(problems: Problems, message: impl FnOnce(&str) -> String) -> Option<Self> {
        if problems.is_empty() {
            return None;
        }
        Some(Violation {
            message: message(&problems.join("; ")),
            problems,
            patch: Vec::new(),
        })
    }

    pub fn with_patch(message: impl Into<String>, patch: Vec<PatchOperation>) -> Self {
        Violation {
            patch,
            ..Violation::new(message)
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
        decision.hook = req.old_object.and_then(stored_hook);
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
    if object.annotations_too_large() {
        decision.skipped = Some(Skip::AnnotationsTooLarge);
        return Ok(decision);
    }
    let Some(hook) = object.hook() else {
        decision.skipped = Some(Skip::NotAHook);
        return Ok(decision);
    };
    if object.is_terminating() {
        decision.hook = Some(hook);
        decision.skipped = Some(Skip::Terminating);
        return Ok(decision);
    }
    if policy.namespace_is_exempt(req.namespace) {
        decision.hook = Some(hook);
        decision.skipped = Some(Skip::ExemptNamespace);
        return Ok(decision);
    }

    let workload = parse_workload(req.group, req.kind, object)?;
    let self_exempt = SelfExemption::of(object);
    let ctx = Context {
        operation: req.operation,
        group: req.group,
        kind: req.kind,
        object,
        hook: &hook,
        workload: &workload,
        policy,
    };

    let modes = policy.modes_in(req.namespace, req.namespace_labels);
    for (index, rule) in RULES.iter().enumerate() {
        let mode = modes.get(index).copied().unwrap_or(Mode::Off);
        if mode == Mode::Off {
            continue;
        }
        let info = rule.info();
        let Some(violation) = rule.check(&ctx) else {
            continue;
        };
        if self_exempt.covers(index) && policy.object_may_exempt(info) {
            decision.exempted.push(info.id);
            continue;
        }
        let mut message = violation.message;
        // The first valid exception that covers the finding waives it; failing that, the first
        // expired one is named in the message.
        let mut expired = None;
        let valid = req.exceptions.granted.iter().find(|e| {
            let covers = policy.honours_exceptions_from(&e.namespace)
                && e.covers(info.id, req.namespace, object);
            if covers && e.expired(req.exceptions.now) {
                expired = expired.or(Some(*e));
                return false;
            }
            covers
        });
        if let Some(e) = valid {
            decision.excepted.push((info.id, e.id.clone()));
            continue;
        }
        if let Some(e) = expired {
            message.push_str(&format!(" (HookPolicyException {} has expired)", e.id));
            decision.expired_exceptions.push((info.id, e.id.clone()));
        }
        let finding = Finding {
            rule: info.id,
            message,
            problems: violation.problems,
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

    if req.operation == Operation::Update && !decision.denials.is_empty() {
        ratchet(policy, req, &mut decision)?;
    }
    bookkeeping(object, &mut decision);
    decision.hook = Some(hook);
    Ok(decision)
}

/// The hook annotations of an object the API server has stored (DELETE's and UPDATE's old
/// object); `None` for one it could not have stored, which only a forged request holds.
fn stored_hook(object: &Object<'_>) -> Option<HookAnnotations> {
    if object.annotations_too_large() {
        return None;
    }
    object.hook()
}

/// UPDATE: a denial whose problems the old object already had becomes a warning. Denying it would
/// trap the object (created before hookguard, while it was down or exempt, or before the policy
/// was tightened): not even a label or finalizer could change. Only what the update introduces is
/// denied.
fn ratchet(
    policy: &Policy,
    req: &Request<'_, '_>,
    decision: &mut Decision,
) -> Result<(), EngineError> {
    let Some(old) = req.old_object else {
        return Ok(());
    };
    let Some(old_hook) = stored_hook(old) else {
        return Ok(());
    };
    // An old spec that does not parse offers nothing to compare with: the new object's spec
    // findings stand.
    let old_workload = parse_workload(req.group, req.kind, old).unwrap_or(Workload::Other);
    let ctx = Context {
        operation: req.operation,
        group: req.group,
        kind: req.kind,
        object: old,
        hook: &old_hook,
        workload: &old_workload,
        policy,
    };
    let denials = std::mem::take(&mut decision.denials);
    for mut finding in denials {
        let old_problems = RULES
            .iter()
            .find(|r| r.info().id == finding.rule)
            .and_then(|r| r.check(&ctx))
            .map(|v| v.problems);
        match old_problems {
            Some(old) if finding.problems.is_within(&old) => {
                finding.message = format!(
                    "already present before this update, so not denied now: {}",
                    finding.message
                );
                decision.ratcheted.push(finding.rule);
                decision.warnings.push(finding);
            }
            _ => decision.denials.push(finding),
        }
    }
    Ok(())
}

/// The rules an object exempts itself from with `hookguard.io/exempt` (whether the policy lets it
/// is decided per rule): one bit per rule index. Parsed once, without allocating, however long the
/// annotation is.
struct SelfExemption {
    all: bool,
    rules: u64,
}

// One bit per rule.
const _: () = assert!(RULES.len() <= 64);

impl SelfExemption {
    fn of(object: &Object<'_>) -> Self {
        let mut exemption = SelfExemption {
            all: false,
            rules: 0,
        };
        let Some(value) = object.annotations().and_then(|a| a.exempt.as_deref()) else {
            return exemption;
        };
        for item in crate::hook::split_helm_list(value) {
            if item == "*" {
                exemption.all = true;
            } else if let Some(i) = RULES.iter().position(|r| r.info().id == item) {
                exemption.rules |= 1 << i;
            }
        }
        exemption
    }

    fn covers(&self, index: usize) -> bool {
        self.all || (index < 64 && self.rules & (1 << index) != 0)
    }
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
    // Only rule ids are carried over: the previous value comes from the object and may hold
    // anything, of any length.
    let mut ids: Vec<&str> = Vec::new();
    for item in previous.into_iter().flat_map(|p| p.split(',')) {
        let item = item.trim();
        if let Some(rule) = RULES.iter().find(|r| r.info().id == item)
            && !ids.contains(&rule.info().id)
        {
            ids.push(rule.info().id);
        }
    }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::rules::testing::*;
    use super::*;

    const PRIVILEGED: &str = "/spec/containers/0/securityContext";

    fn privileged_pod() -> String {
        with(
            &pod(r#""helm.sh/hook": "test""#, "Never"),
            PRIVILEGED,
            json!({"privileged": true}),
        )
    }

    #[test]
    fn an_override_decides_by_namespace_and_labels_but_never_reaches_an_exempt_namespace() {
        let policy = Config::from_yaml(
            r#"
rules: {pod-security: warn}
overrides:
  - namespaceSelector: {matchLabels: {tier: strict}}
    rules: {pod-security: enforce}
  - namespaces: [kube-system]
    rules: {pod-security: enforce}
"#,
        )
        .unwrap();
        let strict: Labels = [("tier".to_owned(), "strict".to_owned())].into();
        let pod = privileged_pod();
        let d = judge_in(&policy, &pod, Operation::Create, "shop", Some(&strict));
        assert!(denial(&d, "pod-security").contains("privileged"), "{d:#?}");
        let d = judge_in(&policy, &pod, Operation::Create, "shop", None);
        assert!(d.allowed() && fired(&d, "pod-security"), "{d:#?}");
        warning(&d, "pod-security");
        let d = judge_in(&policy, &pod, Operation::Create, "kube-system", None);
        assert_eq!(d.skipped, Some(Skip::ExemptNamespace));
    }

    fn exception(namespace: &str, expires: Option<i64>) -> Exception {
        let spec: ExceptionSpec = serde_saphyr::from_str(
            "rules: [pod-security]\nmatch: {namespaces: [default], names: [\"release-*\"]}\nreason: the CNI's hook needs it until v2\n",
        )
        .unwrap();
        Exception::new(namespace, "cni-hook", &spec, expires).unwrap()
    }

    fn judge_with_exceptions(policy: &Policy, granted: &[Exception], now: i64) -> Decision {
        judge_json_with_exceptions(policy, &privileged_pod(), granted, now)
    }

    fn judge_json_with_exceptions(
        policy: &Policy,
        json: &str,
        granted: &[Exception],
        now: i64,
    ) -> Decision {
        let object: Object = serde_json::from_str(json).unwrap();
        let req = Request {
            operation: Operation::Create,
            group: "",
            kind: "Pod",
            subresource: false,
            namespace: "default",
            namespace_labels: None,
            exceptions: Exceptions { granted, now },
            object: Some(&object),
            old_object: None,
        };
        evaluate(policy, &req).unwrap()
    }

    #[test]
    fn an_exception_counts_only_from_the_platforms_namespaces_and_until_it_expires() {
        let policy = Policy::default().with_own_namespace("hookguard");
        assert!(policy.honours_exceptions_from("hookguard"));
        assert!(!policy.honours_exceptions_from("default"));
        // Granted by the platform (hookguard's namespace): the privileged hook Pod passes.
        let d = judge_with_exceptions(&policy, &[exception("hookguard", Some(2_000))], 1_000);
        assert!(d.allowed(), "{d:#?}");
        assert_eq!(
            d.excepted,
            [("pod-security", "hookguard/cni-hook".to_owned())]
        );
        // The same object in the team's namespace waives nothing.
        let d = judge_with_exceptions(&policy, &[exception("default", None)], 1_000);
        assert!(denial(&d, "pod-security").contains("privileged"));
        assert!(d.excepted.is_empty());
        // Expired: denied again, and the message says which exception expired.
        let d = judge_with_exceptions(&policy, &[exception("hookguard", Some(2_000))], 2_000);
        assert!(
            denial(&d, "pod-security")
                .contains("HookPolicyException hookguard/cni-hook has expired")
        );
        assert_eq!(
            d.expired_exceptions,
            [("pod-security", "hookguard/cni-hook".to_owned())]
        );
        // A policy naming its exception namespaces replaces the default.
        let platform = Config::from_yaml("exceptions: {namespaces: [\"platform-*\"]}\n")
            .unwrap()
            .with_own_namespace("hookguard");
        assert!(platform.honours_exceptions_from("platform-security"));
        assert!(!platform.honours_exceptions_from("hookguard"));
        let d = judge_with_exceptions(&platform, &[exception("hookguard", None)], 1_000);
        assert!(!d.allowed());
    }

    #[test]
    fn an_exception_can_match_by_the_objects_labels() {
        let policy = Policy::default().with_own_namespace("hookguard");
        let spec: ExceptionSpec = serde_saphyr::from_str(
            "rules: [pod-security]\nmatch: {labels: {matchLabels: {app: cni}}}\nreason: r\n",
        )
        .unwrap();
        let granted = [Exception::new("hookguard", "by-label", &spec, None).unwrap()];
        let judge = |json: &str| judge_json_with_exceptions(&policy, json, &granted, 0);
        let labelled = with(&privileged_pod(), "/metadata/labels", json!({"app": "cni"}));
        assert!(judge(&labelled).allowed());
        let other = with(
            &privileged_pod(),
            "/metadata/labels",
            json!({"app": "shop"}),
        );
        assert!(!judge(&other).allowed());
        assert!(!judge(&privileged_pod()).allowed());
    }

    #[test]
    fn an_exception_that_cannot_be_honoured_says_why() {
        let spec = |yaml: &str| serde_saphyr::from_str::<ExceptionSpec>(yaml).unwrap();
        let err = |yaml: &str| Exception::new("hookguard", "x", &spec(yaml), None).unwrap_err();
        assert_eq!(
            err("rules: [pod-securty]\nmatch: {names: [a]}\nreason: r\n"),
            "spec.rules[0]: unknown rule id \"pod-securty\"; did you mean \"pod-security\"?"
        );
        assert_eq!(
            err("rules: [image-tag]\nmatch: {names: [a]}\n"),
            "spec.reason: must say why"
        );
        assert!(err("rules: [image-tag]\nreason: r\n").starts_with("spec.match:"));
        assert_eq!(
            err(
                "rules: [image-tag]\nmatch: {labels: {matchExpressions: [{key: a, operator: In}]}}\nreason: r\n"
            ),
            "spec.match.labels.matchExpressions[0].values: must not be empty for In"
        );
        assert_eq!(
            err("match: {names: [a]}\nreason: r\n"),
            "spec.rules: names no rule"
        );
    }

    #[test]
    fn terminating_objects_are_never_denied_nor_mutated() {
        let p = with(
            &privileged_pod(),
            "/metadata/deletionTimestamp",
            json!("2026-12-02T08:00:00Z"),
        );
        let p = with(&p, "/spec/restartPolicy", json!("Always"));
        for op in [Operation::Create, Operation::Update] {
            let d = judge_with(&Policy::default(), &p, op);
            assert_eq!(d.skipped, Some(Skip::Terminating));
            assert!(d.allowed() && d.patch.is_empty(), "{d:#?}");
            assert!(d.hook.is_some(), "still counted as a hook");
        }
    }

    #[test]
    fn annotations_the_api_server_would_not_store_are_not_parsed() {
        use crate::object::MAX_STORED_ANNOTATIONS_BYTES;
        // Keys plus values: the hook annotation alone reaches the API server's limit by one byte.
        let at = |total: usize| {
            let value = "ab,".repeat(total / 3) + &"x".repeat(total % 3);
            let value = &value[..total - "helm.sh/hook".len()];
            pod(&format!(r#""helm.sh/hook": "{value}""#), "Never")
        };
        let over = at(MAX_STORED_ANNOTATIONS_BYTES + 1);
        for op in [Operation::Create, Operation::Update] {
            let d = judge_with(&Policy::default(), &over, op);
            assert_eq!(d.skipped, Some(Skip::AnnotationsTooLarge));
            assert!(
                d.allowed() && d.patch.is_empty() && d.hook.is_none(),
                "{d:#?}"
            );
        }
        // At the limit the list is parsed and judged: unknown events are denied.
        let d = judge(&at(MAX_STORED_ANNOTATIONS_BYTES));
        assert_eq!(d.skipped, None);
        assert!(denial(&d, "hook-event-unknown").contains("\"ab\""));
        // An old object the API server could not have stored offers nothing to ratchet from.
        let new = with(&over, "/metadata/annotations/helm.sh~1hook", json!("test"));
        let new = with(&new, PRIVILEGED, json!({"privileged": true}));
        let d = judge_update(&Policy::default(), &over, &new);
        assert!(denial(&d, "pod-security").contains("privileged"));
    }

    #[test]
    fn update_keeping_an_old_violation_warns_instead_of_denying() {
        let old = privileged_pod();
        let new = with(&old, "/metadata/labels", json!({"team": "a"}));
        let d = judge_update(&Policy::default(), &old, &new);
        assert!(d.allowed(), "{d:#?}");
        assert!(warning(&d, "pod-security").starts_with("already present before this update"));
        assert_eq!(d.ratcheted, vec!["pod-security"]);

        let old = job(
            r#""helm.sh/hook": "pre-install", "helm.sh/hook-weight": "5.0""#,
            "Never",
        );
        let new = with(&old, "/metadata/labels", json!({"team": "a"}));
        assert!(judge_update(&Policy::default(), &old, &new).allowed());
    }

    #[test]
    fn update_introducing_a_violation_is_denied() {
        let old = pod(r#""helm.sh/hook": "test""#, "Never");
        let new = with(
            &old,
            "/metadata/annotations/helm.sh~1hook-delete-policy",
            json!("before-hook-creations"),
        );
        let d = judge_update(&Policy::default(), &old, &new);
        assert!(denial(&d, "delete-policy-unknown").contains("before-hook-creations"));
        // A different bad value than the old one is new too.
        let old = new;
        let new = with(
            &old,
            "/metadata/annotations/helm.sh~1hook-delete-policy",
            json!("hook-suceeded"),
        );
        let d = judge_update(&Policy::default(), &old, &new);
        assert!(denial(&d, "delete-policy-unknown").contains("hook-suceeded"));
        // Adding a problem to a rule that already fired is new as well.
        let old = privileged_pod();
        let new = with(&old, "/spec/hostPID", json!(true));
        let d = judge_update(&Policy::default(), &old, &new);
        assert!(denial(&d, "pod-security").contains("hostPID"));
    }

    #[test]
    fn update_fixing_part_of_an_old_violation_is_allowed() {
        let old = with(&privileged_pod(), "/spec/hostPID", json!(true));
        let new = privileged_pod();
        assert!(judge_update(&Policy::default(), &old, &new).allowed());
    }

    #[test]
    fn update_that_makes_an_object_a_hook_is_judged_in_full() {
        let mut old: serde_json::Value = serde_json::from_str(&privileged_pod()).unwrap();
        old["metadata"]["annotations"] = json!({});
        let d = judge_update(&Policy::default(), &old.to_string(), &privileged_pod());
        assert!(!d.allowed());
    }

    #[test]
    fn security_rules_are_not_self_exemptable_by_default() {
        let p = with(
            &privileged_pod(),
            "/metadata/annotations/hookguard.io~1exempt",
            json!("*"),
        );
        let d = judge(&p);
        assert!(denial(&d, "pod-security").contains("privileged"));
        let d = judge(&with(
            &p,
            "/metadata/annotations/hookguard.io~1exempt",
            json!("pod-security"),
        ));
        assert!(!d.allowed(), "naming the rule does not help either");
        // The platform can allow it by naming the rule in the policy.
        let policy =
            Config::from_yaml("exemptions:\n  objectRules: [\"*\", pod-security]\n").unwrap();
        let d = judge_with(&policy, &p, Operation::Create);
        assert!(
            d.allowed() && d.exempted.contains(&"pod-security"),
            "{d:#?}"
        );
        // Other rules stay self-exemptable with "*".
        let weight = job(
            r#""helm.sh/hook": "pre-install", "helm.sh/hook-weight": "5.0", "hookguard.io/exempt": "*""#,
            "Never",
        );
        assert!(judge(&weight).allowed());
    }

    #[test]
    fn forged_mutated_annotation_is_not_echoed_into_the_patch() {
        let junk = "x,".repeat(100_000);
        let j = job(
            &format!(r#""helm.sh/hook": "pre-install", "hookguard.io/mutated": "{junk}job-ttl""#),
            "",
        );
        let d = judge(&j);
        let v = patched(&j, &d);
        assert_eq!(
            v["metadata"]["annotations"]["hookguard.io/mutated"],
            "job-ttl,restart-policy,delete-policy-default"
        );
        // And the engine's own output needs no further patch.
        let again = judge(&v.to_string());
        assert!(again.patch.is_empty(), "{:?}", again.patch);
    }

    #[test]
    fn problems_are_deduplicated_capped_and_compared() {
        let mut p = Problems::new();
        for i in 0..100_000 {
            p.push_with(|| format!("p{}", i % 3));
        }
        assert_eq!(p.shown(), ["p0", "p1", "p2"]);
        assert_eq!(p.not_shown(), 100_000 - MAX_OFFERED_PROBLEMS);
        let mut few = Problems::new();
        few.push("p1".to_owned());
        let mut other = Problems::new();
        other.push("p9".to_owned());
        let mut complete = Problems::new();
        complete.push("p0".to_owned());
        complete.push("p1".to_owned());
        assert!(few.is_within(&complete));
        assert!(!other.is_within(&complete));
        assert!(few.is_within(&p), "an overflowing old list compares totals");
    }

    #[test]
    fn echo_cuts_long_values() {
        assert_eq!(echo("abc"), "\"abc\"");
        let long = "é".repeat(100);
        let e = echo(&long);
        assert!(e.ends_with("... (200 bytes)"), "{e}");
        assert!(e.len() < 100, "{e}");
    }
}

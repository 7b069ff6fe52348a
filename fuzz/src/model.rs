//! A model of the AdmissionReviews kube-apiserver sends for hook objects, and its rendering to
//! JSON in the shape the API server sends (defaulted Pod and Job specs, managedFields, userInfo,
//! options; see tests/fixtures). The structure-aware fuzz target and the proptest properties
//! (tests/properties.rs includes this file) generate values of this model in their own ways and
//! render them here, so both exercise the same shapes.

use serde_json::{Map, Value, json};

/// Hook events Helm knows, plus spellings it accepts or that users write.
pub const HOOK_EVENTS: &[&str] = &[
    "pre-install",
    "post-install",
    "pre-delete",
    "post-delete",
    "pre-upgrade",
    "post-upgrade",
    "pre-rollback",
    "post-rollback",
    "test",
    "test-success",
    "crd-install",
    "pre-instal",
    "post-upgarde",
    "Pre-Install",
    " test ",
    "",
];

/// Delete policies Helm knows, plus typos.
pub const DELETE_POLICIES: &[&str] = &[
    "before-hook-creation",
    "hook-succeeded",
    "hook-failed",
    "before-hook-creations",
    "hook-succeed",
    "Hook-Failed",
    "",
];

/// Output-log policies (Helm >= 3.18).
pub const OUTPUT_LOG_POLICIES: &[&str] = &["hook-succeeded", "hook-failed", "hook-succeded"];

/// `helm.sh/hook-weight` values: valid for Go's `strconv.Atoi`, and not.
pub const WEIGHTS: &[&str] = &[
    "0",
    "-5",
    "+3",
    "5.0",
    " 1",
    "1_000",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "",
    "ten",
];

/// Rule ids and globs for `hookguard.io/exempt` and `hookguard.io/mutated`.
pub const RULE_IDS: &[&str] = &[
    "*",
    "hook-event-unknown",
    "hook-weight-invalid",
    "delete-policy-unknown",
    "delete-policy-recreate",
    "hook-kind-long-running",
    "pod-security",
    "image-tag",
    "restart-policy",
    "job-ttl",
    "delete-policy-default",
    "no-such-rule",
];

/// Container images: pinned, untagged, mutable, digests, registries with ports.
pub const IMAGES: &[&str] = &[
    "busybox:1.36",
    "busybox",
    "curlimages/curl:latest",
    "ghcr.io/example/shop-migrations:2.3.1",
    "registry.k8s.io/ingress-nginx/kube-webhook-certgen:v1.5.2@sha256:e8825994b7a2c7497375a9b945f386506ca6a3eda80b89b74ef2db743f66a5ea",
    "localhost:5000/tools",
    "localhost:5000/tools:latest",
    "quay.io/jetstack/cert-manager-startupapicheck:v1.16.2",
    ":",
    "",
];

/// Linux capabilities, safe and dangerous.
pub const CAPABILITIES: &[&str] = &[
    "NET_BIND_SERVICE",
    "CHOWN",
    "SYS_ADMIN",
    "NET_ADMIN",
    "ALL",
    "sys_ptrace",
];

/// restartPolicy values.
pub const RESTART_POLICIES: &[&str] = &["Always", "Never", "OnFailure", "always", ""];

/// Finalizers seen on hooks.
pub const FINALIZERS: &[&str] = &[
    "argocd.argoproj.io/hook-finalizer",
    "batch.kubernetes.io/job-tracking",
    "foregroundDeletion",
];

/// hostPath paths.
pub const HOST_PATHS: &[&str] = &["/", "/var/run/docker.sock", "/etc", "/tmp/x", ""];

/// Namespaces: ordinary, exempt by default, cluster-scoped.
pub const NAMESPACES: &[&str] = &["shop", "default", "kube-system", "hookguard", "team-a", ""];

/// The admission operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub const ALL: [Operation; 4] = [
        Operation::Create,
        Operation::Update,
        Operation::Delete,
        Operation::Connect,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// The kind of the object (`request.kind`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Job,
    CronJob,
    Deployment,
    Service,
    ConfigMap,
    /// A custom resource (its `spec` may have any shape).
    Custom,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Pod,
        Kind::Job,
        Kind::CronJob,
        Kind::Deployment,
        Kind::Service,
        Kind::ConfigMap,
        Kind::Custom,
    ];

    /// (group, version, kind, resource)
    pub fn gvk(&self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Kind::Pod => ("", "v1", "Pod", "pods"),
            Kind::Job => ("batch", "v1", "Job", "jobs"),
            Kind::CronJob => ("batch", "v1", "CronJob", "cronjobs"),
            Kind::Deployment => ("apps", "v1", "Deployment", "deployments"),
            Kind::Service => ("", "v1", "Service", "services"),
            Kind::ConfigMap => ("", "v1", "ConfigMap", "configmaps"),
            Kind::Custom => ("example.com", "v1alpha1", "Widget", "widgets"),
        }
    }

    fn api_version(&self) -> String {
        match self.gvk() {
            ("", version, _, _) => version.to_owned(),
            (group, version, _, _) => format!("{group}/{version}"),
        }
    }
}

/// One AdmissionReview request.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub operation: Operation,
    pub kind: Kind,
    pub namespace: String,
    /// `status`, `ephemeralcontainers`, ... (never judged; `""` is the object itself).
    pub subresource: Option<String>,
    pub dry_run: bool,
    /// `None` renders `null` (DELETE).
    pub object: Option<Object>,
    /// `None` renders `null` (CREATE).
    pub old_object: Option<Object>,
}

/// A Kubernetes object of the review's kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub name: String,
    /// `metadata.generateName` instead of a name.
    pub generate_name: bool,
    /// In order; may repeat hookguard's and Helm's keys only once each (a JSON object).
    pub annotations: Vec<(String, String)>,
    /// `None`: no labels map at all.
    pub labels: Option<Vec<(String, String)>>,
    /// `metadata.deletionTimestamp` is set (the object is being deleted).
    pub deleting: bool,
    pub finalizers: Vec<String>,
    pub spec: Spec,
}

impl Object {
    /// The value of one annotation.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the object carries `helm.sh/hook` (is a Helm hook).
    pub fn is_hook(&self) -> bool {
        self.annotation("helm.sh/hook").is_some()
    }

    /// Sets an annotation, replacing an existing one.
    pub fn set_annotation(&mut self, key: &str, value: String) {
        match self.annotations.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.annotations.push((key.to_owned(), value)),
        }
    }
}

/// The object's `spec`.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    Absent,
    Pod(PodSpec),
    Job(JobSpec),
    /// A CronJob: the Job spec under `jobTemplate`.
    CronJob(JobSpec),
    /// Any JSON (custom resources, Deployments, Services: not read by the rules).
    Raw(Value),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodSpec {
    /// `None`: absent (an object that was not defaulted).
    pub restart_policy: Option<String>,
    pub host_network: Option<bool>,
    pub host_pid: Option<bool>,
    pub host_ipc: Option<bool>,
    pub containers: Vec<Container>,
    pub init_containers: Vec<Container>,
    pub ephemeral_containers: Vec<Container>,
    pub volumes: Vec<Volume>,
    /// Pod-level `securityContext.runAsNonRoot`.
    pub run_as_non_root: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub privileged: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub capabilities_add: Vec<String>,
    pub host_ports: Vec<i64>,
    pub windows_host_process: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Volume {
    HostPath {
        name: String,
        path: String,
    },
    EmptyDir {
        name: String,
    },
    ConfigMap {
        name: String,
        config_map: String,
    },
    /// The service-account token volume the API server adds.
    KubeApiAccess {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobSpec {
    pub ttl_seconds_after_finished: Option<i64>,
    pub backoff_limit: i64,
    /// `None`: no `template` at all.
    pub template: Option<PodSpec>,
}

impl Review {
    /// The AdmissionReview as kube-apiserver sends it.
    pub fn to_json(&self) -> Value {
        let (group, version, kind, resource) = self.kind.gvk();
        let gvk = json!({"group": group, "version": version, "kind": kind});
        let gvr = json!({"group": group, "version": version, "resource": resource});
        let meta = self.object.as_ref().or(self.old_object.as_ref());
        let name = meta.map(|o| o.name.as_str()).unwrap_or_default();
        let options = match self.operation {
            Operation::Create => {
                json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "helm"})
            }
            Operation::Update => {
                json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "helm"})
            }
            Operation::Delete => {
                json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background"})
            }
            Operation::Connect => Value::Null,
        };
        let mut request = json!({
            "uid": "0d1e5a3c-8f0b-4d6e-9b1a-3c2d4e5f6a7b",
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": name,
            "namespace": self.namespace,
            "operation": self.operation.as_str(),
            "userInfo": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]},
            "object": self.object.as_ref().map(|o| o.to_json(&self.kind, &self.namespace, self.operation != Operation::Create)),
            "oldObject": self.old_object.as_ref().map(|o| o.to_json(&self.kind, &self.namespace, true)),
            "dryRun": self.dry_run,
            "options": options,
        });
        if let Some(sub) = &self.subresource {
            request["subResource"] = json!(sub);
        }
        json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request})
    }

    /// The body bytes.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_json()).expect("a Value serializes")
    }
}

fn pairs(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<String, Value>>(),
    )
}

impl Object {
    /// The object as the API server has it: `stored` adds what exists once an object is persisted.
    pub fn to_json(&self, kind: &Kind, namespace: &str, stored: bool) -> Value {
        let (_, _, kind_name, _) = kind.gvk();
        let api_version = kind.api_version();
        let mut meta = Map::new();
        if self.generate_name {
            meta.insert("generateName".into(), json!(format!("{}-", self.name)));
        } else {
            meta.insert("name".into(), json!(self.name));
        }
        if !namespace.is_empty() {
            meta.insert("namespace".into(), json!(namespace));
        }
        if stored {
            meta.insert("uid".into(), json!("7c4b2c3e-5a3f-4e39-a8a0-5f0e9e2f7d11"));
            meta.insert("resourceVersion".into(), json!("48213"));
            meta.insert("generation".into(), json!(1));
            meta.insert("creationTimestamp".into(), json!("2026-11-20T10:15:02Z"));
        }
        if self.deleting {
            meta.insert("deletionTimestamp".into(), json!("2026-11-20T10:20:00Z"));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        if !self.finalizers.is_empty() {
            meta.insert("finalizers".into(), json!(self.finalizers));
        }
        if !self.annotations.is_empty() {
            meta.insert("annotations".into(), pairs(&self.annotations));
        }
        meta.insert(
            "managedFields".into(),
            json!([{
                "manager": "helm",
                "operation": "Update",
                "apiVersion": api_version,
                "time": "2026-11-20T10:15:02Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:annotations": {}}}
            }]),
        );
        if let Some(labels) = &self.labels {
            meta.insert("labels".into(), pairs(labels));
        }
        let mut object = json!({"apiVersion": api_version, "kind": kind_name, "metadata": meta});
        let labels = self
            .labels
            .as_deref()
            .map(pairs)
            .unwrap_or_else(|| json!({}));
        match &self.spec {
            Spec::Absent => {}
            Spec::Pod(pod) => object["spec"] = pod.to_json(),
            Spec::Job(job) => object["spec"] = job.to_json(&labels),
            Spec::CronJob(job) => {
                object["spec"] = json!({
                    "schedule": "*/5 * * * *",
                    "concurrencyPolicy": "Allow",
                    "suspend": false,
                    "successfulJobsHistoryLimit": 3,
                    "failedJobsHistoryLimit": 1,
                    "jobTemplate": {"metadata": {}, "spec": job.to_json(&labels)}
                })
            }
            Spec::Raw(v) => object["spec"] = v.clone(),
        }
        if !matches!(kind, Kind::ConfigMap) {
            object["status"] = json!({});
        }
        object
    }
}

impl PodSpec {
    /// A defaulted pod spec (as in tests/fixtures/pod-test-create.json).
    pub fn to_json(&self) -> Value {
        let mut spec = Map::new();
        if let Some(rp) = &self.restart_policy {
            spec.insert("restartPolicy".into(), json!(rp));
        }
        spec.insert("terminationGracePeriodSeconds".into(), json!(30));
        spec.insert("dnsPolicy".into(), json!("ClusterFirst"));
        let mut security = Map::new();
        if let Some(v) = self.run_as_non_root {
            security.insert("runAsNonRoot".into(), json!(v));
        }
        spec.insert("securityContext".into(), Value::Object(security));
        spec.insert("schedulerName".into(), json!("default-scheduler"));
        for (field, value) in [
            ("hostNetwork", self.host_network),
            ("hostPID", self.host_pid),
            ("hostIPC", self.host_ipc),
        ] {
            if let Some(v) = value {
                spec.insert(field.into(), json!(v));
            }
        }
        let mounts: Vec<String> = self.volumes.iter().map(Volume::name).collect();
        let render = |list: &[Container]| -> Value {
            Value::Array(list.iter().map(|c| c.to_json(&mounts)).collect())
        };
        spec.insert("containers".into(), render(&self.containers));
        if !self.init_containers.is_empty() {
            spec.insert("initContainers".into(), render(&self.init_containers));
        }
        if !self.ephemeral_containers.is_empty() {
            spec.insert(
                "ephemeralContainers".into(),
                render(&self.ephemeral_containers),
            );
        }
        if !self.volumes.is_empty() {
            spec.insert(
                "volumes".into(),
                Value::Array(self.volumes.iter().map(Volume::to_json).collect()),
            );
        }
        spec.insert("serviceAccountName".into(), json!("default"));
        spec.insert("serviceAccount".into(), json!("default"));
        spec.insert("enableServiceLinks".into(), json!(true));
        spec.insert("preemptionPolicy".into(), json!("PreemptLowerPriority"));
        spec.insert("priority".into(), json!(0));
        spec.insert(
            "tolerations".into(),
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ]),
        );
        Value::Object(spec)
    }
}

impl Container {
    fn to_json(&self, mounts: &[String]) -> Value {
        let latest = self.image.ends_with(":latest") || !self.image.contains(':');
        let mut c = json!({
            "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": if latest { "Always" } else { "IfNotPresent" },
            "name": self.name,
            "image": self.image,
        });
        let mut security = Map::new();
        if let Some(v) = self.privileged {
            security.insert("privileged".into(), json!(v));
        }
        if let Some(v) = self.allow_privilege_escalation {
            security.insert("allowPrivilegeEscalation".into(), json!(v));
        }
        if !self.capabilities_add.is_empty() {
            security.insert(
                "capabilities".into(),
                json!({"add": self.capabilities_add, "drop": []}),
            );
        }
        if let Some(v) = self.windows_host_process {
            security.insert("windowsOptions".into(), json!({"hostProcess": v}));
        }
        if !security.is_empty() {
            c["securityContext"] = Value::Object(security);
        }
        if !self.host_ports.is_empty() {
            c["ports"] = Value::Array(
                self.host_ports
                    .iter()
                    .map(|p| json!({"containerPort": 8080, "hostPort": p, "protocol": "TCP"}))
                    .collect(),
            );
        }
        if !mounts.is_empty() {
            c["volumeMounts"] = Value::Array(
                mounts
                    .iter()
                    .enumerate()
                    .map(|(i, m)| json!({"name": m, "mountPath": format!("/mnt/{i}")}))
                    .collect(),
            );
        }
        c
    }
}

impl Volume {
    fn name(&self) -> String {
        match self {
            Volume::HostPath { name, .. }
            | Volume::EmptyDir { name }
            | Volume::ConfigMap { name, .. }
            | Volume::KubeApiAccess { name } => name.clone(),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Volume::HostPath { name, path } => {
                json!({"name": name, "hostPath": {"path": path, "type": ""}})
            }
            Volume::EmptyDir { name } => json!({"name": name, "emptyDir": {}}),
            Volume::ConfigMap { name, config_map } => {
                json!({"name": name, "configMap": {"name": config_map, "defaultMode": 420}})
            }
            Volume::KubeApiAccess { name } => json!({
                "name": name,
                "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ]}
            }),
        }
    }
}

impl JobSpec {
    /// A defaulted Job spec (as in tests/fixtures/job-migrate-create.json).
    pub fn to_json(&self, labels: &Value) -> Value {
        let mut spec = json!({
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": self.backoff_limit,
            "completionMode": "NonIndexed",
            "suspend": false,
            "manualSelector": false,
            "podReplacementPolicy": "TerminatingOrFailed",
        });
        if let Some(ttl) = self.ttl_seconds_after_finished {
            spec["ttlSecondsAfterFinished"] = json!(ttl);
        }
        if let Some(template) = &self.template {
            spec["template"] = json!({"metadata": {"labels": labels}, "spec": template.to_json()});
        }
        spec
    }
}

/// Checks what the design promises about a review beyond the per-answer invariants, knowing how it
/// was built: objects that are not hooks, CONNECT, subresources and exempt namespaces pass
/// untouched; DELETE is never denied nor mutated.
pub fn check_untouched(
    review: &Review,
    policy: &hookguard::policy::Policy,
    round: &crate::invariants::Round,
) {
    let untouched_why = if review.operation == Operation::Delete {
        Some("DELETE")
    } else if review.operation == Operation::Connect {
        Some("CONNECT")
    } else if review.subresource.as_deref().is_some_and(|s| !s.is_empty()) {
        Some("a subresource")
    } else if !review.object.as_ref().is_some_and(Object::is_hook) {
        Some("not a hook")
    } else if policy.namespace_is_exempt(&review.namespace) {
        Some("an exempt namespace")
    } else {
        None
    };
    if let Some(why) = untouched_why {
        assert!(
            round.statuses == [200, 200] && !round.patched && !round.denied,
            "{why}: must be allowed untouched, got {round:?}"
        );
    }
}

/// Checks the ratcheting promises (DESIGN.md, "Reliability promises"): an object being deleted
/// (`metadata.deletionTimestamp`) is never denied nor mutated, and an UPDATE that changes nothing
/// is never denied (every violation it has, `oldObject` already had).
pub fn check_ratcheting(review: &Review, round: &crate::invariants::Round) {
    let Some(object) = &review.object else {
        return;
    };
    if object.deleting {
        assert!(
            !round.patched && !round.denied,
            "an object being deleted must be neither mutated nor denied, got {round:?}"
        );
    }
    if review.operation == Operation::Update && review.old_object.as_ref() == Some(object) {
        assert!(
            !round.denied,
            "an UPDATE that changes nothing must not be denied, got {round:?}"
        );
    }
}

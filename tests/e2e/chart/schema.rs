//! Bad values (part of 11-chart-lint-render-and-schema): each is refused by the values schema or
//! by the chart's render checks, with an error that names the field, so a user learns what to
//! fix instead of getting a broken install.

use super::{NS, REL, set_args, template_args};
use crate::Env;
use crate::proc::{Result, ensure};

/// (values given with `--set`, what the error must name).
type Refused = (&'static [&'static str], &'static str);

/// Refused by the schema (or the render checks), naming the field.
const REFUSED: &[Refused] = &[
    (&["replicas=0"], "/replicas"),
    (
        &["policy.overrides[0].rules.image-tag=enforce"],
        "/policy/overrides/0",
    ),
    (
        &[
            "policy.overrides[0].namespaces[0]=a",
            "policy.overrides[0].rules.image-tag=deny",
        ],
        "/policy/overrides/0/rules/image-tag",
    ),
    (
        &[
            "policy.overrides[0].namespaceSelector.matchExpressions[0].key=a",
            "policy.overrides[0].namespaceSelector.matchExpressions[0].operator=Equals",
            "policy.overrides[0].rules.image-tag=warn",
        ],
        "/policy/overrides/0/namespaceSelector/matchExpressions/0/operator",
    ),
    (&["certs.mode=bogus"], "/certs/mode"),
    (
        &["webhook.validating.failurePolicy=Sometimes"],
        "/webhook/validating/failurePolicy",
    ),
    (
        &["webhook.mutating.failurePolicy=Never"],
        "/webhook/mutating/failurePolicy",
    ),
    (&["webhook.timeoutSeconds=0"], "/webhook/timeoutSeconds"),
    (&["webhook.timeoutSeconds=31"], "/webhook/timeoutSeconds"),
    (
        &["certs.mode=existingSecret", "certs.existingSecret=my-tls"],
        "/webhook/caBundle",
    ),
    (
        &["certs.mode=existingSecret", "webhook.caBundle=QUJD"],
        "/certs/existingSecret",
    ),
    (&["replica=1"], "'replica'"),
    (&["webhook.url=http://insecure:8443"], "/webhook/url"),
    (&["policy.rules.image-tag=deny"], "/policy/rules/image-tag"),
    (
        &["policy.jobTtl.floorSeconds=900"],
        "policy.jobTtl.floorSeconds (900) must not exceed",
    ),
    (
        &["podDisruptionBudget.minAvailable=2"],
        "podDisruptionBudget.minAvailable (2) must be below replicas",
    ),
    // The values of the Helm-generated certificates are gone, not silently ignored.
    (&["certs.selfManaged.caValidityDays=3650"], "caValidityDays"),
    (
        &["certs.selfManaged.servingValidity=30 days"],
        "/certs/selfManaged/servingValidity",
    ),
    (
        &["certs.selfManaged.servingRenewBefore=30d"],
        "certs.selfManaged.servingRenewBefore (30d) must be shorter than servingValidity (30d)",
    ),
    (
        &["certs.selfManaged.caRenewBefore=1y"],
        "/certs/selfManaged/caRenewBefore",
    ),
    (
        &["certs.selfManaged.caRenewBefore=400d"],
        "certs.selfManaged.caRenewBefore (400d) must be shorter than caValidity (365d)",
    ),
    (
        &[
            "metrics.prometheusRule.enabled=true",
            "metrics.prometheusRule.certExpiryDays=14",
        ],
        "metrics.prometheusRule.certExpiryDays (14) must be below certs.selfManaged.servingRenewBefore (10d)",
    ),
    (&["janitor.enabled=true"], "/janitor/namespaces"),
    (
        &["janitor.enabled=true", "janitor.namespaces={Team_A}"],
        "/janitor/namespaces/0",
    ),
    (
        &[
            "janitor.enabled=true",
            "janitor.namespaces={ci}",
            "inventory.enabled=false",
        ],
        "janitor.enabled needs inventory.enabled",
    ),
    (
        &["leaderElection.leaseDuration=15"],
        "/leaderElection/leaseDuration",
    ),
    (
        &["webhook.countDeletes.timeoutSeconds=0"],
        "/webhook/countDeletes/timeoutSeconds",
    ),
    // A DELETE webhook that fails closed is not a choice.
    (
        &["webhook.countDeletes.failurePolicy=Fail"],
        "'failurePolicy'",
    ),
    (&["webhook.clientCA.pem=QUJD"], "/webhook/clientCA/pem"),
    (
        &["webhook.clientCA.enabled=true"],
        "webhook.clientCA.enabled needs exactly one of",
    ),
    (
        &[
            "webhook.clientCA.enabled=true",
            "webhook.clientCA.existingSecret=a",
            "webhook.clientCA.existingConfigMap=b",
        ],
        "2 are set",
    ),
];

/// Refused with `--skip-schema-validation` too: the render checks explain what is missing.
const REFUSED_WITHOUT_SCHEMA: &[Refused] = &[
    (
        &["certs.mode=existingSecret", "certs.existingSecret=my-tls"],
        "certs.mode=existingSecret needs webhook.caBundle",
    ),
    (
        &["janitor.enabled=true"],
        "janitor.enabled needs janitor.namespaces",
    ),
    (
        &["webhook.clientCA.enabled=true"],
        "webhook.clientCA.enabled needs exactly one of",
    ),
];

pub(super) fn bad_values_are_rejected(env: &Env) -> Result<()> {
    for (values, needle) in REFUSED {
        rejected(env, &set_args(values), needle)?;
    }
    for (values, needle) in REFUSED_WITHOUT_SCHEMA {
        let args = [&["--skip-schema-validation"][..], &set_args(values)].concat();
        rejected(env, &args, needle)?;
    }
    Ok(())
}

/// Renders with bad values; the error must name `needle` (the field).
fn rejected(env: &Env, args: &[&str], needle: &str) -> Result<()> {
    let out = env.cluster.run("helm", &template_args(REL, NS, args), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(!out.status.success(), || {
        format!("helm template {} succeeded but must fail", args.join(" "))
    })?;
    ensure(stderr.contains(needle), || {
        format!(
            "helm template {}: error does not name {needle:?}: {stderr}",
            args.join(" ")
        )
    })?;
    eprintln!(
        "e2e:   rejected {}: {}",
        args.join(" "),
        stderr
            .lines()
            .filter(|l| l.contains(needle))
            .collect::<Vec<_>>()
            .join(" / ")
            .trim()
    );
    Ok(())
}

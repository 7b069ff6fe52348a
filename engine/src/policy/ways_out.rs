//! What can be done about a denial without changing the chart. The person who meets a denial is
//! often not the chart's author (a vendor chart whose upgrade hook must run privileged): besides
//! the fix in the chart, every denial names the platform's two levers, ready to use: an override
//! of the rule's mode for that namespace in hookguard's policy, and a HookPolicyException that
//! names the rule, the namespace, the release and the object.

use serde_json::json;

use super::Policy;

/// The object a denial is about.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    /// `""` when it is not known (a manifest without a namespace, read offline).
    pub namespace: &'a str,
    /// The Helm release, from the object's `app.kubernetes.io/instance` label.
    pub release: Option<&'a str>,
}

/// The ways out of the denials by `rules` (ids of enforced rules) on `subject`, one per item,
/// each complete on its own (a policy snippet, an object to apply).
pub fn ways_out(policy: &Policy, rules: &[&str], subject: &Subject<'_>) -> Vec<String> {
    if rules.is_empty() {
        return Vec::new();
    }
    let namespace = if subject.namespace.is_empty() {
        "NAMESPACE"
    } else {
        subject.namespace
    };
    let modes: serde_json::Map<String, serde_json::Value> = rules
        .iter()
        .map(|r| ((*r).to_owned(), json!("warn")))
        .collect();
    let override_snippet = json!({"namespaces": [namespace], "rules": modes});
    let mut out = vec![format!(
        "the platform can make {} a warning in namespace {namespace:?} with an override in \
         hookguard's policy: overrides: [{override_snippet}]",
        if rules.len() == 1 { "it" } else { "them" },
    )];

    let mut matches = serde_json::Map::new();
    matches.insert("namespaces".into(), json!([namespace]));
    if let Some(release) = subject.release {
        matches.insert("releases".into(), json!([release]));
    }
    if !subject.name.is_empty() {
        matches.insert("names".into(), json!([subject.name]));
    }
    let exception = json!({
        "apiVersion": "hookguard.io/v1alpha1",
        "kind": "HookPolicyException",
        "metadata": {
            "name": exception_name(subject.release.unwrap_or(subject.name), rules[0]),
            "namespace": policy.exception_namespace_hint().unwrap_or("hookguard"),
        },
        "spec": {
            "rules": rules,
            "match": matches,
            "reason": format!("why this {} may break {}", subject.kind, rules.join(", ")),
        },
    });
    out.push(format!(
        "or grant a HookPolicyException in a namespace the policy trusts for exceptions \
         (kubectl apply -f - with: {exception})"
    ));
    out
}

/// A valid object name (DNS-1123 subdomain label) for the suggested exception.
fn exception_name(base: &str, rule: &str) -> String {
    let mut name: String = format!("{base}-{rule}")
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .collect();
    name.truncate(63);
    let trimmed = name.trim_matches('-');
    if trimmed.is_empty() {
        "hook-exception".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Config;

    #[test]
    fn names_an_override_and_a_ready_exception_for_the_release() {
        let policy = Config::from_yaml("exceptions: {namespaces: [platform]}\n").unwrap();
        let subject = Subject {
            kind: "Job",
            name: "cni-upgrade",
            namespace: "net",
            release: Some("cni"),
        };
        let ways = ways_out(&policy, &["pod-security"], &subject);
        assert_eq!(ways.len(), 2);
        assert!(
            ways[0].ends_with(
                r#"overrides: [{"namespaces":["net"],"rules":{"pod-security":"warn"}}]"#
            ),
            "{}",
            ways[0]
        );
        let json = ways[1]
            .split_once("with: ")
            .map(|(_, j)| j.trim_end_matches(')'))
            .unwrap();
        let exception: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(exception["metadata"]["namespace"], "platform");
        assert_eq!(exception["metadata"]["name"], "cni-pod-security");
        assert_eq!(exception["spec"]["match"]["releases"][0], "cni");
        assert_eq!(exception["spec"]["match"]["names"][0], "cni-upgrade");
        // What the API server would accept as the CRD's spec, and the engine as an exception.
        let spec: crate::policy::ExceptionSpec =
            serde_json::from_value(exception["spec"].clone()).unwrap();
        crate::policy::Exception::new("platform", "x", &spec, None).unwrap();
    }

    #[test]
    fn without_a_release_label_or_namespace_the_exception_still_validates() {
        let ways = ways_out(
            &Policy::default(),
            &["hook-kind-long-running", "pod-security"],
            &Subject {
                kind: "Deployment",
                name: "Weird_Name",
                namespace: "",
                release: None,
            },
        );
        assert!(ways[0].contains("\"NAMESPACE\""), "{}", ways[0]);
        assert!(ways[1].contains("\"name\":\"weird-name-hook-kind-long-running\""));
        assert!(!ways[1].contains("releases"));
        assert!(
            ways_out(
                &Policy::default(),
                &[],
                &Subject {
                    kind: "Job",
                    name: "x",
                    namespace: "y",
                    release: None
                }
            )
            .is_empty()
        );
    }
}

//! Warn about hook images without a pinned version: untagged (means `:latest`) or a mutable tag.

use crate::policy::{Context, Mode, Problems, Rule, RuleInfo, Violation, echo};

pub struct ImageTag;

/// The tag of an image reference, `None` when untagged; digests count as pinned (`Some("@")`).
fn tag_of(image: &str) -> Option<&str> {
    if image.contains('@') {
        return Some("@");
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    last.rsplit_once(':').map(|(_, tag)| tag)
}

impl Rule for ImageTag {
    fn info(&self) -> RuleInfo {
        RuleInfo {
            id: "image-tag",
            default_mode: Mode::Warn,
            mutates: false,
            security: false,
            summary: "hook container image is untagged or uses a mutable tag such as :latest",
        }
    }

    fn check(&self, ctx: &Context<'_, '_>) -> Option<Violation> {
        let (spec, _) = ctx.workload.pod_spec()?;
        let cfg = &ctx.policy.config().image_tag;
        let mut problems = Problems::new();
        for (_, c) in spec.all_containers() {
            let Some(image) = c.image.as_deref() else {
                continue;
            };
            let name = c.name.as_deref().unwrap_or_default();
            match tag_of(image) {
                None if cfg.require_tag => problems.push_with(|| {
                    format!(
                        "container {} image {} has no tag (means :latest)",
                        echo(name),
                        echo(image)
                    )
                }),
                Some(tag) if cfg.mutable_tags.iter().any(|m| m == tag) => {
                    problems.push_with(|| {
                        format!(
                            "container {} image {} uses mutable tag {tag:?}",
                            echo(name),
                            echo(image)
                        )
                    })
                }
                _ => {}
            }
        }
        Violation::listing(problems, |list| {
            format!("{list}: pin a version tag or a digest so the hook runs what you tested")
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::tag_of;
    use crate::policy::rules::testing::*;

    const HOOK: &str = r#""helm.sh/hook": "test""#;

    #[test]
    fn tags_are_read_from_the_last_path_component() {
        assert_eq!(tag_of("curl"), None);
        assert_eq!(tag_of("curlimages/curl:latest"), Some("latest"));
        assert_eq!(tag_of("registry:5000/team/curl"), None);
        assert_eq!(tag_of("registry:5000/team/curl:8.10.1"), Some("8.10.1"));
        assert_eq!(tag_of("curl@sha256:abcd"), Some("@"));
    }

    #[test]
    fn latest_warns_and_allows() {
        let j = with(
            &job(HOOK, "Never"),
            "/spec/template/spec/containers/0/image",
            json!("curlimages/curl:latest"),
        );
        let d = judge(&j);
        assert!(d.allowed());
        assert!(warning(&d, "image-tag").contains("mutable tag \"latest\""));
    }

    #[test]
    fn untagged_warns_pinned_passes() {
        let p = with(
            &pod(HOOK, "Never"),
            "/spec/containers/0/image",
            json!("busybox"),
        );
        assert!(warning(&judge(&p), "image-tag").contains("has no tag"));
        let p = with(
            &pod(HOOK, "Never"),
            "/spec/containers/0/image",
            json!("busybox@sha256:0123"),
        );
        assert!(!fired(&judge(&p), "image-tag"));
    }

    #[test]
    fn enforce_mode_denies() {
        let policy = crate::policy::Config::from_yaml("rules:\n  image-tag: enforce\n").unwrap();
        let p = with(
            &pod(HOOK, "Never"),
            "/spec/containers/0/image",
            json!("busybox:latest"),
        );
        let d = judge_with(&policy, &p, crate::policy::Operation::Create);
        assert!(!d.allowed());
    }
}

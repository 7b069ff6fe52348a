//! Deny unknown hook events: Helm silently drops the whole object, other clients apply it.

use crate::hook::HookEvent;
use crate::policy::did_you_mean::closest;
use crate::policy::{Context, Mode, Rule, RuleInfo, Violation};

pub struct HookEventUnknown;

const VALID: &str = "pre-install, post-install, pre-upgrade, post-upgrade, pre-delete, post-delete, pre-rollback, post-rollback, test";

impl Rule for HookEventUnknown {
    fn info(&self) -> RuleInfo {
        RuleInfo {
            id: "hook-event-unknown",
            default_mode: Mode::Enforce,
            mutates: false,
            summary: "helm.sh/hook names an event Helm does not know (typo, crd-install, empty)",
        }
    }

    fn check(&self, ctx: &Context<'_, '_>) -> Option<Violation> {
        let problems: Vec<String> = ctx
            .hook
            .events
            .iter()
            .filter(|e| e.known.is_none())
            .map(|e| match e.text.as_str() {
                "crd-install" => "\"crd-install\" is a Helm 2 hook that Helm 3 and 4 do not know; \
                     move the CRD into the chart's crds/ directory and drop the annotation"
                    .to_owned(),
                "" => "an empty event (check for a stray comma or an empty value)".to_owned(),
                other => {
                    let spellings = HookEvent::SPELLINGS.iter().map(|(s, _)| *s);
                    match closest(other, spellings) {
                        Some(near) => format!("unknown event {other:?}; did you mean {near:?}?"),
                        None => format!("unknown event {other:?}"),
                    }
                }
            })
            .collect();
        if problems.is_empty() {
            return None;
        }
        Some(Violation::new(format!(
            "helm.sh/hook has {}. Helm silently drops an object with an unknown hook event, \
             so this hook would never run; valid events: {VALID}",
            problems.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::rules::testing::*;

    #[test]
    fn typo_is_denied_with_suggestion() {
        let d = judge(&job(r#""helm.sh/hook": "pre-instal""#, ""));
        let msg = denial(&d, "hook-event-unknown");
        assert!(msg.contains("did you mean \"pre-install\""), "{msg}");
    }

    #[test]
    fn crd_install_explains_helm_2() {
        let d = judge(&job(r#""helm.sh/hook": "crd-install""#, ""));
        assert!(denial(&d, "hook-event-unknown").contains("crds/ directory"));
    }

    #[test]
    fn empty_and_trailing_comma_are_denied() {
        for v in ["", "pre-install,"] {
            let d = judge(&job(&format!(r#""helm.sh/hook": "{v}""#), ""));
            assert!(denial(&d, "hook-event-unknown").contains("empty event"));
        }
    }

    #[test]
    fn messy_but_valid_list_passes() {
        let d = judge(&job(
            r#""helm.sh/hook": " Pre-Install , POST-upgrade ""#,
            "",
        ));
        assert!(!fired(&d, "hook-event-unknown"));
        let d = judge(&job(r#""helm.sh/hook": "test-success""#, ""));
        assert!(!fired(&d, "hook-event-unknown"));
    }
}

//! Deny unknown hook events: Helm silently drops the whole object, other clients apply it.

use crate::hook::HookEvent;
use crate::policy::did_you_mean::closest;
use crate::policy::{Context, Mode, Problems, Rule, RuleInfo, Violation};

pub struct HookEventUnknown;

const VALID: &str = "pre-install, post-install, pre-upgrade, post-upgrade, pre-delete, post-delete, pre-rollback, post-rollback, test";

impl Rule for HookEventUnknown {
    fn info(&self) -> RuleInfo {
        RuleInfo {
            id: "hook-event-unknown",
            default_mode: Mode::Enforce,
            mutates: false,
            security: false,
            summary: "helm.sh/hook names an event Helm does not know (typo, crd-install, empty)",
        }
    }

    fn check(&self, ctx: &Context<'_, '_>) -> Option<Violation> {
        let events = &ctx.hook.events;
        let mut problems = Problems::new();
        for item in &events.unknown {
            problems.push_with(|| match item.text.as_str() {
                "crd-install" => "\"crd-install\" is a Helm 2 hook that Helm 3 and 4 do not know; \
                     move the CRD into the chart's crds/ directory and drop the annotation"
                    .to_owned(),
                "" => "an empty event (check for a stray comma or an empty value)".to_owned(),
                // Too long to be a typo of any event: no suggestion (and no edit distance).
                _ if item.is_truncated() => format!("unknown event {item}"),
                other => {
                    let spellings = HookEvent::SPELLINGS.iter().map(|(s, _)| *s);
                    match closest(other, spellings) {
                        Some(near) => format!("unknown event {item}; did you mean {near:?}?"),
                        None => format!("unknown event {item}"),
                    }
                }
            });
        }
        problems.add_not_shown(events.unknown_not_kept);
        Violation::listing(problems, |list| {
            format!(
                "helm.sh/hook has {list}. Helm silently drops an object with an unknown hook event, \
                 so this hook would never run; valid events: {VALID}"
            )
        })
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
    fn eighty_thousand_unknown_items_give_a_short_message() {
        let value = "ab,".repeat(40_000) + &"xy,".repeat(40_000) + "pre-instal";
        let d = judge(&job(&format!(r#""helm.sh/hook": "{value}""#), ""));
        let msg = denial(&d, "hook-event-unknown");
        assert!(msg.len() < 1024, "{} bytes", msg.len());
        assert!(
            msg.contains("unknown event \"ab\"; unknown event \"xy\""),
            "{msg}"
        );
        assert!(msg.contains("did you mean \"pre-install\""), "{msg}");
        let many: String = (0..10_000).map(|i| format!("e{i},")).collect();
        let d = judge(&job(&format!(r#""helm.sh/hook": "{many}""#), ""));
        let msg = denial(&d, "hook-event-unknown");
        assert!(msg.contains("and 9996 more"), "{msg}");
    }

    #[test]
    fn a_huge_single_value_is_cut_and_not_edit_distanced() {
        let value = "q".repeat(250_000);
        let d = judge(&job(&format!(r#""helm.sh/hook": "{value}""#), ""));
        let msg = denial(&d, "hook-event-unknown");
        assert!(msg.contains("(250000 bytes)"), "{msg}");
        assert!(!msg.contains("did you mean"), "{msg}");
        assert!(msg.len() < 1024, "{} bytes", msg.len());
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

//! Deny hook weights Helm cannot parse: Go's `strconv.Atoi` fails and Helm silently uses 0.

use crate::hook::Weight;
use crate::policy::{Context, Mode, Rule, RuleInfo, Violation};

pub struct HookWeightInvalid;

impl Rule for HookWeightInvalid {
    fn info(&self) -> RuleInfo {
        RuleInfo {
            id: "hook-weight-invalid",
            default_mode: Mode::Enforce,
            mutates: false,
            security: false,
            summary: "helm.sh/hook-weight is not an integer Helm can parse (Helm silently uses 0)",
        }
    }

    fn check(&self, ctx: &Context<'_, '_>) -> Option<Violation> {
        let weight = ctx.hook.weight.as_ref()?;
        if weight.weight != Weight::Invalid {
            return None;
        }
        let (shown, fix) = if weight.len > weight.text.len() {
            (
                format!("{:?}... ({} bytes)", weight.text, weight.len),
                "0".to_owned(),
            )
        } else {
            (format!("{:?}", weight.text), suggestion(&weight.text))
        };
        Some(Violation::new(format!(
            "helm.sh/hook-weight {shown} is not an integer Helm can parse (Go strconv.Atoi: \
             optional sign and digits only, no spaces or decimals), so Helm silently orders this \
             hook with weight 0; write it as {fix:?}"
        )))
    }
}

/// What the author most likely meant: `" 5"` → `"5"`, `"5.0"` → `"5"`, otherwise `"0"`.
fn suggestion(raw: &str) -> String {
    let trimmed = raw.trim().trim_matches(['"', '\'']);
    if let Weight::Valid(n) = Weight::parse(trimmed) {
        return n.to_string();
    }
    match trimmed.parse::<f64>() {
        Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => "0".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::rules::testing::*;

    fn weighted(w: &str) -> String {
        job(
            &format!(r#""helm.sh/hook": "pre-install", "helm.sh/hook-weight": "{w}""#),
            "",
        )
    }

    #[test]
    fn plus_five_and_minus_five_are_valid() {
        for w in ["+5", "-5", "0", "10"] {
            assert!(!fired(&judge(&weighted(w)), "hook-weight-invalid"), "{w}");
        }
    }

    #[test]
    fn decimal_and_spaces_are_denied_with_the_fix() {
        let msg = denial(&judge(&weighted("5.0")), "hook-weight-invalid");
        assert!(msg.contains("write it as \"5\""), "{msg}");
        let msg = denial(&judge(&weighted(" 5")), "hook-weight-invalid");
        assert!(msg.contains("write it as \"5\""), "{msg}");
        let msg = denial(&judge(&weighted("abc")), "hook-weight-invalid");
        assert!(msg.contains("write it as \"0\""), "{msg}");
    }

    #[test]
    fn a_huge_weight_is_echoed_cut() {
        let msg = denial(
            &judge(&weighted(&"9".repeat(250_000))),
            "hook-weight-invalid",
        );
        assert!(msg.contains("(250000 bytes)"), "{msg}");
        assert!(msg.len() < 1024, "{} bytes", msg.len());
    }

    #[test]
    fn absent_weight_is_fine() {
        assert!(!fired(
            &judge(&job(r#""helm.sh/hook": "pre-install""#, "")),
            "hook-weight-invalid"
        ));
    }
}

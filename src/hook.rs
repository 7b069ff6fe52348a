//! Helm hook annotations, parsed exactly the way Helm parses them.
//!
//! Helm (`pkg/release/v1/util/manifest_sorter.go`, `pkg/action/hooks.go`) splits every list on `,`,
//! trims each item and lower-cases it. An unknown hook event makes Helm silently drop the whole object;
//! delete and log policies are stored without validation; the weight goes through Go's
//! `strconv.Atoi` and any error silently becomes 0.

use std::borrow::Cow;
use std::fmt;

/// `helm.sh/hook`
pub const HOOK_ANNOTATION: &str = "helm.sh/hook";
/// `helm.sh/hook-weight`
pub const WEIGHT_ANNOTATION: &str = "helm.sh/hook-weight";
/// `helm.sh/hook-delete-policy`
pub const DELETE_POLICY_ANNOTATION: &str = "helm.sh/hook-delete-policy";
/// `helm.sh/hook-output-log-policy`
pub const OUTPUT_LOG_POLICY_ANNOTATION: &str = "helm.sh/hook-output-log-policy";

/// A hook event Helm knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookEvent {
    PreInstall,
    PostInstall,
    PreDelete,
    PostDelete,
    PreUpgrade,
    PostUpgrade,
    PreRollback,
    PostRollback,
    Test,
}

impl HookEvent {
    /// Every spelling Helm accepts, with the event it maps to (`test-success` is an alias of `test`).
    pub const SPELLINGS: &'static [(&'static str, HookEvent)] = &[
        ("pre-install", HookEvent::PreInstall),
        ("post-install", HookEvent::PostInstall),
        ("pre-delete", HookEvent::PreDelete),
        ("post-delete", HookEvent::PostDelete),
        ("pre-upgrade", HookEvent::PreUpgrade),
        ("post-upgrade", HookEvent::PostUpgrade),
        ("pre-rollback", HookEvent::PreRollback),
        ("post-rollback", HookEvent::PostRollback),
        ("test", HookEvent::Test),
        ("test-success", HookEvent::Test),
    ];

    /// Parses one already trimmed and lower-cased item.
    pub fn from_normalized(item: &str) -> Option<Self> {
        Self::SPELLINGS
            .iter()
            .find(|(spelling, _)| *spelling == item)
            .map(|(_, event)| *event)
    }

    /// The canonical spelling (used as a metric label value).
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::PreInstall => "pre-install",
            HookEvent::PostInstall => "post-install",
            HookEvent::PreDelete => "pre-delete",
            HookEvent::PostDelete => "post-delete",
            HookEvent::PreUpgrade => "pre-upgrade",
            HookEvent::PostUpgrade => "post-upgrade",
            HookEvent::PreRollback => "pre-rollback",
            HookEvent::PostRollback => "post-rollback",
            HookEvent::Test => "test",
        }
    }
}

impl fmt::Display for HookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delete policy Helm acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeletePolicy {
    BeforeHookCreation,
    HookSucceeded,
    HookFailed,
}

impl DeletePolicy {
    pub const ALL: &'static [DeletePolicy] = &[
        DeletePolicy::BeforeHookCreation,
        DeletePolicy::HookSucceeded,
        DeletePolicy::HookFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeletePolicy::BeforeHookCreation => "before-hook-creation",
            DeletePolicy::HookSucceeded => "hook-succeeded",
            DeletePolicy::HookFailed => "hook-failed",
        }
    }

    pub fn from_normalized(item: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.as_str() == item)
    }
}

/// An output-log policy (Helm >= 3.18 and 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputLogPolicy {
    HookSucceeded,
    HookFailed,
}

impl OutputLogPolicy {
    pub fn from_normalized(item: &str) -> Option<Self> {
        match item {
            "hook-succeeded" => Some(OutputLogPolicy::HookSucceeded),
            "hook-failed" => Some(OutputLogPolicy::HookFailed),
            _ => None,
        }
    }
}

/// At most this many distinct unknown items are kept per list (for messages and ratcheting); the
/// others are only counted. Real hook annotations hold a handful of items; a forged one may hold a
/// million, and each kept item costs memory and message bytes.
pub const MAX_KEPT_UNKNOWN: usize = 8;

/// Items (and weights) longer than this many bytes are kept truncated: no spelling Helm knows is
/// this long, so such an item is unknown whatever its tail says.
pub const MAX_ITEM_BYTES: usize = 64;

/// An item Helm does not know, as Helm ends up with it (trimmed, lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownItem {
    /// The normalized text, or its first [`MAX_ITEM_BYTES`] when `len` is larger.
    pub text: String,
    /// Length in bytes of the trimmed item before normalizing.
    pub len: usize,
}

impl UnknownItem {
    /// Whether `text` is only the beginning of the item.
    pub fn is_truncated(&self) -> bool {
        self.len > MAX_ITEM_BYTES
    }
}

impl fmt::Display for UnknownItem {
    /// Quoted like `{:?}`, with a note of the length when truncated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_truncated() {
            write!(f, "{:?}... ({} bytes)", self.text, self.len)
        } else {
            write!(f, "{:?}", self.text)
        }
    }
}

/// One comma list, parsed the way Helm parses it, in bounded memory: the known values (each at
/// most once) and the first few distinct unknown items, whatever the length of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookList<T> {
    /// Known values, deduplicated, in first-seen order.
    pub known: Vec<T>,
    /// Distinct unknown items, first seen first, at most [`MAX_KEPT_UNKNOWN`].
    pub unknown: Vec<UnknownItem>,
    /// Unknown items that are not among `unknown` (found after it was full).
    pub unknown_not_kept: usize,
}

impl<T> HookList<T> {
    pub fn has_unknown(&self) -> bool {
        !self.unknown.is_empty()
    }
}

/// Splits an annotation value the way Helm does: on `,`, each item trimmed and lower-cased.
/// An empty value yields one empty item, as Go's `strings.Split("", ",")` does.
pub fn split_helm_list(value: &str) -> impl Iterator<Item = Cow<'_, str>> + '_ {
    value.split(',').map(|item| go_lower(item.trim()))
}

/// Go's `strings.ToLower`: every rune through `unicode.ToLower`, the simple (one rune to one
/// rune) mapping. Rust's `to_lowercase` uses the full mapping, which differs for U+0130 (Go: `i`,
/// Rust: `i` plus a combining dot). Borrows when nothing changes, the common case.
pub fn go_lower(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| match c {
                '\u{130}' => 'i',
                c => c.to_lowercase().next().unwrap_or(c),
            })
            .collect(),
    )
}

/// The first `max` bytes of `s`, cut at a character boundary.
pub fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn parse_list<T: Copy + PartialEq>(value: &str, known: impl Fn(&str) -> Option<T>) -> HookList<T> {
    let mut list = HookList {
        known: Vec::new(),
        unknown: Vec::new(),
        unknown_not_kept: 0,
    };
    for raw in value.split(',') {
        let raw = raw.trim();
        let (text, len) = if raw.len() > MAX_ITEM_BYTES {
            (go_lower(truncate_str(raw, MAX_ITEM_BYTES)), raw.len())
        } else {
            let text = go_lower(raw);
            if let Some(k) = known(&text) {
                if !list.known.contains(&k) {
                    list.known.push(k);
                }
                continue;
            }
            (text, raw.len())
        };
        if list
            .unknown
            .iter()
            .any(|u| u.len == len && u.text == text.as_ref())
        {
            continue;
        }
        if list.unknown.len() < MAX_KEPT_UNKNOWN {
            list.unknown.push(UnknownItem {
                text: text.into_owned(),
                len,
            });
        } else {
            list.unknown_not_kept += 1;
        }
    }
    list
}

/// The result of parsing `helm.sh/hook-weight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// Parsed by Go's `strconv.Atoi`.
    Valid(i64),
    /// `strconv.Atoi` fails: Helm silently uses 0.
    Invalid,
}

impl Weight {
    /// Go's `strconv.Atoi` on a 64-bit platform: optional `+`/`-`, then decimal digits, no spaces,
    /// no underscores, must fit in an `int`. Rust's `i64` parser accepts exactly that language.
    pub fn parse(value: &str) -> Self {
        match value.parse::<i64>() {
            Ok(n) => Weight::Valid(n),
            Err(_) => Weight::Invalid,
        }
    }

    /// The weight Helm orders by.
    pub fn effective(self) -> i64 {
        match self {
            Weight::Valid(n) => n,
            Weight::Invalid => 0,
        }
    }
}

/// `helm.sh/hook-weight` as written (at most [`MAX_ITEM_BYTES`] of it) and as Helm reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightAnnotation {
    /// The value, or its first [`MAX_ITEM_BYTES`] when `len` is larger.
    pub text: String,
    /// Length of the value in bytes.
    pub len: usize,
    pub weight: Weight,
}

/// The Helm hook annotations of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookAnnotations {
    pub events: HookList<HookEvent>,
    /// `None` when the annotation is absent.
    pub weight: Option<WeightAnnotation>,
    /// `None` when the annotation is absent.
    pub delete_policies: Option<HookList<DeletePolicy>>,
    /// `None` when the annotation is absent.
    pub output_log_policies: Option<HookList<OutputLogPolicy>>,
}

impl HookAnnotations {
    /// Parses the annotations; `None` when the object carries no `helm.sh/hook` (not a hook).
    pub fn parse(
        hook: Option<&str>,
        weight: Option<&str>,
        delete_policy: Option<&str>,
        output_log_policy: Option<&str>,
    ) -> Option<Self> {
        let hook = hook?;
        Some(HookAnnotations {
            events: parse_list(hook, HookEvent::from_normalized),
            weight: weight.map(|w| WeightAnnotation {
                text: truncate_str(w, MAX_ITEM_BYTES).to_owned(),
                len: w.len(),
                weight: Weight::parse(w),
            }),
            delete_policies: delete_policy.map(|v| parse_list(v, DeletePolicy::from_normalized)),
            output_log_policies: output_log_policy
                .map(|v| parse_list(v, OutputLogPolicy::from_normalized)),
        })
    }

    /// Helm drops the whole object when any event is unknown.
    pub fn helm_drops_object(&self) -> bool {
        self.events.has_unknown()
    }

    /// The known events, deduplicated, in canonical order.
    pub fn known_events(&self) -> Vec<HookEvent> {
        let mut events = self.events.known.clone();
        events.sort();
        events
    }

    /// The delete policies Helm will apply: its default (`before-hook-creation`) only when the
    /// list is empty, i.e. the annotation is absent. A present list of unknown values disables it.
    pub fn effective_delete_policies(&self) -> Vec<DeletePolicy> {
        match &self.delete_policies {
            None => vec![DeletePolicy::BeforeHookCreation],
            Some(list) => list.known.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messy_event_list_is_trimmed_and_lower_cased() {
        let h =
            HookAnnotations::parse(Some(" Pre-Install , POST-upgrade "), None, None, None).unwrap();
        assert_eq!(
            h.known_events(),
            vec![HookEvent::PreInstall, HookEvent::PostUpgrade]
        );
        assert!(!h.helm_drops_object());
    }

    #[test]
    fn lower_casing_follows_go() {
        assert_eq!(go_lower("Pre-Install"), "pre-install");
        // Go maps U+0130 to "i"; Rust's full mapping would add a combining dot.
        assert_eq!(go_lower("pre-\u{130}nstall"), "pre-install");
        // The Kelvin sign lower-cases to k in both.
        assert_eq!(go_lower("\u{212A}"), "k");
        let h = HookAnnotations::parse(Some("PRE-\u{130}NSTALL"), None, None, None).unwrap();
        assert_eq!(h.known_events(), vec![HookEvent::PreInstall]);
    }

    #[test]
    fn huge_lists_are_kept_bounded() {
        let value = "ab,".repeat(1_000_000) + "pre-install," + &"x".repeat(5_000);
        let h = HookAnnotations::parse(Some(&value), None, None, None).unwrap();
        assert_eq!(h.known_events(), vec![HookEvent::PreInstall]);
        assert_eq!(h.events.unknown.len(), 2, "{:?}", h.events.unknown);
        assert_eq!(h.events.unknown[0].text, "ab");
        assert!(h.events.unknown[1].is_truncated());
        assert_eq!(h.events.unknown[1].len, 5_000);
        assert_eq!(h.events.unknown_not_kept, 0);
        let many: String = (0..1000).map(|i| format!("e{i},")).collect();
        let h = HookAnnotations::parse(Some("pre-install"), None, Some(&many), None).unwrap();
        let list = h.delete_policies.unwrap();
        assert_eq!(list.unknown.len(), MAX_KEPT_UNKNOWN);
        // 1000 distinct values and the empty item after the last comma.
        assert_eq!(list.unknown_not_kept, 1001 - MAX_KEPT_UNKNOWN);
    }

    #[test]
    fn test_success_is_an_alias_of_test() {
        let h = HookAnnotations::parse(Some("test-success"), None, None, None).unwrap();
        assert_eq!(h.known_events(), vec![HookEvent::Test]);
    }

    #[test]
    fn unknown_events_make_helm_drop_the_object() {
        for value in [
            "crd-install",
            "test-failure",
            "",
            "pre-instal",
            "pre-install,",
        ] {
            let h = HookAnnotations::parse(Some(value), None, None, None).unwrap();
            assert!(h.helm_drops_object(), "{value:?}");
        }
    }

    #[test]
    fn no_hook_annotation_is_not_a_hook() {
        assert!(HookAnnotations::parse(None, Some("5"), None, None).is_none());
    }

    #[test]
    fn weights_follow_go_atoi() {
        assert_eq!(Weight::parse("+5"), Weight::Valid(5));
        assert_eq!(Weight::parse("-5"), Weight::Valid(-5));
        assert_eq!(Weight::parse("007"), Weight::Valid(7));
        assert_eq!(
            Weight::parse("-9223372036854775808"),
            Weight::Valid(i64::MIN)
        );
        for bad in [
            "5.0",
            " 5",
            "5 ",
            "abc",
            "",
            "+",
            "-",
            "1_000",
            "0x10",
            "9223372036854775808",
            "+-5",
        ] {
            assert_eq!(Weight::parse(bad), Weight::Invalid, "{bad:?}");
            assert_eq!(Weight::parse(bad).effective(), 0);
        }
    }

    #[test]
    fn delete_policy_default_only_when_absent() {
        let absent = HookAnnotations::parse(Some("pre-install"), None, None, None).unwrap();
        assert_eq!(
            absent.effective_delete_policies(),
            vec![DeletePolicy::BeforeHookCreation]
        );
        let typo = HookAnnotations::parse(
            Some("pre-install"),
            None,
            Some("before-hook-creations"),
            None,
        )
        .unwrap();
        assert!(typo.effective_delete_policies().is_empty());
        let empty = HookAnnotations::parse(Some("pre-install"), None, Some(""), None).unwrap();
        assert!(empty.effective_delete_policies().is_empty());
        let kyverno = HookAnnotations::parse(
            Some("post-upgrade"),
            None,
            Some("before-hook-creation,hook-succeeded,hook-failed"),
            None,
        )
        .unwrap();
        assert_eq!(kyverno.effective_delete_policies().len(), 3);
    }
}

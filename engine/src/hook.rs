//! Helm hook annotations, parsed exactly the way Helm parses them.
//!
//! Helm (`pkg/release/v1/util/manifest_sorter.go`, `pkg/action/hooks.go`) splits every list on `,`,
//! trims each item and lower-cases it. An unknown hook event makes Helm silently drop the whole object;
//! delete and log policies are stored without validation; the weight goes through Go's
//! `strconv.Atoi` and any error silently becomes 0.

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

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

    /// Every spelling Helm accepts, with the policy it maps to.
    pub const SPELLINGS: &'static [(&'static str, DeletePolicy)] = &[
        ("before-hook-creation", DeletePolicy::BeforeHookCreation),
        ("hook-succeeded", DeletePolicy::HookSucceeded),
        ("hook-failed", DeletePolicy::HookFailed),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeletePolicy::BeforeHookCreation => "before-hook-creation",
            DeletePolicy::HookSucceeded => "hook-succeeded",
            DeletePolicy::HookFailed => "hook-failed",
        }
    }
}

/// An output-log policy (Helm >= 3.18 and 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputLogPolicy {
    HookSucceeded,
    HookFailed,
}

impl OutputLogPolicy {
    /// Every spelling Helm accepts, with the policy it maps to.
    pub const SPELLINGS: &'static [(&'static str, OutputLogPolicy)] = &[
        ("hook-succeeded", OutputLogPolicy::HookSucceeded),
        ("hook-failed", OutputLogPolicy::HookFailed),
    ];
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

/// Longest item compared as a [`ShortKey`]: every spelling Helm knows is at most 20 bytes.
const MAX_SHORT_KEY_BYTES: usize = 23;

/// An ASCII item of at most [`MAX_SHORT_KEY_BYTES`], lower-cased and packed with its length (the
/// last byte) into three words, so that matching it against the spellings and the kept items is
/// a few integer comparisons instead of string comparisons: a forged list has millions of items.
type ShortKey = [u64; 3];

/// The key of `item` as Go lower-cases it, or `None` when it is too long or not ASCII.
fn short_key(item: &[u8]) -> Option<ShortKey> {
    if item.len() > MAX_SHORT_KEY_BYTES {
        return None;
    }
    let mut key: ShortKey = [0; 3];
    for (word, chunk) in key.iter_mut().zip(item.chunks(8)) {
        let mut x = 0u64;
        for (i, &b) in chunk.iter().enumerate() {
            x |= u64::from(b) << (8 * i);
        }
        if x & HIGH_BITS != 0 {
            return None;
        }
        *word = ascii_lower_word(x);
    }
    key[2] |= (item.len() as u64) << 56;
    Some(key)
}

const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
const ONES: u64 = 0x0101_0101_0101_0101;

/// ASCII lower-casing of eight bytes at once (each below 0x80): bit 0x20 is set in every byte
/// from `A` to `Z`. Adding to a byte below 0x80 cannot carry into the next one.
fn ascii_lower_word(x: u64) -> u64 {
    let at_least_a = x + (0x80 - u64::from(b'A')) * ONES;
    let above_z = x + (0x80 - u64::from(b'Z') - 1) * ONES;
    x | ((at_least_a & !above_z & HIGH_BITS) >> 2)
}

/// The item's text from its key.
fn short_text(key: ShortKey) -> String {
    let len = (key[2] >> 56) as usize;
    (0..len)
        .map(|i| char::from((key[i / 8] >> (8 * (i % 8))) as u8))
        .collect()
}

/// `item` without the ASCII whitespace Go's `strings.TrimSpace` removes (Unicode whitespace is
/// handled by the general path: it is not ASCII).
fn trim_ascii_space(item: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let start = item.iter().position(|b| !is_space(b)).unwrap_or(item.len());
    let end = item
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    &item[start..end.max(start)]
}

/// The key of a kept item that has none: no item's key is equal (its length byte is 0xff).
const NO_KEY: ShortKey = [u64::MAX; 3];

/// What became of one item.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Known,
    Kept,
    NotKept,
}

/// The state of one list scan.
struct ListScan<'s, T> {
    spellings: &'s [(&'s str, T)],
    spelling_keys: &'s [(ShortKey, T)],
    /// One bit per length a spelling has: most items of a forged list skip the spellings.
    spelling_lengths: u32,
    known: Vec<T>,
    kept: Vec<UnknownItem>,
    /// The key of each kept item, or [`NO_KEY`].
    kept_keys: Vec<ShortKey>,
    unknown_not_kept: usize,
}

impl<'s, T: Copy + PartialEq> ListScan<'s, T> {
    fn new(spellings: &'s [(&'s str, T)], spelling_keys: &'s [(ShortKey, T)]) -> Self {
        ListScan {
            spellings,
            spelling_keys,
            spelling_lengths: spellings.iter().fold(0, |m, (s, _)| m | 1 << s.len()),
            known: Vec::new(),
            kept: Vec::new(),
            kept_keys: Vec::new(),
            unknown_not_kept: 0,
        }
    }

    fn known(&mut self, value: T) -> Seen {
        if !self.known.contains(&value) {
            self.known.push(value);
        }
        Seen::Known
    }

    /// An ASCII item of `len` bytes (trimmed) with its key.
    fn short(&mut self, key: ShortKey, len: usize) -> Seen {
        if self.spelling_lengths & (1 << len) != 0
            && let Some(&(_, value)) = self.spelling_keys.iter().find(|(s, _)| *s == key)
        {
            return self.known(value);
        }
        // Word by word: most keys differ in the first.
        if self
            .kept_keys
            .iter()
            .any(|k| k[0] == key[0] && k[1] == key[1] && k[2] == key[2])
        {
            return Seen::Kept;
        }
        self.unknown(|| short_text(key), len, key)
    }

    /// Any other item: trimmed and lower-cased as Go does, at most [`MAX_ITEM_BYTES`] kept.
    fn general(&mut self, raw: &str) -> Seen {
        let raw = raw.trim();
        let len = raw.len();
        let text = go_lower(truncate_str(raw, MAX_ITEM_BYTES));
        if len <= MAX_ITEM_BYTES
            && let Some(&(_, value)) = self.spellings.iter().find(|(s, _)| *s == text)
        {
            return self.known(value);
        }
        if self
            .kept
            .iter()
            .any(|u| u.len == len && u.text == text.as_ref())
        {
            return Seen::Kept;
        }
        // Equal to a later short item exactly when the same text came from as many bytes.
        let key = short_key(text.as_bytes())
            .filter(|_| text.len() == len)
            .unwrap_or(NO_KEY);
        self.unknown(|| text.into_owned(), len, key)
    }

    /// An unknown item that is not among the kept ones.
    fn unknown(&mut self, text: impl FnOnce() -> String, len: usize, key: ShortKey) -> Seen {
        if self.kept.len() < MAX_KEPT_UNKNOWN {
            self.kept.push(UnknownItem { text: text(), len });
            self.kept_keys.push(key);
            Seen::Kept
        } else {
            self.unknown_not_kept += 1;
            Seen::NotKept
        }
    }
}

/// A list's spellings and their keys, computed once per process rather than per request.
struct Spellings<T: 'static> {
    table: &'static [(&'static str, T)],
    keys: LazyLock<SpellingKeys<T>, fn() -> SpellingKeys<T>>,
}

type SpellingKeys<T> = Vec<(ShortKey, T)>;

fn keys_of<T: Copy>(table: &[(&str, T)]) -> Vec<(ShortKey, T)> {
    let keys: Vec<(ShortKey, T)> = table
        .iter()
        .filter_map(|(s, t)| short_key(s.as_bytes()).map(|k| (k, *t)))
        .collect();
    debug_assert_eq!(keys.len(), table.len(), "spellings are short");
    keys
}

static EVENTS: Spellings<HookEvent> = Spellings {
    table: HookEvent::SPELLINGS,
    keys: LazyLock::new(|| keys_of(HookEvent::SPELLINGS)),
};
static DELETE_POLICIES: Spellings<DeletePolicy> = Spellings {
    table: DeletePolicy::SPELLINGS,
    keys: LazyLock::new(|| keys_of(DeletePolicy::SPELLINGS)),
};
static OUTPUT_LOG_POLICIES: Spellings<OutputLogPolicy> = Spellings {
    table: OutputLogPolicy::SPELLINGS,
    keys: LazyLock::new(|| keys_of(OutputLogPolicy::SPELLINGS)),
};

/// Parses a comma list in time linear in its length with a small constant, and in memory bounded
/// by [`MAX_KEPT_UNKNOWN`]. A forged list has millions of items: an item equal to the one before
/// costs one comparison, a short ASCII item a few integer comparisons ([`ShortKey`]).
fn parse_list<T: Copy + PartialEq>(value: &str, spellings: &Spellings<T>) -> HookList<T> {
    let mut scan = ListScan::new(spellings.table, &spellings.keys);
    let mut previous: Option<(&[u8], Seen)> = None;
    let mut start = 0;
    for raw in value.as_bytes().split(|&b| b == b',') {
        let item_start = start;
        start += raw.len() + 1;
        if let Some((bytes, seen)) = previous
            && bytes == raw
        {
            if seen == Seen::NotKept {
                scan.unknown_not_kept += 1;
            }
            continue;
        }
        let trimmed = trim_ascii_space(raw);
        let seen = match short_key(trimmed) {
            Some(key) => scan.short(key, trimmed.len()),
            // The item lies between two commas (ASCII), so it always is a whole `str`.
            None => match value.get(item_start..item_start + raw.len()) {
                Some(item) => scan.general(item),
                None => continue,
            },
        };
        previous = Some((raw, seen));
    }
    HookList {
        known: scan.known,
        unknown: scan.kept,
        unknown_not_kept: scan.unknown_not_kept,
    }
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
            events: parse_list(hook, &EVENTS),
            weight: weight.map(|w| WeightAnnotation {
                text: truncate_str(w, MAX_ITEM_BYTES).to_owned(),
                len: w.len(),
                weight: Weight::parse(w),
            }),
            delete_policies: delete_policy.map(|v| parse_list(v, &DELETE_POLICIES)),
            output_log_policies: output_log_policy.map(|v| parse_list(v, &OUTPUT_LOG_POLICIES)),
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

    use proptest::strategy::Strategy as _;

    /// The straightforward parse: every item trimmed, lower-cased and compared as a string.
    fn reference_parse<T: Copy + PartialEq>(value: &str, spellings: &[(&str, T)]) -> HookList<T> {
        let mut list = HookList {
            known: Vec::new(),
            unknown: Vec::new(),
            unknown_not_kept: 0,
        };
        for raw in value.split(',').map(str::trim) {
            let text = go_lower(truncate_str(raw, MAX_ITEM_BYTES));
            if raw.len() <= MAX_ITEM_BYTES
                && let Some((_, k)) = spellings.iter().find(|(s, _)| *s == text)
            {
                if !list.known.contains(k) {
                    list.known.push(*k);
                }
            } else if list
                .unknown
                .iter()
                .any(|u| u.len == raw.len() && u.text == text)
            {
            } else if list.unknown.len() < MAX_KEPT_UNKNOWN {
                list.unknown.push(UnknownItem {
                    text: text.into_owned(),
                    len: raw.len(),
                });
            } else {
                list.unknown_not_kept += 1;
            }
        }
        list
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
        #[test]
        fn the_fast_parse_equals_the_reference(
            items in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        "pre-install", "Post-Upgrade", " test ", "TEST-success", "hook-failed",
                        "before-hook-creation", "BEFORE-HOOK-CREATION\t", "hook-succeeded",
                        "pre-\u{130}nstall", "pre-rollbac\u{212a}", "\u{a0}test", "test\u{2003}",
                        "", " ", "ab", "AB", "a\u{0}", "x".repeat(23).leak(), "x".repeat(24).leak(),
                        "y".repeat(70).leak(),
                    ]).prop_map(str::to_owned),
                    "[ a-zA-Z\\-\u{130}\u{a0}\u{212a}]{0,30}",
                ],
                0..40,
            ),
        ) {
            let value = items.join(",");
            proptest::prop_assert_eq!(
                parse_list(&value, &EVENTS),
                reference_parse(&value, HookEvent::SPELLINGS)
            );
            proptest::prop_assert_eq!(
                parse_list(&value, &DELETE_POLICIES),
                reference_parse(&value, DeletePolicy::SPELLINGS)
            );
        }
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

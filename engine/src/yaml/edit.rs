//! JSON Patch `add`/`replace` operations written into a YAML document's text, in place: the
//! bytes of everything the patch does not change stay as they were (comments, quoting, key order,
//! octal modes), a new member goes in front of its mapping's first entry at the same indentation,
//! and a replaced scalar keeps its place. The result is checked: decoded as Kubernetes decodes
//! it, it must equal the document decoded and then patched, or nothing is returned. A document
//! whose shape defeats the in-place edit (anchors and aliases on the path, merge keys, explicit
//! keys) is written anew, block style with every string quoted, and checked the same way.

use json_patch::PatchOperation;
use serde_json::Value;

use super::decode::scalar_of;
use super::resolve::{Scalar, ScalarTag, key_to_string, resolve};
use super::tree::{NodeId, NodeKind, Tree, parse_first_document};
use super::{YamlError, decode_document};

/// Why a patch could not be written into a document.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("the document is not YAML Kubernetes can read: {0}")]
    Yaml(#[from] YamlError),
    #[error("the patch does not apply to the document: {0}")]
    Patch(String),
    /// Not expected to happen: the in-place edit and the rewrite both decode to something else
    /// than the patched document, so neither is handed back.
    #[error(
        "the fixed document would not read back as the intended object (at {path}); it is left unchanged"
    )]
    NotFaithful { path: String },
}

/// How a document was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditMethod {
    /// Only the patched members changed; every other byte is as it was.
    InPlace,
    /// The document was written anew (its leading comments kept): its shape defeated the
    /// in-place edit.
    Rewritten,
}

/// `text` (one document) with `ops` applied, and how. The result, decoded, equals `text` decoded
/// and patched with `ops`; nothing else changes.
pub fn patch_document(
    text: &str,
    ops: &[PatchOperation],
) -> Result<(String, EditMethod), EditError> {
    let original = decode_document(text)?;
    let mut expected = original;
    json_patch::patch(&mut expected, ops).map_err(|e| EditError::Patch(e.to_string()))?;
    if ops.is_empty() {
        return Ok((text.to_owned(), EditMethod::InPlace));
    }
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut edited = Some(text.to_owned());
    for op in ops {
        edited = edited.and_then(|t| apply_in_place(&t, op, newline).ok());
    }
    if let Some(edited) = edited
        && decode_document(&edited).ok().as_ref() == Some(&expected)
    {
        return Ok((edited, EditMethod::InPlace));
    }
    let rewritten = rewrite(text, &expected, newline);
    if decode_document(&rewritten).ok().as_ref() == Some(&expected) {
        return Ok((rewritten, EditMethod::Rewritten));
    }
    Err(EditError::NotFaithful {
        path: ops
            .iter()
            .map(|op| op_path(op).join("/"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn op_path(op: &PatchOperation) -> Vec<String> {
    let pointer = match op {
        PatchOperation::Add(o) => &o.path,
        PatchOperation::Replace(o) => &o.path,
        PatchOperation::Remove(o) => &o.path,
        PatchOperation::Move(o) => &o.path,
        PatchOperation::Copy(o) => &o.path,
        PatchOperation::Test(o) => &o.path,
    };
    pointer.tokens().map(|t| t.decoded().into_owned()).collect()
}

/// Why the in-place edit gave up (the caller then rewrites the document).
#[derive(Debug)]
struct Unsupported;

fn apply_in_place(text: &str, op: &PatchOperation, newline: &str) -> Result<String, Unsupported> {
    let value = match op {
        PatchOperation::Add(o) => &o.value,
        PatchOperation::Replace(o) => &o.value,
        _ => return Err(Unsupported),
    };
    let path = op_path(op);
    let (last, parents) = path.split_last().ok_or(Unsupported)?;
    let tree = parse_first_document(text).map_err(|_| Unsupported)?;
    let mut node = tree.root.ok_or(Unsupported)?;
    for token in parents {
        node = child(&tree, node, token)?.ok_or(Unsupported)?;
    }
    let parent = tree.node(node);
    let NodeKind::Mapping { entries, flow } = &parent.kind else {
        return Err(Unsupported);
    };
    if let Some(existing) = child(&tree, node, last)? {
        let target = tree.node(existing);
        let NodeKind::Scalar { plain, .. } = &target.kind else {
            return Err(Unsupported);
        };
        if target.anchored {
            return Err(Unsupported);
        }
        let mut rendered = inline_value(value, *plain);
        let mut span = target.span.clone();
        if span.is_empty() {
            // The parser places an empty value where its key ends: the value goes after the
            // `:` that follows.
            let colon = text[span.start..].find(':').ok_or(Unsupported)?;
            span = span.start + colon + 1..span.start + colon + 1;
            rendered.insert(0, ' ');
        }
        return Ok(splice(text, span, &rendered));
    }
    let key = render_key(last);
    if *flow {
        let at = parent.span.start + 1;
        if text.as_bytes().get(parent.span.start) != Some(&b'{') {
            return Err(Unsupported);
        }
        let separator = if entries.is_empty() { "" } else { ", " };
        let entry = format!("{key}: {}{separator}", inline_value(value, true));
        return Ok(splice(text, at..at, &entry));
    }
    let (first_key, _) = entries.first().ok_or(Unsupported)?;
    let at = tree.node(*first_key).span.start;
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let prefix = &text[line_start..at];
    // Only indentation, or the `- ` of the sequence entry the mapping starts: anything else
    // (an anchor, a tag, `? `) belongs to the first entry and must stay with it.
    if !prefix.chars().all(|c| c == ' ' || c == '-') {
        return Err(Unsupported);
    }
    let indent = prefix.chars().count();
    let mut entry = String::new();
    write_block_member(
        &mut entry,
        &key,
        value,
        indent,
        newline,
        Strings::PlainWhereSafe,
    );
    entry.push_str(newline);
    entry.push_str(&" ".repeat(indent));
    Ok(splice(text, at..at, &entry))
}

/// The member `token` of mapping `id` (the last one, as a later key wins), or the item at index
/// `token` of a sequence. An alias or a merge key on the way means the text of the member is
/// not where the edit would go: unsupported.
fn child(tree: &Tree, id: NodeId, token: &str) -> Result<Option<NodeId>, Unsupported> {
    match &tree.node(id).kind {
        NodeKind::Mapping { entries, .. } => {
            let mut found = None;
            for (key, value) in entries {
                let Some(scalar) = scalar_of(tree, *key) else {
                    return Err(Unsupported);
                };
                if scalar == Scalar::Merge {
                    return Err(Unsupported);
                }
                if key_to_string(scalar).ok().as_deref() == Some(token) {
                    found = Some(*value);
                }
            }
            match found.map(|v| &tree.node(v).kind) {
                Some(NodeKind::Alias { .. }) => Err(Unsupported),
                _ => Ok(found),
            }
        }
        NodeKind::Sequence { items, .. } => {
            let index: usize = token.parse().map_err(|_| Unsupported)?;
            match items.get(index).map(|i| (*i, &tree.node(*i).kind)) {
                Some((_, NodeKind::Alias { .. })) => Err(Unsupported),
                Some((item, _)) => Ok(Some(item)),
                None => Ok(None),
            }
        }
        _ => Err(Unsupported),
    }
}

fn splice(text: &str, range: std::ops::Range<usize>, with: &str) -> String {
    let mut out = String::with_capacity(text.len() + with.len());
    out.push_str(&text[..range.start]);
    out.push_str(with);
    out.push_str(&text[range.end..]);
    out
}

/// Whether `s` can be written as a plain scalar and read back as the same string by YAML 1.1
/// (go-yaml v2, what Kubernetes uses) and YAML 1.2 (what Helm 4's kyaml re-encodes with) alike.
fn plain_safe(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    first.is_ascii_alphabetic()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
        && matches!(resolve(&ScalarTag::Implicit, s), Ok(Scalar::Str(_)))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        )
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

fn render_key(key: &str) -> String {
    if plain_safe(key) {
        key.to_owned()
    } else {
        quoted(key)
    }
}

/// A value on one line: scalars as YAML scalars (strings plain only where `plain` allows and the
/// text is safe), collections as JSON (valid flow YAML).
fn inline_value(value: &Value, plain: bool) -> String {
    match value {
        Value::String(s) if plain && plain_safe(s) => s.clone(),
        Value::String(s) => quoted(s),
        Value::Object(_) | Value::Array(_) => compact_flow(value),
        other => other.to_string(),
    }
}

/// JSON with a space after `:` and `,`, as flow YAML (`{"a": "b"}`).
fn compact_flow(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let members: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", quoted(k), compact_flow(v)))
                .collect();
            format!("{{{}}}", members.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(compact_flow).collect();
            format!("[{}]", items.join(", "))
        }
        Value::String(s) => quoted(s),
        other => other.to_string(),
    }
}

/// The document written anew from `value`, after the comments and separator that led the
/// original text.
fn rewrite(text: &str, value: &Value, newline: &str) -> String {
    let mut header_end = 0;
    for line in text.split_inclusive('\n') {
        let content = line.trim();
        let is_header = content.is_empty()
            || content.starts_with('#')
            || (header_end == 0 && content.starts_with("---"));
        if !is_header {
            break;
        }
        header_end += line.len();
    }
    let mut out = text[..header_end].to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str(newline);
    }
    match value {
        Value::Object(map) if !map.is_empty() => {
            let mut first = true;
            for (k, v) in map {
                if !first {
                    out.push_str(newline);
                }
                first = false;
                write_block_member(&mut out, &render_key(k), v, 0, newline, Strings::Quoted);
            }
            out.push_str(newline);
        }
        other => {
            out.push_str(&compact_flow(other));
            out.push_str(newline);
        }
    }
    out
}

/// How block output writes strings.
#[derive(Clone, Copy)]
enum Strings {
    /// Plain where [`plain_safe`], else double-quoted (a member inserted in place).
    PlainWhereSafe,
    /// Always double-quoted (a document written anew).
    Quoted,
}

/// One member in block style at `indent` (the first line's indentation is the caller's);
/// non-empty mappings and sequences continue on the next lines.
fn write_block_member(
    out: &mut String,
    key: &str,
    value: &Value,
    indent: usize,
    newline: &str,
    strings: Strings,
) {
    out.push_str(key);
    out.push(':');
    write_block_value(out, value, indent, newline, strings);
}

fn write_block_value(
    out: &mut String,
    value: &Value,
    indent: usize,
    newline: &str,
    strings: Strings,
) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                out.push_str(newline);
                out.push_str(&" ".repeat(indent + 2));
                write_block_member(out, &render_key(k), v, indent + 2, newline, strings);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str(newline);
                out.push_str(&" ".repeat(indent));
                out.push_str("- ");
                match item {
                    Value::Object(map) if !map.is_empty() => {
                        for (n, (k, v)) in map.iter().enumerate() {
                            if n > 0 {
                                out.push_str(newline);
                                out.push_str(&" ".repeat(indent + 2));
                            }
                            write_block_member(
                                out,
                                &render_key(k),
                                v,
                                indent + 2,
                                newline,
                                strings,
                            );
                        }
                    }
                    other => out.push_str(&scalar_text(other, strings)),
                }
            }
        }
        other => {
            out.push(' ');
            out.push_str(&scalar_text(other, strings));
        }
    }
}

/// A scalar, or a collection on one line (flow).
fn scalar_text(value: &Value, strings: Strings) -> String {
    match strings {
        Strings::PlainWhereSafe => inline_value(value, true),
        Strings::Quoted => compact_flow(value),
    }
}

#[cfg(test)]
mod tests {
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{AddOperation, PatchOperation};
    use serde_json::{Value, json};

    use super::*;

    fn add(path: &[&str], value: Value) -> PatchOperation {
        PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(path.iter().copied()),
            value,
        })
    }

    const JOB: &str = "---\n# Source: demo/templates/job.yaml\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate   # the migration\n  annotations:\n    \"helm.sh/hook\": pre-install\nspec:\n  ttlSecondsAfterFinished: 0x1E\n  template:\n    spec:\n      volumes:\n      - name: v\n        configMap: {name: x, defaultMode: 0444}\n      containers:\n      - name: c\n        image: busybox\n        args: [yes, off, 0755]\n";

    #[test]
    fn adds_and_replaces_only_what_the_patch_names() {
        let ops = vec![
            add(
                &["spec", "template", "spec", "restartPolicy"],
                json!("Never"),
            ),
            add(&["spec", "ttlSecondsAfterFinished"], json!(60)),
            add(
                &["metadata", "annotations", "helm.sh/hook-delete-policy"],
                json!("before-hook-creation"),
            ),
            add(
                &["metadata", "labels"],
                json!({"hookguard.io/hook": "true"}),
            ),
        ];
        let (out, method) = patch_document(JOB, &ops).expect("patches");
        assert_eq!(method, EditMethod::InPlace, "{out}");
        let expected = "---\n# Source: demo/templates/job.yaml\napiVersion: batch/v1\nkind: Job\nmetadata:\n  labels:\n    hookguard.io/hook: \"true\"\n  name: migrate   # the migration\n  annotations:\n    helm.sh/hook-delete-policy: before-hook-creation\n    \"helm.sh/hook\": pre-install\nspec:\n  ttlSecondsAfterFinished: 60\n  template:\n    spec:\n      restartPolicy: Never\n      volumes:\n      - name: v\n        configMap: {name: x, defaultMode: 0444}\n      containers:\n      - name: c\n        image: busybox\n        args: [yes, off, 0755]\n";
        assert_eq!(out, expected);
        let decoded = decode_document(&out).unwrap();
        assert_eq!(
            decoded["spec"]["template"]["spec"]["volumes"][0]["configMap"]["defaultMode"],
            292
        );
        assert_eq!(
            decoded["spec"]["template"]["spec"]["containers"][0]["args"],
            json!([true, false, 493])
        );
    }

    #[test]
    fn flow_mappings_sequences_and_null_values_are_edited_in_place() {
        let text = "kind: List\nitems:\n- metadata: {name: a, annotations: {helm.sh/hook: test}}\n  spec:\n    containers: []\n- metadata:\n    name: b\n    labels:\n";
        let ops = vec![
            add(
                &["items", "0", "metadata", "labels"],
                json!({"hookguard.io/hook": "true"}),
            ),
            add(&["items", "0", "spec", "restartPolicy"], json!("Never")),
            add(&["items", "1", "metadata", "labels"], json!({"k": "v"})),
        ];
        let (out, method) = patch_document(text, &ops).unwrap();
        assert_eq!(method, EditMethod::InPlace, "{out}");
        assert_eq!(
            out,
            "kind: List\nitems:\n- metadata: {labels: {\"hookguard.io/hook\": \"true\"}, name: a, annotations: {helm.sh/hook: test}}\n  spec:\n    restartPolicy: Never\n    containers: []\n- metadata:\n    name: b\n    labels: {\"k\": \"v\"}\n"
        );
    }

    #[test]
    fn anchors_on_the_path_make_it_rewrite_and_still_equal_the_patched_object() {
        let text = "# keep me\nbase: &b\n  restartPolicy: Always\nspec: *b\nother: *b\n";
        let ops = vec![add(&["spec", "restartPolicy"], json!("Never"))];
        let (out, method) = patch_document(text, &ops).unwrap();
        assert_eq!(method, EditMethod::Rewritten);
        assert!(out.starts_with("# keep me\n"), "{out}");
        let decoded = decode_document(&out).unwrap();
        assert_eq!(decoded["spec"]["restartPolicy"], "Never");
        assert_eq!(decoded["other"]["restartPolicy"], "Always");
    }

    #[test]
    fn strings_that_yaml_1_1_would_retype_are_quoted() {
        let text = "a: x\n";
        for s in [
            "true", "yes", "on", "0644", "1e3", "~", "", "a: b", "- x", "#c",
        ] {
            let (out, _) = patch_document(text, &[add(&["b"], json!(s))]).unwrap();
            assert_eq!(decode_document(&out).unwrap()["b"], s, "{out}");
        }
    }

    #[test]
    fn crlf_documents_keep_their_line_ends() {
        let text = "metadata:\r\n  name: x\r\n";
        let (out, method) =
            patch_document(text, &[add(&["metadata", "labels"], json!({"a": "b"}))]).unwrap();
        assert_eq!(method, EditMethod::InPlace);
        assert_eq!(out, "metadata:\r\n  labels:\r\n    a: b\r\n  name: x\r\n");
    }
}

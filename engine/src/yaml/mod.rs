//! YAML read the way Kubernetes reads it, and edited without touching anything else.
//!
//! Helm, kubectl and the API server's clients turn manifests into JSON with
//! k8s.io/apimachinery's YAML decoder: the stream is cut into documents at `---` lines, and each
//! document is decoded by sigs.k8s.io/yaml, which uses go-yaml v2. That library follows YAML 1.1
//! for scalars (`0644` is the octal 420, `yes`/`on`/`y` are booleans, `1_000` is 1000), not the
//! YAML 1.2 core schema a YAML 1.2 library applies by default. Everything in hookguard that reads
//! chart YAML (lint, the post-renderer, `audit --policy`) reads it here, so a rule judges the
//! value the API server will store. [`edit`] writes changes into a document's text in place.
//!
//! The syntax is parsed by `granit-parser` (a YAML 1.2 parser; YAML 1.1 and 1.2 differ almost only
//! in how scalars resolve, which is done here as go-yaml v2 does it).

mod decode;
pub mod edit;
mod resolve;
mod tree;

use serde_json::Value;

pub use edit::{EditError, EditMethod, patch_document};

/// A YAML text that Kubernetes' decoder would refuse too (or that this reader cannot read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct YamlError {
    message: String,
    line: Option<usize>,
}

impl YamlError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        YamlError {
            message: message.into(),
            line: None,
        }
    }

    pub(crate) fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }

    /// Shifts the line number by the lines that precede the document in its stream.
    fn offset_lines(mut self, lines_before: usize) -> Self {
        self.line = self.line.map(|l| l + lines_before);
        self
    }
}

/// One document of a stream: its text, exactly as it appears in the stream, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// The document's bytes (its first line may be the `---` that opened the stream).
    pub text: &'a str,
    /// Byte offset of `text` in the stream.
    pub start: usize,
    /// Lines of the stream before `text`.
    pub lines_before: usize,
}

/// Cuts a stream into documents as k8s.io/apimachinery's `YAMLReader` does: a line that starts
/// with `---` ends the document before it (and is not part of either), unless no document has
/// begun, in which case it belongs to the next; anything but spaces or a comment after the `---`
/// is an error. Lines that hold nothing are not a document at the end of the stream.
pub fn split_stream(text: &str) -> Result<Vec<Chunk<'_>>, YamlError> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut start_line = 0;
    let mut pos = 0;
    let mut line_no = 0;
    while pos < text.len() {
        let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1);
        let line = &text[pos..end];
        let content = line.trim_end_matches(['\n', '\r']);
        if let Some(rest) = content.strip_prefix("---") {
            let rest = rest.trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                return Err(
                    YamlError::new(format!("invalid Yaml document separator: {rest}"))
                        .at_line(line_no + 1),
                );
            }
            if pos > start {
                chunks.push(Chunk {
                    text: &text[start..pos],
                    start,
                    lines_before: start_line,
                });
                start = end;
                start_line = line_no + 1;
            }
        }
        pos = end;
        line_no += 1;
    }
    if text.len() > start {
        chunks.push(Chunk {
            text: &text[start..],
            start,
            lines_before: start_line,
        });
    }
    Ok(chunks)
}

/// Decodes one document's text as sigs.k8s.io/yaml does (its first YAML document; `null` when
/// it holds none).
pub fn decode_document(text: &str) -> Result<Value, YamlError> {
    let tree = tree::parse_first_document(text)?;
    decode::decode(&tree)
}

/// Every document of a stream, as JSON, in order (`null` for documents without content), or the
/// first error, with its line in the stream.
pub fn decode_stream(text: &str) -> Result<Vec<Value>, YamlError> {
    if let Some(json) = json_stream(text) {
        return Ok(json);
    }
    split_stream(text)?
        .into_iter()
        .map(|chunk| decode_document(chunk.text).map_err(|e| e.offset_lines(chunk.lines_before)))
        .collect()
}

/// apimachinery reads a stream whose first non-blank character is `{` as a sequence of JSON
/// values when it can.
fn json_stream(text: &str) -> Option<Vec<Value>> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .ok()
}

#[cfg(test)]
mod tests;

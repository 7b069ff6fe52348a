//! One YAML document as a tree of nodes that remember where they are in the text: what the
//! decoder walks to build JSON, and what the editor walks to find the bytes to change.

use std::ops::Range;

use granit_parser::{Event, Parser, ScalarStyle, StructureStyle, Tag};

use super::YamlError;
use super::resolve::ScalarTag;

pub(crate) type NodeId = usize;

#[derive(Debug)]
pub(crate) enum NodeKind {
    Scalar {
        value: String,
        plain: bool,
        tag: ScalarTag,
    },
    Mapping {
        entries: Vec<(NodeId, NodeId)>,
        flow: bool,
    },
    Sequence {
        items: Vec<NodeId>,
    },
    /// An alias of the node that defined the anchor.
    Alias {
        target: NodeId,
    },
}

#[derive(Debug)]
pub(crate) struct Node {
    pub kind: NodeKind,
    /// Where the node's text starts and ends (for a block collection, from its first entry to
    /// where the parser closed it; for a flow collection, `{`/`[` through `}`/`]`).
    pub span: Range<usize>,
    /// Whether an anchor is defined on this node.
    pub anchored: bool,
}

/// The first document of a text, as go-yaml v2's `Unmarshal` reads it (later documents are
/// ignored there too). `root` is `None` for a text without content.
#[derive(Debug)]
pub(crate) struct Tree {
    pub nodes: Vec<Node>,
    pub root: Option<NodeId>,
}

impl Tree {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }
}

/// How a tag reads to go-yaml v2.
fn scalar_tag(tag: Option<&Tag>, plain: bool) -> ScalarTag {
    match tag {
        None if plain => ScalarTag::Implicit,
        None => ScalarTag::Quoted,
        // go-yaml knows `!!binary`, `!!timestamp` and `!!merge` too, beyond YAML 1.2's core tags.
        Some(t) if t.handle() == "tag:yaml.org,2002:" => ScalarTag::Core(t.suffix().to_owned()),
        Some(_) => ScalarTag::Other,
    }
}

struct Open {
    id: NodeId,
    /// For a mapping: a key waiting for its value.
    pending_key: Option<NodeId>,
}

/// The escapes of double-quoted scalars in `raw` (the scalar's source, quotes included), as
/// `(byte offset of the backslash, escaped character)`.
fn escapes(raw: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let mut chars = raw.char_indices().skip(1);
    std::iter::from_fn(move || {
        loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => return None,
                '\\' => {
                    let (_, escaped) = chars.next()?;
                    return Some((i, escaped));
                }
                _ => {}
            }
        }
    })
}

/// Parses the first document of `text`, with go-yaml v2's (YAML 1.1's) escapes in double-quoted
/// scalars: `\'` is an escape there (not in YAML 1.2) and `\/` is not (it is in YAML 1.2).
pub(crate) fn parse_first_document(text: &str) -> Result<Tree, YamlError> {
    let mut text = std::borrow::Cow::Borrowed(text);
    // Each round rewrites the `\'` of one more scalar as `\x27`, which both versions read.
    for _ in 0..=text.matches("\\'").count() {
        match parse(&text) {
            Err(ParseFailure::Escape(at)) => {
                let raw = &text[at..];
                let quotes: Vec<usize> = escapes(raw)
                    .filter(|(_, c)| *c == '\'')
                    .map(|(i, _)| at + i)
                    .collect();
                if quotes.is_empty() {
                    return Err(YamlError::new("found unknown escape character"));
                }
                let mut fixed = String::with_capacity(text.len() + 2 * quotes.len());
                let mut last = 0;
                for q in quotes {
                    fixed.push_str(&text[last..q]);
                    fixed.push_str("\\x27");
                    last = q + 2;
                }
                fixed.push_str(&text[last..]);
                text = std::borrow::Cow::Owned(fixed);
            }
            Err(ParseFailure::Yaml(e)) => return Err(e),
            Ok(tree) => return Ok(tree),
        }
    }
    Err(YamlError::new("found unknown escape character"))
}

enum ParseFailure {
    /// An unknown escape in the double-quoted scalar that starts at this byte offset.
    Escape(usize),
    Yaml(YamlError),
}

impl From<YamlError> for ParseFailure {
    fn from(e: YamlError) -> Self {
        ParseFailure::Yaml(e)
    }
}

fn parse(text: &str) -> Result<Tree, ParseFailure> {
    let mut parser = Parser::new_from_str(text);
    let mut nodes: Vec<Node> = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut root = None;
    // Anchor ids (granit numbers every definition) to the node that defined them.
    let mut anchors: Vec<(usize, NodeId)> = Vec::new();
    let mut in_document = false;

    for next in &mut parser {
        let (event, span) = match next {
            Ok(next) => next,
            Err(e) => {
                let at = e.marker().byte_offset().unwrap_or(usize::MAX);
                if e.info().contains("unknown escape") && text.as_bytes().get(at) == Some(&b'"') {
                    return Err(ParseFailure::Escape(at));
                }
                return Err(YamlError::new(e.info().to_owned())
                    .at_line(e.marker().line())
                    .into());
            }
        };
        let range = span.byte_range().unwrap_or(0..0);
        let new_node = match event {
            Event::StreamStart => continue,
            Event::Comment(..) | Event::Anchor(..) => continue,
            Event::StreamEnd => break,
            Event::DocumentStart(..) => {
                in_document = true;
                continue;
            }
            Event::DocumentEnd => {
                if in_document {
                    break;
                }
                continue;
            }
            Event::Scalar(value, style, anchor, tag) => {
                let plain = style == ScalarStyle::Plain;
                if style == ScalarStyle::DoubleQuoted
                    && escapes(&text[range.clone()]).any(|(_, c)| c == '/')
                {
                    return Err(YamlError::new("found unknown escape character")
                        .at_line(span.start.line())
                        .into());
                }
                // granit reports an empty plain scalar as `~`; go-yaml sees "".
                let value = if plain && range.is_empty() {
                    String::new()
                } else {
                    value.into_owned()
                };
                let tag = scalar_tag(tag.as_deref(), plain);
                Some((
                    Node {
                        kind: NodeKind::Scalar { value, plain, tag },
                        span: range,
                        anchored: anchor != 0,
                    },
                    anchor,
                    false,
                ))
            }
            Event::Alias(id) => {
                let target = anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, n)| *n)
                    .ok_or_else(|| YamlError::new("unknown anchor referenced"))?;
                Some((
                    Node {
                        kind: NodeKind::Alias { target },
                        span: range,
                        anchored: false,
                    },
                    0,
                    false,
                ))
            }
            Event::UnresolvedAlias(name) => {
                return Err(YamlError::new(format!("unknown anchor '{name}' referenced")).into());
            }
            Event::MappingStart(style, anchor, _tag) => Some((
                Node {
                    kind: NodeKind::Mapping {
                        entries: Vec::new(),
                        flow: style == StructureStyle::Flow,
                    },
                    span: range,
                    anchored: anchor != 0,
                },
                anchor,
                true,
            )),
            Event::SequenceStart(_style, anchor, _tag) => Some((
                Node {
                    kind: NodeKind::Sequence { items: Vec::new() },
                    span: range,
                    anchored: anchor != 0,
                },
                anchor,
                true,
            )),
            // Events added to the parser later carry no data nodes (the enum is non-exhaustive).
            _ if !event.is_node() && !matches!(event, Event::MappingEnd | Event::SequenceEnd) => {
                continue;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let Some(open) = stack.pop() else {
                    return Err(YamlError::new("unbalanced collection end").into());
                };
                let node = &mut nodes[open.id];
                node.span.end = range.end.max(node.span.start);
                let closed = open.id;
                attach(&mut nodes, &mut stack, &mut root, closed)?;
                None
            }
            _ => return Err(YamlError::new("an unexpected YAML event").into()),
        };
        let Some((node, anchor, opens)) = new_node else {
            continue;
        };
        let id = nodes.len();
        nodes.push(node);
        if anchor != 0 {
            anchors.push((anchor, id));
        }
        if opens {
            stack.push(Open {
                id,
                pending_key: None,
            });
        } else {
            attach(&mut nodes, &mut stack, &mut root, id)?;
        }
    }
    if !stack.is_empty() {
        return Err(YamlError::new("unexpected end of the document").into());
    }
    Ok(Tree { nodes, root })
}

/// Adds a finished node to the collection being built (or makes it the root).
fn attach(
    nodes: &mut [Node],
    stack: &mut [Open],
    root: &mut Option<NodeId>,
    id: NodeId,
) -> Result<(), YamlError> {
    let Some(parent) = stack.last_mut() else {
        if root.is_none() {
            *root = Some(id);
        }
        return Ok(());
    };
    match &mut nodes[parent.id].kind {
        NodeKind::Mapping { entries, .. } => match parent.pending_key.take() {
            None => parent.pending_key = Some(id),
            Some(key) => entries.push((key, id)),
        },
        NodeKind::Sequence { items, .. } => items.push(id),
        _ => return Err(YamlError::new("a scalar cannot hold children")),
    }
    Ok(())
}

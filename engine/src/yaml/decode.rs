//! A document tree to JSON, as go-yaml v2's decoder into `interface{}` followed by
//! sigs.k8s.io/yaml's conversion to JSON: merge keys (`<<`) fill the mapping in the order they
//! appear, a later key replaces an earlier one, aliases are expanded (within go-yaml's aliasing
//! budget), and keys become strings the way sigs.k8s.io/yaml writes them.

use serde_json::{Map, Value};

use super::YamlError;
use super::resolve::{Scalar, ScalarTag, key_to_string, resolve, to_json};
use super::tree::{NodeId, NodeKind, Tree};

/// Decodes the tree's document (`null` when it has no content).
pub(crate) fn decode(tree: &Tree) -> Result<Value, YamlError> {
    let Some(root) = tree.root else {
        return Ok(Value::Null);
    };
    let mut decoder = Decoder {
        tree,
        decode_count: 0,
        alias_count: 0,
        alias_depth: 0,
        expanding: Vec::new(),
    };
    decoder.value(root)
}

struct Decoder<'t> {
    tree: &'t Tree,
    decode_count: usize,
    alias_count: usize,
    alias_depth: usize,
    /// Aliases being expanded: one met again contains itself.
    expanding: Vec<NodeId>,
}

/// go-yaml v2's `allowedAliasRatio`: small documents may be mostly aliases, large ones not.
fn allowed_alias_ratio(decode_count: usize) -> f64 {
    const LOW: f64 = 400_000.0;
    const HIGH: f64 = 4_000_000.0;
    let count = decode_count as f64;
    if count <= LOW {
        0.99
    } else if count >= HIGH {
        0.10
    } else {
        0.99 - 0.89 * ((count - LOW) / (HIGH - LOW))
    }
}

impl Decoder<'_> {
    /// Counts a node as go-yaml does, failing on excessive aliasing (the "billion laughs").
    fn count(&mut self) -> Result<(), YamlError> {
        self.decode_count += 1;
        if self.alias_depth > 0 {
            self.alias_count += 1;
        }
        if self.alias_count > 100
            && self.decode_count > 1000
            && self.alias_count as f64 / self.decode_count as f64
                > allowed_alias_ratio(self.decode_count)
        {
            return Err(YamlError::new("document contains excessive aliasing"));
        }
        Ok(())
    }

    fn value(&mut self, id: NodeId) -> Result<Value, YamlError> {
        self.count()?;
        match &self.tree.node(id).kind {
            NodeKind::Scalar { value, tag, .. } => to_json(resolve(tag, value)?),
            NodeKind::Sequence { items, .. } => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(self.value(*item)?);
                }
                Ok(Value::Array(out))
            }
            NodeKind::Mapping { .. } => {
                let mut map = Map::new();
                self.fill(id, &mut map)?;
                Ok(Value::Object(map))
            }
            NodeKind::Alias { target } => {
                let target = *target;
                self.through_alias(target, |d| d.value(target))
            }
        }
    }

    /// Runs `f` inside the expansion of an alias of `target` (counted against the aliasing
    /// budget; an alias met again inside its own expansion is an error).
    fn through_alias<T>(
        &mut self,
        target: NodeId,
        f: impl FnOnce(&mut Self) -> Result<T, YamlError>,
    ) -> Result<T, YamlError> {
        self.enter_alias(target)?;
        let result = f(self);
        self.leave_alias();
        result
    }

    /// A merge key's alias of a mapping: the alias node and the mapping count, as in go-yaml.
    fn merge_alias(
        &mut self,
        target: NodeId,
        map: &mut Map<String, Value>,
    ) -> Result<(), YamlError> {
        self.count()?;
        self.through_alias(target, |d| {
            d.count()?;
            d.fill(target, map)
        })
    }

    fn enter_alias(&mut self, target: NodeId) -> Result<(), YamlError> {
        if self.expanding.contains(&target) {
            return Err(YamlError::new("anchor value contains itself"));
        }
        self.expanding.push(target);
        self.alias_depth += 1;
        Ok(())
    }

    fn leave_alias(&mut self) {
        self.expanding.pop();
        self.alias_depth -= 1;
    }

    /// Decodes mapping `id`'s entries into `map` (go-yaml decodes a merged mapping into the
    /// same map).
    fn fill(&mut self, id: NodeId, map: &mut Map<String, Value>) -> Result<(), YamlError> {
        let NodeKind::Mapping { entries, .. } = &self.tree.node(id).kind else {
            return Err(YamlError::new(
                "map merge requires map or sequence of maps as the value",
            ));
        };
        for (key, value) in entries {
            if self.is_merge(*key) {
                self.merge(*value, map)?;
                continue;
            }
            let name = self.key(*key)?;
            let value = self.value(*value)?;
            map.insert(name, value);
        }
        Ok(())
    }

    fn is_merge(&self, key: NodeId) -> bool {
        match &self.tree.node(key).kind {
            NodeKind::Scalar { value, tag, .. } if value == "<<" => match tag {
                ScalarTag::Implicit => true,
                ScalarTag::Core(suffix) => suffix == "merge",
                _ => false,
            },
            _ => false,
        }
    }

    fn merge(&mut self, id: NodeId, map: &mut Map<String, Value>) -> Result<(), YamlError> {
        let want_map = || YamlError::new("map merge requires map or sequence of maps as the value");
        match &self.tree.node(id).kind {
            NodeKind::Mapping { .. } => {
                self.count()?;
                self.fill(id, map)
            }
            NodeKind::Alias { target } => {
                let target = *target;
                if !matches!(self.tree.node(target).kind, NodeKind::Mapping { .. }) {
                    return Err(want_map());
                }
                self.merge_alias(target, map)
            }
            NodeKind::Sequence { items, .. } => {
                // Earlier mappings take precedence: go-yaml merges them last.
                for item in items.iter().rev() {
                    let item = *item;
                    match &self.tree.node(item).kind {
                        NodeKind::Mapping { .. } => {
                            self.count()?;
                            self.fill(item, map)?;
                        }
                        NodeKind::Alias { target }
                            if matches!(self.tree.node(*target).kind, NodeKind::Mapping { .. }) =>
                        {
                            let target = *target;
                            self.merge_alias(target, map)?;
                        }
                        _ => return Err(want_map()),
                    }
                }
                Ok(())
            }
            NodeKind::Scalar { .. } => Err(want_map()),
        }
    }

    /// A mapping key as the JSON member name sigs.k8s.io/yaml gives it.
    fn key(&mut self, id: NodeId) -> Result<String, YamlError> {
        self.count()?;
        match &self.tree.node(id).kind {
            NodeKind::Scalar { value, tag, .. } => key_to_string(resolve(tag, value)?),
            NodeKind::Alias { target } => {
                let target = *target;
                self.through_alias(target, |d| d.key(target))
            }
            NodeKind::Mapping { .. } | NodeKind::Sequence { .. } => {
                Err(YamlError::new("invalid map key: a mapping or sequence"))
            }
        }
    }
}

/// The resolved scalar of a node, following aliases (for the editor's key lookups).
pub(crate) fn scalar_of(tree: &Tree, mut id: NodeId) -> Option<Scalar> {
    for _ in 0..16 {
        match &tree.node(id).kind {
            NodeKind::Scalar { value, tag, .. } => return resolve(tag, value).ok(),
            NodeKind::Alias { target } => id = *target,
            _ => return None,
        }
    }
    None
}

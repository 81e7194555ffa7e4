//! A YAML tree that remembers where every node came from.
//!
//! Environment files are merged (`extends:`) before they are typed, so a plain
//! `serde` pass over the merged text could not say which file a bad value came
//! from. We parse each file into this located tree, merge trees, and keep a
//! path → location index next to the merged JSON value for error reporting.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Where a node was written: file, 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub value: NodeValue,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Loc, Node)>),
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, n)| n),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Parse one YAML file into a located tree. An empty file is an empty map.
    pub fn parse(text: &str, file: &Path) -> Result<Node, ParseError> {
        if text.trim().is_empty() {
            let loc = Loc {
                file: file.to_path_buf(),
                line: 1,
                column: 1,
            };
            return Ok(Node {
                value: NodeValue::Map(Vec::new()),
                loc,
            });
        }
        let raw: Spanned<Raw> = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            ParseError {
                loc: Loc {
                    file: file.to_path_buf(),
                    line,
                    column,
                },
                message: first_line(&e.to_string()),
            }
        })?;
        Ok(raw.into_node(file))
    }

    /// Merge `overlay` on top of `self` with the documented rules:
    /// maps merge key by key, `null` removes a key, lists of maps that all carry
    /// a `name` merge item by item on that name, any other value replaces.
    pub fn merge(self, overlay: Node) -> Node {
        match (self.value, overlay.value) {
            (NodeValue::Map(mut base), NodeValue::Map(over)) => {
                for (key, key_loc, value) in over {
                    let pos = base.iter().position(|(k, _, _)| *k == key);
                    match (pos, &value.value) {
                        (Some(i), NodeValue::Null) => {
                            base.remove(i);
                        }
                        (None, NodeValue::Null) => {}
                        (Some(i), _) => {
                            let (_, _, old) = base.remove(i);
                            base.insert(i, (key, key_loc, old.merge(value)));
                        }
                        (None, _) => base.push((key, key_loc, value)),
                    }
                }
                Node {
                    value: NodeValue::Map(base),
                    loc: self.loc,
                }
            }
            (NodeValue::Seq(base), NodeValue::Seq(over)) if named(&base) && named(&over) => {
                let mut merged = base;
                for item in over {
                    let name = item.get("name").and_then(Node::as_str).map(str::to_owned);
                    match merged
                        .iter()
                        .position(|b| b.get("name").and_then(Node::as_str) == name.as_deref())
                    {
                        Some(i) => {
                            let old = merged.remove(i);
                            merged.insert(i, old.merge(item));
                        }
                        None => merged.push(item),
                    }
                }
                Node {
                    value: NodeValue::Seq(merged),
                    loc: overlay.loc,
                }
            }
            (_, value) => Node {
                value,
                loc: overlay.loc,
            },
        }
    }

    /// The JSON value serde types are read from, plus where each path was written.
    pub fn to_json(&self, index: &mut LocIndex, path: &str) -> serde_json::Value {
        index.0.insert(path.to_owned(), self.loc.clone());
        match &self.value {
            NodeValue::Null => serde_json::Value::Null,
            NodeValue::Bool(b) => (*b).into(),
            NodeValue::Int(i) => (*i).into(),
            NodeValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(Into::into)
                .unwrap_or(serde_json::Value::Null),
            NodeValue::Str(s) => s.clone().into(),
            NodeValue::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| n.to_json(index, &format!("{path}[{i}]")))
                .collect(),
            NodeValue::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (k, key_loc, n) in entries {
                    let child = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    // Keys get their own entry so "unknown field" errors can point at the key.
                    index.0.insert(format!("{child}#key"), key_loc.clone());
                    map.insert(k.clone(), n.to_json(index, &child));
                }
                serde_json::Value::Object(map)
            }
        }
    }
}

fn named(items: &[Node]) -> bool {
    !items.is_empty()
        && items
            .iter()
            .all(|n| n.get("name").and_then(Node::as_str).is_some())
}

/// The parser's first message line, without the position it repeats.
fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or(s).trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    match line.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((pos, rest)) if pos.contains("column") => rest.to_owned(),
        _ => line.to_owned(),
    }
}

/// Path (`node_pools[1].count`) → where it was written.
#[derive(Debug, Default, Clone)]
pub struct LocIndex(pub BTreeMap<String, Loc>);

impl LocIndex {
    /// The location of `path`, or of its nearest written ancestor.
    pub fn find(&self, path: &str) -> Option<&Loc> {
        let mut p = path.to_owned();
        loop {
            if let Some(l) = self.0.get(&p) {
                return Some(l);
            }
            let cut = p.rfind(['.', '['])?;
            p.truncate(cut);
        }
    }

    pub fn key(&self, path: &str) -> Option<&Loc> {
        self.0
            .get(&format!("{path}#key"))
            .or_else(|| self.find(path))
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{loc}: {message}")]
pub struct ParseError {
    pub loc: Loc,
    pub message: String,
}

/// The raw shape serde-saphyr fills in; `Spanned` carries each node's position.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<String>, Spanned<Raw>)>),
}

trait IntoNode {
    fn into_node(self, file: &Path) -> Node;
}

impl IntoNode for Spanned<Raw> {
    fn into_node(self, file: &Path) -> Node {
        let loc = loc_of(&self.referenced, file);
        let value = match self.value {
            Raw::Null => NodeValue::Null,
            Raw::Bool(b) => NodeValue::Bool(b),
            Raw::Int(i) => NodeValue::Int(i),
            Raw::Float(f) => NodeValue::Float(f),
            Raw::Str(s) => NodeValue::Str(s),
            Raw::Seq(items) => {
                NodeValue::Seq(items.into_iter().map(|n| n.into_node(file)).collect())
            }
            Raw::Map(entries) => NodeValue::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        let kl = loc_of(&k.referenced, file);
                        (k.value, kl, v.into_node(file))
                    })
                    .collect(),
            ),
        };
        Node { value, loc }
    }
}

fn loc_of(l: &serde_saphyr::Location, file: &Path) -> Loc {
    Loc {
        file: file.to_path_buf(),
        line: l.line(),
        column: l.column(),
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        i64::try_from(v)
            .map(Raw::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries: Vec<(Spanned<String>, Spanned<Raw>)> = Vec::new();
        while let Some((k, v)) = map.next_entry::<Spanned<String>, Spanned<Raw>>()? {
            if entries.iter().any(|(e, _)| e.value == k.value) {
                return Err(de::Error::custom(format!("duplicate key `{}`", k.value)));
            }
            entries.push((k, v));
        }
        Ok(Raw::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Node {
        Node::parse(s, Path::new("t.yaml")).unwrap()
    }

    #[test]
    fn records_locations_of_nested_values() {
        let n = parse("a:\n  b: 3\nlist:\n  - x\n  - y\n");
        let mut idx = LocIndex::default();
        let v = n.to_json(&mut idx, "");
        assert_eq!(v["a"]["b"], 3);
        assert_eq!(idx.find("a.b").map(|l| (l.line, l.column)), Some((2, 6)));
        assert_eq!(idx.find("list[1]").map(|l| l.line), Some(5));
        assert_eq!(idx.key("a.b").map(|l| (l.line, l.column)), Some((2, 3)));
    }

    #[test]
    fn merge_rules() {
        let base = parse(
            "m: {a: 1, b: 2}\nl: [1, 2]\npools:\n  - {name: c, count: 1, flavor: s}\n  - {name: w, count: 2}\n",
        );
        let over = parse(
            "m: {b: 3, a: null}\nl: [9]\npools:\n  - {name: w, count: 5}\n  - {name: g, count: 1}\n",
        );
        let merged = base.merge(over);
        let v = merged.to_json(&mut LocIndex::default(), "");
        assert_eq!(v["m"], serde_json::json!({"b": 3}));
        assert_eq!(v["l"], serde_json::json!([9]));
        assert_eq!(
            v["pools"],
            serde_json::json!([{"name":"c","count":1,"flavor":"s"},{"name":"w","count":5},{"name":"g","count":1}])
        );
    }

    #[test]
    fn syntax_error_has_position() {
        let e = Node::parse("a: [1, 2\nb: 3\n", Path::new("bad.yaml")).unwrap_err();
        assert!(e.loc.line >= 1, "{e}");
        assert!(e.to_string().starts_with("bad.yaml:"), "{e}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        assert!(Node::parse("a: 1\na: 2\n", Path::new("d.yaml")).is_err());
    }
}

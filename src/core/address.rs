//! Logical addresses (`network.main`, `server.control[1]`) and references from
//! one resource's attributes to another's id, outputs or sealed secrets.
//!
//! A reference is a JSON object `{"ref": "<address>"}` (the id), with an
//! optional `"output": NAME` or `"secret": NAME` selecting something else the
//! resource recorded. References are what make dependencies: the plan orders
//! work by them and the executor resolves them just before a provider call.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Logical address such as `network.main` or `server.control[1]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Address(String);

impl Address {
    pub fn new(kind: &str, name: &str) -> Self {
        Self(format!("{kind}.{name}"))
    }
    pub fn indexed(kind: &str, name: &str, i: u32) -> Self {
        Self(format!("{kind}.{name}[{i}]"))
    }
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, rest) = s.split_once('.')?;
        (!kind.is_empty() && !rest.is_empty()).then(|| Self(s.to_owned()))
    }
    pub fn kind(&self) -> &str {
        self.0.split_once('.').map_or(&self.0, |(k, _)| k)
    }
    /// The part after the kind: `control[1]` of `server.control[1]`.
    pub fn name(&self) -> &str {
        self.0.split_once('.').map_or("", |(_, n)| n)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `--target` matching: a whole address, a kind (`bucket`) or an unindexed base (`server.control`).
    pub fn matches(&self, target: &str) -> bool {
        self.0 == target || self.kind() == target || self.0.split('[').next() == Some(target)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a reference takes from the resource it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    /// The provider's id of the resource.
    Id,
    /// One of the facts the provider reported (an address, a kubeconfig).
    Output(String),
    /// One of the values sealed in state (a generated password).
    Secret(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub address: Address,
    pub select: Select,
}

impl Ref {
    /// `{"ref": a}`: the id of `a`.
    pub fn id(a: &Address) -> Value {
        json!({ "ref": a.as_str() })
    }
    /// `{"ref": a, "output": name}`.
    pub fn output(a: &Address, name: &str) -> Value {
        json!({ "ref": a.as_str(), "output": name })
    }
    /// `{"ref": a, "secret": name}`: resolved only in memory, for the provider call.
    pub fn secret(a: &Address, name: &str) -> Value {
        json!({ "ref": a.as_str(), "secret": name })
    }

    /// The reference `v` is, if it is one.
    pub fn parse(v: &Value) -> Option<Ref> {
        let Value::Object(m) = v else { return None };
        let address = m
            .get("ref")
            .and_then(Value::as_str)
            .and_then(Address::parse)?;
        let select = match (
            m.len(),
            m.get("output").and_then(Value::as_str),
            m.get("secret").and_then(Value::as_str),
        ) {
            (1, _, _) => Select::Id,
            (2, Some(o), None) => Select::Output(o.to_owned()),
            (2, None, Some(s)) => Select::Secret(s.to_owned()),
            _ => return None,
        };
        Some(Ref { address, select })
    }

    /// Every reference inside `v`, in document order.
    pub fn all_in(v: &Value) -> Vec<Ref> {
        let mut out = Vec::new();
        collect(v, &mut out);
        out
    }
}

fn collect(v: &Value, out: &mut Vec<Ref>) {
    if let Some(r) = Ref::parse(v) {
        out.push(r);
        return;
    }
    match v {
        Value::Object(m) => m.values().for_each(|c| collect(c, out)),
        Value::Array(a) => a.iter().for_each(|c| collect(c, out)),
        _ => {}
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.select {
            Select::Id => write!(f, "(id of {})", self.address),
            Select::Output(o) => write!(f, "({o} of {})", self.address),
            Select::Secret(s) => write!(f, "(sensitive: {s} of {})", self.address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_parts_and_targets() {
        let a = Address::indexed("server", "control", 1);
        assert_eq!(a.to_string(), "server.control[1]");
        assert_eq!(a.kind(), "server");
        assert_eq!(a.name(), "control[1]");
        assert!(a.matches("server"));
        assert!(a.matches("server.control"));
        assert!(a.matches("server.control[1]"));
        assert!(!a.matches("server.worker"));
    }

    #[test]
    fn references_select_id_output_or_secret() {
        let a = Address::new("secret", "db");
        assert_eq!(Ref::parse(&Ref::id(&a)).unwrap().select, Select::Id);
        assert_eq!(
            Ref::parse(&Ref::output(&a, "address")).unwrap().select,
            Select::Output("address".into())
        );
        assert_eq!(
            Ref::parse(&Ref::secret(&a, "value")).unwrap().select,
            Select::Secret("value".into())
        );
        // Anything else is plain data, not a reference.
        assert!(Ref::parse(&json!({"ref": "secret.db", "output": "a", "secret": "b"})).is_none());
        assert!(Ref::parse(&json!({"ref": "nodot"})).is_none());
        let nested = json!({"a": [Ref::id(&a), {"b": Ref::secret(&a, "value")}]});
        assert_eq!(Ref::all_in(&nested).len(), 2);
    }
}

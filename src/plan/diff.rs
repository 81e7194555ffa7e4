//! Desired resources against state (and, where read, the live resources):
//! one action per address, field by field.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::resource::{Desired, Layer, Nested, OnChange, kind_spec};
use crate::core::{Address, Ref};
use crate::state::{StateFile, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    NoOp,
    Create,
    Update,
    Replace,
    Delete,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FieldChange {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    pub forces_replacement: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub address: Address,
    pub kind: String,
    pub layer: Layer,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Address>,
    /// Replacing or deleting it destroys data (servers, volumes, buckets).
    pub data_loss: bool,
    /// What the "before" side was read from, when that is worth saying
    /// (a release: the live cluster by dry-run, or state when unreachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<String>,
    /// Sub-objects that change (a release's Kubernetes objects), one by one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<SubChange>,
}

/// One sub-object of a change (`Deployment.apps/stac/stac-api`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubChange {
    pub key: String,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    pub data_loss: bool,
}

/// What a refresh found for a resource in state.
#[derive(Debug, Clone)]
pub enum Observed {
    Live(BTreeMap<String, Value>),
    Gone,
}

pub fn diff(
    desired: &[Desired],
    state: &StateFile,
    observed: &BTreeMap<Address, Observed>,
) -> Vec<Change> {
    let mut changes: Vec<Change> = desired
        .iter()
        .map(|d| diff_one(d, state, observed.get(&d.address)))
        .collect();
    propagate_replacements(desired, &mut changes);
    let wanted: BTreeSet<&Address> = desired.iter().map(|d| &d.address).collect();
    for (addr, rec) in &state.resources {
        if !wanted.contains(addr) {
            let spec = kind_spec(&rec.kind);
            let nested = spec.and_then(|s| s.nested);
            let objects = nested
                .map(|n| sub_changes(n, rec.attrs.get(n.attr), None))
                .unwrap_or_default();
            changes.push(Change {
                address: addr.clone(),
                kind: rec.kind.clone(),
                layer: spec.map_or(Layer::Cloud, |s| s.layer),
                action: Action::Delete,
                reason: Some("no longer in the environment".into()),
                fields: Vec::new(),
                depends_on: rec.deps.clone(),
                data_loss: spec.is_some_and(|s| s.holds_data)
                    || objects.iter().any(|o| o.data_loss),
                basis: None,
                objects,
            });
        }
    }
    changes
}

/// A plan that deletes everything in state.
pub fn destroy(state: &StateFile) -> Vec<Change> {
    diff(&[], state, &BTreeMap::new())
}

fn diff_one(d: &Desired, state: &StateFile, observed: Option<&Observed>) -> Change {
    let mut c = Change {
        address: d.address.clone(),
        kind: d.spec.kind.to_owned(),
        layer: d.spec.layer,
        action: Action::NoOp,
        reason: None,
        fields: Vec::new(),
        depends_on: d.deps.clone(),
        data_loss: false,
        basis: None,
        objects: Vec::new(),
    };
    let nested = d.spec.nested;
    let is_nested = |name: &str| nested.is_some_and(|n| n.attr == name);
    let Some(rec) = state.resources.get(&d.address) else {
        c.action = Action::Create;
        c.fields = d
            .attrs
            .iter()
            .filter(|(k, _)| !is_nested(k))
            .map(|(k, v)| FieldChange {
                name: k.clone(),
                before: None,
                after: Some(v.clone()),
                forces_replacement: false,
            })
            .collect();
        c.objects = nested
            .map(|n| sub_changes(n, None, d.attrs.get(n.attr)))
            .unwrap_or_default();
        return c;
    };
    match (rec.status, observed) {
        (Status::Creating, _) => {
            c.action = Action::Create;
            c.reason = Some("an earlier run stopped while creating it; it is looked up and adopted before anything is created".into());
            return c;
        }
        (Status::Deleting, _) => {
            c.action = Action::Replace;
            c.reason = Some("an earlier run stopped while deleting it".into());
            c.data_loss = d.spec.holds_data;
            return c;
        }
        (_, Some(Observed::Gone)) => {
            c.action = Action::Create;
            c.reason = Some("it was deleted outside provisioner".into());
            return c;
        }
        _ => {}
    }
    let before = match observed {
        Some(Observed::Live(attrs)) => attrs,
        _ => &rec.attrs,
    };
    let names: BTreeSet<&String> = d.attrs.keys().chain(before.keys()).collect();
    let mut drifted = false;
    for name in names.into_iter().filter(|n| !is_nested(n)) {
        let (b, a) = (before.get(name), d.attrs.get(name));
        if b != a {
            drifted |= b != rec.attrs.get(name);
            field_changes(
                name,
                b,
                a,
                d.spec.on_change(name) == OnChange::Replace,
                &mut c.fields,
            );
        }
    }
    if let Some(n) = nested {
        c.objects = sub_changes(n, before.get(n.attr), d.attrs.get(n.attr));
        drifted |= before.get(n.attr) != rec.attrs.get(n.attr) && !c.objects.is_empty();
    }
    if c.fields.iter().any(|f| f.forces_replacement) {
        c.action = Action::Replace;
        let why: BTreeSet<&str> = c
            .fields
            .iter()
            .filter(|f| f.forces_replacement)
            .map(|f| top_field(&f.name))
            .collect();
        c.reason = Some(format!(
            "{} cannot change in place",
            why.into_iter().collect::<Vec<_>>().join(", ")
        ));
        c.data_loss = d.spec.holds_data || c.objects.iter().any(|o| o.data_loss);
    } else if !c.fields.is_empty() || !c.objects.is_empty() {
        c.action = Action::Update;
        c.data_loss = c.objects.iter().any(|o| o.data_loss);
        c.reason = match (drifted, c.objects.is_empty()) {
            (true, _) => Some("the live resource differs (drift)".into()),
            (false, false) => Some(summarise(&c.objects)),
            (false, true) => None,
        };
    }
    c
}

/// `metadata` of `metadata.roles`, `objects` of `objects[2].x`.
fn top_field(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or(path)
}

/// Field changes between two values, by path: maps are followed key by key
/// and lists of equal length item by item, so a change reads
/// `spec.template.spec.containers[0].image: "a" -> "b"`.
fn field_changes(
    path: &str,
    before: Option<&Value>,
    after: Option<&Value>,
    forces: bool,
    out: &mut Vec<FieldChange>,
) {
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for k in keys {
                if b.get(k) != a.get(k) {
                    field_changes(&format!("{path}.{k}"), b.get(k), a.get(k), forces, out);
                }
            }
        }
        (Some(Value::Array(b)), Some(Value::Array(a))) if a.len() == b.len() => {
            for (i, (x, y)) in b.iter().zip(a).enumerate() {
                if x != y {
                    field_changes(&format!("{path}[{i}]"), Some(x), Some(y), forces, out);
                }
            }
        }
        _ => out.push(FieldChange {
            name: path.to_owned(),
            before: before.cloned(),
            after: after.cloned(),
            forces_replacement: forces,
        }),
    }
}

/// Sub-objects of a nested attribute, one change each (unchanged ones left out).
fn sub_changes(n: &Nested, before: Option<&Value>, after: Option<&Value>) -> Vec<SubChange> {
    let empty = serde_json::Map::new();
    let b = before.and_then(Value::as_object).unwrap_or(&empty);
    let a = after.and_then(Value::as_object).unwrap_or(&empty);
    // In the order the objects are applied (the desired map's), then the pruned ones.
    let keys: Vec<&String> = a
        .keys()
        .chain(b.keys().filter(|k| !a.contains_key(*k)))
        .collect();
    let mut out = Vec::new();
    for key in keys {
        let (x, y) = (b.get(key), a.get(key));
        let mut s = SubChange {
            key: key.clone(),
            action: Action::NoOp,
            reason: None,
            fields: Vec::new(),
            data_loss: false,
        };
        match (x, y) {
            (None, Some(_)) => s.action = Action::Create,
            (Some(_), None) => {
                s.action = Action::Delete;
                s.reason = Some("no longer rendered: pruned".into());
                s.data_loss = (n.holds_data)(key);
            }
            (Some(x), Some(y)) if x != y => {
                let mut fields = Vec::new();
                field_changes("", Some(x), Some(y), false, &mut fields);
                for f in &mut fields {
                    f.name = f.name.trim_start_matches('.').to_owned();
                    f.forces_replacement = (n.replaces)(key, &f.name);
                }
                let why: BTreeSet<&str> = fields
                    .iter()
                    .filter(|f| f.forces_replacement)
                    .map(|f| f.name.as_str())
                    .collect();
                if why.is_empty() {
                    s.action = Action::Update;
                } else {
                    s.action = Action::Replace;
                    s.reason = Some(format!(
                        "{} cannot change in place",
                        why.into_iter().collect::<Vec<_>>().join(", ")
                    ));
                    s.data_loss = (n.holds_data)(key);
                }
                s.fields = fields;
            }
            _ => continue,
        }
        out.push(s);
    }
    out
}

/// `2 objects to create, 1 to update`.
fn summarise(objects: &[SubChange]) -> String {
    let count = |a: Action| objects.iter().filter(|o| o.action == a).count();
    let parts: Vec<String> = [
        (Action::Create, "create"),
        (Action::Update, "update"),
        (Action::Replace, "replace"),
        (Action::Delete, "delete"),
    ]
    .into_iter()
    .filter(|(a, _)| count(*a) > 0)
    .map(|(a, w)| format!("{} to {w}", count(a)))
    .collect();
    format!("objects: {}", parts.join(", "))
}

/// A resource whose identity-defining field refers to a replaced resource is
/// replaced too; one that refers to it from an updatable field is updated.
fn propagate_replacements(desired: &[Desired], changes: &mut [Change]) {
    loop {
        let replaced: BTreeSet<Address> = changes
            .iter()
            .filter(|c| c.action == Action::Replace)
            .map(|c| c.address.clone())
            .collect();
        let mut changed = false;
        for (d, c) in desired.iter().zip(changes.iter_mut()) {
            if matches!(c.action, Action::Replace | Action::Create) {
                continue;
            }
            for (field, v) in &d.attrs {
                let refs: Vec<Address> = Ref::all_in(v).into_iter().map(|r| r.address).collect();
                let Some(target) = refs.iter().find(|a| replaced.contains(*a)) else {
                    continue;
                };
                let forces = d.spec.on_change(field) == OnChange::Replace;
                c.fields.push(FieldChange {
                    name: field.clone(),
                    before: Some(v.clone()),
                    after: Some(Value::String("(known after apply)".into())),
                    forces_replacement: forces,
                });
                if forces {
                    c.action = Action::Replace;
                    c.reason = Some(format!("{field} refers to {target}, which is replaced"));
                    c.data_loss = d.spec.holds_data;
                    changed = true;
                    break;
                } else if c.action == Action::NoOp {
                    c.action = Action::Update;
                    c.reason = Some(format!("{field} refers to {target}, which is replaced"));
                }
            }
        }
        if !changed {
            return;
        }
    }
}

/// Keep targeted changes plus what they depend on (for applies) or what
/// depends on them (for deletes), like Terraform's `-target`.
pub fn restrict(changes: Vec<Change>, targets: &[String]) -> Vec<Change> {
    if targets.is_empty() {
        return changes;
    }
    let mut keep: BTreeSet<Address> = changes
        .iter()
        .filter(|c| targets.iter().any(|t| c.address.matches(t)))
        .map(|c| c.address.clone())
        .collect();
    loop {
        let before = keep.len();
        for c in &changes {
            if keep.contains(&c.address) && c.action != Action::Delete {
                keep.extend(c.depends_on.iter().cloned());
            }
            if c.action == Action::Delete && c.depends_on.iter().any(|d| keep.contains(d)) {
                keep.insert(c.address.clone());
            }
        }
        if keep.len() == before {
            break;
        }
    }
    changes
        .into_iter()
        .filter(|c| keep.contains(&c.address))
        .collect()
}

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    pub no_op: usize,
}

impl Summary {
    pub fn of(changes: &[Change]) -> Self {
        let mut s = Summary::default();
        for c in changes {
            match c.action {
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Replace => s.replace += 1,
                Action::Delete => s.delete += 1,
                Action::NoOp => s.no_op += 1,
            }
        }
        s
    }
    pub fn has_changes(&self) -> bool {
        self.create + self.update + self.replace + self.delete > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Record;
    use serde_json::json;

    fn rec(kind: &str, attrs: Value) -> Record {
        Record {
            kind: kind.into(),
            id: Some("id".into()),
            status: Status::Ready,
            attrs: attrs.as_object().unwrap().clone().into_iter().collect(),
            outputs: BTreeMap::new(),
            deps: vec![],
            sealed: None,
            secrets: BTreeMap::new(),
            updated_at: String::new(),
        }
    }

    fn net() -> Address {
        Address::new("network", "main")
    }

    #[test]
    fn create_update_replace_delete_and_propagation() {
        let desired = vec![
            Desired::new(net(), json!({"name": "new-name"})),
            Desired::new(
                Address::new("subnet", "main"),
                json!({"network": Ref::id(&net()), "cidr": "10.0.1.0/24"}),
            ),
            Desired::new(
                Address::new("keypair", "deploy"),
                json!({"name": "k", "public_key_file": "a"}),
            ),
        ];
        let mut st = StateFile::new("t");
        st.resources
            .insert(net(), rec("network", json!({"name": "old"})));
        st.resources.insert(
            Address::new("subnet", "main"),
            rec(
                "subnet",
                json!({"network": Ref::id(&net()), "cidr": "10.0.0.0/24"}),
            ),
        );
        st.resources.insert(
            Address::new("volume", "gone[0]"),
            rec("volume", json!({"size_gb": 1})),
        );
        let ch = diff(&desired, &st, &BTreeMap::new());
        let by = |a: &str| ch.iter().find(|c| c.address.as_str() == a).unwrap();
        assert_eq!(by("network.main").action, Action::Update);
        assert_eq!(by("subnet.main").action, Action::Replace);
        assert!(
            by("subnet.main")
                .reason
                .as_deref()
                .unwrap()
                .contains("cidr")
        );
        assert_eq!(by("keypair.deploy").action, Action::Create);
        let gone = by("volume.gone[0]");
        assert_eq!(gone.action, Action::Delete);
        assert!(gone.data_loss);
    }

    #[test]
    fn replacing_a_dependency_replaces_dependents() {
        let desired = vec![
            Desired::new(net(), json!({"name": "n", "mtu": 1400})),
            Desired::new(
                Address::new("subnet", "main"),
                json!({"network": Ref::id(&net()), "cidr": "10.0.0.0/24"}),
            ),
        ];
        let mut st = StateFile::new("t");
        st.resources.insert(
            net(),
            rec(
                "network",
                json!({"name": "n", "mtu": 1400, "identity": "old"}),
            ),
        );
        st.resources.insert(
            Address::new("subnet", "main"),
            rec(
                "subnet",
                json!({"network": Ref::id(&net()), "cidr": "10.0.0.0/24"}),
            ),
        );
        let ch = diff(&desired, &st, &BTreeMap::new());
        assert_eq!(
            ch[0].action,
            Action::Replace,
            "unknown field removed => replace"
        );
        assert_eq!(ch[1].action, Action::Replace);
        assert!(ch[1].reason.as_deref().unwrap().contains("network.main"));
    }

    #[test]
    fn drift_and_gone() {
        let desired = vec![Desired::new(net(), json!({"name": "n"}))];
        let mut st = StateFile::new("t");
        st.resources
            .insert(net(), rec("network", json!({"name": "n"})));
        let mut obs = BTreeMap::new();
        obs.insert(
            net(),
            Observed::Live(
                json!({"name": "changed-by-hand"})
                    .as_object()
                    .unwrap()
                    .clone()
                    .into_iter()
                    .collect(),
            ),
        );
        assert_eq!(diff(&desired, &st, &obs)[0].action, Action::Update);
        obs.insert(net(), Observed::Gone);
        assert_eq!(diff(&desired, &st, &obs)[0].action, Action::Create);
        assert_eq!(
            diff(&desired, &st, &BTreeMap::new())[0].action,
            Action::NoOp
        );
    }

    #[test]
    fn restrict_keeps_dependencies() {
        let desired = vec![
            Desired::new(net(), json!({"name": "n"})),
            Desired::new(
                Address::new("subnet", "main"),
                json!({"network": Ref::id(&net()), "cidr": "10.0.0.0/24"}),
            ),
            Desired::new(
                Address::new("keypair", "deploy"),
                json!({"name": "k", "public_key_file": "a"}),
            ),
        ];
        let ch = restrict(
            diff(&desired, &StateFile::new("t"), &BTreeMap::new()),
            &["subnet".into()],
        );
        let a: Vec<&str> = ch.iter().map(|c| c.address.as_str()).collect();
        assert_eq!(a, vec!["network.main", "subnet.main"]);
    }
}

//! Plans for people and for machines. The JSON document is versioned and
//! stable: no timestamps, deterministic order.

use std::fmt::Write;

use serde::Serialize;
use serde_json::Value;

use super::diff::{Action, Change, Summary};
use crate::core::Ref;
use crate::env::load::Problem;

pub const FORMAT_VERSION: &str = "1";

#[derive(Debug, Serialize)]
pub struct PlanDoc<'a> {
    pub format_version: &'static str,
    pub environment: &'a str,
    pub operation: &'a str,
    pub state: String,
    pub summary: Summary,
    pub changes: Vec<&'a Change>,
    #[serde(skip_serializing_if = "<[Problem]>::is_empty")]
    pub warnings: &'a [Problem],
}

fn show(v: &Value) -> String {
    match Ref::parse(v) {
        Some(r) => r.to_string(),
        None => v.to_string(),
    }
}

pub fn human(doc: &PlanDoc) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} plan for `{}` (state: {})", doc.operation, doc.environment, doc.state);
    for w in doc.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let width = doc.changes.iter().map(|c| c.address.as_str().len()).max().unwrap_or(0);
    for c in doc.changes.iter().filter(|c| c.action != Action::NoOp) {
        let (sym, word) = match c.action {
            Action::Create => ("+", "create".to_owned()),
            Action::Update => ("~", "update in place".to_owned()),
            Action::Replace => ("-/+", "REPLACE".to_owned()),
            Action::Delete => ("-", "delete".to_owned()),
            Action::NoOp => (" ", String::new()),
        };
        let _ = write!(out, "  {sym:>3} {:<width$}  {word}", c.address.as_str());
        if let Some(r) = &c.reason {
            let _ = write!(out, " ({r})");
        }
        if c.data_loss && matches!(c.action, Action::Replace | Action::Delete) {
            let _ = write!(out, "  !! DATA ON IT IS LOST");
        }
        out.push('\n');
        if c.action != Action::Create {
            for f in &c.fields {
                let b = f.before.as_ref().map_or("(none)".into(), show);
                let a = f.after.as_ref().map_or("(none)".into(), show);
                let forces = if f.forces_replacement { "  # forces replacement" } else { "" };
                let _ = writeln!(out, "        {}: {b} -> {a}{forces}", f.name);
            }
        }
    }
    let s = doc.summary;
    if s.has_changes() {
        let _ = writeln!(out, "Plan: {} to create, {} to update, {} to replace, {} to delete, {} unchanged.", s.create, s.update, s.replace, s.delete, s.no_op);
    } else {
        let _ = writeln!(out, "No changes: `{}` matches its environment file ({} resources).", doc.environment, s.no_op);
    }
    out
}

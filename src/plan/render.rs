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
    /// What the plan leaves out, and why.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub notes: &'a [String],
}

fn show(v: &Value) -> String {
    if let Some(r) = Ref::parse(v) {
        return r.to_string();
    }
    // Secret values travel as tokens; a plan only says they are there.
    match v {
        Value::String(s) if !crate::charts::object::tokens_in(s).is_empty() => "(sensitive)".into(),
        _ => v.to_string(),
    }
}

fn symbol(a: Action) -> (&'static str, &'static str) {
    match a {
        Action::Create => ("+", "create"),
        Action::Update => ("~", "update in place"),
        Action::Replace => ("-/+", "REPLACE"),
        Action::Delete => ("-", "delete"),
        Action::NoOp => (" ", ""),
    }
}

fn fields(out: &mut String, indent: usize, fields: &[super::diff::FieldChange]) {
    for f in fields {
        let b = f.before.as_ref().map_or("(none)".into(), show);
        let a = f.after.as_ref().map_or("(none)".into(), show);
        let forces = if f.forces_replacement {
            "  # forces replacement"
        } else {
            ""
        };
        let _ = writeln!(out, "{:indent$}{}: {b} -> {a}{forces}", "", f.name);
    }
}

pub fn human(doc: &PlanDoc) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} plan for `{}` (state: {})",
        doc.operation, doc.environment, doc.state
    );
    for w in doc.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    for n in doc.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let width = doc
        .changes
        .iter()
        .map(|c| c.address.as_str().len())
        .max()
        .unwrap_or(0);
    for c in doc.changes.iter().filter(|c| c.action != Action::NoOp) {
        let (sym, word) = symbol(c.action);
        let _ = write!(out, "  {sym:>3} {:<width$}  {word}", c.address.as_str());
        if let Some(r) = &c.reason {
            let _ = write!(out, " ({r})");
        }
        if c.data_loss {
            let _ = write!(
                out,
                "{}",
                if c.objects.iter().any(|o| o.data_loss) {
                    "  !! DATA IS LOST (below)"
                } else {
                    "  !! DATA ON IT IS LOST"
                }
            );
        }
        out.push('\n');
        if let Some(b) = &c.basis {
            let _ = writeln!(out, "        (compared with {b})");
        }
        if c.action != Action::Create {
            fields(&mut out, 8, &c.fields);
        }
        for o in &c.objects {
            let (sym, word) = symbol(o.action);
            let _ = write!(out, "      {sym:>3} {}  {word}", o.key);
            if let Some(r) = &o.reason {
                let _ = write!(out, " ({r})");
            }
            if o.data_loss {
                let _ = write!(out, "  !! DATA ON IT IS LOST");
            }
            out.push('\n');
            fields(&mut out, 12, &o.fields);
        }
    }
    let s = doc.summary;
    if s.has_changes() {
        let _ = writeln!(
            out,
            "Plan: {} to create, {} to update, {} to replace, {} to delete, {} unchanged.",
            s.create, s.update, s.replace, s.delete, s.no_op
        );
    } else {
        let _ = writeln!(
            out,
            "No changes: `{}` matches its environment file ({} resources).",
            doc.environment, s.no_op
        );
    }
    out
}

//! One validator for the two kinds of schema charts carry: a chart's
//! `values.schema.json` (JSON Schema) and the `openAPIV3Schema` of the CRDs we
//! ship (structural schemas), so values and custom resources are checked
//! before anything reaches a cluster — even one that has no CRD yet.
//!
//! Supported: type (one or a list), properties, required, additionalProperties
//! (bool or schema), items, enum, const, minimum/maximum, minLength/maxLength,
//! minItems/maxItems, pattern, anyOf/oneOf/allOf, nullable and the
//! `x-kubernetes-preserve-unknown-fields` / `x-kubernetes-int-or-string`
//! extensions. In structural mode an unknown field is an error, because the
//! API server would silently drop it.

use serde_json::Value;

/// How unknown object fields are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// JSON Schema: allowed unless `additionalProperties: false`.
    JsonSchema,
    /// Kubernetes structural schema: refused unless preserved.
    Structural,
}

/// One problem: where (`spec.templates[0].name`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            if self.path.is_empty() {
                "(root)"
            } else {
                &self.path
            },
            self.message
        )
    }
}

pub fn validate(schema: &Value, value: &Value, mode: Mode) -> Vec<Violation> {
    let mut out = Vec::new();
    check(schema, value, mode, "", &mut out);
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    let actual = type_name(v);
    actual == t || (t == "number" && actual == "integer")
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn check(schema: &Value, v: &Value, mode: Mode, path: &str, out: &mut Vec<Violation>) {
    let Some(s) = schema.as_object() else { return };
    let mut fail = |message: String| {
        out.push(Violation {
            path: path.to_owned(),
            message,
        })
    };
    if v.is_null() && s.get("nullable").and_then(Value::as_bool) == Some(true) {
        return;
    }
    if s.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        if !(is_type(v, "integer") || is_type(v, "string")) {
            fail(format!(
                "expected an integer or a string, got {}",
                type_name(v)
            ));
        }
        return;
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() && !types.iter().any(|t| is_type(v, t)) {
        fail(format!(
            "expected {}, got {} ({})",
            types.join(" or "),
            type_name(v),
            short(v)
        ));
        return;
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        fail(format!(
            "{} is not one of {}",
            short(v),
            e.iter().map(short).collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        fail(format!("must be {}", short(c)));
    }
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(m) = s.get("minimum").and_then(Value::as_f64)
                && x < m
            {
                fail(format!("{x} is less than the minimum {m}"));
            }
            if let Some(m) = s.get("maximum").and_then(Value::as_f64)
                && x > m
            {
                fail(format!("{x} is more than the maximum {m}"));
            }
        }
        Value::String(t) => {
            let n = t.chars().count() as u64;
            if let Some(m) = s.get("minLength").and_then(Value::as_u64)
                && n < m
            {
                fail(format!("shorter than {m} characters"));
            }
            if let Some(m) = s.get("maxLength").and_then(Value::as_u64)
                && n > m
            {
                fail(format!("longer than {m} characters"));
            }
            if let Some(p) = s.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(p) {
                    Ok(re) if !re.is_match(t) => {
                        fail(format!("{} does not match the pattern {p}", short(v)))
                    }
                    Err(e) => fail(format!(
                        "the schema's pattern {p} is not a valid regular expression: {e}"
                    )),
                    Ok(_) => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(m) = s.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < m
            {
                fail(format!("fewer than {m} items"));
            }
            if let Some(m) = s.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > m
            {
                fail(format!("more than {m} items"));
            }
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, mode, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::Object(m) => {
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !m.contains_key(r) {
                    out.push(Violation {
                        path: join(path, r),
                        message: "is required".into(),
                    });
                }
            }
            let props = s.get("properties").and_then(Value::as_object);
            let preserve = s
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            let additional = s.get("additionalProperties");
            for (k, val) in m {
                let p = join(path, k);
                if let Some(ps) = props.and_then(|ps| ps.get(k)) {
                    check(ps, val, mode, &p, out);
                    continue;
                }
                match additional {
                    Some(Value::Bool(false)) => out.push(Violation {
                        path: p,
                        message: "unknown field".into(),
                    }),
                    Some(a @ Value::Object(_)) => check(a, val, mode, &p, out),
                    Some(Value::Bool(true)) => {}
                    _ if mode == Mode::Structural
                        && !preserve
                        && (props.is_some()
                            || s.get("type").and_then(Value::as_str) == Some("object")) =>
                    {
                        out.push(Violation {
                            path: p,
                            message: "unknown field (the API server would drop it)".into(),
                        })
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    for key in ["allOf"] {
        for sub in s.get(key).and_then(Value::as_array).into_iter().flatten() {
            check(sub, v, mode, path, out);
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(subs) = s.get(key).and_then(Value::as_array) {
            let matching = subs
                .iter()
                .filter(|sub| validate_at(sub, v, mode, path).is_empty())
                .count();
            let ok = if key == "anyOf" {
                matching >= 1
            } else {
                matching == 1
            };
            if !ok {
                out.push(Violation {
                    path: path.to_owned(),
                    message: format!("matches {matching} of the {key} alternatives"),
                });
            }
        }
    }
}

fn validate_at(schema: &Value, v: &Value, mode: Mode, path: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    check(schema, v, mode, path, &mut out);
    out
}

/// A value shortened for messages.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "replicas": {"type": "integer", "minimum": 1},
                "image": {"type": "object", "required": ["repository"], "properties": {
                    "repository": {"type": "string", "pattern": "^[a-z0-9./:@-]+$"},
                    "pullPolicy": {"type": "string", "enum": ["Always", "IfNotPresent", "Never"]}
                }},
                "port": {"x-kubernetes-int-or-string": true},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "env": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}
            }
        })
    }

    #[test]
    fn types_enums_ranges_and_paths() {
        let v = json!({"replicas": "3", "image": {"pullPolicy": "Sometimes"}, "port": 1.5, "env": [{"name": 1}]});
        let got: Vec<String> = validate(&schema(), &v, Mode::JsonSchema)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            got.contains(&"replicas: expected integer, got string (\"3\")".to_owned()),
            "{got:?}"
        );
        assert!(
            got.contains(&"image.repository: is required".to_owned()),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|g| g.starts_with("image.pullPolicy: \"Sometimes\" is not one of")),
            "{got:?}"
        );
        assert!(
            got.contains(&"port: expected an integer or a string, got number".to_owned()),
            "{got:?}"
        );
        assert!(
            got.contains(&"env[0].name: expected string, got integer (1)".to_owned()),
            "{got:?}"
        );
        assert!(
            validate(&schema(), &json!({"replicas": 0}), Mode::JsonSchema)[0]
                .message
                .contains("minimum")
        );
    }

    #[test]
    fn unknown_fields_depend_on_the_mode() {
        let v = json!({"replicaz": 2, "extra": {"anything": {"goes": 1}}});
        assert!(validate(&schema(), &v, Mode::JsonSchema).is_empty());
        let s = validate(&schema(), &v, Mode::Structural);
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].path, "replicaz");
    }
}

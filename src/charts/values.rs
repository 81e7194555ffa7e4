//! Values layering, lowest first: the chart's `values.yaml`, the stack's
//! release values, the environment's `releases.<name>` and `--set`. Maps merge
//! key by key, `null` removes a key (as in Helm), everything else replaces.

use serde_json::{Map, Value};

use super::ChartError;

/// `over` on top of `base`.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(k);
                } else if let Some(slot) = b.get_mut(k) {
                    merge(slot, v);
                } else {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// One `--set release.path.to.key=value`: the release, and a values document
/// holding just that key. The value is read as YAML (`3` is a number, `true` a
/// bool, `"3"` a string).
pub fn parse_set(s: &str) -> Result<(String, Value), ChartError> {
    let bad = |message: &str| ChartError::Parse {
        file: "--set".into(),
        message: format!("`{s}`: {message}"),
        hint: "write --set RELEASE.path.to.key=value, e.g. --set titiler.replicas=3".into(),
    };
    let (path, raw) = s.split_once('=').ok_or_else(|| bad("no `=`"))?;
    let mut keys = path.split('.');
    let release = keys
        .next()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| bad("no release name"))?;
    let keys: Vec<&str> = keys.collect();
    if keys.is_empty() || keys.iter().any(|k| k.is_empty()) {
        return Err(bad("no key after the release name"));
    }
    let mut value: Value =
        serde_saphyr::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
    for k in keys.iter().rev() {
        let mut m = Map::new();
        m.insert((*k).to_owned(), value);
        value = Value::Object(m);
    }
    Ok((release.to_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layers_merge_maps_and_null_removes() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "list": [1, 2], "gone": true});
        merge(
            &mut v,
            &json!({"a": {"c": 3, "d": 4}, "list": [9], "gone": null}),
        );
        assert_eq!(v, json!({"a": {"b": 1, "c": 3, "d": 4}, "list": [9]}));
    }

    #[test]
    fn set_builds_a_nested_document() {
        assert_eq!(
            parse_set("titiler.replicas=3").unwrap(),
            ("titiler".into(), json!({"replicas": 3}))
        );
        assert_eq!(
            parse_set("stac-api.image.tag=\"3\"").unwrap().1,
            json!({"image": {"tag": "3"}})
        );
        assert_eq!(
            parse_set("x.a.b=true").unwrap().1,
            json!({"a": {"b": true}})
        );
        assert!(parse_set("novalue").is_err());
        assert!(parse_set("release=1").is_err());
    }
}

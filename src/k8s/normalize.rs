//! Comparing what we apply with what the cluster has. The server adds
//! bookkeeping (managedFields, resourceVersion, status, defaults), so live and
//! desired are compared through a server-side dry-run of the desired object:
//! equal after `strip` means nothing would change. Where they differ, the
//! recorded object is overlaid with the live values of the fields we set, so
//! the plan shows drift field by field in the recorded object's own shape.
//! (Paths into documents: `core::json`.)

use serde_json::Value;

/// Remove what the server owns: status and metadata bookkeeping.
pub fn strip(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "managedFields",
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "generation",
                "selfLink",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                meta.remove(k);
            }
        }
    }
    v
}

pub use crate::core::json::{Seg, get, leaves, set};

/// The recorded object as the cluster has it: for every field we set whose
/// live value differs from what our apply would produce (the dry-run), the
/// live value. Equal to `recorded` when nothing drifted.
pub fn observed(recorded: &Value, dry_run: &Value, live: &Value) -> Value {
    let (d, l) = (strip(dry_run), strip(live));
    let mut out = recorded.clone();
    for (path, _) in leaves(recorded) {
        let (dv, lv) = (get(&d, &path), get(&l, &path));
        if dv != lv {
            set(&mut out, &path, lv.cloned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drift_shows_in_the_recorded_shape() {
        let recorded = json!({"metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "x"}}, "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "i:1"}]}}}});
        let dry = json!({"metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "x"}, "resourceVersion": "9"}, "spec": {"replicas": 2, "strategy": {}, "template": {"spec": {"containers": [{"name": "c", "image": "i:1", "imagePullPolicy": "IfNotPresent"}]}}}, "status": {"x": 1}});
        // Nothing drifted: defaults and bookkeeping do not count.
        assert_eq!(observed(&recorded, &dry, &dry), recorded);
        // Someone scaled it and relabelled it by hand.
        let mut live = dry.clone();
        live["spec"]["replicas"] = json!(5);
        live["metadata"]["labels"]["app.kubernetes.io/name"] = json!("y");
        let o = observed(&recorded, &dry, &live);
        assert_eq!(o["spec"]["replicas"], 5);
        assert_eq!(o["metadata"]["labels"]["app.kubernetes.io/name"], "y");
        assert_eq!(o["spec"]["template"], recorded["spec"]["template"]);
        // A field we set that is gone from the live object.
        let mut live = dry.clone();
        live["metadata"]["labels"].as_object_mut().unwrap().clear();
        assert!(
            observed(&recorded, &dry, &live)["metadata"]["labels"]
                .get("app.kubernetes.io/name")
                .is_none()
        );
    }
}

//! Readiness computed in-tree for every kind, kstatus-style: the controller
//! has observed the latest generation, and the kind's own signal says the
//! object is in service (Deployment available, StatefulSet and DaemonSet
//! ready, Job complete, PVC bound, CRD established, a custom resource's Ready
//! condition). When an object is not ready, its pods say why: waiting
//! reasons, exit codes, failing probes from events.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ready,
    /// Not yet; why, in a few words.
    Waiting(String),
    /// It will not get there without a change (a Job that failed).
    Failed(String),
}

fn i(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// The condition `kind` of `obj`: (status, reason, message).
pub fn condition<'a>(obj: &'a Value, kind: &str) -> Option<(&'a str, &'a str, &'a str)> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        .map(|c| {
            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
            (s("status"), s("reason"), s("message"))
        })
}

pub fn status(kind: &str, obj: &Value) -> Status {
    let generation = i(obj, "/metadata/generation");
    let observed = obj
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    if let Some(o) = observed
        && o < generation
    {
        return Status::Waiting(format!(
            "the controller has not seen generation {generation} yet"
        ));
    }
    let want = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    match kind {
        "Deployment" => {
            if let Some(("False", "ProgressDeadlineExceeded", m)) = condition(obj, "Progressing") {
                return Status::Failed(format!("rollout stuck: {m}"));
            }
            let (updated, available) = (
                i(obj, "/status/updatedReplicas"),
                i(obj, "/status/availableReplicas"),
            );
            if observed.is_none() {
                Status::Waiting("not seen by the controller yet".into())
            } else if updated < want || available < want || i(obj, "/status/replicas") > want {
                Status::Waiting(format!("{available}/{want} available, {updated} updated"))
            } else {
                Status::Ready
            }
        }
        "StatefulSet" => {
            let ready = i(obj, "/status/readyReplicas");
            let current = obj.pointer("/status/currentRevision");
            let update = obj.pointer("/status/updateRevision");
            if observed.is_none() {
                Status::Waiting("not seen by the controller yet".into())
            } else if ready < want {
                Status::Waiting(format!("{ready}/{want} ready"))
            } else if update.is_some() && current != update {
                Status::Waiting("rolling out a new revision".into())
            } else {
                Status::Ready
            }
        }
        "DaemonSet" => {
            let (desired, ready, updated) = (
                i(obj, "/status/desiredNumberScheduled"),
                i(obj, "/status/numberReady"),
                i(obj, "/status/updatedNumberScheduled"),
            );
            if observed.is_none() || ready < desired || updated < desired {
                Status::Waiting(format!("{ready}/{desired} ready"))
            } else {
                Status::Ready
            }
        }
        "Job" => match (condition(obj, "Complete"), condition(obj, "Failed")) {
            (Some(("True", _, _)), _) => Status::Ready,
            (_, Some(("True", reason, m))) => {
                Status::Failed(format!("the Job failed: {reason} {m}").trim().to_owned())
            }
            _ => Status::Waiting(format!(
                "{} succeeded, {} active, {} failed",
                i(obj, "/status/succeeded"),
                i(obj, "/status/active"),
                i(obj, "/status/failed")
            )),
        },
        "PersistentVolumeClaim" => match obj.pointer("/status/phase").and_then(Value::as_str) {
            Some("Bound") => Status::Ready,
            p => Status::Waiting(format!("not bound ({})", p.unwrap_or("no phase"))),
        },
        "CustomResourceDefinition" => match condition(obj, "Established") {
            Some(("True", _, _)) => Status::Ready,
            _ => Status::Waiting("not established".into()),
        },
        "Namespace" => match obj.pointer("/status/phase").and_then(Value::as_str) {
            Some("Active") | None => Status::Ready,
            Some(p) => Status::Waiting(format!("phase {p}")),
        },
        "Pod" => match obj.pointer("/status/phase").and_then(Value::as_str) {
            Some("Succeeded") => Status::Ready,
            Some("Failed") => Status::Failed("the pod failed".into()),
            _ => match condition(obj, "Ready") {
                Some(("True", _, _)) => Status::Ready,
                _ => Status::Waiting("not ready".into()),
            },
        },
        "Service" => {
            let lb = obj.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer");
            if lb && obj.pointer("/status/loadBalancer/ingress/0").is_none() {
                Status::Waiting("no load-balancer address yet".into())
            } else {
                Status::Ready
            }
        }
        // Custom resources: a Ready condition when they have one (kstatus);
        // without conditions, existing is all we can know.
        _ => match condition(obj, "Ready") {
            Some(("True", _, _)) | None => Status::Ready,
            Some((_, reason, m)) => {
                Status::Waiting(format!("Ready is not True: {reason} {m}").trim().to_owned())
            }
        },
    }
}

/// Container states that do not recover without a change: waiting on them is pointless.
const FATAL_WAITING: &[&str] = &[
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// What a pod's containers say is wrong, and whether it is hopeless.
pub fn pod_problems(pod: &Value) -> (bool, Vec<String>) {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let mut fatal = false;
    let mut out = Vec::new();
    for key in ["/status/initContainerStatuses", "/status/containerStatuses"] {
        for c in pod
            .pointer(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let cname = c.get("name").and_then(Value::as_str).unwrap_or("?");
            let restarts = c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            if let Some(w) = c.pointer("/state/waiting") {
                let reason = w.get("reason").and_then(Value::as_str).unwrap_or("Waiting");
                let msg = w.get("message").and_then(Value::as_str).unwrap_or("");
                fatal |= FATAL_WAITING.contains(&reason)
                    || (reason == "CrashLoopBackOff" && restarts >= 2);
                let mut line = format!("pod {name}: container {cname} waiting: {reason}");
                if !msg.is_empty() {
                    line.push_str(&format!(" ({msg})"));
                }
                if let Some(t) = c.pointer("/lastState/terminated") {
                    line.push_str(&format!(
                        "; last exit {} {}, {restarts} restarts",
                        t.get("exitCode").and_then(Value::as_i64).unwrap_or(-1),
                        t.get("reason").and_then(Value::as_str).unwrap_or("")
                    ));
                }
                out.push(line.trim_end().to_owned());
            } else if let Some(t) = c.pointer("/state/terminated")
                && t.get("exitCode").and_then(Value::as_i64).unwrap_or(0) != 0
            {
                out.push(format!(
                    "pod {name}: container {cname} exited {} ({}), {restarts} restarts",
                    t.get("exitCode").and_then(Value::as_i64).unwrap_or(-1),
                    t.get("reason").and_then(Value::as_str).unwrap_or("Error")
                ));
            } else if c.get("ready").and_then(Value::as_bool) == Some(false)
                && c.pointer("/state/running").is_some()
            {
                out.push(format!(
                    "pod {name}: container {cname} is running but not ready"
                ));
            }
        }
    }
    if out.is_empty()
        && let Some(("False", reason, m)) = condition(pod, "PodScheduled")
    {
        out.push(
            format!("pod {name}: not scheduled: {reason} {m}")
                .trim()
                .to_owned(),
        );
    }
    (fatal, out)
}

/// Probe failures and other warnings among a pod's events, newest last.
pub fn event_lines(events: &[Value]) -> Vec<String> {
    let mut ev: Vec<&Value> = events
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some("Warning"))
        .collect();
    ev.sort_by_key(|e| {
        e.get("lastTimestamp")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    });
    ev.iter()
        .rev()
        .take(3)
        .rev()
        .map(|e| {
            let obj = e
                .pointer("/involvedObject/name")
                .and_then(Value::as_str)
                .unwrap_or("?");
            format!(
                "pod {obj}: {}: {}",
                e.get("reason").and_then(Value::as_str).unwrap_or(""),
                e.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .trim()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn workloads_jobs_and_custom_resources() {
        let dep = |avail: i64| json!({"metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": avail}});
        assert_eq!(status("Deployment", &dep(2)), Status::Ready);
        assert!(matches!(status("Deployment", &dep(1)), Status::Waiting(w) if w.contains("1/2")));
        let stale = json!({"metadata": {"generation": 3}, "spec": {"replicas": 1}, "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}});
        assert!(
            matches!(status("Deployment", &stale), Status::Waiting(w) if w.contains("generation 3"))
        );
        let job = |t: &str| json!({"status": {"conditions": [{"type": t, "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}});
        assert_eq!(status("Job", &job("Complete")), Status::Ready);
        assert!(
            matches!(status("Job", &job("Failed")), Status::Failed(m) if m.contains("BackoffLimitExceeded"))
        );
        assert!(matches!(
            status("Job", &json!({"status": {"active": 1}})),
            Status::Waiting(_)
        ));
        assert_eq!(status("Widget", &json!({"status": {}})), Status::Ready);
        assert!(matches!(
            status(
                "Widget",
                &json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Pending"}]}})
            ),
            Status::Waiting(_)
        ));
    }

    #[test]
    fn pods_say_why() {
        let pod = json!({"metadata": {"name": "p"}, "status": {"containerStatuses": [{"name": "app", "restartCount": 0, "ready": false, "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "Container image \"x\" is not present with pull policy of Never"}}}]}});
        let (fatal, lines) = pod_problems(&pod);
        assert!(fatal);
        assert!(
            lines[0].contains("container app waiting: ErrImageNeverPull")
                && lines[0].contains("pull policy of Never"),
            "{lines:?}"
        );
        let crash = json!({"metadata": {"name": "p"}, "status": {"containerStatuses": [{"name": "app", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 127, "reason": "Error"}}}]}});
        let (fatal, lines) = pod_problems(&crash);
        assert!(fatal && lines[0].contains("last exit 127"), "{lines:?}");
    }
}

//! The storage layer: S3 buckets the environment creates and owns.

use serde_json::json;

use crate::core::Address;
use crate::env::model::{Environment, S3Location};
use crate::plan::resource::Desired;

pub fn desired(env: &Environment, out: &mut Vec<Desired>) {
    let tags = json!({ "provisioner:environment": env.name });
    let mut buckets: Vec<(&str, &S3Location)> = Vec::new();
    if let Some(w) = &env.workload {
        buckets.push(("workload", &w.s3));
    }
    if let Some(s) = &env.cluster.etcd_snapshots.s3 {
        buckets.push(("etcd_snapshots", s));
    }
    for (name, s) in buckets.into_iter().filter(|(_, s)| s.create) {
        out.push(Desired::new(
            Address::new("bucket", name),
            json!({
                "bucket": s.bucket,
                "endpoint": s.endpoint.clone().unwrap_or_else(|| "aws".into()),
                "force_destroy": s.force_destroy,
                "tags": tags,
            }),
        ));
    }
}

//! The platform layer: a namespace per namespace the releases use, and one
//! release per entry of the selected stacks, each carrying the objects its
//! chart renders (with secret tokens, never values), so the plan diffs them
//! object by object and field by field.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::Inputs;
use crate::charts::engine::{self, RenderInput};
use crate::charts::{Capabilities, ChartError, values};
use crate::core::{Address, Ref};
use crate::env::model::Environment;
use crate::env::secret::SecretRef;
use crate::plan::resource::Desired;

/// Where a stack's secret input comes from, as a value of the release's
/// `secrets` attribute: a generated secret is a reference to its sealed value;
/// `env:`/`file:` references stay references, read by the deploy engine.
pub fn secret_source(env: &Environment, source: &str) -> Option<Value> {
    if source == "registry.dockerconfigjson" {
        // Made at apply time from the user and the password reference (never in the plan).
        let reg = env.registry.as_ref()?;
        return Some(json!({ "dockerconfigjson": {
            "registry": crate::image::registry_host(&reg.url),
            "username": reg.username.as_ref()?,
            "password": read_at_apply(reg.password.as_ref()?)?,
        }}));
    }
    let r = match source {
        "workload.s3.access_key" => env.workload.as_ref()?.s3.access_key.as_ref()?,
        "workload.s3.secret_key" => env.workload.as_ref()?.s3.secret_key.as_ref()?,
        name => env.secrets.get(name)?,
    };
    Some(read_at_apply(r).unwrap_or_else(|| Ref::secret(&Address::new("secret", source), "value")))
}

/// An `env:`/`file:` reference as the deploy engine reads it; None for a
/// generated secret (its value lives in state).
fn read_at_apply(r: &SecretRef) -> Option<Value> {
    match r {
        SecretRef::Env(v) => Some(json!({ "env": v })),
        SecretRef::File(p) => Some(json!({ "file": p })),
        SecretRef::Generate(_) => None,
    }
}

pub fn desired(
    env: &Environment,
    inputs: &Inputs,
    out: &mut Vec<Desired>,
) -> Result<(), ChartError> {
    if env.stacks.is_empty() {
        return Ok(());
    }
    let Some(catalog) = inputs.catalog else {
        return Ok(());
    };
    let table;
    let capabilities = match inputs.capabilities {
        Some(c) => c,
        None => {
            let v = Capabilities::parse_version(&env.cluster.kubernetes_version)
                .unwrap_or_else(|| semver::Version::new(1, 20, 0));
            table = Capabilities::for_version(&v);
            &table
        }
    };
    let env_context = engine::env_context(env, &inputs.images);
    let mut namespaces = BTreeSet::new();
    let mut releases = Vec::new();
    let mut declared = BTreeSet::new();
    for stack_name in &env.stacks {
        for r in &catalog.stack(stack_name)?.releases {
            declared.insert(r.name.clone());
            releases.push(r);
        }
    }
    if let Some((rel, _)) = inputs.sets.iter().find(|(rel, _)| !declared.contains(rel)) {
        return Err(ChartError::UnknownRelease {
            release: rel.clone(),
            available: declared.iter().cloned().collect(),
        });
    }
    for r in &releases {
        for n in &r.needs {
            if !declared.contains(n) {
                return Err(ChartError::UnknownNeed {
                    release: r.name.clone(),
                    needs: n.clone(),
                });
            }
        }
    }
    for r in releases {
        let chart = catalog.chart(&r.name, &r.chart)?;
        let mut merged = chart.values.clone();
        values::merge(&mut merged, &r.values);
        if let Some(v) = env.releases.get(&r.name) {
            values::merge(&mut merged, v);
        }
        for (_, v) in inputs.sets.iter().filter(|(rel, _)| *rel == r.name) {
            values::merge(&mut merged, v);
        }
        let mut secrets = BTreeMap::new();
        for (input, source) in &r.secrets {
            // `name?`: optional; the chart sees no `Secrets.<input>` when the environment lacks it.
            if let Some(optional) = source.strip_suffix('?') {
                if let Some(v) = secret_source(env, optional) {
                    secrets.insert(input.clone(), v);
                }
                continue;
            }
            let v = secret_source(env, source).ok_or_else(|| ChartError::Invalid {
                object: format!("release.{}", r.name),
                template: "stacks".into(),
                message: format!(
                    "secret `{input}` comes from `{source}`, which the environment does not define"
                ),
                hint: format!("add `{source}` to the environment's `secrets:` as a reference"),
            })?;
            secrets.insert(input.clone(), v);
        }
        // Generated certificates: a resource each, wired in as secrets and outputs.
        let mut outputs = BTreeMap::new();
        for (c, spec) in &r.certificates {
            let addr = Address::new("certificate", &format!("{}-{c}", r.name));
            out.push(Desired::new(
                addr.clone(),
                json!({
                    "common_name": spec.common_name.clone().or_else(|| spec.dns_names.first().cloned()),
                    "dns_names": spec.dns_names,
                    "validity_days": spec.validity_days,
                    "renew_before_days": spec.renew_before_days,
                    "key": spec.key,
                    "renewal_due": false,
                }),
            ));
            for (input, part) in [("Cert", "crt"), ("Key", "key"), ("CACert", "ca_crt")] {
                secrets.insert(format!("{c}{input}"), Ref::secret(&addr, part));
            }
            outputs.insert(format!("{c}CA"), Ref::output(&addr, "ca_bundle"));
            outputs.insert(format!("{c}Version"), Ref::output(&addr, "not_after"));
        }
        let names: BTreeSet<String> = secrets.keys().cloned().collect();
        let output_names: BTreeSet<String> = outputs.keys().cloned().collect();
        let rendered = engine::render(
            catalog,
            chart,
            &RenderInput {
                release: &r.name,
                namespace: &r.namespace,
                environment: &env.name,
                // The revision a deploy would make. An object that renders it
                // changes on every deploy (as with Helm): the charts here do not.
                revision: inputs.revisions.get(&r.name).map_or(1, |n| n + 1),
                values: &merged,
                secrets: &names,
                outputs: &output_names,
                capabilities,
                env_context: &env_context,
            },
        )?;
        namespaces.insert(r.namespace.clone());
        // A release that runs one of our images waits for its push.
        let text = serde_json::to_string(&engine::as_map(&rendered)).unwrap_or_default();
        let pushes: Vec<Address> = inputs
            .images
            .iter()
            .filter(|(_, b)| text.contains(&b.digest))
            .map(|(dir, _)| super::images::address(dir))
            .collect();
        let mut needs = vec![Ref::id(&Address::new("namespace", &r.namespace))];
        needs.extend(r.needs.iter().map(|n| Ref::id(&Address::new("release", n))));
        out.push(Desired::new(
            Address::new("release", &r.name),
            json!({
                "chart": chart.meta.name,
                "chart_version": chart.meta.version,
                "namespace": r.namespace,
                "needs": needs,
                "values": merged,
                "secrets": secrets,
                "outputs": outputs,
                "wait": r.wait,
                "objects": engine::as_map(&rendered),
            }),
        ));
        if let Some(d) = out.last_mut() {
            d.deps.extend(pushes);
        }
    }
    for ns in namespaces {
        let mut d = Desired::new(
            Address::new("namespace", &ns),
            json!({ "name": ns, "environment": env.name }),
        );
        // Releases need their namespace; namespaces need the cluster this run may bootstrap.
        if env.cluster.enabled {
            d.deps.push(Address::new("kubeconfig", "admin"));
        }
        out.push(d);
    }
    Ok(())
}

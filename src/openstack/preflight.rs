//! Checks before the first create (design principle 6): the image, flavors and
//! external network exist, and the project's quotas hold what the plan adds.

use serde_json::Value;

use super::client::Svc;
use super::{Cx, server};
use crate::core::Address;
use crate::plan::diff::{Action, Change};
use crate::plan::resource::Desired;
use crate::provider::ProviderError;

/// What the plan adds, in quota units.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub instances: i64,
    pub cores: i64,
    pub ram_mb: i64,
    pub volumes: i64,
    pub gigabytes: i64,
    pub floating_ips: i64,
    pub security_group_rules: i64,
}

fn creates<'a>(changes: &'a [&'a Change], kind: &'a str) -> impl Iterator<Item = &'a Address> + 'a {
    changes
        .iter()
        .filter(move |c| c.kind == kind && matches!(c.action, Action::Create))
        .map(|c| &c.address)
}

pub async fn check(
    cx: &Cx,
    changes: &[&Change],
    desired: &[Desired],
) -> Result<Needs, ProviderError> {
    let attrs = |a: &Address| desired.iter().find(|d| &d.address == a).map(|d| &d.attrs);
    let mut problems = Vec::new();
    let mut needs = Needs::default();

    let mut images_checked = Vec::new();
    for a in creates(changes, "server") {
        let Some(at) = attrs(a) else { continue };
        needs.instances += 1;
        let fname = at.get("flavor").and_then(Value::as_str).unwrap_or_default();
        match server::flavor(cx, fname).await {
            Ok((_, vcpus, ram)) => {
                needs.cores += i64::from(vcpus);
                needs.ram_mb += i64::try_from(ram).unwrap_or(i64::MAX);
            }
            Err(e) => problems.push(format!("{a}: {}", e.message)),
        }
        // A reference is the node image this run builds: checked as its base below.
        let Some(image) = at.get("image").and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        if !images_checked.contains(&image) {
            if let Err(e) = server::image_id(cx, &image).await {
                problems.push(format!("{a}: {}", e.message));
            }
            images_checked.push(image);
        }
        if let Some(gb) = at.get("boot_volume_gb").and_then(Value::as_i64) {
            needs.volumes += 1;
            needs.gigabytes += gb;
        }
    }
    // A node image to build: its base and the builder's flavor exist (the
    // builder is one more server while it runs).
    for c in changes
        .iter()
        .filter(|c| c.kind == "image" && matches!(c.action, Action::Create | Action::Replace))
    {
        let Some(at) = attrs(&c.address) else { continue };
        let get = |k: &str| at.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        match server::flavor(cx, &get("flavor")).await {
            Ok((_, vcpus, ram)) => {
                needs.instances += 1;
                needs.cores += i64::from(vcpus);
                needs.ram_mb += i64::try_from(ram).unwrap_or(i64::MAX);
            }
            Err(e) => problems.push(format!("{} (builder flavor): {}", c.address, e.message)),
        }
        let base = get("base");
        if !images_checked.contains(&base) {
            if let Err(e) = server::image_id(cx, &base).await {
                problems.push(format!("{} (base image): {}", c.address, e.message));
            }
            images_checked.push(base);
        }
    }
    for a in creates(changes, "volume") {
        needs.volumes += 1;
        needs.gigabytes += attrs(a)
            .and_then(|at| at.get("size_gb"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
    }
    needs.floating_ips = creates(changes, "floating_ip").count() as i64;
    needs.security_group_rules = creates(changes, "security_group_rule").count() as i64;
    let needs_external = changes.iter().any(|c| {
        matches!(c.action, Action::Create) && (c.kind == "router" || c.kind == "floating_ip")
    });
    if needs_external && let Err(e) = cx.external_network_id().await {
        problems.push(e.message);
    }

    // Compute: absolute limits and usage of the token's project.
    let limits = cx.api.get(Svc::Compute, &["limits"], &[]).await?;
    let abs = limits
        .pointer("/limits/absolute")
        .cloned()
        .unwrap_or(Value::Null);
    let room = |max: &str, used: &str| -> Option<i64> {
        let m = abs.get(max)?.as_i64()?;
        (m >= 0).then(|| m - abs.get(used).and_then(Value::as_i64).unwrap_or(0))
    };
    for (what, need, left) in [
        (
            "instances",
            needs.instances,
            room("maxTotalInstances", "totalInstancesUsed"),
        ),
        (
            "cores",
            needs.cores,
            room("maxTotalCores", "totalCoresUsed"),
        ),
        (
            "RAM (MB)",
            needs.ram_mb,
            room("maxTotalRAMSize", "totalRAMUsed"),
        ),
    ] {
        if let Some(left) = left
            && need > left
        {
            problems.push(format!(
                "quota: the plan needs {need} {what}, the project has {left} left"
            ));
        }
    }

    // Neutron: quotas with usage (details), when the project id is known.
    if needs.floating_ips + needs.security_group_rules > 0
        && let Ok(project) = super::auth::project_id(&cx.api.session).await
        && let Ok(q) = cx
            .api
            .get(Svc::Network, &["quotas", &project, "details"], &[])
            .await
    {
        for (what, key, need) in [
            ("floating IPs", "floatingip", needs.floating_ips),
            (
                "security group rules",
                "security_group_rule",
                needs.security_group_rules,
            ),
        ] {
            let limit = q
                .pointer(&format!("/quota/{key}/limit"))
                .and_then(Value::as_i64)
                .unwrap_or(-1);
            let used = q
                .pointer(&format!("/quota/{key}/used"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if limit >= 0 && need > limit - used {
                problems.push(format!("quota: the plan needs {need} {what}, the project has {} left (limit {limit}, used {used})", limit - used));
            }
        }
    }
    // Cinder: limits with usage.
    if needs.volumes > 0
        && let Ok(l) = cx.api.get(Svc::Volume, &["limits"], &[]).await
    {
        let abs = l
            .pointer("/limits/absolute")
            .cloned()
            .unwrap_or(Value::Null);
        for (what, need, max, used) in [
            (
                "volumes",
                needs.volumes,
                "maxTotalVolumes",
                "totalVolumesUsed",
            ),
            (
                "GB of volumes",
                needs.gigabytes,
                "maxTotalVolumeGigabytes",
                "totalGigabytesUsed",
            ),
        ] {
            let m = abs.get(max).and_then(Value::as_i64).unwrap_or(-1);
            let u = abs.get(used).and_then(Value::as_i64).unwrap_or(0);
            if m >= 0 && need > m - u {
                problems.push(format!(
                    "quota: the plan needs {need} {what}, the project has {} left",
                    m - u
                ));
            }
        }
    }
    if problems.is_empty() {
        return Ok(needs);
    }
    let message = format!(
        "preflight failed, nothing was created:\n    {}",
        problems.join("\n    ")
    );
    // Quota problems alone are fixed by raising a quota; anything else by fixing the input.
    Err(if problems.iter().all(|p| p.starts_with("quota:")) {
        ProviderError::quota(message)
    } else {
        ProviderError::fatal(message)
    })
}

//! `network.*`: the environment's tenant network.

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::neutron::{self, NETWORKS, PORTS, str_attr};
use super::{Attrs, Cx, Kind, live, observed, rec_id};
use crate::plan::resource::Address;
use crate::provider::{Live, ProviderError};
use crate::state::Record;

pub struct Network;

fn body(attrs: &Attrs) -> Map<String, Value> {
    let mut b = Map::new();
    b.insert("name".into(), json!(str_attr(attrs, "name")));
    if let Some(m) = attrs.get("mtu") {
        b.insert("mtu".into(), m.clone());
    }
    b
}

#[async_trait]
impl Kind for Network {
    async fn read(&self, cx: &Cx, rec: &Record) -> Result<Option<Live>, ProviderError> {
        let Some(n) = neutron::show(&cx.api, NETWORKS, rec_id(rec)?).await? else { return Ok(None) };
        let attrs = observed(rec, &[("name", n.get("name").cloned()), ("mtu", n.get("mtu").cloned())]);
        Ok(Some(live(rec_id(rec)?.to_owned(), &attrs)))
    }
    async fn find(&self, cx: &Cx, addr: &Address, attrs: &Attrs, interrupted: bool) -> Result<Option<Live>, ProviderError> {
        let hit = neutron::find(&cx.api, NETWORKS, &cx.env, addr, Some(str_attr(attrs, "name")), interrupted).await?;
        hit.map(|n| Ok(live(neutron::id_of(&n)?, attrs))).transpose()
    }
    async fn create(&self, cx: &Cx, addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError> {
        let n = neutron::create(&cx.api, NETWORKS, &cx.env, addr, body(attrs)).await?;
        Ok(live(neutron::id_of(&n)?, attrs))
    }
    async fn update(&self, cx: &Cx, rec: &Record, attrs: &Attrs) -> Result<Live, ProviderError> {
        neutron::update(&cx.api, NETWORKS, rec_id(rec)?, body(attrs)).await?;
        Ok(live(rec_id(rec)?.to_owned(), attrs))
    }
    async fn delete(&self, cx: &Cx, rec: &Record) -> Result<(), ProviderError> {
        let id = rec_id(rec)?;
        // Ports Neutron made behind our back (DHCP, leftovers of deleted servers) keep
        // the network "in use"; router interfaces are removed by their own resource first.
        for p in neutron::list(&cx.api, PORTS, &[("network_id", id.to_owned())]).await? {
            let owner = p.get("device_owner").and_then(Value::as_str).unwrap_or_default();
            if owner.is_empty() || owner == "network:dhcp" || owner.starts_with("compute:") {
                neutron::delete(&cx.api, PORTS, &neutron::id_of(&p)?).await?;
            }
        }
        Ok(neutron::delete(&cx.api, NETWORKS, id).await?)
    }
    async fn discover(&self, cx: &Cx) -> Result<Vec<(Address, Live)>, ProviderError> {
        discover(cx, NETWORKS).await
    }
}

/// Owned resources of a Neutron collection, with the name as their only attribute.
pub async fn discover(cx: &Cx, c: neutron::Collection) -> Result<Vec<(Address, Live)>, ProviderError> {
    let mut out = Vec::new();
    for (addr, obj) in neutron::owned(&cx.api, c, &cx.env).await? {
        let mut attrs = Attrs::new();
        if let Some(n) = obj.get("name") {
            attrs.insert("name".into(), n.clone());
        }
        out.push((addr, live(neutron::id_of(&obj)?, &attrs)));
    }
    Ok(out)
}

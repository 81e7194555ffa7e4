//! `floating_ip.*`: a public address on the external network, associated with
//! a server's port. The description names the owner from the create request
//! on, so an interrupted create is found even before its tags are set.

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::neutron::{self, FLOATING_IPS, PORTS, str_attr};
use super::{Attrs, Cx, Kind, live, rec_id};
use crate::core::Address;
use crate::provider::{Live, ProviderError};
use crate::state::Record;

pub struct FloatingIp;

fn marker(env: &str, addr: &Address) -> String {
    format!("provisioner {env} {addr}")
}

async fn server_port(cx: &Cx, server: &str) -> Result<String, ProviderError> {
    let ports = neutron::list(&cx.api, PORTS, &[("device_id", server.to_owned())]).await?;
    let p = ports
        .first()
        .ok_or_else(|| ProviderError::transient(format!("server {server} has no port yet")))?;
    Ok(neutron::id_of(p)?)
}

fn fip_live(f: &Value, attrs: &Attrs) -> Result<Live, ProviderError> {
    let mut l = live(neutron::id_of(f)?, attrs);
    if let Some(a) = f.get("floating_ip_address") {
        l.outputs.insert("address".into(), a.clone());
    }
    Ok(l)
}

async fn associate(cx: &Cx, id: &str, attrs: &Attrs) -> Result<Value, ProviderError> {
    let port = server_port(cx, str_attr(attrs, "server")).await?;
    let mut b = Map::new();
    b.insert("port_id".into(), json!(port));
    Ok(neutron::update(&cx.api, FLOATING_IPS, id, b).await?)
}

#[async_trait]
impl Kind for FloatingIp {
    async fn read(&self, cx: &Cx, rec: &Record) -> Result<Option<Live>, ProviderError> {
        let Some(f) = neutron::show(&cx.api, FLOATING_IPS, rec_id(rec)?).await? else {
            return Ok(None);
        };
        let mut attrs = rec.attrs.clone();
        if f.get("port_id").is_none_or(Value::is_null) {
            attrs.insert("server".into(), json!("(not associated)"));
        }
        Ok(Some(fip_live(&f, &attrs)?))
    }
    async fn find(
        &self,
        cx: &Cx,
        addr: &Address,
        attrs: &Attrs,
        interrupted: bool,
    ) -> Result<Option<Live>, ProviderError> {
        let mut hit = neutron::find(&cx.api, FLOATING_IPS, &cx.env, addr, None, false).await?;
        if hit.is_none() && interrupted {
            let untagged = neutron::list(
                &cx.api,
                FLOATING_IPS,
                &[("description", marker(&cx.env, addr))],
            )
            .await?;
            if let Some(f) = untagged.into_iter().next() {
                neutron::set_tags(&cx.api, FLOATING_IPS, &neutron::id_of(&f)?, &cx.env, addr)
                    .await?;
                hit = Some(f);
            }
        }
        let Some(f) = hit else { return Ok(None) };
        let f = if f.get("port_id").is_none_or(Value::is_null) {
            associate(cx, &neutron::id_of(&f)?, attrs).await?
        } else {
            f
        };
        Ok(Some(fip_live(&f, attrs)?))
    }
    async fn create(&self, cx: &Cx, addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError> {
        let mut b = Map::new();
        b.insert(
            "floating_network_id".into(),
            json!(cx.external_network_id().await?),
        );
        b.insert(
            "port_id".into(),
            json!(server_port(cx, str_attr(attrs, "server")).await?),
        );
        b.insert("description".into(), json!(marker(&cx.env, addr)));
        let f = neutron::create(&cx.api, FLOATING_IPS, &cx.env, addr, b).await?;
        fip_live(&f, attrs)
    }
    async fn update(&self, cx: &Cx, rec: &Record, attrs: &Attrs) -> Result<Live, ProviderError> {
        let f = associate(cx, rec_id(rec)?, attrs).await?;
        fip_live(&f, attrs)
    }
    async fn delete(&self, cx: &Cx, rec: &Record) -> Result<(), ProviderError> {
        Ok(neutron::delete(&cx.api, FLOATING_IPS, rec_id(rec)?).await?)
    }
    async fn discover(&self, cx: &Cx) -> Result<Vec<(Address, Live)>, ProviderError> {
        neutron::discover(cx, FLOATING_IPS).await
    }
}

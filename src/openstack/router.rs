//! `router.*` (with its external gateway) and `router_interface.*`.

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::client::Svc;
use super::neutron::{self, PORTS, ROUTERS, str_attr};
use super::{Attrs, Cx, Kind, live, observed, rec_id};
use crate::core::Address;
use crate::provider::{Live, ProviderError};
use crate::state::Record;

pub struct Router;

async fn body(cx: &Cx, attrs: &Attrs) -> Result<Map<String, Value>, ProviderError> {
    let mut b = Map::new();
    b.insert("name".into(), json!(str_attr(attrs, "name")));
    b.insert(
        "external_gateway_info".into(),
        json!({ "network_id": cx.external_network_id().await? }),
    );
    Ok(b)
}

#[async_trait]
impl Kind for Router {
    async fn read(&self, cx: &Cx, rec: &Record) -> Result<Option<Live>, ProviderError> {
        let Some(r) = neutron::show(&cx.api, ROUTERS, rec_id(rec)?).await? else {
            return Ok(None);
        };
        let gw = r
            .pointer("/external_gateway_info/network_id")
            .and_then(Value::as_str);
        let ext = cx.external_network_id().await?;
        // Compare the gateway by id but report it as the configured name when it matches.
        let gw_attr = if gw == Some(ext.as_str()) {
            rec.attrs.get("external_network").cloned()
        } else {
            Some(json!(gw.unwrap_or("(none)")))
        };
        let attrs = observed(
            rec,
            &[
                ("name", r.get("name").cloned()),
                ("external_network", gw_attr),
            ],
        );
        Ok(Some(live(rec_id(rec)?.to_owned(), &attrs)))
    }
    async fn find(
        &self,
        cx: &Cx,
        addr: &Address,
        attrs: &Attrs,
        interrupted: bool,
    ) -> Result<Option<Live>, ProviderError> {
        let hit = neutron::find(
            &cx.api,
            ROUTERS,
            &cx.env,
            addr,
            Some(str_attr(attrs, "name")),
            interrupted,
        )
        .await?;
        hit.map(|r| Ok(live(neutron::id_of(&r)?, attrs)))
            .transpose()
    }
    async fn create(&self, cx: &Cx, addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError> {
        let r = neutron::create(&cx.api, ROUTERS, &cx.env, addr, body(cx, attrs).await?).await?;
        Ok(live(neutron::id_of(&r)?, attrs))
    }
    async fn update(&self, cx: &Cx, rec: &Record, attrs: &Attrs) -> Result<Live, ProviderError> {
        neutron::update(&cx.api, ROUTERS, rec_id(rec)?, body(cx, attrs).await?).await?;
        Ok(live(rec_id(rec)?.to_owned(), attrs))
    }
    async fn delete(&self, cx: &Cx, rec: &Record) -> Result<(), ProviderError> {
        let id = rec_id(rec)?;
        // Interfaces someone added by hand keep the router in use: detach them first.
        for p in neutron::list(
            &cx.api,
            PORTS,
            &[
                ("device_id", id.to_owned()),
                ("device_owner", "network:router_interface".into()),
            ],
        )
        .await?
        {
            let pid = neutron::id_of(&p)?;
            cx.api
                .put(
                    Svc::Network,
                    &["routers", id, "remove_router_interface"],
                    &json!({ "port_id": pid }),
                )
                .await
                .or_else(ignore_gone)?;
        }
        Ok(neutron::delete(&cx.api, ROUTERS, id).await?)
    }
    async fn discover(&self, cx: &Cx) -> Result<Vec<(Address, Live)>, ProviderError> {
        neutron::discover(cx, ROUTERS).await
    }
}

fn ignore_gone(e: super::client::ApiError) -> Result<Value, super::client::ApiError> {
    if e.is_not_found() {
        Ok(Value::Null)
    } else {
        Err(e)
    }
}

/// The router's port on the subnet: its identity is (router, subnet).
pub struct Interface;

async fn interface_port(
    cx: &Cx,
    router: &str,
    subnet: &str,
) -> Result<Option<Value>, ProviderError> {
    let ports = neutron::list(
        &cx.api,
        PORTS,
        &[
            ("device_id", router.to_owned()),
            ("fixed_ips", format!("subnet_id={subnet}")),
        ],
    )
    .await?;
    Ok(ports.into_iter().next())
}

fn iface_live(
    port: &Value,
    router: &str,
    subnet: &str,
    attrs: &Attrs,
) -> Result<Live, ProviderError> {
    let mut l = live(neutron::id_of(port)?, attrs);
    l.outputs.insert("router_id".into(), json!(router));
    l.outputs.insert("subnet_id".into(), json!(subnet));
    Ok(l)
}

#[async_trait]
impl Kind for Interface {
    async fn read(&self, cx: &Cx, rec: &Record) -> Result<Option<Live>, ProviderError> {
        let (router, subnet) = (out(rec, "router_id")?, out(rec, "subnet_id")?);
        Ok(interface_port(cx, router, subnet).await?.map(|p| {
            let mut l = live(neutron::id_of(&p).unwrap_or_default(), &rec.attrs);
            l.outputs = rec.outputs.clone();
            l
        }))
    }
    async fn find(
        &self,
        cx: &Cx,
        _addr: &Address,
        attrs: &Attrs,
        _interrupted: bool,
    ) -> Result<Option<Live>, ProviderError> {
        let (router, subnet) = (str_attr(attrs, "router"), str_attr(attrs, "subnet"));
        interface_port(cx, router, subnet)
            .await?
            .map(|p| iface_live(&p, router, subnet, attrs))
            .transpose()
    }
    async fn create(&self, cx: &Cx, _addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError> {
        let (router, subnet) = (str_attr(attrs, "router"), str_attr(attrs, "subnet"));
        let v = cx
            .api
            .put(
                Svc::Network,
                &["routers", router, "add_router_interface"],
                &json!({ "subnet_id": subnet }),
            )
            .await?;
        let port = json!({ "id": v.get("port_id").cloned().unwrap_or(Value::Null) });
        iface_live(&port, router, subnet, attrs)
    }
    async fn update(&self, _cx: &Cx, rec: &Record, _attrs: &Attrs) -> Result<Live, ProviderError> {
        Err(ProviderError::fatal(format!(
            "router interface {} cannot change in place",
            rec_id(rec)?
        )))
    }
    async fn delete(&self, cx: &Cx, rec: &Record) -> Result<(), ProviderError> {
        let (router, subnet) = (out(rec, "router_id")?, out(rec, "subnet_id")?);
        cx.api
            .put(
                Svc::Network,
                &["routers", router, "remove_router_interface"],
                &json!({ "subnet_id": subnet }),
            )
            .await
            .or_else(ignore_gone)?;
        Ok(())
    }
    async fn discover(&self, _cx: &Cx) -> Result<Vec<(Address, Live)>, ProviderError> {
        // Found through their router: deleting an owned router detaches its interfaces.
        Ok(Vec::new())
    }
}

fn out<'a>(rec: &'a Record, k: &str) -> Result<&'a str, ProviderError> {
    rec.outputs
        .get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::fatal(format!("record lacks `{k}`")))
}

//! `subnet.*`: the node subnet (CIDR, DNS servers).

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::neutron::{self, SUBNETS, str_attr};
use super::{Attrs, Cx, Kind, live, observed, rec_id};
use crate::core::Address;
use crate::provider::{Live, ProviderError};
use crate::state::Record;

pub struct Subnet;

#[async_trait]
impl Kind for Subnet {
    async fn read(&self, cx: &Cx, rec: &Record) -> Result<Option<Live>, ProviderError> {
        let Some(s) = neutron::show(&cx.api, SUBNETS, rec_id(rec)?).await? else {
            return Ok(None);
        };
        let attrs = observed(
            rec,
            &[
                ("name", s.get("name").cloned()),
                ("cidr", s.get("cidr").cloned()),
                ("dns", s.get("dns_nameservers").cloned()),
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
            SUBNETS,
            &cx.env,
            addr,
            Some(str_attr(attrs, "name")),
            interrupted,
        )
        .await?;
        hit.map(|n| Ok(live(neutron::id_of(&n)?, attrs)))
            .transpose()
    }
    async fn create(&self, cx: &Cx, addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError> {
        let mut b = Map::new();
        b.insert("name".into(), json!(str_attr(attrs, "name")));
        b.insert("network_id".into(), json!(str_attr(attrs, "network")));
        b.insert("cidr".into(), json!(str_attr(attrs, "cidr")));
        b.insert(
            "ip_version".into(),
            json!(if str_attr(attrs, "cidr").contains(':') {
                6
            } else {
                4
            }),
        );
        b.insert(
            "dns_nameservers".into(),
            attrs.get("dns").cloned().unwrap_or(Value::Array(vec![])),
        );
        let s = neutron::create(&cx.api, SUBNETS, &cx.env, addr, b).await?;
        Ok(live(neutron::id_of(&s)?, attrs))
    }
    async fn update(&self, cx: &Cx, rec: &Record, attrs: &Attrs) -> Result<Live, ProviderError> {
        let mut b = Map::new();
        b.insert("name".into(), json!(str_attr(attrs, "name")));
        b.insert(
            "dns_nameservers".into(),
            attrs.get("dns").cloned().unwrap_or(Value::Array(vec![])),
        );
        neutron::update(&cx.api, SUBNETS, rec_id(rec)?, b).await?;
        Ok(live(rec_id(rec)?.to_owned(), attrs))
    }
    async fn delete(&self, cx: &Cx, rec: &Record) -> Result<(), ProviderError> {
        Ok(neutron::delete(&cx.api, SUBNETS, rec_id(rec)?).await?)
    }
    async fn discover(&self, cx: &Cx) -> Result<Vec<(Address, Live)>, ProviderError> {
        neutron::discover(cx, SUBNETS).await
    }
}

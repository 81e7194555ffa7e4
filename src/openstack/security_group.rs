//! `security_group.*` and `security_group_rule.*`. Rules are immutable in
//! Neutron and have no tags: their description carries the owner.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::client::Svc;
use super::neutron::{Plain, SECURITY_GROUPS, str_attr};
use super::{Attrs, Cx, Kind, live, rec_id};
use crate::core::Address;
use crate::provider::{Live, ProviderError};
use crate::state::Record;

pub const GROUP: Plain = Plain {
    coll: SECURITY_GROUPS,
    fields: &["name", "description"],
    clear_ports: false,
};

pub struct Rule;

fn marker(env: &str, addr: &Address) -> String {
    format!("provisioner {env} {addr}")
}

fn rule_live(r: &Value, attrs: &Attrs) -> Result<Live, ProviderError> {
    Ok(live(super::neutron::id_of(r)?, attrs))
}

async fn rules(cx: &Cx, query: &[(&str, String)]) -> Result<Vec<Value>, ProviderError> {
    let v = cx
        .api
        .get(Svc::Network, &["security-group-rules"], query)
        .await?;
    Ok(v.get("security_group_rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

#[async_trait]
impl Kind for Rule {
    async fn read(&self, cx: &Cx, rec: &Record) -> Result<Option<Live>, ProviderError> {
        let id = rec_id(rec)?;
        Ok(cx
            .api
            .show(
                Svc::Network,
                &["security-group-rules", id],
                "security_group_rule",
            )
            .await?
            .map(|_| live(id.to_owned(), &rec.attrs)))
    }
    async fn find(
        &self,
        cx: &Cx,
        addr: &Address,
        attrs: &Attrs,
        _interrupted: bool,
    ) -> Result<Option<Live>, ProviderError> {
        let q = [
            (
                "security_group_id",
                str_attr(attrs, "security_group").to_owned(),
            ),
            ("description", marker(&cx.env, addr)),
        ];
        rules(cx, &q)
            .await?
            .first()
            .map(|r| rule_live(r, attrs))
            .transpose()
    }
    async fn create(&self, cx: &Cx, addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError> {
        let remote = str_attr(attrs, "remote");
        let body = json!({ "security_group_rule": {
            "security_group_id": str_attr(attrs, "security_group"),
            "direction": str_attr(attrs, "direction"),
            "ethertype": if remote.contains(':') { "IPv6" } else { "IPv4" },
            "protocol": str_attr(attrs, "protocol"),
            "port_range_min": attrs.get("port_min"),
            "port_range_max": attrs.get("port_max"),
            "remote_ip_prefix": remote,
            "description": marker(&cx.env, addr),
        }});
        let v = cx
            .api
            .post(Svc::Network, &["security-group-rules"], &body)
            .await?;
        rule_live(v.get("security_group_rule").unwrap_or(&Value::Null), attrs)
    }
    async fn update(&self, _cx: &Cx, rec: &Record, _attrs: &Attrs) -> Result<Live, ProviderError> {
        Err(ProviderError::fatal(format!(
            "security group rule {} is immutable",
            rec_id(rec)?
        )))
    }
    async fn delete(&self, cx: &Cx, rec: &Record) -> Result<(), ProviderError> {
        Ok(cx
            .api
            .delete(Svc::Network, &["security-group-rules", rec_id(rec)?])
            .await?)
    }
    async fn discover(&self, cx: &Cx) -> Result<Vec<(Address, Live)>, ProviderError> {
        let prefix = format!("provisioner {} ", cx.env);
        let mut out = Vec::new();
        for r in rules(cx, &[]).await? {
            let Some(addr) = r
                .get("description")
                .and_then(Value::as_str)
                .and_then(|d| d.strip_prefix(&prefix))
                .and_then(Address::parse)
            else {
                continue;
            };
            out.push((addr, rule_live(&r, &Attrs::new())?));
        }
        Ok(out)
    }
}

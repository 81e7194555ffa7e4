//! `server_group.*`: scheduling policy (anti-affinity for the control plane).
//! Server groups have no tags; the environment-scoped name is the identity.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::client::Svc;
use super::neutron::str_attr;
use super::{Attrs, Cx, Kind, live, rec_id};
use crate::core::Address;
use crate::provider::{Live, ProviderError};
use crate::state::Record;

pub struct ServerGroup;

async fn all(cx: &Cx) -> Result<Vec<Value>, ProviderError> {
    let v = cx.api.get(Svc::Compute, &["os-server-groups"], &[]).await?;
    Ok(v.get("server_groups")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

#[async_trait]
impl Kind for ServerGroup {
    async fn read(&self, cx: &Cx, rec: &Record) -> Result<Option<Live>, ProviderError> {
        let id = rec_id(rec)?;
        Ok(cx
            .api
            .show(Svc::Compute, &["os-server-groups", id], "server_group")
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
        let name = str_attr(attrs, "name");
        let hits: Vec<Value> = all(cx)
            .await?
            .into_iter()
            .filter(|g| g.get("name").and_then(Value::as_str) == Some(name))
            .collect();
        match hits.as_slice() {
            [] => Ok(None),
            [g] => Ok(Some(live(
                g.get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                attrs,
            ))),
            _ => Err(ProviderError::fatal(format!(
                "{addr}: {} server groups are named `{name}`; delete the extra ones",
                hits.len()
            ))),
        }
    }
    async fn create(&self, cx: &Cx, _addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError> {
        let body = json!({ "server_group": { "name": str_attr(attrs, "name"), "policies": [str_attr(attrs, "policy")] } });
        let v = cx
            .api
            .post(Svc::Compute, &["os-server-groups"], &body)
            .await?;
        let id = v
            .pointer("/server_group/id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(live(id.to_owned(), attrs))
    }
    async fn update(&self, _cx: &Cx, rec: &Record, _attrs: &Attrs) -> Result<Live, ProviderError> {
        Err(ProviderError::fatal(format!(
            "server group {} cannot change in place",
            rec_id(rec)?
        )))
    }
    async fn delete(&self, cx: &Cx, rec: &Record) -> Result<(), ProviderError> {
        Ok(cx
            .api
            .delete(Svc::Compute, &["os-server-groups", rec_id(rec)?])
            .await?)
    }
    async fn discover(&self, cx: &Cx) -> Result<Vec<(Address, Live)>, ProviderError> {
        // Named `<env>-<pool>` by the desired model.
        let prefix = format!("{}-", cx.env);
        Ok(all(cx)
            .await?
            .into_iter()
            .filter_map(|g| {
                let name = g.get("name")?.as_str()?;
                let pool = name.strip_prefix(&prefix)?;
                Some((
                    Address::new("server_group", pool),
                    live(g.get("id")?.as_str()?.to_owned(), &Attrs::new()),
                ))
            })
            .collect())
    }
}

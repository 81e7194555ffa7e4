//! `volume.*` (Cinder; ownership in volume metadata, set at create) and
//! `volume_attachment.*` (Nova's os-volume_attachments).

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::client::Svc;
use super::neutron::str_attr;
use super::{Attrs, Cx, Kind, live, rec_id};
use crate::core::Address;
use crate::provider::{Live, ProviderError};
use crate::state::Record;

const META_ENV: &str = "provisioner_environment";
const META_ADDR: &str = "provisioner_address";

pub struct Volume;

async fn show(cx: &Cx, id: &str) -> Result<Option<Value>, ProviderError> {
    Ok(cx.api.show(Svc::Volume, &["volumes", id], "volume").await?)
}

fn vstatus(v: &Value) -> &str {
    v.get("status").and_then(Value::as_str).unwrap_or("unknown")
}

async fn wait_status(cx: &Cx, id: &str, want: &str) -> Result<Value, ProviderError> {
    let timeout = Duration::from_secs(cx.timeouts.create);
    cx.wait_for(
        &format!("volume {id} to become {want}"),
        timeout,
        || async {
            let v = show(cx, id)
                .await?
                .ok_or_else(|| ProviderError::transient(format!("volume {id} not visible yet")))?;
            match vstatus(&v) {
                s if s == want => Ok(Some(v)),
                "error" | "error_extending" => Err(ProviderError::fatal(format!(
                    "volume {id} went to {}",
                    vstatus(&v)
                ))),
                _ => Ok(None),
            }
        },
    )
    .await
}

async fn owned(cx: &Cx, addr: Option<&Address>) -> Result<Vec<Value>, ProviderError> {
    let mut meta = serde_json::Map::new();
    meta.insert(META_ENV.into(), json!(cx.env));
    if let Some(a) = addr {
        meta.insert(META_ADDR.into(), json!(a.as_str()));
    }
    let v = cx
        .api
        .get(
            Svc::Volume,
            &["volumes", "detail"],
            &[("metadata", Value::Object(meta).to_string())],
        )
        .await?;
    Ok(v.get("volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

#[async_trait]
impl Kind for Volume {
    async fn read(&self, cx: &Cx, rec: &Record) -> Result<Option<Live>, ProviderError> {
        let Some(v) = show(cx, rec_id(rec)?).await? else {
            return Ok(None);
        };
        let attrs = super::observed(
            rec,
            &[
                ("name", v.get("name").cloned()),
                ("size_gb", v.get("size").cloned()),
            ],
        );
        Ok(Some(live(rec_id(rec)?.to_owned(), &attrs)))
    }
    async fn find(
        &self,
        cx: &Cx,
        addr: &Address,
        attrs: &Attrs,
        _interrupted: bool,
    ) -> Result<Option<Live>, ProviderError> {
        let hits = owned(cx, Some(addr)).await?;
        match hits.as_slice() {
            [] => Ok(None),
            [v] => {
                let id = v
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if vstatus(v) == "error" {
                    cx.api.delete(Svc::Volume, &["volumes", &id]).await?;
                    return Ok(None);
                }
                Ok(Some(live(id, attrs)))
            }
            _ => Err(ProviderError::fatal(format!(
                "{addr}: {} volumes carry this address; delete the extra ones",
                hits.len()
            ))),
        }
    }
    async fn create(&self, cx: &Cx, addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError> {
        let mut vol = json!({
            "size": attrs.get("size_gb"),
            "name": str_attr(attrs, "name"),
            "metadata": { META_ENV: cx.env, META_ADDR: addr.as_str() },
        });
        if let Some(t) = attrs.get("volume_type") {
            vol["volume_type"] = t.clone();
        }
        let v = cx
            .api
            .post(Svc::Volume, &["volumes"], &json!({ "volume": vol }))
            .await?;
        let id = v
            .pointer("/volume/id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        wait_status(cx, &id, "available").await?;
        Ok(live(id, attrs))
    }
    async fn update(&self, cx: &Cx, rec: &Record, attrs: &Attrs) -> Result<Live, ProviderError> {
        let id = rec_id(rec)?;
        let (old, new) = (
            rec.attrs
                .get("size_gb")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            attrs.get("size_gb").and_then(Value::as_u64).unwrap_or(0),
        );
        if new < old {
            return Err(ProviderError::fatal(format!(
                "volume {id}: Cinder volumes can grow but not shrink ({old} GB -> {new} GB)"
            )));
        }
        if new > old {
            let before = show(cx, id)
                .await?
                .map(|v| vstatus(&v).to_owned())
                .unwrap_or_default();
            cx.api
                .post(
                    Svc::Volume,
                    &["volumes", id, "action"],
                    &json!({ "os-extend": { "new_size": new } }),
                )
                .await?;
            wait_status(cx, id, &before).await?;
        }
        cx.api
            .put(
                Svc::Volume,
                &["volumes", id],
                &json!({ "volume": { "name": str_attr(attrs, "name") } }),
            )
            .await?;
        Ok(live(id.to_owned(), attrs))
    }
    async fn delete(&self, cx: &Cx, rec: &Record) -> Result<(), ProviderError> {
        let id = rec_id(rec)?;
        // Still attached (an attachment state forgot): detach first, Cinder refuses otherwise.
        if let Some(v) = show(cx, id).await?
            && vstatus(&v) == "in-use"
        {
            for a in v
                .get("attachments")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(server) = a.get("server_id").and_then(Value::as_str) {
                    tracing::info!(volume = id, server, "detaching before delete");
                    cx.api
                        .delete(
                            Svc::Compute,
                            &["servers", server, "os-volume_attachments", id],
                        )
                        .await?;
                }
            }
            wait_status(cx, id, "available").await?;
        }
        cx.api.delete(Svc::Volume, &["volumes", id]).await?;
        let timeout = Duration::from_secs(cx.timeouts.delete);
        cx.wait_for(&format!("volume {id} to be deleted"), timeout, || async {
            Ok(show(cx, id).await?.is_none().then_some(()))
        })
        .await
    }
    async fn discover(&self, cx: &Cx) -> Result<Vec<(Address, Live)>, ProviderError> {
        Ok(owned(cx, None)
            .await?
            .into_iter()
            .filter_map(|v| {
                let addr = v
                    .pointer(&format!("/metadata/{META_ADDR}"))
                    .and_then(Value::as_str)
                    .and_then(Address::parse)?;
                Some((addr, live(v.get("id")?.as_str()?.to_owned(), &Attrs::new())))
            })
            .collect())
    }
}

/// A volume attached to a server; its id is the volume's.
pub struct Attachment;

fn att_live(server: &str, volume: &str, attrs: &Attrs) -> Live {
    let mut l = live(volume.to_owned(), attrs);
    l.outputs.insert("server_id".into(), json!(server));
    l.outputs.insert("volume_id".into(), json!(volume));
    l
}

async fn attached(cx: &Cx, server: &str, volume: &str) -> Result<bool, ProviderError> {
    match cx
        .api
        .get(
            Svc::Compute,
            &["servers", server, "os-volume_attachments"],
            &[],
        )
        .await
    {
        Ok(v) => Ok(v
            .get("volumeAttachments")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter()
                    .any(|x| x.get("volumeId").and_then(Value::as_str) == Some(volume))
            })),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn outs(rec: &Record) -> Result<(&str, &str), ProviderError> {
    let g = |k: &str| {
        rec.outputs
            .get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::fatal(format!("attachment record lacks {k}")))
    };
    Ok((g("server_id")?, g("volume_id")?))
}

#[async_trait]
impl Kind for Attachment {
    async fn read(&self, cx: &Cx, rec: &Record) -> Result<Option<Live>, ProviderError> {
        let (server, volume) = outs(rec)?;
        Ok(attached(cx, server, volume)
            .await?
            .then(|| att_live(server, volume, &rec.attrs)))
    }
    async fn find(
        &self,
        cx: &Cx,
        _addr: &Address,
        attrs: &Attrs,
        _interrupted: bool,
    ) -> Result<Option<Live>, ProviderError> {
        let (server, volume) = (str_attr(attrs, "server"), str_attr(attrs, "volume"));
        if !attached(cx, server, volume).await? {
            return Ok(None);
        }
        wait_status(cx, volume, "in-use").await?;
        Ok(Some(att_live(server, volume, attrs)))
    }
    async fn create(&self, cx: &Cx, _addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError> {
        let (server, volume) = (str_attr(attrs, "server"), str_attr(attrs, "volume"));
        cx.api
            .post(
                Svc::Compute,
                &["servers", server, "os-volume_attachments"],
                &json!({ "volumeAttachment": { "volumeId": volume } }),
            )
            .await?;
        wait_status(cx, volume, "in-use").await?;
        Ok(att_live(server, volume, attrs))
    }
    async fn update(&self, _cx: &Cx, rec: &Record, _attrs: &Attrs) -> Result<Live, ProviderError> {
        Err(ProviderError::fatal(format!(
            "attachment {} cannot change in place",
            rec_id(rec)?
        )))
    }
    async fn delete(&self, cx: &Cx, rec: &Record) -> Result<(), ProviderError> {
        let (server, volume) = outs(rec)?;
        cx.api
            .delete(
                Svc::Compute,
                &["servers", server, "os-volume_attachments", volume],
            )
            .await?;
        if show(cx, volume).await?.is_some() {
            wait_status(cx, volume, "available").await?;
        }
        Ok(())
    }
    async fn discover(&self, _cx: &Cx) -> Result<Vec<(Address, Live)>, ProviderError> {
        // Found through their volumes and servers: deleting those detaches them.
        Ok(Vec::new())
    }
}

//! `server.*`: Nova servers. Tags are set in the create request itself
//! (microversion 2.52), so there is no window where a server exists untagged.
//! A server found in ERROR is deleted and created again.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde_json::{Map, Value, json};

use super::client::Svc;
use super::neutron::{self, SUBNETS, str_attr, tags};
use super::{Attrs, Cx, Kind, rec_id};
use crate::core::Address;
use crate::provider::{Live, ProviderError};
use crate::state::Record;

pub struct Server;

/// A catalog lookup failure: missing or ambiguous is the user's to fix.
pub fn lookup_error(what: &str, name: &str, e: openstack::Error) -> ProviderError {
    match e.kind() {
        openstack::ErrorKind::ResourceNotFound => {
            ProviderError::fatal(format!("{what} `{name}` does not exist in this cloud"))
        }
        openstack::ErrorKind::TooManyItems => {
            ProviderError::fatal(format!("several {what}s are named `{name}`; use the id"))
        }
        openstack::ErrorKind::InternalServerError
        | openstack::ErrorKind::ProtocolError
        | openstack::ErrorKind::OperationTimedOut => {
            ProviderError::transient(format!("looking up {what} `{name}`: {e}"))
        }
        _ => ProviderError::fatal(format!("looking up {what} `{name}`: {e}")),
    }
}

/// Flavor by name or id: (id, vCPUs, RAM MiB).
pub async fn flavor(cx: &Cx, name: &str) -> Result<(String, u32, u64), ProviderError> {
    let f = cx
        .cloud
        .get_flavor(name)
        .await
        .map_err(|e| lookup_error("flavor", name, e))?;
    Ok((f.id().clone(), f.vcpu_count(), f.ram_size()))
}

pub async fn flavor_id(cx: &Cx, name: &str) -> Result<String, ProviderError> {
    Ok(flavor(cx, name).await?.0)
}

/// Image id by name or id.
pub async fn image_id(cx: &Cx, name: &str) -> Result<String, ProviderError> {
    let i = cx
        .cloud
        .get_image(name)
        .await
        .map_err(|e| lookup_error("image", name, e))?;
    Ok(i.id().clone())
}

async fn show(cx: &Cx, id: &str) -> Result<Option<Value>, ProviderError> {
    Ok(cx
        .api
        .show(Svc::Compute, &["servers", id], "server")
        .await?)
}

fn status(s: &Value) -> &str {
    s.get("status").and_then(Value::as_str).unwrap_or("UNKNOWN")
}

/// Wait for ACTIVE; ERROR is reported with Nova's fault message.
pub(crate) async fn wait_active(
    cx: &Cx,
    addr: &(dyn std::fmt::Display + Sync),
    id: &str,
) -> Result<Value, ProviderError> {
    let timeout = Duration::from_secs(cx.timeouts.create);
    cx.wait_for(&format!("{addr} to become ACTIVE"), timeout, || async {
        let s = show(cx, id).await?.ok_or_else(|| {
            ProviderError::transient(format!("{addr}: server {id} not visible yet"))
        })?;
        match status(&s) {
            "ACTIVE" => Ok(Some(s)),
            "ERROR" => {
                let fault = s
                    .pointer("/fault/message")
                    .and_then(Value::as_str)
                    .unwrap_or("no fault message");
                Err(ProviderError::fatal(format!(
                    "{addr}: server {id} went to ERROR: {fault}"
                )))
            }
            _ => Ok(None),
        }
    })
    .await
}

/// The extra source addresses the server's ports accept (`allowed_address_pairs`:
/// the cluster's pod range, so pods on one node reach pods on another by
/// their own addresses through port security).
async fn address_pairs(cx: &Cx, id: &str, attrs: &Attrs) -> Result<(), ProviderError> {
    let pairs: Vec<Value> = attrs
        .get("allowed_address_pairs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| json!({ "ip_address": c }))
        .collect();
    if pairs.is_empty() && !attrs.contains_key("allowed_address_pairs") {
        return Ok(());
    }
    for port in neutron::list(&cx.api, neutron::PORTS, &[("device_id", id.to_owned())]).await? {
        let pid = port.get("id").and_then(Value::as_str).unwrap_or_default();
        cx.api
            .put(
                Svc::Network,
                &[neutron::PORTS.plural, pid],
                &json!({ "port": { "allowed_address_pairs": pairs } }),
            )
            .await?;
    }
    Ok(())
}

/// The first fixed address: what the cluster layer (and an image builder) reaches the machine by.
pub(crate) fn fixed_address(s: &Value) -> Option<String> {
    s.get("addresses")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(Value::as_array)
        .flatten()
        .find(|a| a.get("OS-EXT-IPS:type").and_then(Value::as_str) != Some("floating"))
        .and_then(|a| a.get("addr")?.as_str().map(str::to_owned))
}

fn server_live(s: &Value, attrs: &Attrs) -> Live {
    let mut l = super::live(
        s.get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        attrs,
    );
    let ports: Vec<&Value> = s
        .get("addresses")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(Value::as_array)
        .flatten()
        .collect();
    let ips: Vec<Value> = ports
        .iter()
        .filter_map(|a| a.get("addr").cloned())
        .collect();
    if let Some(a) = fixed_address(s) {
        l.outputs.insert("address".into(), Value::String(a));
    }
    l.outputs.insert("addresses".into(), Value::Array(ips));
    l
}

pub(crate) async fn owned_by(cx: &Cx, query_tags: (&str, String)) -> Result<Vec<Value>, ProviderError> {
    let v = cx
        .api
        .get(Svc::Compute, &["servers", "detail"], &[query_tags])
        .await?;
    Ok(v.get("servers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

pub(crate) async fn delete_and_wait(cx: &Cx, id: &str) -> Result<(), ProviderError> {
    cx.api.delete(Svc::Compute, &["servers", id]).await?;
    let timeout = Duration::from_secs(cx.timeouts.delete);
    cx.wait_for(&format!("server {id} to be deleted"), timeout, || async {
        Ok(show(cx, id).await?.is_none().then_some(()))
    })
    .await
}

#[async_trait]
impl Kind for Server {
    async fn read(&self, cx: &Cx, rec: &Record) -> Result<Option<Live>, ProviderError> {
        let Some(s) = show(cx, rec_id(rec)?).await? else {
            return Ok(None);
        };
        if status(&s) == "ERROR" {
            return Ok(None); // replaced by the next apply
        }
        let flavor = s.pointer("/flavor/original_name").cloned();
        let attrs = super::observed(
            rec,
            &[
                ("name", s.get("name").cloned()),
                ("flavor", flavor),
                ("metadata", s.get("metadata").cloned()),
            ],
        );
        let mut l = server_live(&s, &attrs);
        l.id = rec_id(rec)?.to_owned();
        Ok(Some(l))
    }

    async fn find(
        &self,
        cx: &Cx,
        addr: &Address,
        attrs: &Attrs,
        _interrupted: bool,
    ) -> Result<Option<Live>, ProviderError> {
        let hits = owned_by(cx, ("tags", tags(&cx.env, addr).join(","))).await?;
        let mut keep = None;
        for s in hits {
            let id = s
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if status(&s) == "ERROR" || keep.is_some() {
                tracing::warn!(address = %addr, id, status = status(&s), "deleting a server this address owns that cannot be used");
                delete_and_wait(cx, &id).await?;
            } else {
                keep = Some(id);
            }
        }
        match keep {
            Some(id) => Ok(Some(server_live(&wait_active(cx, addr, &id).await?, attrs))),
            None => Ok(None),
        }
    }

    async fn create(&self, cx: &Cx, addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError> {
        let subnet = neutron::show(&cx.api, SUBNETS, str_attr(attrs, "network"))
            .await?
            .ok_or_else(|| ProviderError::fatal(format!("{addr}: its subnet is gone")))?;
        let network_id = subnet
            .get("network_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut b = Map::new();
        b.insert("name".into(), json!(str_attr(attrs, "name")));
        b.insert(
            "flavorRef".into(),
            json!(flavor_id(cx, str_attr(attrs, "flavor")).await?),
        );
        b.insert("key_name".into(), json!(str_attr(attrs, "keypair")));
        b.insert("networks".into(), json!([{ "uuid": network_id }]));
        let sgs: Vec<Value> = attrs
            .get("security_groups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|id| json!({ "name": id }))
            .collect();
        b.insert("security_groups".into(), Value::Array(sgs));
        b.insert("tags".into(), json!(tags(&cx.env, addr)));
        b.insert(
            "metadata".into(),
            attrs.get("metadata").cloned().unwrap_or(json!({})),
        );
        if let Some(ud) = attrs.get("user_data").and_then(Value::as_str) {
            b.insert(
                "user_data".into(),
                json!(base64::engine::general_purpose::STANDARD.encode(ud)),
            );
        }
        let image = image_id(cx, str_attr(attrs, "image")).await?;
        match attrs.get("boot_volume_gb").and_then(Value::as_u64) {
            Some(gb) => {
                b.insert(
                    "block_device_mapping_v2".into(),
                    json!([{ "boot_index": 0, "uuid": image, "source_type": "image", "destination_type": "volume", "volume_size": gb, "delete_on_termination": true }]),
                );
            }
            None => {
                b.insert("imageRef".into(), json!(image));
            }
        }
        let mut body = json!({ "server": b });
        if let Some(g) = attrs.get("server_group").and_then(Value::as_str) {
            body["os:scheduler_hints"] = json!({ "group": g });
        }
        let v = cx.api.post(Svc::Compute, &["servers"], &body).await?;
        let id = v
            .pointer("/server/id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match wait_active(cx, addr, &id).await {
            Ok(s) => {
                address_pairs(cx, &id, attrs).await?;
                Ok(server_live(&s, attrs))
            }
            Err(e) => {
                // An ERROR server is useless and would count against quota: remove it.
                let _ = delete_and_wait(cx, &id).await;
                Err(e)
            }
        }
    }

    async fn update(&self, cx: &Cx, rec: &Record, attrs: &Attrs) -> Result<Live, ProviderError> {
        let id = rec_id(rec)?;
        if rec.attrs.get("allowed_address_pairs") != attrs.get("allowed_address_pairs") {
            address_pairs(cx, id, attrs).await?;
        }
        if rec.attrs.get("name") != attrs.get("name") {
            cx.api
                .put(
                    Svc::Compute,
                    &["servers", id],
                    &json!({ "server": { "name": str_attr(attrs, "name") } }),
                )
                .await?;
        }
        if rec.attrs.get("metadata") != attrs.get("metadata") {
            cx.api
                .put(
                    Svc::Compute,
                    &["servers", id, "metadata"],
                    &json!({ "metadata": attrs.get("metadata").cloned().unwrap_or(json!({})) }),
                )
                .await?;
        }
        if rec.attrs.get("flavor") != attrs.get("flavor") {
            let flavor = flavor_id(cx, str_attr(attrs, "flavor")).await?;
            cx.api
                .post(
                    Svc::Compute,
                    &["servers", id, "action"],
                    &json!({ "resize": { "flavorRef": flavor } }),
                )
                .await?;
            let timeout = Duration::from_secs(cx.timeouts.create);
            cx.wait_for(&format!("{id} to finish resizing"), timeout, || async {
                Ok(show(cx, id).await?.filter(|s| {
                    status(s) == "VERIFY_RESIZE"
                        || status(s) == "ACTIVE"
                            && s.pointer("/flavor/original_name").and_then(Value::as_str)
                                == Some(str_attr(attrs, "flavor"))
                }))
            })
            .await?;
            if show(cx, id)
                .await?
                .is_some_and(|s| status(&s) == "VERIFY_RESIZE")
            {
                cx.api
                    .post(
                        Svc::Compute,
                        &["servers", id, "action"],
                        &json!({ "confirmResize": null }),
                    )
                    .await?;
            }
        }
        let mut want_sg: Vec<&str> = attrs
            .get("security_groups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        want_sg.sort_unstable();
        if rec.attrs.get("security_groups") != attrs.get("security_groups") {
            for sg in want_sg {
                let r = cx
                    .api
                    .post(
                        Svc::Compute,
                        &["servers", id, "action"],
                        &json!({ "addSecurityGroup": { "name": sg } }),
                    )
                    .await;
                if let Err(e) = r
                    && e.status != Some(400)
                {
                    return Err(e.into());
                }
            }
        }
        let s = wait_active(cx, &format!("server {id}"), id).await?;
        Ok(server_live(&s, attrs))
    }

    async fn delete(&self, cx: &Cx, rec: &Record) -> Result<(), ProviderError> {
        delete_and_wait(cx, rec_id(rec)?).await
    }

    async fn discover(&self, cx: &Cx) -> Result<Vec<(Address, Live)>, ProviderError> {
        let mut out = Vec::new();
        for s in owned_by(cx, ("tags-any", format!("{}{}", neutron::TAG_ENV, cx.env))).await? {
            if let Some(addr) = neutron::owner(&s, &cx.env) {
                out.push((addr, server_live(&s, &Attrs::new())));
            }
        }
        Ok(out)
    }
}

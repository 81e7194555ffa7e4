//! What every Neutron resource kind shares: ownership tags, lookup by tag (or,
//! after an interrupted create, by name before tags were set), and the
//! create → tag sequence.

use serde_json::{Map, Value, json};

use super::client::{Api, ApiError, Svc};
use crate::core::Address;

pub const TAG_ENV: &str = "pv-env:";
pub const TAG_ADDR: &str = "pv-addr:";

pub fn tags(env: &str, addr: &Address) -> Vec<String> {
    vec![format!("{TAG_ENV}{env}"), format!("{TAG_ADDR}{addr}")]
}

/// The address a resource's tags name, if it belongs to `env`.
pub fn owner(obj: &Value, env: &str) -> Option<Address> {
    let tags: Vec<&str> = obj
        .get("tags")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let ours = tags.iter().any(|t| t.strip_prefix(TAG_ENV) == Some(env));
    let addr = tags
        .iter()
        .find_map(|t| t.strip_prefix(TAG_ADDR))
        .and_then(Address::parse)?;
    ours.then_some(addr)
}

#[derive(Debug, Clone, Copy)]
pub struct Collection {
    pub plural: &'static str,
    pub singular: &'static str,
}

pub const NETWORKS: Collection = Collection {
    plural: "networks",
    singular: "network",
};
pub const SUBNETS: Collection = Collection {
    plural: "subnets",
    singular: "subnet",
};
pub const ROUTERS: Collection = Collection {
    plural: "routers",
    singular: "router",
};
pub const SECURITY_GROUPS: Collection = Collection {
    plural: "security-groups",
    singular: "security_group",
};
pub const PORTS: Collection = Collection {
    plural: "ports",
    singular: "port",
};
pub const FLOATING_IPS: Collection = Collection {
    plural: "floatingips",
    singular: "floatingip",
};

fn plural_key(c: Collection) -> String {
    c.plural.replace('-', "_")
}

pub async fn list(
    api: &Api,
    c: Collection,
    query: &[(&str, String)],
) -> Result<Vec<Value>, ApiError> {
    let v = api.get(Svc::Network, &[c.plural], query).await?;
    Ok(v.get(plural_key(c))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

pub async fn show(api: &Api, c: Collection, id: &str) -> Result<Option<Value>, ApiError> {
    api.show(Svc::Network, &[c.plural, id], c.singular).await
}

/// POST then set the ownership tags. A crash between the two leaves an
/// untagged resource that `find(…, interrupted = true)` adopts by name.
pub async fn create(
    api: &Api,
    c: Collection,
    env: &str,
    addr: &Address,
    body: Map<String, Value>,
) -> Result<Value, ApiError> {
    let v = api
        .post(Svc::Network, &[c.plural], &json!({ c.singular: body }))
        .await?;
    let obj = v.get(c.singular).cloned().unwrap_or(Value::Null);
    let id = id_of(&obj)?;
    set_tags(api, c, &id, env, addr).await?;
    Ok(obj)
}

pub async fn set_tags(
    api: &Api,
    c: Collection,
    id: &str,
    env: &str,
    addr: &Address,
) -> Result<(), ApiError> {
    api.put(
        Svc::Network,
        &[c.plural, id, "tags"],
        &json!({ "tags": tags(env, addr) }),
    )
    .await
    .map(|_| ())
}

pub async fn update(
    api: &Api,
    c: Collection,
    id: &str,
    body: Map<String, Value>,
) -> Result<Value, ApiError> {
    let v = api
        .put(Svc::Network, &[c.plural, id], &json!({ c.singular: body }))
        .await?;
    Ok(v.get(c.singular).cloned().unwrap_or(Value::Null))
}

pub async fn delete(api: &Api, c: Collection, id: &str) -> Result<(), ApiError> {
    api.delete(Svc::Network, &[c.plural, id]).await
}

/// The resource this environment owns at `addr`: by tags, or (after an
/// interrupted create) an untagged one carrying `name`, which is then tagged.
pub async fn find(
    api: &Api,
    c: Collection,
    env: &str,
    addr: &Address,
    name: Option<&str>,
    interrupted: bool,
) -> Result<Option<Value>, ApiError> {
    let t = tags(env, addr).join(",");
    let mut hits = list(api, c, &[("tags", t)]).await?;
    if hits.len() > 1 {
        return Err(ApiError {
            status: None,
            message: format!(
                "{addr}: {} {} carry this address's tags; delete the extra ones (ids: {})",
                hits.len(),
                c.plural,
                hits.iter()
                    .filter_map(|h| h.get("id").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            retry_after: None,
        });
    }
    if let Some(h) = hits.pop() {
        return Ok(Some(h));
    }
    let (true, Some(name)) = (interrupted, name) else {
        return Ok(None);
    };
    let untagged: Vec<Value> = list(api, c, &[("name", name.to_owned())])
        .await?
        .into_iter()
        .filter(|o| {
            o.get("tags")
                .and_then(Value::as_array)
                .is_none_or(|t| t.is_empty())
        })
        .collect();
    match untagged.as_slice() {
        [one] => {
            let id = id_of(one)?;
            set_tags(api, c, &id, env, addr).await?;
            Ok(Some(one.clone()))
        }
        _ => Ok(None),
    }
}

/// Every resource of this collection that `env` owns.
pub async fn owned(api: &Api, c: Collection, env: &str) -> Result<Vec<(Address, Value)>, ApiError> {
    let all = list(api, c, &[("tags-any", format!("{TAG_ENV}{env}"))]).await?;
    Ok(all
        .into_iter()
        .filter_map(|o| owner(&o, env).map(|a| (a, o)))
        .collect())
}

pub fn id_of(obj: &Value) -> Result<String, ApiError> {
    obj.get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ApiError {
            status: None,
            message: format!("answer without an id: {obj}"),
            retry_after: None,
        })
}

pub fn str_attr<'a>(attrs: &'a std::collections::BTreeMap<String, Value>, k: &str) -> &'a str {
    attrs.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// A tagged Neutron resource whose attributes are API fields of the same
/// name (networks, security groups): one implementation for all of them.
pub struct Plain {
    pub coll: Collection,
    pub fields: &'static [&'static str],
    /// Delete the ports Neutron made behind our back (DHCP, leftovers of deleted
    /// servers) first: they keep a network "in use". Router interfaces are
    /// removed by their own resource before.
    pub clear_ports: bool,
}

impl Plain {
    fn body(&self, attrs: &super::Attrs) -> Map<String, Value> {
        self.fields
            .iter()
            .filter_map(|f| attrs.get(*f).map(|v| ((*f).to_owned(), v.clone())))
            .collect()
    }
}

#[async_trait::async_trait]
impl super::Kind for Plain {
    async fn read(
        &self,
        cx: &super::Cx,
        rec: &crate::state::Record,
    ) -> Result<Option<crate::provider::Live>, crate::provider::ProviderError> {
        let id = super::rec_id(rec)?;
        let Some(obj) = show(&cx.api, self.coll, id).await? else {
            return Ok(None);
        };
        let seen: Vec<(&str, Option<Value>)> = self
            .fields
            .iter()
            .map(|f| (*f, obj.get(*f).cloned()))
            .collect();
        Ok(Some(super::live(
            id.to_owned(),
            &super::observed(rec, &seen),
        )))
    }
    async fn find(
        &self,
        cx: &super::Cx,
        addr: &Address,
        attrs: &super::Attrs,
        interrupted: bool,
    ) -> Result<Option<crate::provider::Live>, crate::provider::ProviderError> {
        let hit = find(
            &cx.api,
            self.coll,
            &cx.env,
            addr,
            Some(str_attr(attrs, "name")),
            interrupted,
        )
        .await?;
        hit.map(|o| Ok(super::live(id_of(&o)?, attrs))).transpose()
    }
    async fn create(
        &self,
        cx: &super::Cx,
        addr: &Address,
        attrs: &super::Attrs,
    ) -> Result<crate::provider::Live, crate::provider::ProviderError> {
        let obj = create(&cx.api, self.coll, &cx.env, addr, self.body(attrs)).await?;
        Ok(super::live(id_of(&obj)?, attrs))
    }
    async fn update(
        &self,
        cx: &super::Cx,
        rec: &crate::state::Record,
        attrs: &super::Attrs,
    ) -> Result<crate::provider::Live, crate::provider::ProviderError> {
        let id = super::rec_id(rec)?;
        update(&cx.api, self.coll, id, self.body(attrs)).await?;
        Ok(super::live(id.to_owned(), attrs))
    }
    async fn delete(
        &self,
        cx: &super::Cx,
        rec: &crate::state::Record,
    ) -> Result<(), crate::provider::ProviderError> {
        let id = super::rec_id(rec)?;
        if self.clear_ports {
            for p in list(&cx.api, PORTS, &[("network_id", id.to_owned())]).await? {
                let owner = p
                    .get("device_owner")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if owner.is_empty() || owner == "network:dhcp" || owner.starts_with("compute:") {
                    delete(&cx.api, PORTS, &id_of(&p)?).await?;
                }
            }
        }
        Ok(delete(&cx.api, self.coll, id).await?)
    }
    async fn discover(
        &self,
        cx: &super::Cx,
    ) -> Result<Vec<(Address, crate::provider::Live)>, crate::provider::ProviderError> {
        discover(cx, self.coll).await
    }
}

/// Owned resources of a collection, with the name as their only attribute.
pub async fn discover(
    cx: &super::Cx,
    c: Collection,
) -> Result<Vec<(Address, crate::provider::Live)>, crate::provider::ProviderError> {
    let mut out = Vec::new();
    for (addr, obj) in owned(&cx.api, c, &cx.env).await? {
        let mut attrs = super::Attrs::new();
        if let Some(n) = obj.get("name") {
            attrs.insert("name".into(), n.clone());
        }
        out.push((addr, super::live(id_of(&obj)?, &attrs)));
    }
    Ok(out)
}

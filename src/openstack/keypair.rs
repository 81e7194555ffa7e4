//! `keypair.*`: the public key servers boot with. Keypairs have no tags; the
//! name is the identity, and an existing keypair is adopted only when its
//! fingerprint matches the key file.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::client::Svc;
use super::neutron::str_attr;
use super::{Attrs, Cx, Kind, live, rec_id};
use crate::core::Address;
use crate::env::secret::expand_home;
use crate::provider::{Live, ProviderError};
use crate::state::Record;

pub struct Keypair;

fn public_key(attrs: &Attrs) -> Result<String, ProviderError> {
    let path = expand_home(str_attr(attrs, "public_key_file"));
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| ProviderError::fatal(format!("keypair: cannot read public key {}: {e}; create one with ssh-keygen or set keypair.public_key_file", path.display())))
}

async fn show(cx: &Cx, name: &str) -> Result<Option<Value>, ProviderError> {
    Ok(cx
        .api
        .show(Svc::Compute, &["os-keypairs", name], "keypair")
        .await?)
}

/// Compare keys by their base64 body: comments differ between files and Nova.
fn same_key(a: &str, b: &str) -> bool {
    a.split_whitespace().nth(1).is_some()
        && a.split_whitespace().nth(1) == b.split_whitespace().nth(1)
}

#[async_trait]
impl Kind for Keypair {
    async fn read(&self, cx: &Cx, rec: &Record) -> Result<Option<Live>, ProviderError> {
        Ok(show(cx, rec_id(rec)?)
            .await?
            .map(|_| live(rec_id(rec).unwrap_or_default().to_owned(), &rec.attrs)))
    }
    async fn find(
        &self,
        cx: &Cx,
        addr: &Address,
        attrs: &Attrs,
        _interrupted: bool,
    ) -> Result<Option<Live>, ProviderError> {
        let name = str_attr(attrs, "name");
        let Some(k) = show(cx, name).await? else {
            return Ok(None);
        };
        let theirs = k
            .get("public_key")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if same_key(theirs, &public_key(attrs)?) {
            return Ok(Some(live(name.to_owned(), attrs)));
        }
        Err(ProviderError::fatal(format!(
            "{addr}: a keypair named `{name}` exists with a different public key; rename keypair.name or delete that keypair"
        )))
    }
    async fn create(&self, cx: &Cx, _addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError> {
        let name = str_attr(attrs, "name");
        cx.api
            .post(
                Svc::Compute,
                &["os-keypairs"],
                &json!({ "keypair": { "name": name, "public_key": public_key(attrs)? } }),
            )
            .await?;
        Ok(live(name.to_owned(), attrs))
    }
    async fn update(&self, _cx: &Cx, rec: &Record, _attrs: &Attrs) -> Result<Live, ProviderError> {
        Err(ProviderError::fatal(format!(
            "keypair {} cannot change in place",
            rec_id(rec)?
        )))
    }
    async fn delete(&self, cx: &Cx, rec: &Record) -> Result<(), ProviderError> {
        Ok(cx
            .api
            .delete(Svc::Compute, &["os-keypairs", rec_id(rec)?])
            .await?)
    }
    async fn discover(&self, cx: &Cx) -> Result<Vec<(Address, Live)>, ProviderError> {
        // Untaggable: the environment's keypair name is its ownership.
        Ok(show(cx, &cx.keypair_name)
            .await?
            .map(|_| {
                (
                    Address::new("keypair", "deploy"),
                    live(cx.keypair_name.clone(), &Attrs::new()),
                )
            })
            .into_iter()
            .collect())
    }
}

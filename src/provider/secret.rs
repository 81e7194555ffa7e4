//! Generated secrets (`generate:` references): made once, kept sealed in
//! state, like Terraform's random_password but never in plain text.

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::Engine;
use rand::Rng;
use serde_json::Value;

use super::{Live, Provider, ProviderError};
use crate::core::Address;
use crate::env::secret::{Charset, Secret};
use crate::state::Record;

pub struct SecretProvider;

fn generate(attrs: &BTreeMap<String, Value>) -> Result<Secret, ProviderError> {
    let length = attrs.get("length").and_then(Value::as_u64).unwrap_or(32) as usize;
    let charset: Charset = attrs
        .get("charset")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| ProviderError::fatal(format!("bad charset: {e}")))?
        .unwrap_or_default();
    let mut rng = rand::rng();
    let value = match charset {
        Charset::Alphanumeric => (0..length)
            .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
            .collect(),
        Charset::Hex => (0..length)
            .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
            .collect(),
        Charset::Base64 => {
            let mut bytes = vec![0u8; length];
            rng.fill(bytes.as_mut_slice());
            base64::engine::general_purpose::STANDARD.encode(bytes)
        }
    };
    Ok(Secret::new(value))
}

#[async_trait]
impl Provider for SecretProvider {
    fn kinds(&self) -> &'static [&'static str] {
        &["secret"]
    }

    async fn read(&self, _addr: &Address, rec: &Record) -> Result<Option<Live>, ProviderError> {
        // The state record is the secret: it exists as long as it is recorded.
        Ok(Some(Live {
            id: rec.id.clone().unwrap_or_default(),
            attrs: rec.attrs.clone(),
            ..Live::default()
        }))
    }

    async fn find(
        &self,
        _: &Address,
        _: &BTreeMap<String, Value>,
        _: bool,
    ) -> Result<Option<Live>, ProviderError> {
        Ok(None)
    }

    async fn create(
        &self,
        addr: &Address,
        attrs: &BTreeMap<String, Value>,
    ) -> Result<Live, ProviderError> {
        let mut secrets = BTreeMap::new();
        secrets.insert("value".to_owned(), generate(attrs)?);
        Ok(Live {
            id: addr.to_string(),
            attrs: attrs.clone(),
            secrets,
            ..Live::default()
        })
    }

    async fn update(
        &self,
        addr: &Address,
        _rec: &Record,
        attrs: &BTreeMap<String, Value>,
    ) -> Result<Live, ProviderError> {
        self.create(addr, attrs).await
    }

    async fn delete(&self, _: &Address, _: &Record) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn discover(&self) -> Result<Vec<(Address, Live)>, ProviderError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lengths_and_charsets() {
        let a = |v: Value| {
            v.as_object()
                .unwrap()
                .clone()
                .into_iter()
                .collect::<BTreeMap<_, _>>()
        };
        let s = generate(&a(json!({"length": 40, "charset": "hex"}))).unwrap();
        assert_eq!(s.expose().len(), 40);
        assert!(s.expose().chars().all(|c| c.is_ascii_hexdigit()));
        let s2 = generate(&a(json!({"length": 40, "charset": "hex"}))).unwrap();
        assert_ne!(s.expose(), s2.expose());
        let s = generate(&a(json!({"length": 12, "charset": "alphanumeric"}))).unwrap();
        assert!(s.expose().len() == 12 && s.expose().chars().all(|c| c.is_ascii_alphanumeric()));
    }
}

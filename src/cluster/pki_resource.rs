//! `cluster_pki.main`: the three CAs and the service-account key pair, made
//! once. Certificates are outputs (public); keys are sealed secrets.

use serde_json::Value;

use super::Attrs;
use super::pki;
use crate::core::Secret;
use crate::provider::{Live, ProviderError};

/// The CA subjects; leaves are issued against these names (pki::issue).
pub const CA: &str = "kubernetes-ca";
pub const ETCD_CA: &str = "etcd-ca";
pub const FRONT_PROXY_CA: &str = "front-proxy-ca";

/// Made once: an update (a new `ca_days`) keeps the CAs; `rotate_ca`
/// (`provisioner certs rotate --ca`) makes new ones but keeps the
/// service-account key, so the tokens the cluster has issued stay valid.
pub fn apply(
    rec: Option<&crate::state::Record>,
    attrs: &Attrs,
    rotate_ca: bool,
) -> Result<Live, ProviderError> {
    if let Some(rec) = rec
        && rotate_ca
        && let (Some(key), Some(public)) = (rec.secrets.get("sa_key"), rec.outputs.get("sa_pub"))
    {
        let mut live = create(attrs)?;
        live.secrets.insert("sa_key".into(), key.clone());
        live.outputs.insert("sa_pub".into(), public.clone());
        return Ok(live);
    }
    if let Some(rec) = rec
        && rec.secrets.contains_key("ca_key")
    {
        return Ok(Live {
            id: "pki".into(),
            attrs: attrs.clone(),
            outputs: rec.outputs.clone(),
            secrets: rec.secrets.clone(),
            basis: None,
        });
    }
    create(attrs)
}

fn create(attrs: &Attrs) -> Result<Live, ProviderError> {
    let days = attrs.get("ca_days").and_then(Value::as_u64).unwrap_or(3650) as u32;
    let make = |name: &str| {
        pki::new_ca(name, days).map_err(|e| ProviderError::fatal(e.to_string()).caused_by(e))
    };
    let mut live = Live {
        id: "pki".into(),
        attrs: attrs.clone(),
        ..Default::default()
    };
    for (name, out) in [
        (CA, "ca"),
        (ETCD_CA, "etcd_ca"),
        (FRONT_PROXY_CA, "front_proxy_ca"),
    ] {
        let ca = make(name)?;
        live.outputs
            .insert(format!("{out}_crt"), ca.cert_pem.into());
        live.outputs.insert(
            format!("{out}_not_after"),
            ca.not_after
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .into(),
        );
        live.secrets
            .insert(format!("{out}_key"), Secret::new(ca.key_pem));
    }
    let (key, public) =
        pki::new_key_pair().map_err(|e| ProviderError::fatal(e.to_string()).caused_by(e))?;
    live.outputs.insert("sa_pub".into(), public.into());
    live.secrets.insert("sa_key".into(), Secret::new(key));
    Ok(live)
}

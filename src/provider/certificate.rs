//! Generated certificates (`certificate.*`, local layer): a CA and a serving
//! certificate signed by it, for the admission webhooks charts run (the Spark
//! operator's). The keys stay sealed in state; the CA bundle and the expiry
//! are outputs, which charts may use anywhere (`Outputs.<name>`). A refresh
//! within `renew_before_days` of expiry reports the certificate due, the plan
//! replaces it, and every release that uses it is updated with the new one.

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, RsaKeySize,
};
use serde_json::{Value, json};

use super::{Live, Provider, ProviderError};
use crate::core::{Address, Secret};
use crate::state::Record;

pub struct CertificateProvider;

type Attrs = BTreeMap<String, Value>;

/// What `issue` returns: public parts as outputs, keys as secrets.
struct Issued {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    not_after: chrono::DateTime<chrono::Utc>,
}

fn fatal(what: &str) -> impl Fn(rcgen::Error) -> ProviderError + '_ {
    move |e| ProviderError::fatal(format!("generating {what}: {e}"))
}

fn key_pair(kind: &str) -> Result<KeyPair, ProviderError> {
    match kind {
        "ecdsa-p256" => {
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(fatal("an ECDSA key"))
        }
        "rsa-2048" => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048)
            .map_err(fatal("an RSA key")),
        other => Err(ProviderError::fatal(format!(
            "key `{other}`: use rsa-2048 or ecdsa-p256"
        ))),
    }
}

fn to_offset(t: chrono::DateTime<chrono::Utc>) -> Result<time::OffsetDateTime, ProviderError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| ProviderError::fatal(format!("a certificate date: {e}")))
}

/// A fresh CA and a serving certificate for `dns_names`, valid `days` days.
fn issue(
    common_name: &str,
    dns_names: &[String],
    days: i64,
    key: &str,
) -> Result<Issued, ProviderError> {
    let now = chrono::Utc::now();
    // A little slack for clocks that disagree by a few minutes.
    let not_before = to_offset(now - chrono::Duration::hours(1))?;
    let expiry = now + chrono::Duration::days(days);
    let not_after = to_offset(expiry)?;

    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("{common_name} CA (provisioner)"),
    );
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (ca.not_before, ca.not_after) = (not_before, not_after);
    let ca = CertifiedIssuer::self_signed(ca, key_pair(key)?).map_err(fatal("the CA"))?;

    let mut leaf =
        CertificateParams::new(dns_names.to_vec()).map_err(fatal("the certificate's names"))?;
    leaf.distinguished_name
        .push(DnType::CommonName, common_name);
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    (leaf.not_before, leaf.not_after) = (not_before, not_after);
    let leaf_key = key_pair(key)?;
    let cert = leaf
        .signed_by(&leaf_key, &ca)
        .map_err(fatal("the certificate"))?;
    let key_pem = if key == "rsa-2048" {
        pkcs1_pem(leaf_key.serialized_der())?
    } else {
        leaf_key.serialize_pem()
    };
    Ok(Issued {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem,
        not_after: expiry,
    })
}

/// An RSA key as PKCS#1 (`BEGIN RSA PRIVATE KEY`), the form some servers
/// (the Spark operator's webhook) read: the RSAPrivateKey inside PKCS#8's
/// `SEQUENCE { version, algorithm, OCTET STRING { RSAPrivateKey } }`.
fn pkcs1_pem(pkcs8: &[u8]) -> Result<String, ProviderError> {
    let bad = || ProviderError::fatal("an RSA key in an unexpected encoding");
    // One DER element at `at`: (tag, content start, content end).
    let element = |at: usize| -> Option<(u8, usize, usize)> {
        let tag = *pkcs8.get(at)?;
        let first = *pkcs8.get(at + 1)? as usize;
        let (len, start) = if first < 0x80 {
            (first, at + 2)
        } else {
            let n = first & 0x7f;
            let len = pkcs8
                .get(at + 2..at + 2 + n)?
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, at + 2 + n)
        };
        Some((tag, start, start.checked_add(len)?))
    };
    let (t, body, _) = element(0).ok_or_else(bad)?;
    let (t1, _, version_end) = element(body).ok_or_else(bad)?;
    let (t2, _, alg_end) = element(version_end).ok_or_else(bad)?;
    let (t3, key_start, key_end) = element(alg_end).ok_or_else(bad)?;
    if (t, t1, t2, t3) != (0x30, 0x02, 0x30, 0x04) {
        return Err(bad());
    }
    let der = pkcs8.get(key_start..key_end).ok_or_else(bad)?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    Ok(format!(
        "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
        lines.join("\n")
    ))
}

fn text<'a>(attrs: &'a Attrs, k: &str) -> Option<&'a str> {
    attrs.get(k).and_then(Value::as_str)
}

fn num(attrs: &Attrs, k: &str, default: i64) -> i64 {
    attrs.get(k).and_then(Value::as_i64).unwrap_or(default)
}

/// Whether a certificate expiring at `not_after` is within its renewal window.
pub fn due(not_after: &str, renew_before_days: i64) -> bool {
    chrono::DateTime::parse_from_rfc3339(not_after).map_or(true, |t| {
        t.with_timezone(&chrono::Utc) - chrono::Duration::days(renew_before_days)
            <= chrono::Utc::now()
    })
}

#[async_trait]
impl Provider for CertificateProvider {
    fn kinds(&self) -> &'static [&'static str] {
        &["certificate"]
    }

    /// The record is the certificate; it is due for renewal near its expiry.
    async fn read(&self, _addr: &Address, rec: &Record) -> Result<Option<Live>, ProviderError> {
        let mut attrs = rec.attrs.clone();
        let not_after = rec
            .outputs
            .get("not_after")
            .and_then(Value::as_str)
            .unwrap_or("");
        attrs.insert(
            "renewal_due".into(),
            json!(due(not_after, num(&rec.attrs, "renew_before_days", 30))),
        );
        Ok(Some(Live {
            id: rec.id.clone().unwrap_or_default(),
            attrs,
            ..Live::default()
        }))
    }

    async fn find(&self, _: &Address, _: &Attrs, _: bool) -> Result<Option<Live>, ProviderError> {
        Ok(None)
    }

    async fn create(&self, addr: &Address, attrs: &Attrs) -> Result<Live, ProviderError> {
        let dns: Vec<String> = attrs
            .get("dns_names")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let cn = text(attrs, "common_name")
            .or(dns.first().map(String::as_str))
            .unwrap_or(addr.name())
            .to_owned();
        let issued = issue(
            &cn,
            &dns,
            num(attrs, "validity_days", 365),
            text(attrs, "key").unwrap_or("rsa-2048"),
        )?;
        let not_after = issued
            .not_after
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut outputs = BTreeMap::new();
        outputs.insert(
            "ca_bundle".to_owned(),
            json!(base64::engine::general_purpose::STANDARD.encode(&issued.ca_pem)),
        );
        outputs.insert("not_after".to_owned(), json!(not_after));
        let mut secrets = BTreeMap::new();
        secrets.insert("crt".to_owned(), Secret::new(issued.cert_pem));
        secrets.insert("key".to_owned(), Secret::new(issued.key_pem));
        secrets.insert("ca_crt".to_owned(), Secret::new(issued.ca_pem));
        tracing::info!(address = %addr, %not_after, "issued a certificate");
        Ok(Live {
            id: addr.to_string(),
            attrs: attrs.clone(),
            outputs,
            secrets,
            basis: None,
        })
    }

    async fn update(
        &self,
        addr: &Address,
        _rec: &Record,
        attrs: &Attrs,
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

    /// The issued chain verifies with an independent tool (openssl), the key
    /// is PKCS#1 RSA and matches the certificate.
    #[test]
    fn issues_a_ca_and_a_serving_certificate_openssl_accepts() {
        let dns = vec!["spark-operator-webhook.spark.svc".to_owned()];
        let i = issue("spark-operator-webhook", &dns, 30, "rsa-2048").unwrap();
        assert!(i.key_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let d = tempfile::tempdir().unwrap();
        for (f, v) in [
            ("ca.pem", &i.ca_pem),
            ("crt.pem", &i.cert_pem),
            ("key.pem", &i.key_pem),
        ] {
            std::fs::write(d.path().join(f), v).unwrap();
        }
        let run = |args: &[&str]| {
            std::process::Command::new("openssl")
                .args(args)
                .current_dir(d.path())
                .output()
                .unwrap()
        };
        let v = run(&[
            "verify",
            "-CAfile",
            "ca.pem",
            "-verify_hostname",
            "spark-operator-webhook.spark.svc",
            "crt.pem",
        ]);
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
        let k = run(&["rsa", "-in", "key.pem", "-check", "-noout"]);
        assert!(k.status.success(), "{}", String::from_utf8_lossy(&k.stderr));
        let m1 = run(&["x509", "-in", "crt.pem", "-noout", "-modulus"]);
        let m2 = run(&["rsa", "-in", "key.pem", "-noout", "-modulus"]);
        assert_eq!(m1.stdout, m2.stdout, "the key is the certificate's");
        assert!(due(
            &(chrono::Utc::now() + chrono::Duration::days(10)).to_rfc3339(),
            30
        ));
        assert!(!due(
            &(chrono::Utc::now() + chrono::Duration::days(100)).to_rfc3339(),
            30
        ));
    }
}

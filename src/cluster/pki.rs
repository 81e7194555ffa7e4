//! The cluster's PKI, generated here (rcgen, ECDSA P-256): three CAs (cluster,
//! etcd, front proxy), the service-account key pair, and leaf certificates
//! signed by a CA whose key comes back from sealed state. A CA is rebuilt as
//! an issuer from its key and subject alone, so leaves chain to the stored
//! CA certificate byte for byte (same subject, same key identifier).

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating {what}: {source}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
}

fn failed(what: &str) -> impl Fn(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Generate {
        what: what.to_owned(),
        source,
    }
}

/// A certificate and its key, PEM; `not_after` for expiry reports.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: DateTime<Utc>,
}

fn to_offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|e| PkiError::Invalid {
        what: "a certificate date".into(),
        message: e.to_string(),
    })
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// A self-signed CA named `common_name`, valid `days`.
pub fn new_ca(common_name: &str, days: u32) -> Result<Issued, PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed("a CA key"))?;
    let mut p = ca_params(common_name);
    let now = Utc::now();
    let not_after = now + Duration::days(days.into());
    p.not_before = to_offset(now - Duration::hours(1))?;
    p.not_after = to_offset(not_after)?;
    let cert = p.self_signed(&key).map_err(failed(common_name))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after,
    })
}

/// The service-account signing key: (private PEM, public PEM).
pub fn new_key_pair() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed("a key pair"))?;
    Ok((key.serialize_pem(), key.public_key_pem()))
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    /// etcd peers: both ends of every connection.
    Both,
}

#[derive(Debug, Clone)]
pub struct Leaf {
    pub common_name: String,
    /// Subject organisations (Kubernetes groups: `system:masters`, `system:nodes`).
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub usage: Usage,
    pub days: u32,
}

/// A leaf signed by the CA named `ca_common_name` with key `ca_key_pem`.
pub fn issue(ca_common_name: &str, ca_key_pem: &str, leaf: &Leaf) -> Result<Issued, PkiError> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(failed("the CA key from state"))?;
    let issuer = Issuer::new(ca_params(ca_common_name), ca_key);
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, leaf.common_name.as_str());
    for o in &leaf.organizations {
        p.distinguished_name
            .push(DnType::OrganizationName, o.as_str());
    }
    for d in &leaf.dns_names {
        p.subject_alt_names.push(SanType::DnsName(
            d.as_str().try_into().map_err(failed(&leaf.common_name))?,
        ));
    }
    for ip in &leaf.ips {
        p.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = match leaf.usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::Both => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    let now = Utc::now();
    let not_after = now + Duration::days(leaf.days.into());
    p.not_before = to_offset(now - Duration::hours(1))?;
    p.not_after = to_offset(not_after)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(failed("a key"))?;
    let cert = p
        .signed_by(&key, &issuer)
        .map_err(failed(&leaf.common_name))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// openssl, an independent implementation, verifies the chain and reads the names.
    #[test]
    fn leaves_chain_to_the_stored_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca("kubernetes-ca", 3650).unwrap();
        let leaf = issue(
            "kubernetes-ca",
            &ca.key_pem,
            &Leaf {
                common_name: "kube-apiserver".into(),
                organizations: vec![],
                dns_names: vec!["kubernetes.default.svc.cluster.local".into()],
                ips: vec!["10.43.0.1".parse().unwrap(), "10.236.0.11".parse().unwrap()],
                usage: Usage::Server,
                days: 365,
            },
        )
        .unwrap();
        let admin = issue(
            "kubernetes-ca",
            &ca.key_pem,
            &Leaf {
                common_name: "admin".into(),
                organizations: vec!["system:masters".into()],
                dns_names: vec![],
                ips: vec![],
                usage: Usage::Client,
                days: 365,
            },
        )
        .unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
        std::fs::write(dir.path().join("leaf.crt"), &leaf.cert_pem).unwrap();
        std::fs::write(dir.path().join("admin.crt"), &admin.cert_pem).unwrap();
        let openssl = |args: &[&str]| {
            let o = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr),
            )
        };
        let (ok, out) = openssl(&[
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            "ca.crt",
            "leaf.crt",
        ]);
        assert!(ok, "{out}");
        let (ok, out) = openssl(&[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            "ca.crt",
            "admin.crt",
        ]);
        assert!(ok, "{out}");
        let (_, text) = openssl(&["x509", "-in", "leaf.crt", "-noout", "-text"]);
        assert!(text.contains("IP Address:10.43.0.1"), "{text}");
        assert!(
            text.contains("DNS:kubernetes.default.svc.cluster.local"),
            "{text}"
        );
        let (_, subj) = openssl(&["x509", "-in", "admin.crt", "-noout", "-subject"]);
        assert!(subj.contains("O = system:masters"), "{subj}");
        // A leaf is not a client certificate, and a foreign CA does not verify it.
        let (ok, _) = openssl(&[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            "ca.crt",
            "leaf.crt",
        ]);
        assert!(!ok);
        let other = new_ca("kubernetes-ca", 10).unwrap();
        std::fs::write(dir.path().join("other.crt"), &other.cert_pem).unwrap();
        let (ok, _) = openssl(&["verify", "-CAfile", "other.crt", "leaf.crt"]);
        assert!(
            !ok,
            "a CA with the same name but another key must not verify"
        );
    }
}

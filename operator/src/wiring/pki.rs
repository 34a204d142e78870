//! The operator's certificate authority: it signs each agent's server
//! certificate and the operator's own client certificate, so the agents
//! accept the operator and nobody else, and the operator talks only to
//! agents it set up.
//!
//! The CA lives in a Secret in the operator's namespace (`ca.crt`,
//! `ca.key`); agents' certificates live in Secrets beside their
//! StatefulSets (`tls.crt`, `tls.key`, `ca.crt`), annotated with their
//! expiry and names so renewal is decided without parsing X.509.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// How long an agent certificate is valid, and how long before its end it
/// is renewed.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(90 * 86_400);
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);

pub const CA_CERT_KEY: &str = "ca.crt";
pub const CA_KEY_KEY: &str = "ca.key";
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";
/// On an agent certificate Secret: when it expires (RFC 3339).
pub const NOT_AFTER_ANNOTATION: &str = "innoxide.dev/not-after";
/// On an agent certificate Secret: the names it carries, comma-separated.
pub const NAMES_ANNOTATION: &str = "innoxide.dev/names";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the CA Secret is incomplete: {0}")]
    Incomplete(&'static str),
}

/// The CA: its certificate (PEM) and key (PEM).
#[derive(Clone)]
pub struct Ca {
    pub cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("key_pem", &"***").finish()
    }
}

/// A certificate and its key, both PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: Timestamp,
}

fn to_time(t: Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.as_second())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn plus(now: Timestamp, d: Duration) -> Timestamp {
    now.checked_add(jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

impl Ca {
    pub fn generate(now: Timestamp) -> Result<Ca, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "innoxide operator CA");
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = to_time(now) - time::Duration::hours(1);
        params.not_after = to_time(plus(now, CA_VALIDITY));
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA from its Secret's data.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Ca, PkiError> {
        let text = |key: &'static str| {
            data.get(key)
                .and_then(|b| String::from_utf8(b.clone()).ok())
                .filter(|s| !s.trim().is_empty())
                .ok_or(PkiError::Incomplete(key))
        };
        let ca = Ca {
            cert_pem: text(CA_CERT_KEY)?,
            key_pem: text(CA_KEY_KEY)?,
        };
        ca.issuer()?;
        Ok(ca)
    }

    pub fn to_secret_data(&self) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([
            (CA_CERT_KEY.to_owned(), self.cert_pem.clone().into_bytes()),
            (CA_KEY_KEY.to_owned(), self.key_pem.clone().into_bytes()),
        ])
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let key = KeyPair::from_pem(&self.key_pem)?;
        Ok(Issuer::from_ca_cert_pem(&self.cert_pem, key)?)
    }

    fn issue(
        &self,
        common_name: &str,
        names: &[String],
        server: bool,
        now: Timestamp,
    ) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = names
            .iter()
            .map(|n| n.clone().try_into().map(SanType::DnsName))
            .collect::<Result<_, _>>()?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let not_after = plus(now, LEAF_VALIDITY);
        params.not_before = to_time(now) - time::Duration::hours(1);
        params.not_after = to_time(not_after);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after,
        })
    }

    /// An agent's server certificate for these names.
    pub fn issue_server(&self, names: &[String], now: Timestamp) -> Result<Issued, PkiError> {
        let cn = names
            .first()
            .map(String::as_str)
            .unwrap_or("innoxide-agent");
        self.issue(cn, names, true, now)
    }

    /// The operator's client certificate.
    pub fn issue_client(&self, now: Timestamp) -> Result<Issued, PkiError> {
        self.issue("innoxide-operator", &[], false, now)
    }
}

/// The data and annotations of an agent certificate Secret.
pub fn agent_secret_contents(
    ca: &Ca,
    issued: &Issued,
    names: &[String],
) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, String>) {
    (
        BTreeMap::from([
            (
                TLS_CERT_KEY.to_owned(),
                issued.cert_pem.clone().into_bytes(),
            ),
            (TLS_KEY_KEY.to_owned(), issued.key_pem.clone().into_bytes()),
            (CA_CERT_KEY.to_owned(), ca.cert_pem.clone().into_bytes()),
        ]),
        BTreeMap::from([
            (
                NOT_AFTER_ANNOTATION.to_owned(),
                issued.not_after.to_string(),
            ),
            (NAMES_ANNOTATION.to_owned(), names.join(",")),
        ]),
    )
}

/// Why an agent certificate Secret must be (re)issued, or None if it is
/// good: missing keys, another CA, other names, or close to its end.
pub fn renewal_reason(
    data: &BTreeMap<String, Vec<u8>>,
    annotations: &BTreeMap<String, String>,
    ca: &Ca,
    names: &[String],
    now: Timestamp,
) -> Option<&'static str> {
    if [TLS_CERT_KEY, TLS_KEY_KEY]
        .iter()
        .any(|k| data.get(*k).is_none_or(Vec::is_empty))
    {
        return Some("no certificate yet");
    }
    if data.get(CA_CERT_KEY).map(Vec::as_slice) != Some(ca.cert_pem.as_bytes()) {
        return Some("signed by another CA");
    }
    if annotations.get(NAMES_ANNOTATION).map(String::as_str) != Some(names.join(",").as_str()) {
        return Some("issued for other names");
    }
    let not_after = annotations
        .get(NOT_AFTER_ANNOTATION)
        .and_then(|t| t.parse::<Timestamp>().ok());
    match not_after {
        Some(end) if plus(now, RENEW_BEFORE) < end => None,
        Some(_) => Some("expires soon"),
        None => Some("expiry unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-21T18:00:00Z".parse().unwrap()
    }

    fn names() -> Vec<String> {
        vec!["db.prod.innoxide-agent".into(), "*.db.prod.svc".into()]
    }

    #[test]
    fn a_fresh_certificate_needs_no_renewal() {
        let ca = Ca::generate(now()).unwrap();
        let issued = ca.issue_server(&names(), now()).unwrap();
        let (data, annotations) = agent_secret_contents(&ca, &issued, &names());
        assert_eq!(
            renewal_reason(&data, &annotations, &ca, &names(), now()),
            None
        );
    }

    #[test]
    fn renewal_is_due_near_the_end_for_other_names_or_another_ca() {
        let ca = Ca::generate(now()).unwrap();
        let issued = ca.issue_server(&names(), now()).unwrap();
        let (data, annotations) = agent_secret_contents(&ca, &issued, &names());
        let later = plus(
            now(),
            LEAF_VALIDITY - RENEW_BEFORE + Duration::from_secs(60),
        );
        assert_eq!(
            renewal_reason(&data, &annotations, &ca, &names(), later),
            Some("expires soon")
        );
        let other_names = vec!["other.prod.innoxide-agent".to_owned()];
        assert_eq!(
            renewal_reason(&data, &annotations, &ca, &other_names, now()),
            Some("issued for other names")
        );
        let other_ca = Ca::generate(now()).unwrap();
        assert_eq!(
            renewal_reason(&data, &annotations, &other_ca, &names(), now()),
            Some("signed by another CA")
        );
        assert_eq!(
            renewal_reason(&BTreeMap::new(), &annotations, &ca, &names(), now()),
            Some("no certificate yet")
        );
    }

    #[test]
    fn the_ca_survives_a_round_trip_through_its_secret() {
        let ca = Ca::generate(now()).unwrap();
        let again = Ca::from_secret_data(&ca.to_secret_data()).unwrap();
        assert_eq!(again.cert_pem, ca.cert_pem);
        again
            .issue_client(now())
            .expect("a reloaded CA still signs");
        let mut broken = ca.to_secret_data();
        broken.remove(CA_KEY_KEY);
        assert!(matches!(
            Ca::from_secret_data(&broken),
            Err(PkiError::Incomplete("ca.key"))
        ));
    }
}

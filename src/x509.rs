//! The few X.509 facts hookguard reads from certificates (expiry, issuer, names), parsed in one
//! place for the certificate files, the managed Secret and the TLS loader.

use std::collections::BTreeSet;
use std::net::IpAddr;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::extensions::GeneralName;

/// What hookguard reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// The raw DER subject and issuer names: "issued by" is their equality.
    pub subject: Vec<u8>,
    pub issuer: Vec<u8>,
    pub dns: BTreeSet<String>,
    pub ips: BTreeSet<IpAddr>,
}

/// The first certificate of a PEM text.
pub fn first_der(pem: &str) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok()
}

/// The facts of the first certificate of a PEM text.
pub fn facts(pem: &str) -> Option<CertFacts> {
    facts_der(&first_der(pem)?)
}

/// The facts of a DER certificate.
pub fn facts_der(der: &[u8]) -> Option<CertFacts> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    dns.insert((*d).to_owned());
                }
                GeneralName::IPAddress(bytes) => {
                    if let Ok(octets) = <[u8; 4]>::try_from(*bytes) {
                        ips.insert(IpAddr::from(octets));
                    } else if let Ok(octets) = <[u8; 16]>::try_from(*bytes) {
                        ips.insert(IpAddr::from(octets));
                    }
                }
                _ => {}
            }
        }
    }
    Some(CertFacts {
        not_after: cert.validity().not_after.timestamp(),
        subject: cert.subject().as_raw().to_vec(),
        issuer: cert.issuer().as_raw().to_vec(),
        dns,
        ips,
    })
}

/// Splits a PEM bundle into one PEM text per certificate (normalized, so comparisons are exact).
pub fn split_pem(bundle: &str) -> Vec<String> {
    CertificateDer::pem_slice_iter(bundle.as_bytes())
        .filter_map(Result::ok)
        .map(|der| der_to_pem(&der))
        .collect()
}

fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Whether two PEM texts start with the same certificate (whatever their line wrapping).
pub fn same_cert(a: &str, b: &str) -> bool {
    match (first_der(a), first_der(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{generate_ca_valid, generate_serving};
    use time::{Duration, OffsetDateTime};

    #[test]
    fn facts_read_expiry_issuer_and_names_and_bundles_split_exactly() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let ca = generate_ca_valid("test-ca", now, Duration::hours(10)).unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let leaf =
            generate_serving(&ca, &["a.b.svc".to_owned()], &[ip], now, Duration::hours(2)).unwrap();
        let (ca_facts, leaf_facts) = (facts(&ca.cert_pem).unwrap(), facts(&leaf.cert_pem).unwrap());
        assert_eq!(leaf_facts.issuer, ca_facts.subject);
        assert_ne!(leaf_facts.issuer, leaf_facts.subject);
        assert_eq!(
            leaf_facts.not_after,
            (now + Duration::hours(2)).unix_timestamp()
        );
        assert!(leaf_facts.dns.contains("a.b.svc") && leaf_facts.ips.contains(&ip));

        let bundle = format!("{}{}", ca.cert_pem, leaf.cert_pem);
        let parts = split_pem(&bundle);
        assert_eq!(parts.len(), 2);
        assert!(same_cert(&parts[0], &ca.cert_pem) && same_cert(&parts[1], &leaf.cert_pem));
        assert!(!same_cert(&parts[0], &leaf.cert_pem));
        assert_eq!(facts("not a certificate"), None);
        assert!(split_pem("garbage").is_empty());
    }
}

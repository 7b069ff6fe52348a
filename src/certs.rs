//! Self-signed CA and serving certificates (rcgen), and reading certificate facts (x509-parser).
//!
//! File names follow the keys of a Kubernetes TLS Secret: `tls.crt`, `tls.key`, `ca.crt`
//! (plus `ca.key`, kept so that restarts reuse the CA and the registered caBundle stays valid).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// Validity of a generated CA.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// Validity of a generated serving certificate.
pub const SERVING_VALIDITY_DAYS: i64 = 365;
/// An existing CA is reused only while it stays valid at least this long.
pub const CA_REUSE_MARGIN_DAYS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a PEM certificate")]
    NotACertificate { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A CA: its certificate and key in PEM. `Debug` leaves the key out (no secrets in logs).
#[derive(Clone, PartialEq, Eq)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A serving certificate and key in PEM. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct Serving {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Where generated files went, and the caBundle to register.
#[derive(Debug, Clone)]
pub struct Written {
    pub ca_cert: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// base64 of the CA certificate PEM: the value of a webhook's `clientConfig.caBundle`.
    pub ca_bundle: String,
    pub reused_ca: bool,
}

/// Generates a new CA valid from now for [`CA_VALIDITY_DAYS`].
pub fn generate_ca(common_name: &str, now: OffsetDateTime) -> Result<Ca, CertError> {
    generate_ca_valid(common_name, now, Duration::days(CA_VALIDITY_DAYS))
}

/// Generates a new CA valid from now for `validity`.
pub fn generate_ca_valid(
    common_name: &str,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<Ca, CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "hookguard");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + validity;
    let cert = params.self_signed(&key)?;
    Ok(Ca {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Generates a serving certificate for the given DNS names and IPs, signed by `ca`.
pub fn generate_serving(
    ca: &Ca,
    dns: &[String],
    ips: &[IpAddr],
    now: OffsetDateTime,
    validity: Duration,
) -> Result<Serving, CertError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let common_name = dns
        .first()
        .cloned()
        .unwrap_or_else(|| "hookguard".to_owned());
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    for name in dns {
        params
            .subject_alt_names
            .push(SanType::DnsName(name.as_str().try_into()?));
    }
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + validity;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Serving {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The notAfter of the first certificate in a PEM bundle, as a Unix timestamp.
pub fn not_after(pem: &str) -> Option<i64> {
    crate::x509::facts(pem).map(|f| f.not_after)
}

/// Writes `contents` to `path` atomically (temp file + rename), with mode 0600 for keys.
fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), CertError> {
    let tmp = path.with_extension("tmp");
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = secret;
        let mut f = options.open(&tmp).map_err(io_err(&tmp))?;
        f.write_all(contents.as_bytes()).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn read_ca(dir: &Path, now: OffsetDateTime) -> Option<Ca> {
    let cert_pem = fs::read_to_string(dir.join("ca.crt")).ok()?;
    let key_pem = fs::read_to_string(dir.join("ca.key")).ok()?;
    let expiry = not_after(&cert_pem)?;
    let margin = now + Duration::days(CA_REUSE_MARGIN_DAYS);
    if expiry < margin.unix_timestamp() {
        return None;
    }
    // Make sure the pair is usable before reusing it.
    let key = KeyPair::from_pem(&key_pem).ok()?;
    Issuer::from_ca_cert_pem(&cert_pem, key).ok()?;
    Some(Ca { cert_pem, key_pem })
}

/// Writes a CA (reused from `dir` when `reuse_ca` and still valid) and a fresh serving certificate.
pub fn write_certs(
    dir: &Path,
    dns: &[String],
    ips: &[IpAddr],
    reuse_ca: bool,
    now: OffsetDateTime,
) -> Result<Written, CertError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let existing = if reuse_ca { read_ca(dir, now) } else { None };
    let reused_ca = existing.is_some();
    let ca = match existing {
        Some(ca) => ca,
        None => {
            let ca = generate_ca("hookguard-ca", now)?;
            write_file(&dir.join("ca.key"), &ca.key_pem, true)?;
            write_file(&dir.join("ca.crt"), &ca.cert_pem, false)?;
            ca
        }
    };
    let serving = generate_serving(&ca, dns, ips, now, Duration::days(SERVING_VALIDITY_DAYS))?;
    let tls_key = dir.join("tls.key");
    let tls_cert = dir.join("tls.crt");
    write_file(&tls_key, &serving.key_pem, true)?;
    write_file(&tls_cert, &serving.cert_pem, false)?;
    Ok(Written {
        ca_cert: dir.join("ca.crt"),
        tls_cert,
        tls_key,
        ca_bundle: base64::engine::general_purpose::STANDARD.encode(ca.cert_pem.as_bytes()),
        reused_ca,
    })
}

/// The DNS names a serving certificate for a Service needs.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certs_parse_and_reuse_the_ca() {
        let dir = std::env::temp_dir().join(format!("hookguard-certs-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let now = OffsetDateTime::now_utc();
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
        let first = write_certs(&dir, &["localhost".to_owned()], &ips, true, now).unwrap();
        assert!(!first.reused_ca);
        let second = write_certs(&dir, &["localhost".to_owned()], &ips, true, now).unwrap();
        assert!(second.reused_ca);
        assert_eq!(first.ca_bundle, second.ca_bundle);
        let pem = fs::read_to_string(&second.tls_cert).unwrap();
        let expiry = not_after(&pem).unwrap();
        let expected = (now + Duration::days(SERVING_VALIDITY_DAYS)).unix_timestamp();
        assert!((expiry - expected).abs() < 5);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&second.tls_key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}

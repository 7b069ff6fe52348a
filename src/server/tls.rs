//! Serving TLS with rustls: TLS 1.2+, optional client-certificate auth (mTLS), and a certificate
//! resolver whose key pair is swapped in place when the files on disk change, so rotation needs no
//! restart and in-flight connections keep the certificate they negotiated.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not a PEM certificate chain: {message}")]
    BadCertificate { path: PathBuf, message: String },
    #[error("{path}: no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {message}")]
    BadKey { path: PathBuf, message: String },
    #[error("{cert} and {key} do not belong together: {message}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("client CA {path}: {message}")]
    ClientCa { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A serving key pair as loaded from PEM files, with the leaf's expiry.
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// notAfter of the leaf certificate (Unix seconds), if it could be read.
    pub not_after: Option<i64>,
}

/// Parses a PEM certificate chain and private key (the leaf comes first in the chain).
pub fn parse_cert(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<LoadedCert, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert_path.to_owned(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        path: key_path.to_owned(),
        message: e.to_string(),
    })?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::BadKey {
            path: key_path.to_owned(),
            message: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        message: e.to_string(),
    })?;
    let not_after = crate::x509::facts_der(&certified.cert[0]).map(|f| f.not_after);
    Ok(LoadedCert {
        key: Arc::new(certified),
        not_after,
    })
}

/// Loads a key pair from files.
pub fn load_cert(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, TlsError> {
    parse_cert(&read(cert_path)?, &read(key_path)?, cert_path, key_path)
}

/// Hands every handshake the current key pair.
#[derive(Debug)]
pub struct ReloadingResolver {
    current: ArcSwap<CertifiedKey>,
}

impl ReloadingResolver {
    pub fn new(initial: Arc<CertifiedKey>) -> Self {
        ReloadingResolver {
            current: ArcSwap::new(initial),
        }
    }

    pub fn replace(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The TLS settings every new connection is accepted with; swapped whole when the client CA file
/// changes, so connections already open keep the settings they were accepted with.
pub type SharedServerConfig = Arc<ArcSwap<rustls::ServerConfig>>;

/// The client CA bundle as read from disk, for `--client-ca`.
pub struct ClientCa<'a> {
    pub path: &'a Path,
    pub pem: &'a [u8],
}

/// Reads the client CA bundle at `path`.
pub fn read_client_ca(path: &Path) -> Result<Vec<u8>, TlsError> {
    read(path)
}

/// The server configuration: TLS 1.3 and 1.2 with ring, h2 and http/1.1 via ALPN, and client
/// certificates verified against the client CA when given.
pub fn server_config(
    resolver: Arc<ReloadingResolver>,
    client_ca: Option<ClientCa<'_>>,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ClientCa { path, pem }) => {
            let bad = |message: String| TlsError::ClientCa {
                path: path.to_owned(),
                message,
            };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| bad(e.to_string()))?;
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(bad("no PEM certificate found".to_owned()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

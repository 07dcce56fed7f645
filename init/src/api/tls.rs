//! TLS for the remote API: the server's configuration (TLS 1.3 only, a client
//! certificate required, chained to the configured CA, not expired, not on the deny
//! list), the host's own key and certificate made at first start, and keelctl's client
//! configuration (trust a CA file, or pin the server certificate's SHA-256 fingerprint).

use super::identity::{normalize_serial, parse_certificate, ClientIdentity};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        what: String,
    },
    /// rustls refused the configuration.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built (e.g. no CA certificate).
    #[error("client CA: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// Making the host's own key or certificate failed.
    #[error("server certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.into(), source }
}

/// The crypto keel uses everywhere: rustls' ring provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem { path: path.into(), what: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.into(), what: "no CERTIFICATE in the file".into() });
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem { path: path.into(), what: e.to_string() })
}

/// SHA-256 of a certificate's DER, as `AB:CD:…` (what the console shows and keelctl pins).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref()).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// A fingerprint as typed (colons, case and a `sha256:` prefix ignored) → 32 bytes.
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let text = text.strip_prefix("sha256:").or_else(|| text.strip_prefix("SHA256:")).unwrap_or(text);
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The host's server key and certificate in `dir` (`server.key`, `server.pem`), made on
/// the first call (ECDSA P-256, self-signed, names `hostname` and `localhost`) and kept.
pub fn ensure_server_key(dir: &Path, hostname: &str) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
    if !cert_path.exists() || !key_path.exists() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let key = rcgen::KeyPair::generate()?;
        let mut names = vec!["localhost".to_string()];
        if !hostname.is_empty() && hostname != "localhost" {
            names.insert(0, hostname.to_string());
        }
        let mut params = rcgen::CertificateParams::new(names)?;
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("keel api {hostname}"));
        let cert = params.self_signed(&key)?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        write_private(&cert_path, cert.pem().as_bytes())?;
    }
    Ok((load_certs(&cert_path)?, load_key(&key_path)?))
}

/// Write a file atomically with mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

thread_local! {
    /// The certificate the client on this thread presented, parsed (each connection's
    /// handshake runs on its own thread), so a refused handshake is audited with its name.
    static PRESENTED: RefCell<Option<ClientIdentity>> = const { RefCell::new(None) };
}

/// Take what the last handshake on this thread presented.
pub fn take_presented() -> Option<ClientIdentity> {
    PRESENTED.with(|p| p.borrow_mut().take())
}

/// Whether `serial` is on the deny list file at `path` (one hex serial a line, `#`
/// comments; a missing file denies nothing).
pub fn is_denied(path: &Path, serial: &str) -> bool {
    std::fs::read_to_string(path)
        .map(|text| text.lines().map(|l| l.split('#').next().unwrap_or("")).filter_map(normalize_serial).any(|s| s == serial))
        .unwrap_or(false)
}

/// WebPKI client verification (chain to the CA, validity dates, client-auth usage), then
/// the deny list: a revoked certificate fails the handshake like an expired one.
#[derive(Debug)]
struct DenyListVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    denied: PathBuf,
}

impl ClientCertVerifier for DenyListVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let identity = parse_certificate(end_entity.as_ref()).ok();
        PRESENTED.with(|p| *p.borrow_mut() = identity.clone());
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        match identity {
            None => Err(rustls::Error::InvalidCertificate(CertificateError::BadEncoding)),
            Some(identity) if is_denied(&self.denied, &identity.serial) => {
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            }
            Some(_) => Ok(verified),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The API's server configuration: TLS 1.3 only, a client certificate from one of
/// `client_cas` required, serials on the `denied` list refused.
pub fn server_config(
    client_cas: Vec<CertificateDer<'static>>,
    denied: PathBuf,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for ca in client_cas {
        roots.add(ca)?;
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let verifier = Arc::new(DenyListVerifier { inner, denied });
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// How keelctl decides it talks to the right host.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// The server's chain must lead to one of these CA certificates and name the host.
    Ca(Vec<CertificateDer<'static>>),
    /// The server's certificate must have this SHA-256 (the fingerprint the console shows).
    Pinned([u8; 32]),
}

/// Accepts exactly one server certificate, by its SHA-256, and checks the handshake
/// signature with it (SSH-style trust on first use, the fingerprint read from the console).
#[derive(Debug)]
struct PinnedServer {
    sha256: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if Sha256::digest(end_entity.as_ref()).as_slice() == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!("server certificate fingerprint is {}, not the pinned one", fingerprint(end_entity))))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// keelctl's client configuration: TLS 1.3, this trust, this client certificate (or none,
/// which the server refuses — kept possible so the refusal can be shown).
pub fn client_config(
    trust: ServerTrust,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = match trust {
        ServerTrust::Ca(cas) => {
            let mut roots = RootCertStore::empty();
            for ca in cas {
                roots.add(ca)?;
            }
            builder.with_root_certificates(roots)
        }
        ServerTrust::Pinned(sha256) => builder.dangerous().with_custom_certificate_verifier(Arc::new(PinnedServer { sha256, provider })),
    };
    let config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_round_trip() {
        let cert = CertificateDer::from(vec![1u8, 2, 3]);
        let shown = fingerprint(&cert);
        assert_eq!(shown.len(), 32 * 3 - 1);
        assert_eq!(parse_fingerprint(&shown).unwrap().as_slice(), Sha256::digest([1u8, 2, 3]).as_slice());
        assert_eq!(parse_fingerprint(&format!("sha256:{}", shown.replace(':', "").to_lowercase())), parse_fingerprint(&shown));
        assert_eq!(parse_fingerprint("abcd"), None);
    }

    #[test]
    fn deny_list_matches_normalized_serials() {
        let path = std::env::temp_dir().join(format!("keel-denied-{}", std::process::id()));
        std::fs::write(&path, "# revoked\n00:1F:2a  # bob's laptop\n\nnot-hex\n").unwrap();
        assert!(is_denied(&path, "1f2a"));
        assert!(!is_denied(&path, "1f2b"), "control: another serial passes");
        assert!(!is_denied(Path::new("/nonexistent/denied"), "1f2a"));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn server_key_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("keel-api-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (chain, _) = ensure_server_key(&dir, "keel-test").unwrap();
        let (again, _) = ensure_server_key(&dir, "keel-test").unwrap();
        assert_eq!(fingerprint(&chain[0]), fingerprint(&again[0]));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join("server.key")).unwrap().permissions().mode() & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

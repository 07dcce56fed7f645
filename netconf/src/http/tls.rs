//! TLS for https: the CAs keel trusts and the client side of the handshake (rustls with
//! the ring provider; TLS 1.2 and 1.3, certificates checked by webpki, server names and
//! IP addresses matched against the certificate).
//!
//! Trusted CAs are the image's bundle ([`SYSTEM_BUNDLE`], copied from the build host's
//! ca-certificates by keel-build) plus any added at run time (Ignition's
//! `ignition.security.tls.certificateAuthorities`, a registry's own CA).

use super::TlsError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;

/// Where an image keeps its CA bundle (PEM, the Debian / Fedora path).
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The CAs an https client trusts.
#[derive(Debug, Clone)]
pub struct TrustStore {
    bundle: Option<PathBuf>,
    extra: Vec<CertificateDer<'static>>,
}

impl Default for TrustStore {
    fn default() -> Self {
        TrustStore { bundle: Some(PathBuf::from(SYSTEM_BUNDLE)), extra: Vec::new() }
    }
}

/// The PEM certificates in `pem`; an error when there is none or one is malformed.
pub fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs =
        CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| TlsError::BadPem { reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

impl TrustStore {
    /// Only the CAs added with [`TrustStore::add_pem`] (no system bundle).
    pub fn empty() -> Self {
        TrustStore { bundle: None, extra: Vec::new() }
    }

    /// Trust the PEM certificates in `pem` too; returns how many were added.
    pub fn add_pem(&mut self, pem: &[u8]) -> Result<usize, TlsError> {
        let certs = parse_pem_certificates(pem)?;
        let added = certs.len();
        self.extra.extend(certs);
        Ok(added)
    }

    /// The rustls client configuration for these CAs.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(bundle) = self.bundle.as_ref().filter(|b| b.exists()) {
            let pem = std::fs::read(bundle).map_err(|source| TlsError::Bundle { path: bundle.display().to_string(), source })?;
            let certs = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok);
            roots.add_parsable_certificates(certs);
        }
        for cert in &self.extra {
            roots.add(cert.clone()).map_err(TlsError::UnusableCa)?;
        }
        if roots.is_empty() {
            return Err(TlsError::NoTrustedCa { bundle: SYSTEM_BUNDLE });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// A TLS session over a TCP stream (plain, or a proxy's `CONNECT` tunnel).
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// The handshake with `host` over `tcp`; errors say what failed, e.g. a certificate
/// signed by no trusted CA or issued for another name.
pub fn connect(config: Arc<rustls::ClientConfig>, host: &str, mut tcp: TcpStream) -> Result<TlsStream, TlsError> {
    let name =
        ServerName::try_from(host.to_string()).map_err(|e| TlsError::ServerName { host: host.to_string(), reason: e.to_string() })?;
    let mut conn = rustls::ClientConnection::new(config, name).map_err(TlsError::Setup)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| handshake_error(host, e))?;
    }
    Ok(rustls::StreamOwned::new(conn, tcp))
}

fn handshake_error(host: &str, source: std::io::Error) -> TlsError {
    let text = source.to_string();
    let hint = if text.contains("UnknownIssuer") {
        " (the server's certificate is not signed by a trusted CA)"
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        " (the certificate was issued for another name)"
    } else if text.contains("Expired") || text.contains("NotValidYet") {
        " (the certificate is outside its validity period; is the clock right?)"
    } else {
        ""
    };
    TlsError::Handshake { host: host.to_string(), source, hint }
}

/// Reads that treat a peer closing without `close_notify` as the end of the stream
/// (as many HTTP servers do after `Connection: close`); bodies with a length or chunks
/// still detect truncation.
pub fn read_tolerant(stream: &mut TlsStream, buf: &mut [u8]) -> std::io::Result<usize> {
    match stream.read(buf) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
        other => other,
    }
}

/// Write through the TLS session and flush it to the socket.
pub fn write_all(stream: &mut TlsStream, data: &[u8]) -> std::io::Result<()> {
    stream.write_all(data)?;
    stream.flush()
}

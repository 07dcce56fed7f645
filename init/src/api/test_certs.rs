//! Throwaway certificate authorities and client certificates for the remote API's tests
//! (the in-process proxy tests and the QEMU tests), made with rcgen so no test depends
//! on an openssl command line. Built for tests and with the `testing` feature only.

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SerialNumber};
use std::path::{Path, PathBuf};

/// A self-signed CA that signs client certificates.
pub struct TestCa {
    /// Its certificate.
    pub cert: rcgen::Certificate,
    /// Its key.
    pub key: KeyPair,
}

/// A new CA named `name` (its CN).
pub fn ca(name: &str) -> TestCa {
    let key = KeyPair::generate().expect("generate a key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("certificate parameters");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    TestCa { cert: params.self_signed(&key).expect("self-sign the CA"), key }
}

/// A client certificate (CN, O = role, serial; expired since 2021 when `expired`) signed
/// by `ca`, written as DIR/FILE.pem and DIR/FILE.key; returns both paths.
pub fn issue(dir: &Path, ca: &TestCa, file: &str, cn: &str, org: &str, serial: u8, expired: bool) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("generate a key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("certificate parameters");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.distinguished_name.push(DnType::OrganizationName, org);
    params.serial_number = Some(SerialNumber::from(vec![serial]));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, &ca.cert, &ca.key).expect("sign the client certificate");
    let paths = (dir.join(format!("{file}.pem")), dir.join(format!("{file}.key")));
    std::fs::write(&paths.0, cert.pem()).expect("write the certificate");
    std::fs::write(&paths.1, key.serialize_pem()).expect("write the key");
    paths
}

/// A server certificate for `name` (its SAN, and CN) signed by `ca`, written as
/// DIR/FILE.pem and DIR/FILE.key; returns both paths.
pub fn issue_server(dir: &Path, ca: &TestCa, file: &str, name: &str) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("generate a key");
    let mut params = CertificateParams::new(vec![name.to_string()]).expect("certificate parameters");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca.cert, &ca.key).expect("sign the server certificate");
    let paths = (dir.join(format!("{file}.pem")), dir.join(format!("{file}.key")));
    std::fs::write(&paths.0, cert.pem()).expect("write the certificate");
    std::fs::write(&paths.1, key.serialize_pem()).expect("write the key");
    paths
}

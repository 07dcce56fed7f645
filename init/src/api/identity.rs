//! Who a client certificate names: its subject's common name (CN) and organizations
//! (O, which carry the role), and its serial number (which the deny list revokes).
//! Read straight from the certificate's DER with a small reader of the few TLVs on the
//! way (Certificate → TBSCertificate → serial, subject); rustls has already checked
//! the signature chain and validity before any of this is trusted.

/// The parts of a client certificate the API acts on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientIdentity {
    /// Subject CN (the audit log's "who").
    pub common_name: Option<String>,
    /// Subject O values (roles: `admin`, `read-only`).
    pub organizations: Vec<String>,
    /// Serial number, lowercase hex without leading zeros (what the deny list holds).
    pub serial: String,
}

/// The DER is not a certificate this reader understands.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("client certificate: malformed DER ({0})")]
pub struct DerError(&'static str);

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;
/// 2.5.4.3 (commonName) and 2.5.4.10 (organizationName), as DER OID contents.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];

/// One TLV: its tag, its contents, and what follows it.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), DerError> {
    let (&tag, rest) = input.split_first().ok_or(DerError("truncated"))?;
    let (&first, rest) = rest.split_first().ok_or(DerError("truncated length"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err(DerError("bad length"));
        }
        let len = rest[..count].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return Err(DerError("length beyond the data"));
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn expect<'a>(input: &'a [u8], want: u8, what: &'static str) -> Result<(&'a [u8], &'a [u8]), DerError> {
    let (tag, body, rest) = tlv(input)?;
    if tag != want {
        return Err(DerError(what));
    }
    Ok((body, rest))
}

/// Lowercase hex of a serial's INTEGER contents, without leading zero digits ("0" for zero).
fn serial_hex(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

/// A deny-list entry or a typed serial in the form [`ClientIdentity::serial`] uses
/// (colons and case ignored, leading zeros dropped); `None` when it is not hex.
pub fn normalize_serial(text: &str) -> Option<String> {
    let hex: String = text.trim().chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    let hex = hex.strip_prefix("0x").unwrap_or(&hex);
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = hex.trim_start_matches('0');
    Some(if trimmed.is_empty() { "0".into() } else { trimmed.into() })
}

/// Read CN, O and the serial from a certificate's DER.
pub fn parse_certificate(der: &[u8]) -> Result<ClientIdentity, DerError> {
    let (certificate, _) = expect(der, SEQUENCE, "not a SEQUENCE")?;
    let (mut tbs, _) = expect(certificate, SEQUENCE, "no TBSCertificate")?;
    if tbs.first() == Some(&VERSION) {
        tbs = tlv(tbs)?.2;
    }
    let (serial, rest) = expect(tbs, INTEGER, "no serial number")?;
    let (_signature, rest) = expect(rest, SEQUENCE, "no signature algorithm")?;
    let (_issuer, rest) = expect(rest, SEQUENCE, "no issuer")?;
    let (_validity, rest) = expect(rest, SEQUENCE, "no validity")?;
    let (mut subject, _) = expect(rest, SEQUENCE, "no subject")?;
    let mut identity = ClientIdentity { serial: serial_hex(serial), ..Default::default() };
    while !subject.is_empty() {
        let (mut set, rest) = expect(subject, SET, "subject entry is not a SET")?;
        subject = rest;
        while !set.is_empty() {
            let (pair, rest) = expect(set, SEQUENCE, "attribute is not a SEQUENCE")?;
            set = rest;
            let (oid, value) = expect(pair, OID, "attribute without OID")?;
            let (_string_type, text, _) = tlv(value)?;
            let text = String::from_utf8_lossy(text).into_owned();
            if oid == OID_CN {
                identity.common_name = Some(text);
            } else if oid == OID_O {
                identity.organizations.push(text);
            }
        }
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SerialNumber};

    #[test]
    fn reads_cn_o_and_serial_of_a_real_certificate() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "alice");
        params.distinguished_name.push(DnType::OrganizationName, "read-only");
        params.serial_number = Some(SerialNumber::from(vec![0x00, 0x8a, 0x01, 0x02]));
        let cert = params.self_signed(&key).unwrap();
        let identity = parse_certificate(cert.der()).unwrap();
        assert_eq!(identity.common_name.as_deref(), Some("alice"));
        assert_eq!(identity.organizations, vec!["read-only".to_string()]);
        assert_eq!(identity.serial, "8a0102");
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        assert!(parse_certificate(b"").is_err());
        assert!(parse_certificate(&[0x30, 0x82, 0xff, 0xff, 0x30]).is_err());
        assert!(parse_certificate(&[0x04, 0x00]).is_err());
    }

    #[test]
    fn serials_normalize() {
        assert_eq!(normalize_serial("00:8A:01:02").as_deref(), Some("8a0102"));
        assert_eq!(normalize_serial("0x0000").as_deref(), Some("0"));
        assert_eq!(normalize_serial("xyz"), None);
        assert_eq!(normalize_serial(""), None);
    }
}

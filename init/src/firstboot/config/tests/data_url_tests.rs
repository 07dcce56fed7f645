//! `decode_data_url`: RFC 2397 as Ignition reads it.

use super::super::data_url::{decode, DataUrlError};
use super::super::decode_data_url;

#[test]
fn decodes_percent_encoded_data() {
    assert_eq!(decode_data_url("data:,hello%20world%0A").unwrap(), b"hello world\n");
    assert_eq!(decode_data_url("data:,").unwrap(), b"");
    assert_eq!(decode_data_url("data:text/plain;charset=utf-8,a%2Cb,c").unwrap(), b"a,b,c");
    assert_eq!(decode_data_url("data:,a;b/c?d:e@f&g=h+i$j-_.!~*'()").unwrap(), b"a;b/c?d:e@f&g=h+i$j-_.!~*'()");
    assert_eq!(decode_data_url(r#"data:text/plain;a="b c";x-y=z,q"#).unwrap(), b"q");
    assert_eq!(decode_data_url("data:x-keel/thing,q").unwrap(), b"q");
}

#[test]
fn decodes_padded_base64_only() {
    assert_eq!(decode_data_url("data:;base64,aGVsbG8=").unwrap(), b"hello");
    assert_eq!(decode_data_url("data:text/plain;base64,aGk=").unwrap(), b"hi");
    assert_eq!(decode_data_url("data:application/octet-stream;base64,AAEC/w==").unwrap(), [0, 1, 2, 255]);
    assert_eq!(decode_data_url("data:;base64,").unwrap(), b"");
    assert_eq!(decode_data_url("data:;base64,YWJj").unwrap(), b"abc");
    assert_eq!(decode("data:;base64,aGVsbG8"), Err(DataUrlError::Base64Padding));
    assert_eq!(decode("data:;base64,aGVsbG8%3D"), Err(DataUrlError::Base64Character('%', 7)));
}

#[test]
fn rejects_what_ignition_rejects() {
    for (url, want) in [
        ("http://x", DataUrlError::Prefix),
        ("DATA:,x", DataUrlError::Prefix),
        ("Data:,x", DataUrlError::Prefix),
        ("data:text/plain", DataUrlError::MediaType("no ',' after the subtype")),
        ("data:,%zz", DataUrlError::PercentEscape(0)),
        ("data:,a%4", DataUrlError::PercentEscape(1)),
        ("data:,a b", DataUrlError::DataCharacter(' ', 1)),
        ("data:,h\u{e9}", DataUrlError::DataCharacter('\u{e9}', 1)),
        ("data:,a#b", DataUrlError::DataCharacter('#', 1)),
        ("data:,a\"b", DataUrlError::DataCharacter('"', 1)),
        ("data:;base64,a", DataUrlError::Base64Padding),
        ("data:;base64,aGVsbG8===", DataUrlError::Base64Padding),
        ("data:;base64,YQ==YQ==", DataUrlError::Base64Padding),
        ("data:;base64,aGV*bG8=", DataUrlError::Base64Character('*', 3)),
        ("data:;base64,aGVs bG8=", DataUrlError::Base64Character(' ', 4)),
        ("data:;BASE64,aGk=", DataUrlError::NotBase64("BASE64".into())),
        ("data:text/plain;charset,x", DataUrlError::NotBase64("charset".into())),
        ("data:text,x", DataUrlError::MediaType("invalid character in the type")),
        ("data:foo/bar,x", DataUrlError::UnknownType("foo".into())),
        ("data:;,x", DataUrlError::Parameter("invalid character in a parameter name")),
        ("data:text/plain;a=,x", DataUrlError::Parameter("empty or invalid parameter value")),
        ("data:text/plain;a=%zz,x", DataUrlError::PercentEscape(0)),
        (r#"data:text/plain;a="\q",x"#, DataUrlError::Parameter("invalid escape in a quoted value")),
    ] {
        assert_eq!(decode(url), Err(want), "{url}");
    }
}

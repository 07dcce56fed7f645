//! `decode_data_url`.

use super::super::decode_data_url;

#[test]
fn decodes_percent_encoded_data() {
    assert_eq!(decode_data_url("data:,hello%20world%0A").unwrap(), b"hello world\n");
    assert_eq!(decode_data_url("data:,").unwrap(), b"");
    assert_eq!(decode_data_url("data:text/plain;charset=utf-8,a%2Cb,c").unwrap(), b"a,b,c");
    assert_eq!(decode_data_url("DATA:,x").unwrap(), b"x");
}

#[test]
fn decodes_base64_with_and_without_padding() {
    assert_eq!(decode_data_url("data:;base64,aGVsbG8=").unwrap(), b"hello");
    assert_eq!(decode_data_url("data:;base64,aGVsbG8").unwrap(), b"hello");
    assert_eq!(decode_data_url("data:text/plain;base64,aGk=").unwrap(), b"hi");
    assert_eq!(decode_data_url("data:application/octet-stream;BASE64,AAEC/w==").unwrap(), [0, 1, 2, 255]);
    assert_eq!(decode_data_url("data:;base64,").unwrap(), b"");
    assert_eq!(decode_data_url("data:;base64,YWJj").unwrap(), b"abc");
    // Percent-escaped base64 characters are decoded first.
    assert_eq!(decode_data_url("data:;base64,aGVsbG8%3D").unwrap(), b"hello");
}

#[test]
fn rejects_malformed_urls() {
    for (url, needle) in [
        ("http://x", "start with"),
        ("data:text/plain", "','"),
        ("data:,%zz", "percent escape"),
        ("data:,%4", "percent escape"),
        ("data:;base64,a", "dangling"),
        ("data:;base64,aGV*bG8=", "invalid base64 character"),
        ("data:;base64,aGVsbG8===", "padding"),
        ("data:;base64,aGVs bG8=", "invalid base64 character"),
        ("data:text,x", "TYPE/SUBTYPE"),
        ("data:text/plain;charset,x", "NAME=VALUE"),
    ] {
        let e = decode_data_url(url).unwrap_err();
        assert!(e.contains(needle), "{url}: {e}");
    }
}

//! `http://` and `https://` URLs taken apart, and redirect targets resolved against them.

use super::HttpError;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The two schemes keel speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP (port 80 by default).
    Http,
    /// HTTP over TLS (port 443 by default).
    Https,
}

impl Scheme {
    /// The port used when the URL gives none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// An `http://` or `https://` URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// http or https.
    pub scheme: Scheme,
    /// The host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// The TCP port (the scheme's default when not given).
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path: String,
    /// An address to use when `host` does not resolve (e.g. the link-local metadata IP).
    pub fallback: Option<IpAddr>,
}

impl Url {
    /// `host[:port]` as written in a `Host` header or a `CONNECT` line (the port only
    /// when it is not the scheme's default).
    pub fn host_header(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.bracketed_host()
        } else {
            self.authority()
        }
    }

    /// `host:port`, always with the port (the `CONNECT` target).
    pub fn authority(&self) -> String {
        format!("{}:{}", self.bracketed_host(), self.port)
    }

    fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// The target of a redirect: an absolute URL, or a path on this URL's origin. A
    /// fragment is dropped, as [`parse_url`] drops it: it is never sent to a server.
    pub fn join(&self, location: &str) -> Result<Url, HttpError> {
        if location.starts_with("http://") || location.starts_with("https://") {
            return parse_url(location);
        }
        if location.starts_with("//") {
            return parse_url(&format!("{}:{location}", self.scheme.name()));
        }
        let location = location.split('#').next().unwrap_or_default();
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let dir = self.path.split('?').next().unwrap_or("/");
            format!("{}{location}", &dir[..dir.rfind('/').map_or(0, |i| i + 1)])
        };
        check_path(&path, location)?;
        Ok(Url { path, ..self.clone() })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme.name(), self.host_header(), self.path)
    }
}

fn check_path(path: &str, url: &str) -> Result<(), HttpError> {
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(url, "spaces or control characters in the path"));
    }
    Ok(())
}

fn bad(url: &str, reason: impl Into<String>) -> HttpError {
    HttpError::BadUrl { url: url.to_string(), reason: reason.into() }
}

/// Parse `http[s]://host[:port][/path][?query]`; the fragment is dropped.
pub fn parse_url(url: &str) -> Result<Url, HttpError> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(bad(url, "not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let path = match path.split('#').next() {
        Some("") | None => "/".to_string(),
        Some(p) => p.to_string(),
    };
    if authority.contains('@') {
        return Err(bad(url, "user information in URLs is not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad(url, "unclosed '[' in the host"))?;
        // An IPv6 address, with an RFC 6874 zone (`%25` then the zone's name) when given.
        let address = match host.split_once("%25") {
            Some((address, zone)) if !zone.is_empty() => address,
            Some(_) => host,
            None => host,
        };
        if address.parse::<Ipv6Addr>().is_err() {
            return Err(bad(url, format!("{host:?} in brackets is not an IPv6 address")));
        }
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or_else(|| bad(url, "bad text after the IPv6 address"))?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(url, "no valid host"));
    }
    let port = match port {
        None => scheme.default_port(),
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad(url, format!("bad port {p:?}")))?,
    };
    check_path(&path, url)?;
    Ok(Url { scheme, host: host.to_string(), port, path, fallback: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_taken_apart() {
        let url = parse_url("http://10.0.2.2:8000/config.ign?x=1").unwrap();
        assert_eq!((url.scheme, url.host.as_str(), url.port, url.path.as_str()), (Scheme::Http, "10.0.2.2", 8000, "/config.ign?x=1"));
        assert_eq!(url.host_header(), "10.0.2.2:8000");
        let url = parse_url("http://metadata.google.internal").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("metadata.google.internal", 80, "/"));
        assert_eq!(url.host_header(), "metadata.google.internal");
        let url = parse_url("http://[fe80::1]:81/a#frag").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("fe80::1", 81, "/a"));
        assert_eq!((url.host_header(), url.authority()), ("[fe80::1]:81".to_string(), "[fe80::1]:81".to_string()));
        assert_eq!(parse_url("http://h?q").unwrap().path, "/?q");
        assert_eq!(parse_url("http://h#f").unwrap().path, "/");
        let url = parse_url("https://registry.example:5000/v2/").unwrap();
        assert_eq!((url.scheme, url.port, url.to_string()), (Scheme::Https, 5000, "https://registry.example:5000/v2/".to_string()));
        let url = parse_url("https://example.com/c.ign").unwrap();
        assert_eq!((url.port, url.host_header(), url.authority()), (443, "example.com".to_string(), "example.com:443".to_string()));
        for bad in [
            "http://",
            "http://:80/",
            "http://h:0/",
            "http://h:99999/",
            "http://h:x/",
            "ftp://h/",
            "http://u@h/",
            "http://h/a b",
            "https://",
            // Found by the http_url fuzz target: anything in brackets was taken as the
            // host, and "[1" printed back as a URL that no longer parsed.
            "https://[[1]:843/",
            "http://[example.com]/",
            "http://[fe80::1%25]/",
            "http://[example.com%25eth0]/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_zoned_ipv6_host_is_an_address_as_ignition_reads_it() {
        // RFC 6874: the zone after `%25`; Ignition (Go's net/url) accepts it.
        let url = parse_url("http://[fe80::1%25eth0]/a").unwrap();
        assert_eq!(url.host, "fe80::1%25eth0");
    }

    #[test]
    fn redirect_targets_resolve_against_the_url() {
        let base = parse_url("https://r.example:5000/v2/lib/blobs/sha256:ab?x=1").unwrap();
        assert_eq!(base.join("/other").unwrap().to_string(), "https://r.example:5000/other");
        assert_eq!(base.join("sibling").unwrap().to_string(), "https://r.example:5000/v2/lib/blobs/sibling");
        assert_eq!(base.join("http://cdn.example/b?sig=1").unwrap().to_string(), "http://cdn.example/b?sig=1");
        assert_eq!(base.join("//cdn.example/b").unwrap().to_string(), "https://cdn.example/b");
        assert!(base.join("/a b").is_err());
        // Found by the http_url fuzz target: a relative redirect kept its fragment in
        // the path, so the request line carried it and the URL did not round-trip.
        assert_eq!(base.join("ar#//hore.example").unwrap().path, "/v2/lib/blobs/ar");
        assert_eq!(base.join("/x?q=1#frag").unwrap().path, "/x?q=1");
    }
}

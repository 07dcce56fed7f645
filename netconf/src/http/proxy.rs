//! Which proxy a request goes through: `httpProxy` for http URLs, `httpsProxy` for https
//! URLs (tunnelled with `CONNECT`), none for hosts matched by `noProxy` — the semantics
//! of Ignition's `ignition.proxy` and of the usual `*_proxy` variables.

use super::url::{parse_url, Scheme, Url};
use super::HttpError;
use std::net::IpAddr;

/// Proxy settings; the proxies themselves are reached over plain http.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxy {
    /// The proxy for `http://` URLs.
    pub http: Option<Url>,
    /// The proxy for `https://` URLs (a `CONNECT` tunnel, TLS end to end).
    pub https: Option<Url>,
    /// Hosts reached directly: `*`, a host name (which also covers its subdomains; a
    /// leading dot is the same), an IP address, or an IP network in CIDR form.
    pub no_proxy: Vec<String>,
}

impl Proxy {
    /// Settings from proxy URLs as written (`http://host:port`); an `https://` proxy
    /// URL is refused because keel talks to proxies in plain http.
    pub fn new(http: Option<&str>, https: Option<&str>, no_proxy: Vec<String>) -> Result<Proxy, HttpError> {
        let parse = |url: Option<&str>| -> Result<Option<Url>, HttpError> {
            let Some(url) = url else { return Ok(None) };
            let parsed = parse_url(url)?;
            if parsed.scheme == Scheme::Https {
                return Err(HttpError::BadUrl {
                    url: url.to_string(),
                    reason: "keel talks to proxies over plain http; write the proxy as http://HOST:PORT".into(),
                });
            }
            Ok(Some(parsed))
        };
        Ok(Proxy { http: parse(http)?, https: parse(https)?, no_proxy })
    }

    /// The proxy that a request for `url` goes through, if any.
    pub fn for_url(&self, url: &Url) -> Option<&Url> {
        let proxy = match url.scheme {
            Scheme::Http => self.http.as_ref(),
            Scheme::Https => self.https.as_ref(),
        }?;
        (!self.no_proxy.iter().any(|entry| bypasses(entry, &url.host))).then_some(proxy)
    }
}

/// Whether the `noProxy` entry `entry` covers `host`.
fn bypasses(entry: &str, host: &str) -> bool {
    let entry = entry.trim().to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    if entry.is_empty() {
        return false;
    }
    if entry == "*" {
        return true;
    }
    if let Some((net, bits)) = entry.split_once('/') {
        return match (net.parse::<IpAddr>(), bits.parse::<u32>(), host.parse::<IpAddr>()) {
            (Ok(net), Ok(bits), Ok(ip)) => in_network(ip, net, bits),
            _ => false,
        };
    }
    let domain = entry.trim_start_matches('.');
    host == domain || host.ends_with(&format!(".{domain}"))
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(no_proxy: &[&str]) -> Proxy {
        Proxy::new(Some("http://proxy:3128"), Some("http://tunnel:3128"), no_proxy.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    fn via(p: &Proxy, url: &str) -> Option<String> {
        p.for_url(&parse_url(url).unwrap()).map(|u| u.host.clone())
    }

    #[test]
    fn each_scheme_has_its_proxy() {
        let p = proxy(&[]);
        assert_eq!(via(&p, "http://a.example/x").as_deref(), Some("proxy"));
        assert_eq!(via(&p, "https://a.example/x").as_deref(), Some("tunnel"));
        let only_http = Proxy::new(Some("http://proxy:3128"), None, vec![]).unwrap();
        assert_eq!(via(&only_http, "https://a.example/x"), None);
    }

    #[test]
    fn no_proxy_matches_hosts_domains_addresses_and_networks() {
        let p = proxy(&["example.com", ".internal", "10.0.0.0/8", "192.168.1.5", "fd00::/8"]);
        for direct in [
            "http://example.com/",
            "https://www.example.com/",
            "http://metadata.internal/",
            "http://10.1.2.3/",
            "http://192.168.1.5/",
            "http://[fd00::1]/",
        ] {
            assert_eq!(via(&p, direct), None, "{direct}");
        }
        for proxied in ["http://notexample.com/", "http://192.168.1.6/", "http://11.0.0.1/", "http://[fe80::1]/", "http://internal.com/"] {
            assert!(via(&p, proxied).is_some(), "{proxied}");
        }
        assert_eq!(via(&proxy(&["*"]), "https://anything/"), None);
        assert!(via(&proxy(&["", "10.0.0.0/xx"]), "http://10.0.0.1/").is_some());
    }

    #[test]
    fn https_proxy_urls_are_refused() {
        let err = Proxy::new(None, Some("https://proxy:3128"), vec![]).unwrap_err().to_string();
        assert!(err.contains("plain http"), "{err}");
        assert!(Proxy::new(Some("ftp://x"), None, vec![]).is_err());
    }
}

//! The registry token dance (Docker / OCI distribution "token authentication"): a 401
//! answer names a token service in `WWW-Authenticate: Bearer realm=…,service=…,scope=…`;
//! keel asks it for an anonymous pull token and repeats the request with it.

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`bearer`, `basic`).
    pub scheme: String,
    /// The parameters in order, names lowercased.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (lowercase).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Parse `Scheme k="v", k2=token`; quoted values may hold `\"` and commas.
pub fn parse_challenge(header: &str) -> Result<Challenge, String> {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.is_empty() {
        return Err(format!("empty WWW-Authenticate challenge {header:?}"));
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if rest.is_empty() {
            break;
        }
        let (name, after) = rest.split_once('=').ok_or_else(|| format!("WWW-Authenticate: no '=' in {rest:?}"))?;
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => value.extend(chars.next().map(|(_, c)| c)),
                    Some((i, '"')) => break i + 1,
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("WWW-Authenticate: unclosed quote in {header:?}")),
                }
            };
            (value, &quoted[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.push((name.trim().to_ascii_lowercase(), value));
        rest = next;
    }
    Ok(Challenge { scheme: scheme.to_ascii_lowercase(), params })
}

/// Percent-encode a query value (RFC 3986 unreserved characters kept).
fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The URL to ask for a pull token for `repository`, from a Bearer challenge.
pub fn token_url(challenge: &Challenge, repository: &str) -> Result<String, String> {
    if challenge.scheme != "bearer" {
        return Err(format!("the registry asks for {} authentication; keel pulls anonymously with bearer tokens only", challenge.scheme));
    }
    let realm = challenge.param("realm").ok_or("the registry's Bearer challenge names no realm")?;
    let mut query = Vec::new();
    if let Some(service) = challenge.param("service") {
        query.push(format!("service={}", encode_query(service)));
    }
    let scope = challenge.param("scope").map_or_else(|| format!("repository:{repository}:pull"), str::to_string);
    query.push(format!("scope={}", encode_query(&scope)));
    let joiner = if realm.contains('?') { '&' } else { '?' };
    Ok(format!("{realm}{joiner}{}", query.join("&")))
}

/// The token in a token service's JSON answer (`token`, or OAuth's `access_token`).
pub fn parse_token(body: &[u8]) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("the token answer is not JSON: {e}"))?;
    value
        .get("token")
        .or_else(|| value.get("access_token"))
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(|| "the token answer holds no token".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_challenges_parse_into_token_urls() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(
            token_url(&c, "library/busybox").unwrap(),
            "https://auth.docker.io/token?service=registry.docker.io&scope=repository%3Alibrary%2Fbusybox%3Apull"
        );
        let c = parse_challenge(r#"Bearer realm="http://10.0.2.2:1/t?x=1""#).unwrap();
        assert_eq!(token_url(&c, "a/b").unwrap(), "http://10.0.2.2:1/t?x=1&scope=repository%3Aa%2Fb%3Apull");
    }

    #[test]
    fn quoted_values_and_tokens_parse() {
        let c = parse_challenge(r#"Bearer realm="a,b\"c", error=insufficient_scope ,x="""#).unwrap();
        assert_eq!(
            c.params,
            [("realm".into(), "a,b\"c".into()), ("error".into(), "insufficient_scope".into()), ("x".into(), String::new())]
        );
        assert!(parse_challenge(r#"Bearer realm="open"#).is_err());
        assert!(parse_challenge("Bearer realm").is_err());
        assert!(parse_challenge("").is_err());
    }

    #[test]
    fn other_schemes_and_missing_realms_are_explained() {
        let basic = parse_challenge(r#"Basic realm="Registry""#).unwrap();
        assert!(token_url(&basic, "x").unwrap_err().contains("basic"));
        let no_realm = parse_challenge(r#"Bearer service="s""#).unwrap();
        assert!(token_url(&no_realm, "x").unwrap_err().contains("realm"));
    }

    #[test]
    fn tokens_are_read_from_either_field() {
        assert_eq!(parse_token(br#"{"token":"t1","expires_in":300}"#).unwrap(), "t1");
        assert_eq!(parse_token(br#"{"access_token":"t2"}"#).unwrap(), "t2");
        assert!(parse_token(br#"{"token":""}"#).is_err());
        assert!(parse_token(b"<html>").is_err());
    }
}

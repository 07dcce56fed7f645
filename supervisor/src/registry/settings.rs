//! Per-registry settings: extra CAs in `/etc/keel/certs.d/HOST[:PORT]/*.crt` (the layout
//! of Docker's /etc/docker/certs.d) and registries spoken to over plain http, listed in
//! `/etc/keel/registries.toml` as `insecure = ["HOST:PORT", …]`.

use keel_netconf::http::Client;
use serde::Deserialize;
use std::path::Path;

/// Where per-registry CA certificates live.
pub const CERTS_DIR: &str = "/etc/keel/certs.d";
/// keel's registry settings file.
pub const REGISTRIES_PATH: &str = "/etc/keel/registries.toml";

/// `/etc/keel/registries.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// Registries (`HOST[:PORT]`) reached over plain http instead of https.
    #[serde(default)]
    pub insecure: Vec<String>,
}

impl RegistrySettings {
    /// The settings in `path`; a missing file means none. Errors name the file.
    pub fn load(path: &Path) -> Result<RegistrySettings, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.to_string().trim_end())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistrySettings::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Whether `registry` is spoken to over plain http.
    pub fn is_insecure(&self, registry: &str) -> bool {
        self.insecure.iter().any(|r| r == registry)
    }
}

/// An https client for `registry`: the image's CA bundle plus every `*.crt` in
/// `certs_dir/registry/`.
pub fn client_for(registry: &str, certs_dir: &Path) -> Result<Client, String> {
    let mut client = Client::new();
    let dir = certs_dir.join(registry);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(client) };
    let mut files: Vec<_> =
        entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "crt")).collect();
    files.sort();
    for file in files {
        let pem = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        client.add_ca_pem(&pem).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_netconf::http::testing::{answer, TestCa, TestServer};

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("keel-registry-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn settings_are_strict_and_optional() {
        let dir = scratch("settings");
        assert_eq!(RegistrySettings::load(&dir.join("missing.toml")).unwrap(), RegistrySettings::default());
        std::fs::write(dir.join("r.toml"), "insecure = [\"10.0.2.2:5000\"]\n").unwrap();
        let s = RegistrySettings::load(&dir.join("r.toml")).unwrap();
        assert!(s.is_insecure("10.0.2.2:5000") && !s.is_insecure("10.0.2.2"));
        std::fs::write(dir.join("bad.toml"), "insecur = []\n").unwrap();
        let err = RegistrySettings::load(&dir.join("bad.toml")).unwrap_err();
        assert!(err.contains("bad.toml") && err.contains("insecur"), "{err}");
    }

    #[test]
    fn a_registrys_own_ca_is_trusted_for_it_only() {
        let ca = TestCa::new("registry CA");
        let server = TestServer::start("127.0.0.1:0", Some(ca.server_config(&["127.0.0.1"])), Box::new(|_| answer("200 OK", b"{}")));
        let host = format!("127.0.0.1:{}", server.port);
        let certs = scratch("certs");
        std::fs::create_dir_all(certs.join(&host)).unwrap();
        std::fs::write(certs.join(&host).join("ca.crt"), &ca.pem).unwrap();
        let url = keel_netconf::http::parse_url(&format!("https://{host}/v2/")).unwrap();
        let timeout = std::time::Duration::from_secs(5);
        assert_eq!(client_for(&host, &certs).unwrap().request("GET", &url, &[], timeout).unwrap().status, 200);
        let err = client_for("other:1", &certs).unwrap().request("GET", &url, &[], timeout).unwrap_err();
        assert!(err.is_certificate_error() && err.to_string().contains("not signed by a trusted CA"), "{err}");
        std::fs::write(certs.join(&host).join("broken.crt"), "nope").unwrap();
        assert!(client_for(&host, &certs).err().unwrap().contains("broken.crt"));
    }
}

//! The declaration exactly as written in TOML, before validation.
//! `deny_unknown_fields` everywhere: a misspelled key is an error, not a silent
//! default. Values keep their position (`Spanned`) so that validation errors can name
//! the line.

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub uplink: Vec<Spanned<RawUplink>>,
    #[serde(default)]
    pub network: Vec<Spanned<RawNetwork>>,
    pub firewall: Option<Spanned<RawFirewall>>,
}

/// `[[uplink]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUplink {
    pub interface: Option<Spanned<String>>,
    pub mac: Option<Spanned<String>>,
    pub dhcp: Option<Spanned<bool>>,
    pub address: Option<Spanned<String>>,
    pub gateway: Option<Spanned<String>>,
    pub dns: Option<Spanned<Vec<Spanned<String>>>>,
    /// Signed and wide so that a negative or huge value gets our message and key.
    pub mtu: Option<Spanned<i64>>,
}

/// `[[network]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    pub name: Option<Spanned<String>>,
    pub bridge: Option<Spanned<String>>,
    pub subnet: Option<Spanned<String>>,
    pub subnet6: Option<Spanned<String>>,
    pub gateway: Option<Spanned<String>>,
    #[serde(default)]
    pub isolated: bool,
    #[serde(default)]
    pub metadata: bool,
}

/// `[firewall]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFirewall {
    pub input: Option<Spanned<String>>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
}

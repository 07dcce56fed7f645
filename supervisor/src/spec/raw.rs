//! The container declaration exactly as written in TOML (before validation).
//! `deny_unknown_fields` everywhere: a misspelled key is an error, not a silent default.

use serde::Deserialize;
use std::collections::BTreeMap;

/// A string or a list of strings (`command = "/bin/app"` or `command = ["/bin/sh", "-c", "…"]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum StringOrList {
    /// One string (split on whitespace for commands).
    One(String),
    /// A list.
    Many(Vec<String>),
}

/// `depends_on = ["db"]` or `depends_on = { db = "healthy" }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum RawDependsOn {
    /// Names; condition `started`.
    Names(Vec<String>),
    /// Name → condition.
    Conditions(BTreeMap<String, String>),
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContainer {
    pub image: Option<String>,
    pub entrypoint: Option<StringOrList>,
    pub command: Option<StringOrList>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    #[serde(default)]
    pub init: bool,
    pub restart: Option<String>,
    pub max_retries: Option<u32>,
    pub depends_on: Option<RawDependsOn>,
    pub healthcheck: Option<RawHealthcheck>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<String>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub mounts: Vec<RawMount>,
    #[serde(default)]
    pub resources: RawResources,
    #[serde(default)]
    pub capabilities: RawCapabilities,
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    pub user_namespace: Option<RawUserNamespace>,
    pub network: Option<String>,
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub metadata_access: bool,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub host_pid: bool,
    #[serde(default)]
    pub host_network: bool,
    #[serde(default)]
    pub logs: RawLogs,
}

/// `[logs]`: `max_size = "64MiB"`, `max_files = 5`. `max_files` is read signed, so a
/// negative number is a range error naming the key, not a type error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogs {
    pub max_size: Option<String>,
    pub max_files: Option<i64>,
}

/// `[healthcheck]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthcheck {
    pub command: StringOrList,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub start_period: Option<String>,
}

/// `[[mounts]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMount {
    #[serde(rename = "type")]
    pub kind: String,
    pub source: Option<String>,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
    pub size: Option<String>,
}

/// `[resources]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResources {
    pub memory_max: Option<String>,
    pub memory_swap_max: Option<String>,
    pub cpu_max: Option<String>,
    pub cpus: Option<f64>,
    pub pids_max: Option<u64>,
    pub io_weight: Option<u16>,
}

/// `[capabilities]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapabilities {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub drop: Vec<String>,
}

/// `[user_namespace]`: `uid_map = "0:100000:65536"`, same for `gid_map`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUserNamespace {
    pub uid_map: String,
    pub gid_map: Option<String>,
}

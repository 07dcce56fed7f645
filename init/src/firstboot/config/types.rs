//! keel's typed first-boot config: plain data, produced by [`super::parse`].
//!
//! These types hold only what keel supports; anything else in an Ignition config is
//! refused while parsing, so a value here is always something the applier acts on.

/// A whole first-boot config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// `storage.files`
    pub files: Vec<FileEntry>,
    /// `storage.directories`
    pub directories: Vec<DirEntry>,
    /// `storage.links`
    pub links: Vec<LinkEntry>,
    /// `passwd.users`
    pub users: Vec<User>,
    /// `passwd.groups`
    pub groups: Vec<Group>,
    /// `ignition.config.merge`: configs to fetch and merge over this one, in order.
    pub merge: Vec<ConfigRef>,
    /// `ignition.config.replace`: a config to fetch and use instead of this one.
    pub replace: Option<ConfigRef>,
    /// `ignition.timeouts`
    pub timeouts: Timeouts,
    /// `ignition.security.tls.certificateAuthorities`: CAs trusted for https fetches,
    /// besides the image's bundle.
    pub certificate_authorities: Vec<ConfigRef>,
    /// `ignition.proxy`
    pub proxy: ProxySettings,
}

impl Config {
    /// Whether applying this config fetches anything over the network: an http(s)
    /// source of a file, an appended fragment, a referenced config or a CA.
    pub fn needs_network(&self) -> bool {
        let remote = |source: &str| source.starts_with("http://") || source.starts_with("https://");
        let resources = self.files.iter().flat_map(|f| f.contents.iter().chain(&f.append));
        let references = self.merge.iter().chain(&self.replace).chain(&self.certificate_authorities);
        resources.filter_map(|r| r.source.as_deref()).any(remote) || references.map(|r| r.source.as_str()).any(remote)
    }
}

/// `ignition.proxy`: where http and https fetches go, and which hosts they bypass it for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// `httpProxy`: an `http://HOST:PORT` proxy for http sources.
    pub http_proxy: Option<String>,
    /// `httpsProxy`: an `http://HOST:PORT` proxy that tunnels https sources.
    pub https_proxy: Option<String>,
    /// `noProxy`: hosts, domains, addresses or CIDR networks reached directly.
    pub no_proxy: Vec<String>,
}

/// One `httpHeaders[]` entry, sent with an http(s) fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpHeader {
    /// The header name (non-empty).
    pub name: String,
    /// The value.
    pub value: String,
}

/// `ignition.timeouts`, in seconds; `None` means keel's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// `httpResponseHeaders`: how long to wait for response headers.
    pub http_response_headers: Option<u32>,
    /// `httpTotal`: how long a whole fetch may take (0: no limit, as in Ignition).
    pub http_total: Option<u32>,
}

/// A resource whose source is required: a referenced config
/// (`ignition.config.merge[]` / `replace`) or a CA certificate
/// (`ignition.security.tls.certificateAuthorities[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRef {
    /// The URL as written (data:, http: or https:; an http(s) scheme lowercased).
    pub source: String,
    /// Compression of the fetched bytes.
    pub compression: Option<Compression>,
    /// Hash of the (decompressed) data.
    pub verification: Option<Hash>,
    /// Headers sent when fetching it over http(s).
    pub http_headers: Vec<HttpHeader>,
}

/// `storage.files[]`
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileEntry {
    /// Absolute, clean path inside a writable tree.
    pub path: String,
    /// Initial contents; `None` (or no source) means an empty file.
    pub contents: Option<Resource>,
    /// Fragments appended after the contents, in order.
    pub append: Vec<Resource>,
    /// Permission bits (≤ 0o7777); `None`: 0o644, as Ignition does.
    pub mode: Option<u32>,
    /// Owner; unset parts mean root.
    pub owner: Owner,
    /// Replace an existing file (Ignition spec 3 default: false).
    pub overwrite: bool,
}

/// A piece of data: file contents, an appended fragment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    /// The URL as written (data:, http: or https:; an http(s) scheme lowercased);
    /// `None` (also for `""`, as in Ignition): empty.
    pub source: Option<String>,
    /// Compression of the fetched bytes.
    pub compression: Option<Compression>,
    /// Hash of the decompressed data.
    pub verification: Option<Hash>,
    /// Headers sent when fetching it over http(s).
    pub http_headers: Vec<HttpHeader>,
}

/// Supported compressions of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (RFC 1952).
    Gzip,
}

/// `verification.hash`, already checked: `sha256-<64 hex>` or `sha512-<128 hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hash {
    /// The digest algorithm.
    pub algorithm: HashAlgorithm,
    /// The expected digest, lowercase hex.
    pub hex: String,
}

/// Supported digest algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// SHA-256 (64 hex digits).
    Sha256,
    /// SHA-512 (128 hex digits).
    Sha512,
}

/// `storage.directories[]`
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirEntry {
    /// Absolute, clean path inside a writable tree.
    pub path: String,
    /// Permission bits (≤ 0o7777); `None`: 0o755.
    pub mode: Option<u32>,
    /// Owner; unset parts mean root.
    pub owner: Owner,
    /// Replace whatever exists at the path.
    pub overwrite: bool,
}

/// `storage.links[]`
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkEntry {
    /// Absolute, clean path inside a writable tree.
    pub path: String,
    /// What the link points to (non-empty; absolute for hard links).
    pub target: String,
    /// A hard link instead of a symbolic one.
    pub hard: bool,
    /// Owner of the link itself.
    pub owner: Owner,
    /// Replace whatever exists at the path.
    pub overwrite: bool,
}

/// Owner of a file, directory or link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    /// `user.id` or `user.name`.
    pub user: Option<IdOrName>,
    /// `group.id` or `group.name`.
    pub group: Option<IdOrName>,
}

/// A user or group given by number or by name (never both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdOrName {
    /// Numeric id.
    Id(u32),
    /// Name, resolved against the config's and the image's passwd/group.
    Name(String),
}

/// `passwd.users[]`: a user to create or update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Numeric id; `None`: the next free one.
    pub uid: Option<u32>,
    /// Supplementary groups.
    pub groups: Vec<String>,
    /// Login shell.
    pub shell: Option<String>,
    /// crypt(3) hash for /etc/shadow.
    pub password_hash: Option<String>,
    /// Lines for `~/.ssh/authorized_keys`.
    pub ssh_authorized_keys: Vec<String>,
    /// Home directory; `None`: /home/NAME (/root for root).
    pub home_dir: Option<String>,
}

/// `passwd.groups[]`: a group to create or update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Numeric id; `None`: the next free one.
    pub gid: Option<u32>,
    /// crypt(3) hash for /etc/gshadow.
    pub password_hash: Option<String>,
}

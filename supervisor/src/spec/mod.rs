//! Container declarations: `/etc/keel/containers/NAME.toml`, parsed strictly and
//! validated whole. Every problem is reported (not just the first) with the file, the
//! key and the line, so one look at `keelctl ps` or the console says what to fix.

pub mod capability;
pub mod locate;
mod log_limits;
mod privilege;
pub mod raw;
pub mod units;
mod validate;

use capability::CapabilityChoice;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A published port, as `ports` entries parse into (the network crate owns the syntax).
pub use keel_netconf::config::PortMapping;
pub use validate::parse;

/// Parse a user as `user = …` takes it (`uid[:gid]` or a name); for image configs.
pub fn validate_user(text: &str) -> Result<UserSpec, String> {
    validate::user_spec(text)
}

/// A container's name: the file stem, `[a-z0-9][a-z0-9_.-]*`, at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerName(String);

impl ContainerName {
    /// Check a name against the rules above.
    pub fn new(name: &str) -> Result<Self, String> {
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
        if first_ok && rest_ok && name.len() <= 63 {
            Ok(ContainerName(name.to_string()))
        } else {
            Err(format!("container name {name:?} must match [a-z0-9][a-z0-9_.-]* (at most 63 characters)"))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One problem in a declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The file.
    pub file: String,
    /// The key, dotted (`resources.pids_max`), or empty for the whole file.
    pub key: String,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

impl std::error::Error for SpecErrors {}

/// Where the container's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// A root filesystem directory in the host image.
    Rootfs(PathBuf),
    /// A container image (`oci:`, `oci-archive:`, `docker-archive:` or a registry
    /// reference), imported into the image store and run on an overlay of its layers.
    Image(crate::image::ImageSource),
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Rootfs(path) => write!(f, "{}", path.display()),
            ImageRef::Image(source) => write!(f, "{source}"),
        }
    }
}

/// The process settings exactly as declared (None: not set), kept so that an image's
/// config can supply the defaults at start, as `docker run` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeclaredProcess {
    /// `entrypoint`: replaces the image's Entrypoint (and drops its Cmd).
    pub entrypoint: Option<Vec<String>>,
    /// `command` + `args`: replaces the image's Cmd.
    pub command: Option<Vec<String>>,
    /// `workdir`.
    pub workdir: Option<PathBuf>,
    /// `user`.
    pub user: Option<UserSpec>,
}

/// Who the container's process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSpec {
    /// Numeric uid and optional gid (default: the uid's group from the image, else the uid).
    Id { uid: u32, gid: Option<u32> },
    /// A name looked up in the image's /etc/passwd at start.
    Name(String),
}

/// When to restart a container whose process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartMode {
    /// Never.
    No,
    /// Only after a non-zero exit or death by signal.
    OnFailure,
    /// Always.
    Always,
}

/// Restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// When.
    pub mode: RestartMode,
    /// Give up after this many restarts in a row (None: never give up).
    pub max_retries: Option<u32>,
}

/// What a dependency must reach before the dependent starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyCondition {
    /// Its process is running.
    Started,
    /// Its healthcheck passed.
    Healthy,
    /// It exited with code 0.
    Completed,
}

/// One `depends_on` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The container depended on.
    pub name: ContainerName,
    /// The condition it must reach.
    pub condition: DependencyCondition,
}

/// `[healthcheck]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// Command run inside the container; healthy when it exits 0.
    pub argv: Vec<String>,
    /// Time between checks.
    pub interval: Duration,
    /// A check taking longer fails.
    pub timeout: Duration,
    /// Consecutive failures before unhealthy.
    pub retries: u32,
    /// Failures in this first period do not count.
    pub start_period: Duration,
}

/// A filesystem mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// Bind a host directory or file: from under /var (outside /var/lib/keel), or any
    /// host path for a privileged container.
    Bind { source: PathBuf, target: PathBuf, read_only: bool },
    /// A fresh tmpfs.
    Tmpfs { target: PathBuf, size: Option<u64>, read_only: bool },
}

/// cgroup v2 limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// memory.max in bytes.
    pub memory_max: Option<u64>,
    /// memory.swap.max in bytes.
    pub memory_swap_max: Option<u64>,
    /// cpu.max: quota (None = "max") and period in microseconds.
    pub cpu_max: Option<(Option<u64>, u64)>,
    /// pids.max.
    pub pids_max: Option<u64>,
    /// io.weight (1-10000).
    pub io_weight: Option<u16>,
}

impl Resources {
    /// Whether any limit is set (and so a cgroup v2 hierarchy is required).
    pub fn any(&self) -> bool {
        *self != Resources::default()
    }
}

/// One line of a uid or gid map: container id, host id, count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// First id inside the container.
    pub container: u32,
    /// First id on the host.
    pub host: u32,
    /// How many ids.
    pub size: u32,
}

/// `[user_namespace]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserNamespace {
    /// uid_map.
    pub uid: IdMap,
    /// gid_map.
    pub gid: IdMap,
}

/// Which network the container joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// Its own empty network namespace (only lo).
    None,
    /// The host's network namespace.
    Host,
    /// A named keel network (bridge), filled in by the network issue.
    Named(String),
}

/// A validated container declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// The name (file stem).
    pub name: ContainerName,
    /// The root filesystem.
    pub image: ImageRef,
    /// Program and arguments (for an image: filled in from its config at start).
    pub argv: Vec<String>,
    /// What the declaration itself set, for merging with an image's config.
    pub declared: DeclaredProcess,
    /// Environment, sorted by name.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container.
    pub workdir: PathBuf,
    /// Who the process runs as.
    pub user: UserSpec,
    /// The container's host name.
    pub hostname: String,
    /// Run keel's reaper as the container's PID 1.
    pub init: bool,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Dependencies.
    pub depends_on: Vec<Dependency>,
    /// Healthcheck.
    pub healthcheck: Option<Healthcheck>,
    /// Signal sent to stop it.
    pub stop_signal: i32,
    /// Time between stop_signal and SIGKILL.
    pub stop_timeout: Duration,
    /// Root read-only (no overlay upper).
    pub read_only: bool,
    /// Extra mounts.
    pub mounts: Vec<MountSpec>,
    /// cgroup limits.
    pub resources: Resources,
    /// Capability additions.
    pub cap_add: Vec<CapabilityChoice>,
    /// Capability removals.
    pub cap_drop: Vec<CapabilityChoice>,
    /// Namespaced sysctls, sorted.
    pub sysctls: Vec<(String, String)>,
    /// User namespace mapping.
    pub user_namespace: Option<UserNamespace>,
    /// Network.
    pub network: NetworkMode,
    /// Published ports, parsed when the declaration is (a bad entry makes the whole
    /// declaration invalid rather than failing its start).
    pub ports: Vec<PortMapping>,
    /// `metadata_access = true`: this container may reach the cloud metadata service
    /// (169.254.169.254, fd00:ec2::254), which hands out the machine's credentials. Off by
    /// default; a network's `metadata = true` opens it to all of that network's containers.
    /// (A `network = "host"` container is in the host's namespace and has the host's access.)
    pub metadata_access: bool,
    /// `privileged = true` (and what comes with it); see [`Privilege`].
    pub privilege: Privilege,
    /// `[logs]`: how much of its output the log files keep.
    pub logs: crate::logs::LogLimits,
}

/// How much of the host a container gets. Unprivileged is the isolated default; a
/// privileged container is an operator's tool (an admin shell, an agent) and runs like
/// root on the host: every capability, no seccomp filter, no_new_privs off (setuid
/// programs such as sudo work), the host's /dev, /proc and /sys without masks, binds of
/// any host path, and optionally the host's PID namespace. It still runs in its own
/// session, its own cgroup (limits apply) and its own mount namespace, as a child PID 1
/// supervises like any other container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Privilege {
    /// The default: namespaces, 14 capabilities, seccomp, masked paths, OCI devices.
    #[default]
    Unprivileged,
    /// `privileged = true`.
    Privileged {
        /// `host_pid = true`: the host's PID namespace (PID 1 is keel, `nsenter -t 1`
        /// reaches the host).
        host_pid: bool,
    },
}

impl Privilege {
    /// Whether `privileged = true`.
    pub fn is_privileged(self) -> bool {
        matches!(self, Privilege::Privileged { .. })
    }

    /// Whether the container shares the host's PID namespace.
    pub fn host_pid(self) -> bool {
        matches!(self, Privilege::Privileged { host_pid: true })
    }
}

#[cfg(test)]
mod tests;

//! The launch plan: everything a container start does, computed from its declaration
//! as plain data before any syscall, so it can be checked in unit tests.

use crate::spec::capability::effective_mask;
use crate::spec::{ContainerSpec, MountSpec, NetworkMode, UserNamespace, UserSpec};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use std::path::{Path, PathBuf};

/// Paths hidden from the container (OCI runtime spec defaults).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the container sees read-only (OCI runtime spec defaults).
pub const READONLY_PATHS: [&str; 6] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", "/proc/sysvipc"];

/// Host device nodes bind-mounted into the container's /dev.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// One step of building the container's filesystem tree, relative to its new root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    /// Mount a fresh filesystem.
    Fs { fstype: &'static str, target: PathBuf, flags: MsFlags, data: String },
    /// Bind a host path (absolute, outside the container) onto `target`.
    Bind { source: PathBuf, target: PathBuf, read_only: bool },
    /// Create a symlink `link` → `target`.
    Symlink { target: &'static str, link: PathBuf },
}

/// Where the container's root comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootPlan {
    /// The read-only layers, top first: a root filesystem directory, or an image's
    /// unpacked layers (filled in by [`crate::image::run::prepare`]).
    pub lowers: Vec<PathBuf>,
    /// Where the root is assembled.
    pub merged: PathBuf,
    /// Overlay upper and work directories; None for a read-only root.
    pub overlay: Option<(PathBuf, PathBuf)>,
}

/// Everything needed to start one container.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchPlan {
    /// Container name.
    pub name: String,
    /// Namespaces to create.
    pub clone_flags: CloneFlags,
    /// Root filesystem.
    pub root: RootPlan,
    /// Mounts inside the new root, in order.
    pub mounts: Vec<MountOp>,
    /// Host name.
    pub hostname: String,
    /// Sysctls to write (name with dots).
    pub sysctls: Vec<(String, String)>,
    /// Who to run as.
    pub user: UserSpec,
    /// Capabilities kept (bit n = capability n).
    pub capabilities: u64,
    /// Environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Working directory.
    pub workdir: PathBuf,
    /// uid/gid maps, written by the parent.
    pub user_namespace: Option<UserNamespace>,
    /// Run keel's own reaper (`keel init`) as the container's PID 1, with the
    /// command as its child.
    pub init: bool,
    /// `privileged = true`: every capability, no seccomp filter, no no_new_privs, no
    /// masked or read-only paths (see [`crate::spec::Privilege`]).
    pub privileged: bool,
}

/// Per-container state directory: `<state_root>/<name>`.
pub fn state_dir(state_root: &Path, name: &str) -> PathBuf {
    state_root.join(name)
}

/// The plan for `spec`, with its state under `state_root` (/var/lib/keel/containers).
pub fn plan(spec: &ContainerSpec, state_root: &Path, cgroup2: bool) -> LaunchPlan {
    let lowers = match &spec.image {
        crate::spec::ImageRef::Rootfs(dir) => vec![dir.clone()],
        crate::spec::ImageRef::Image(_) => Vec::new(),
    };
    let dir = state_dir(state_root, spec.name.as_str());
    let overlay = (!spec.read_only).then(|| (dir.join("upper"), dir.join("work")));
    let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWCGROUP;
    if !spec.privilege.host_pid() {
        flags |= CloneFlags::CLONE_NEWPID;
    }
    if spec.network != NetworkMode::Host {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if spec.user_namespace.is_some() {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !spec.env.iter().any(|(k, _)| k == "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !spec.env.iter().any(|(k, _)| k == "HOSTNAME") {
        env.push(format!("HOSTNAME={}", spec.hostname));
    }
    LaunchPlan {
        name: spec.name.to_string(),
        clone_flags: flags,
        root: RootPlan { lowers, merged: dir.join("rootfs"), overlay },
        mounts: container_mounts(spec, cgroup2),
        hostname: spec.hostname.clone(),
        sysctls: spec.sysctls.clone(),
        user: spec.user.clone(),
        capabilities: if spec.privilege.is_privileged() { ALL_CAPABILITIES } else { effective_mask(&spec.cap_add, &spec.cap_drop) },
        env,
        argv: spec.argv.clone(),
        workdir: spec.workdir.clone(),
        user_namespace: spec.user_namespace,
        init: spec.init,
        privileged: spec.privilege.is_privileged(),
    }
}

/// Every capability bit (those above the kernel's last are ignored when applied).
pub const ALL_CAPABILITIES: u64 = u64::MAX;

/// The PATH a container gets when its declaration sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The filesystems every container gets, then its declared mounts.
pub fn container_mounts(spec: &ContainerSpec, cgroup2: bool) -> Vec<MountOp> {
    let mut ops = if spec.privilege.is_privileged() { privileged_mounts(cgroup2) } else { isolated_mounts(spec, cgroup2) };
    ops.extend(declared_mounts(spec));
    ops
}

/// A privileged container's filesystems: its own /proc (the host's processes with
/// `host_pid`), the host's /dev whole (with its devpts, shm and every device), a
/// writable /sys and cgroup2 tree.
fn privileged_mounts(cgroup2: bool) -> Vec<MountOp> {
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let secure = nosuid_nodev | MsFlags::MS_NOEXEC;
    let mut ops = vec![
        MountOp::Fs { fstype: "proc", target: "/proc".into(), flags: secure, data: String::new() },
        MountOp::Bind { source: "/dev".into(), target: "/dev".into(), read_only: false },
        MountOp::Fs { fstype: "sysfs", target: "/sys".into(), flags: secure, data: String::new() },
    ];
    if cgroup2 {
        ops.push(MountOp::Fs { fstype: "cgroup2", target: "/sys/fs/cgroup".into(), flags: secure, data: String::new() });
    }
    ops
}

/// The filesystems every unprivileged container gets: its own /proc, a tmpfs /dev with
/// the OCI default devices, a new devpts, shm and mqueue, /sys read-only.
fn isolated_mounts(spec: &ContainerSpec, cgroup2: bool) -> Vec<MountOp> {
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let secure = nosuid_nodev | MsFlags::MS_NOEXEC;
    let fs = |fstype, target: &str, flags, data: &str| MountOp::Fs { fstype, target: target.into(), flags, data: data.into() };
    let mut ops =
        vec![fs("proc", "/proc", secure, ""), fs("tmpfs", "/dev", nosuid_nodev | MsFlags::MS_STRICTATIME, "mode=755,size=65536k")];
    for device in DEVICES {
        ops.push(MountOp::Bind { source: Path::new("/dev").join(device), target: Path::new("/dev").join(device), read_only: false });
    }
    ops.push(MountOp::Bind { source: "/dev/null".into(), target: "/dev/console".into(), read_only: false });
    ops.push(fs("devpts", "/dev/pts", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"));
    ops.push(fs("tmpfs", "/dev/shm", secure, "mode=1777,size=65536k"));
    ops.push(fs("mqueue", "/dev/mqueue", secure, ""));
    for (target, link) in [
        ("pts/ptmx", "/dev/ptmx"),
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
    ] {
        ops.push(MountOp::Symlink { target, link: link.into() });
    }
    // A user namespace cannot mount sysfs for the host's network namespace: it gets
    // the host's /sys (with its cgroup2 mount) read-only instead.
    let sysfs_from_host = spec.network == NetworkMode::Host && spec.user_namespace.is_some();
    if sysfs_from_host {
        ops.push(MountOp::Bind { source: "/sys".into(), target: "/sys".into(), read_only: true });
    } else {
        ops.push(fs("sysfs", "/sys", secure | MsFlags::MS_RDONLY, ""));
    }
    if cgroup2 && !sysfs_from_host {
        ops.push(fs("cgroup2", "/sys/fs/cgroup", secure | MsFlags::MS_RDONLY, ""));
    }
    ops
}

/// The declaration's own mounts, after the standard ones.
fn declared_mounts(spec: &ContainerSpec) -> Vec<MountOp> {
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mut ops = Vec::new();
    for mount in &spec.mounts {
        ops.push(match mount {
            MountSpec::Bind { source, target, read_only } => {
                MountOp::Bind { source: source.clone(), target: target.clone(), read_only: *read_only }
            }
            MountSpec::Tmpfs { target, size, read_only } => {
                let mut flags = nosuid_nodev;
                if *read_only {
                    flags |= MsFlags::MS_RDONLY;
                }
                let data = size.map(|s| format!("mode=1777,size={s}")).unwrap_or_else(|| "mode=1777".into());
                MountOp::Fs { fstype: "tmpfs", target: target.clone(), flags, data }
            }
        });
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse;

    fn spec(extra: &str) -> ContainerSpec {
        parse("web", &format!("image = \"/img\"\ncommand = \"/bin/app\"\n{extra}"), "web.toml").unwrap()
    }

    #[test]
    fn every_namespace_but_user_by_default() {
        let plan = plan(&spec(""), Path::new("/var/lib/keel/containers"), true);
        let expected = CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWCGROUP
            | CloneFlags::CLONE_NEWNET;
        assert_eq!(plan.clone_flags, expected);
        assert_eq!(plan.root.merged, Path::new("/var/lib/keel/containers/web/rootfs"));
        assert_eq!(plan.root.overlay.as_ref().unwrap().0, Path::new("/var/lib/keel/containers/web/upper"));
        assert_eq!(plan.capabilities.count_ones(), 14);
        assert!(plan.env.contains(&format!("PATH={DEFAULT_PATH}")));
    }

    #[test]
    fn user_namespace_and_host_network_change_the_flags() {
        let plan = plan(&spec("network = \"host\"\n[user_namespace]\nuid_map = \"0:100000:65536\"\n"), Path::new("/s"), false);
        assert!(plan.clone_flags.contains(CloneFlags::CLONE_NEWUSER));
        assert!(!plan.clone_flags.contains(CloneFlags::CLONE_NEWNET));
        assert!(plan.mounts.contains(&MountOp::Bind { source: "/sys".into(), target: "/sys".into(), read_only: true }));
        assert!(!plan.mounts.iter().any(|m| matches!(m, MountOp::Fs { fstype: "cgroup2", .. })));
    }

    #[test]
    fn read_only_root_has_no_overlay_and_mounts_come_last() {
        let plan = plan(&spec("read_only = true\n[[mounts]]\ntype = \"tmpfs\"\ntarget = \"/tmp\"\nsize = \"1M\"\n"), Path::new("/s"), true);
        assert_eq!(plan.root.overlay, None);
        assert!(matches!(plan.mounts.first(), Some(MountOp::Fs { fstype: "proc", .. })));
        match plan.mounts.last() {
            Some(MountOp::Fs { fstype: "tmpfs", target, data, .. }) => {
                assert_eq!(target, Path::new("/tmp"));
                assert_eq!(data, "mode=1777,size=1048576");
            }
            other => panic!("unexpected last mount {other:?}"),
        }
    }

    #[test]
    fn privileged_gets_the_host_pid_namespace_every_capability_and_the_host_dev() {
        let same = "network = \"host\"\n[[mounts]]\ntype = \"bind\"\nsource = \"/var/lib/a\"\ntarget = \"/a\"\n";
        let privileged = plan(&spec(&format!("privileged = true\nhost_pid = true\n{same}")), Path::new("/s"), true);
        let isolated = plan(&spec(same), Path::new("/s"), true);
        assert!(!privileged.clone_flags.contains(CloneFlags::CLONE_NEWPID) && privileged.privileged);
        assert!(
            privileged.clone_flags.contains(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWCGROUP),
            "still its own mounts and cgroup view"
        );
        assert_eq!(privileged.capabilities, ALL_CAPABILITIES);
        assert!(privileged.mounts.contains(&MountOp::Bind { source: "/dev".into(), target: "/dev".into(), read_only: false }));
        assert!(!privileged.mounts.iter().any(|m| matches!(m, MountOp::Fs { fstype: "tmpfs", target, .. } if target == Path::new("/dev"))));
        assert!(privileged.mounts.iter().all(|m| !matches!(m, MountOp::Fs { flags, .. } if flags.contains(MsFlags::MS_RDONLY))));
        // Negative control: the same declaration without privileged = true.
        assert!(isolated.clone_flags.contains(CloneFlags::CLONE_NEWPID) && !isolated.privileged);
        assert_eq!(isolated.capabilities.count_ones(), 14);
        assert!(!isolated.mounts.iter().any(|m| matches!(m, MountOp::Bind { source, .. } if source == Path::new("/dev"))));
        assert!(isolated
            .mounts
            .iter()
            .any(|m| matches!(m, MountOp::Fs { fstype: "sysfs", flags, .. } if flags.contains(MsFlags::MS_RDONLY))));
        assert_eq!(privileged.mounts.last(), isolated.mounts.last(), "declared mounts come last in both");
    }
}

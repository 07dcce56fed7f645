//! The admin image (`[[images]] … admin = true`): a busybox container root filesystem
//! plus OpenSSH's sshd, sudo and util-linux's nsenter, copied from the build machine's
//! Debian packages with exactly the shared libraries `ldd` lists for them, and keel's
//! own configuration: keys only (no passwords, no root login), PAM reduced to
//! permit/deny, `%wheel` may use sudo without a password (as on Fedora CoreOS), host
//! keys made at the container's first start under /var/lib/ssh of its own persistent
//! root (on the host's /var).
//!
//! The container is meant to run privileged with the host's PID namespace
//! (examples/demo/containers/admin.toml): its users are the host's (its /etc/passwd,
//! /etc/group and /etc/shadow are links into the host's /etc bound at /host/etc), their
//! homes are the host's /home, and `sudo nsenter -t 1 -a` reaches the host.
//!
//! Facts about the build host (which files, which libraries) are gathered by
//! [`gather`]; [`add_admin`] places them in the plan and is pure. `ldd` is run at
//! build time only. Limitations: x86_64 Debian paths (`/lib/x86_64-linux-gnu`); PAM
//! account checks are `pam_permit` (no expiry check); the libraries are the build
//! host's, so the image is as current as the build machine's packages.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::image::{inline, PlanError};
use crate::names::ImagePath;
use crate::tree::{Node, Source, Tree};

/// Programs the admin image carries, with their modes (sudo is setuid root).
pub const PROGRAMS: &[(&str, u32)] =
    &[("/usr/sbin/sshd", 0o755), ("/usr/bin/ssh-keygen", 0o755), ("/usr/bin/sudo", 0o4755), ("/usr/bin/nsenter", 0o755)];

/// Shared objects loaded with dlopen (so not in any program's `ldd`): sudo's policy
/// plugin and the two PAM modules the image's PAM configuration names.
pub const PLUGINS: &[&str] =
    &["/usr/libexec/sudo/sudoers.so", "/lib/x86_64-linux-gnu/security/pam_permit.so", "/lib/x86_64-linux-gnu/security/pam_deny.so"];

/// Where the admin container keeps its SSH host keys: in its own root, whose overlay
/// upper directory is on the host's /var (`/var/lib/keel/containers/NAME/upper`), so
/// they persist across reboots when /var is on a disk.
pub const HOST_KEY_DIR: &str = "/var/lib/ssh";

/// The privilege-separation user sshd needs, added to the host's /etc/passwd (which the
/// admin container sees) when an admin image is built.
pub const SSHD_USER: &str = "sshd:x:74:74:privilege-separated SSH:/run/sshd:/bin/false\n";
/// Its group.
pub const SSHD_GROUP: &str = "sshd:x:74:\n";

/// Why the admin image's files could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A program or plugin is not installed on the build machine.
    #[error("admin image: {} is missing on the build machine (run scripts/install-deps.sh: openssh-server, sudo, util-linux, libpam-modules)", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// `ldd` could not be run or failed.
    #[error("admin image: ldd {}: {message}", path.display())]
    Ldd {
        /// The file ldd was asked about.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The build host files of the admin image: programs with their modes, and the
/// libraries and plugins (mode 0644), each at the path it has on the build host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminFiles {
    /// (path, mode), sorted, each once.
    pub files: Vec<(PathBuf, u32)>,
}

/// One file `ldd` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// Its path on the build host (and in the image).
    pub path: PathBuf,
    /// The dynamic loader (the bare path without `=>`): the kernel executes it, so it
    /// needs its execute bits (0755); the others are 0644.
    pub loader: bool,
}

impl Library {
    /// The mode it gets in the image.
    pub fn mode(&self) -> u32 {
        if self.loader {
            0o755
        } else {
            0o644
        }
    }
}

/// The libraries `ldd` lists in `text`: the `=> /path` of each line and the bare
/// absolute path of the dynamic loader; the vDSO (no file) is left out. A line saying
/// `not found` is an error naming the library.
pub fn parse_ldd(text: &str) -> Result<Vec<Library>, String> {
    let mut libraries = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("statically linked") {
            continue;
        }
        let (path, loader) = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    return Err(format!("{} not found", name.trim()));
                }
                (rest.split_whitespace().next().unwrap_or_default(), false)
            }
            None => (line.split_whitespace().next().unwrap_or_default(), true),
        };
        if path.starts_with('/') {
            libraries.push(Library { path: PathBuf::from(path), loader });
        }
    }
    Ok(libraries)
}

fn ldd(path: &Path) -> Result<Vec<Library>, AdminError> {
    let failed = |message: String| AdminError::Ldd { path: path.to_path_buf(), message };
    let output = Command::new("ldd").arg(path).stdin(Stdio::null()).output().map_err(|e| failed(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() && !stdout.contains("statically linked") {
        return Err(failed(format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim())));
    }
    parse_ldd(&stdout).map_err(failed)
}

/// Find the programs and plugins on the build machine and the libraries each needs.
pub fn gather() -> Result<AdminFiles, AdminError> {
    let mut files: Vec<(PathBuf, u32)> = Vec::new();
    let wanted = PROGRAMS.iter().map(|(p, mode)| (*p, *mode)).chain(PLUGINS.iter().map(|p| (*p, 0o644)));
    for (path, mode) in wanted {
        let path = Path::new(path);
        if !path.is_file() {
            return Err(AdminError::Missing { path: path.to_path_buf() });
        }
        files.push((path.to_path_buf(), mode));
        files.extend(ldd(path)?.into_iter().map(|library| (library.path.clone(), library.mode())));
    }
    files.sort();
    files.dedup_by(|a, b| a.0 == b.0);
    Ok(AdminFiles { files })
}

/// sshd_config: keys only, no root login, PAM for the account and session only.
pub const SSHD_CONFIG: &str = "\
# keel admin container: SSH with the first-boot config's keys, as on Fedora CoreOS.
Port 22
HostKey /var/lib/ssh/ssh_host_ed25519_key
HostKey /var/lib/ssh/ssh_host_ecdsa_key
PidFile /run/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
# Root logs in only when the container's command says -o PermitRootLogin=prohibit-password.
PermitRootLogin no
UsePAM yes
PrintMotd no
Subsystem sftp internal-sftp
";

/// PAM for sshd and sudo: no password ever authenticates (pam_deny); account and
/// session are allowed (the keys, or sudoers' NOPASSWD, decided already).
pub const PAM_SERVICE: &str = "\
auth     required pam_deny.so
account  required pam_permit.so
session  required pam_permit.so
password required pam_deny.so
";

/// PAM for every other service: nothing.
pub const PAM_OTHER: &str = "\
auth     required pam_deny.so
account  required pam_deny.so
session  required pam_deny.so
password required pam_deny.so
";

/// sudoers: root, and `%wheel` without a password (Fedora CoreOS' `core` user).
pub const SUDOERS: &str = "\
Defaults env_reset
Defaults secure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"
Defaults !pam_setcred
Defaults !fqdn
root   ALL=(ALL:ALL) ALL
%wheel ALL=(ALL:ALL) NOPASSWD: ALL
";

/// The container's command: host keys made at the first start (under /var, so they
/// outlive reboots when /var is on a disk), their fingerprints printed, then sshd in
/// the foreground logging to stderr. Arguments are passed on to sshd.
pub const START_SCRIPT: &str = r#"#!/bin/sh
# keel admin container: make the SSH host keys once, show their fingerprints, run sshd.
set -eu
keys=/var/lib/ssh
mkdir -p "$keys" /run/sshd
chmod 0700 "$keys"
chmod 0755 /run/sshd
for type in ed25519 ecdsa; do
    key="$keys/ssh_host_${type}_key"
    if [ ! -s "$key" ] || [ ! -s "$key.pub" ]; then
        rm -f "$key.new" "$key.new.pub"
        ssh-keygen -q -t "$type" -N '' -C "" -f "$key.new"
        mv "$key.new.pub" "$key.pub"
        mv "$key.new" "$key"
        echo "keel admin: made the ssh host key $key"
    fi
    fingerprint=$(ssh-keygen -l -f "$key.pub" | cut -d' ' -f2)
    echo "keel admin: ssh host key $fingerprint ($type)"
done
exec /usr/sbin/sshd -D -e "$@"
"#;

/// Where [`START_SCRIPT`] is in the image.
pub const START_PATH: &str = "usr/libexec/keel-admin/start";

/// Add the admin files and configuration under the image root `root`. The image's
/// /etc/passwd, /etc/group and /etc/shadow are links into the host's /etc, which the
/// declaration binds at /host/etc.
pub fn add_admin(tree: &mut Tree, root: &ImagePath, files: &AdminFiles) -> Result<(), PlanError> {
    let at = |path: &str| root.join(path.trim_start_matches('/')).map_err(|source| PlanError::Applet { name: path.to_string(), source });
    for (path, mode) in &files.files {
        let node = Node::File { mode: Some(*mode), source: Source::Host(path.clone()) };
        tree.insert(at(&path.to_string_lossy())?, node)?;
    }
    for (path, mode, text) in [
        ("etc/ssh/sshd_config", 0o644, SSHD_CONFIG),
        ("etc/pam.d/sshd", 0o644, PAM_SERVICE),
        ("etc/pam.d/sudo", 0o644, PAM_SERVICE),
        ("etc/pam.d/other", 0o644, PAM_OTHER),
        ("etc/sudoers", 0o440, SUDOERS),
        ("etc/nsswitch.conf", 0o644, "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"),
        (START_PATH, 0o755, START_SCRIPT),
    ] {
        tree.insert(at(path)?, inline(mode, text.to_string()))?;
    }
    for name in ["passwd", "group", "shadow"] {
        tree.insert(at(&format!("etc/{name}"))?, Node::Symlink { target: format!("/host/etc/{name}") })?;
    }
    for dir in ["host", "home", "var/lib/ssh"] {
        tree.insert(at(dir)?, Node::Dir { mode: 0o755 })?;
    }
    Ok(())
}

/// The host's /etc/passwd and /etc/group texts: root, plus sshd's user when the image
/// has an admin image (its sshd runs with the host's accounts).
pub fn host_accounts(with_admin: bool) -> (String, String) {
    let mut passwd = "root:x:0:0:root:/root:/bin/sh\n".to_string();
    let mut group = "root:x:0:\n".to_string();
    if with_admin {
        passwd.push_str(SSHD_USER);
        group.push_str(SSHD_GROUP);
    }
    (passwd, group)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LDD: &str = "\tlinux-vdso.so.1 (0x00007ffc)\n\
\tlibcrypto.so.3 => /lib/x86_64-linux-gnu/libcrypto.so.3 (0x00007f2f)\n\
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2f)\n\
\t/lib64/ld-linux-x86-64.so.2 (0x00007f2f)\n";

    #[test]
    fn ldd_output_gives_each_library_file_and_the_loader_but_not_the_vdso() {
        let libraries = parse_ldd(LDD).unwrap();
        let expected = [
            ("/lib/x86_64-linux-gnu/libcrypto.so.3", 0o644),
            ("/lib/x86_64-linux-gnu/libc.so.6", 0o644),
            ("/lib64/ld-linux-x86-64.so.2", 0o755),
        ];
        let got: Vec<(&str, u32)> = libraries.iter().map(|l| (l.path.to_str().unwrap(), l.mode())).collect();
        assert_eq!(got, expected);
        assert_eq!(parse_ldd("\tstatically linked\n").unwrap(), Vec::<Library>::new());
        let err = parse_ldd("\tlibwrap.so.0 => not found\n").unwrap_err();
        assert_eq!(err, "libwrap.so.0 not found");
    }

    #[test]
    fn the_admin_tree_has_the_files_configs_and_account_links() {
        let root = crate::image::fixed(crate::image::IMAGES_DIR).join("admin").unwrap();
        let files =
            AdminFiles { files: vec![(PathBuf::from("/usr/bin/sudo"), 0o4755), (PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"), 0o644)] };
        let mut tree = Tree::new();
        add_admin(&mut tree, &root, &files).unwrap();
        let entries = tree.into_entries().unwrap();
        let node = |path: &str| entries.iter().find(|e| e.path.as_str() == path).map(|e| e.node.clone());
        let base = "/usr/share/keel/images/admin";
        assert_eq!(
            node(&format!("{base}/usr/bin/sudo")),
            Some(Node::File { mode: Some(0o4755), source: Source::Host("/usr/bin/sudo".into()) })
        );
        assert_eq!(node(&format!("{base}/etc/passwd")), Some(Node::Symlink { target: "/host/etc/passwd".into() }));
        assert!(matches!(node(&format!("{base}/etc/sudoers")), Some(Node::File { mode: Some(0o440), .. })));
        assert!(matches!(node(&format!("{base}/{START_PATH}")), Some(Node::File { mode: Some(0o755), .. })));
        assert!(SSHD_CONFIG.contains("PasswordAuthentication no\n") && SSHD_CONFIG.contains("PermitRootLogin no\n"));
    }

    #[test]
    fn the_host_gets_sshd_user_only_with_an_admin_image() {
        assert!(host_accounts(true).0.contains("\nsshd:x:74:74:"));
        assert!(!host_accounts(false).0.contains("sshd"), "control: no admin image, no sshd user");
    }
}

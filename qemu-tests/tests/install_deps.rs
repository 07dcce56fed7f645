//! scripts/install-deps.sh against a simulated Debian machine: its commands in a temp
//! directory (KEEL_DEPS_PATH), its files under a temp root (KEEL_DEPS_ROOT), and fake
//! `dpkg-query`, `apt-cache` and `apt-get` (KEEL_DEPS_APT_GET) that keep a package
//! database in files and "install" a package by creating what the script's own table
//! (`--list`) says it provides. The fake apt-get models the failure seen on a fresh
//! machine: installing qemu-system-x86 removes a qemu-utils of another version (a newer
//! one from bookworm-backports), taking qemu-img with it. Nothing real is installed.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The version bookworm offers for every package.
const BOOKWORM: &str = "1:7.2+dfsg-7+deb12u18";
/// A newer qemu-utils, as bookworm-backports has it.
const BACKPORTS: &str = "1:8.2.1+ds-1~bpo12+1";

const FAKE_DPKG_QUERY: &str = r#"#!/bin/bash
# dpkg-query -W -f=FORMAT PACKAGE, from $FAKE_STATE/installed/PACKAGE (its version).
fmt=${2#-f=}
f="$FAKE_STATE/installed/$3"
[ -f "$f" ] || { echo "dpkg-query: no packages found matching $3" >&2; exit 1; }
case "$fmt" in
  *Status*) printf 'install ok installed' ;;
  *Version*) tr -d '\n' <"$f" ;;
esac
"#;

const FAKE_APT_CACHE: &str = r#"#!/bin/bash
# apt-cache madison PACKAGE: the versions in $FAKE_STATE/offered/PACKAGE, else bookworm's.
[ "$1" = madison ] || exit 1
if [ -f "$FAKE_STATE/offered/$2" ]; then versions=$(cat "$FAKE_STATE/offered/$2"); else versions=$FAKE_BOOKWORM; fi
for v in $versions; do echo " $2 | $v | http://deb.debian.org/debian fake/main amd64 Packages"; done
"#;

const FAKE_APT_GET: &str = r#"#!/bin/bash
# Records its arguments; `install` makes each package's commands and files (from the
# script's table) unless $FAKE_STATE/broken/PACKAGE exists; installing qemu-system-x86
# removes a qemu-utils of another version, as the mismatched real packages do; a
# PACKAGE=VERSION listed in $FAKE_STATE/refuse fails the whole install (unmet dependencies).
echo "$*" >>"$FAKE_STATE/apt.log"
[ "$1" = install ] || exit 0
provide() { # PACKAGE ACTION: create or remove what it provides
  local pkg kind name target
  while read -r pkg kind name; do
    [ "$pkg" = "$1" ] || continue
    case "$kind" in
      command) target="$FAKE_BIN/$name" ;;
      *) target="$FAKE_ROOT${name//\*/fake}" ;;
    esac
    if [ "$2" = create ]; then
      mkdir -p "$(dirname "$target")"
      printf '#!/bin/sh\nexit 0\n' >"$target"
      chmod 755 "$target"
    else
      rm -f "$target"
    fi
  done <"$FAKE_STATE/provides"
}
for arg in "${@:2}"; do
  grep -qxF -- "$arg" "$FAKE_STATE/refuse" 2>/dev/null && { echo "E: unmet dependencies: $arg" >&2; exit 100; }
done
for arg in "${@:2}"; do
  case "$arg" in -*) continue ;; esac
  pkg=${arg%%=*}
  version=$FAKE_BOOKWORM
  [ "$pkg" != "$arg" ] && version=${arg#*=}
  echo "$version" >"$FAKE_STATE/installed/$pkg"
  [ -e "$FAKE_STATE/broken/$pkg" ] || provide "$pkg" create
  if [ "$pkg" = qemu-system-x86 ] && [ -f "$FAKE_STATE/installed/qemu-utils" ] &&
    [ "$(cat "$FAKE_STATE/installed/qemu-utils")" != "$version" ]; then
    rm "$FAKE_STATE/installed/qemu-utils"
    provide qemu-utils remove
  fi
done
"#;

/// One row of `install-deps.sh --list`.
struct Provided {
    package: String,
    kind: String,
    name: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-deps.sh")
}

fn table() -> (String, Vec<Provided>) {
    let out = Command::new("bash").arg(script()).arg("--list").output().expect("run install-deps.sh --list");
    assert!(out.status.success(), "--list: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let rows = text
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace().map(str::to_string);
            let (package, kind, name) = (words.next().unwrap(), words.next().unwrap(), words.next().unwrap());
            Provided { package, kind, name }
        })
        .collect();
    (text, rows)
}

/// A simulated machine: every package of the table installed at bookworm's version with
/// all it provides, until a test changes it.
struct Machine {
    dir: PathBuf,
    rows: Vec<Provided>,
}

impl Machine {
    fn new(name: &str) -> Machine {
        let dir = std::env::temp_dir().join(format!("keel-install-deps-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for sub in ["bin", "root", "tools", "state/installed", "state/offered", "state/broken"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let (text, rows) = table();
        assert!(rows.iter().any(|r| r.name == "qemu-img" && r.package == "qemu-utils"), "the table names qemu-img:\n{text}");
        fs::write(dir.join("state/provides"), text).unwrap();
        for (name, body) in
            [("dpkg-query", FAKE_DPKG_QUERY), ("apt-cache", FAKE_APT_CACHE), ("apt-get", FAKE_APT_GET), ("cargo", "#!/bin/sh\n")]
        {
            executable(&dir.join("tools").join(name), body);
        }
        let machine = Machine { dir, rows };
        let packages: BTreeSet<&str> = machine.rows.iter().map(|r| r.package.as_str()).collect();
        for package in packages {
            machine.install(package, BOOKWORM);
        }
        machine
    }

    fn path_of(&self, row: &Provided) -> PathBuf {
        match row.kind.as_str() {
            "command" => self.dir.join("bin").join(&row.name),
            _ => self.dir.join("root").join(row.name.trim_start_matches('/').replace('*', "fake")),
        }
    }

    /// Record `package` installed at `version` with everything it provides.
    fn install(&self, package: &str, version: &str) {
        fs::write(self.dir.join("state/installed").join(package), version).unwrap();
        for row in self.rows.iter().filter(|r| r.package == package) {
            let path = self.path_of(row);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            executable(&path, "#!/bin/sh\n");
        }
    }

    /// Remove what `package` provides; with `from_db`, remove it from dpkg's database too.
    fn remove(&self, package: &str, from_db: bool) {
        if from_db {
            fs::remove_file(self.dir.join("state/installed").join(package)).unwrap();
        }
        for row in self.rows.iter().filter(|r| r.package == package) {
            fs::remove_file(self.path_of(row)).unwrap();
        }
    }

    fn state(&self, file: &str) -> String {
        fs::read_to_string(self.dir.join("state").join(file)).unwrap_or_default()
    }

    fn run(&self, args: &[&str]) -> Output {
        let path = format!("{}:{}", self.dir.join("tools").display(), std::env::var("PATH").unwrap_or_default());
        let out = Command::new("bash")
            .arg(script())
            .args(args)
            .env("PATH", path)
            .env("KEEL_DEPS_PATH", self.dir.join("bin"))
            .env("KEEL_DEPS_ROOT", self.dir.join("root"))
            .env("KEEL_DEPS_APT_GET", self.dir.join("tools/apt-get"))
            .env("FAKE_STATE", self.dir.join("state"))
            .env("FAKE_BIN", self.dir.join("bin"))
            .env("FAKE_ROOT", self.dir.join("root"))
            .env("FAKE_BOOKWORM", BOOKWORM)
            .output()
            .expect("run install-deps.sh");
        eprintln!(
            "install-deps.sh {args:?}: {}\nstdout:\n{}stderr:\n{}apt.log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.state("apt.log")
        );
        out
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn executable(path: &Path, body: &str) {
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn check_names_a_hidden_qemu_img_and_the_install_reinstalls_qemu_utils() {
    let machine = Machine::new("hidden");
    // Control: the complete machine passes the check.
    let out = machine.run(&["--check"]);
    assert!(out.status.success(), "a complete machine passes --check: {}", stderr(&out));

    // dpkg still counts qemu-utils as installed, but qemu-img is gone.
    machine.remove("qemu-utils", false);
    let out = machine.run(&["--check"]);
    assert!(!out.status.success(), "--check must fail without qemu-img");
    assert!(stderr(&out).contains("install-deps: missing: qemu-img (qemu-utils)\n"), "only qemu-img is named: {}", stderr(&out));
    assert_eq!(machine.state("apt.log"), "", "--check installs nothing");

    let out = machine.run(&[]);
    assert!(out.status.success(), "the install repairs it: {}", stderr(&out));
    let log = machine.state("apt.log");
    assert!(log.contains(&format!("--reinstall qemu-utils={BOOKWORM}\n")), "qemu-utils reinstalled at qemu-system-x86's version:\n{log}");
    assert!(machine.dir.join("bin/qemu-img").exists());
    let out = machine.run(&["--check"]);
    assert!(out.status.success(), "--check passes after the repair: {}", stderr(&out));
}

#[test]
fn qemu_utils_removed_by_installing_qemu_system_is_reinstalled_at_the_matching_version() {
    let machine = Machine::new("backports");
    // The fresh machine: qemu-utils from backports, no qemu-system-x86 (bookworm only).
    machine.remove("qemu-system-x86", true);
    machine.install("qemu-utils", BACKPORTS);
    fs::write(machine.dir.join("state/offered/qemu-utils"), format!("{BACKPORTS}\n{BOOKWORM}\n")).unwrap();
    assert!(!machine.run(&["--check"]).status.success(), "qemu-system-x86_64 is missing at first");

    let out = machine.run(&[]);
    assert!(out.status.success(), "install-deps repairs what its install removed: {}", stderr(&out));
    assert!(
        stderr(&out).contains("missing after installing: qemu-img (qemu-utils)"),
        "the simulated removal happened (else this test proves nothing): {}",
        stderr(&out)
    );
    let log = machine.state("apt.log");
    let installs: Vec<&str> = log.lines().filter(|l| l.starts_with("install")).collect();
    assert_eq!(installs.len(), 2, "{log}");
    assert!(installs[0].ends_with(" qemu-system-x86"), "{log}");
    assert!(installs[1].ends_with(&format!(" --reinstall qemu-utils={BOOKWORM}")), "{log}");
    assert_eq!(machine.state("installed/qemu-utils"), format!("{BOOKWORM}\n"));
    assert!(machine.dir.join("bin/qemu-img").exists() && machine.dir.join("bin/qemu-system-x86_64").exists());
}

#[test]
fn a_repair_that_does_not_bring_qemu_img_back_fails_naming_it() {
    let machine = Machine::new("broken");
    machine.remove("qemu-utils", false);
    // apt "succeeds" but qemu-img stays missing: the final check must catch it.
    fs::write(machine.dir.join("state/broken/qemu-utils"), "").unwrap();
    let out = machine.run(&[]);
    assert!(!out.status.success(), "install-deps must fail while qemu-img is missing");
    assert!(stderr(&out).contains("install-deps: still missing: qemu-img (qemu-utils)\n"), "{}", stderr(&out));
    let reinstalls = machine.state("apt.log").lines().filter(|l| l.contains("--reinstall qemu-utils")).count();
    assert_eq!(reinstalls, 2, "the first pass and the repair both tried:\n{}", machine.state("apt.log"));
}

#[test]
fn a_pinned_qemu_utils_apt_refuses_is_installed_with_qemu_system_from_one_release() {
    let machine = Machine::new("refused");
    // qemu-system-x86 from backports; qemu-img gone; apt offers qemu-utils at that
    // version but cannot install it (its dependencies are not installable).
    machine.install("qemu-system-x86", BACKPORTS);
    machine.remove("qemu-utils", true);
    fs::write(machine.dir.join("state/offered/qemu-utils"), format!("{BACKPORTS}\n{BOOKWORM}\n")).unwrap();
    fs::write(machine.dir.join("state/refuse"), format!("qemu-utils={BACKPORTS}\n")).unwrap();
    let out = machine.run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = machine.state("apt.log");
    let installs: Vec<&str> = log.lines().filter(|l| l.starts_with("install")).collect();
    assert_eq!(installs.len(), 3, "{log}");
    assert!(installs[0].ends_with(&format!(" --reinstall qemu-utils={BACKPORTS}")), "first pass pins to qemu-system-x86's version:\n{log}");
    assert!(installs[1].ends_with(&format!(" --reinstall qemu-utils={BACKPORTS}")), "the repair tries the pin again:\n{log}");
    assert!(installs[2].ends_with(" --reinstall qemu-utils qemu-system-x86"), "then the pair from one release:\n{log}");
    assert_eq!(machine.state("installed/qemu-utils"), machine.state("installed/qemu-system-x86"));
    assert!(machine.dir.join("bin/qemu-img").exists());
}

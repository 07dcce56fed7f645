//! Builds real images with the build host's kernel: byte-identical output for identical
//! input, the contract layout in the archive, and errors that name what is wrong.

use std::io::Read;
use std::path::{Path, PathBuf};

use keel_build::build::{sha256_file, BuildError};
use keel_build::image::PlanError;
use keel_build::{build, BuildOptions, HostError, HostSpec};

/// Whether /boot has a kernel; prints a visible SKIP line when it has none.
fn have_kernel(test: &str) -> bool {
    let found = std::fs::read_dir("/boot")
        .map(|dir| dir.flatten().any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-")))
        .unwrap_or(false);
    if !found {
        eprintln!("SKIP: {test}: /boot has no vmlinuz-*");
    }
    found
}

/// A directory with a host.toml (`extra` appended), a fake keel and a probe file.
fn fixture(extra: &str) -> (tempfile::TempDir, PathBuf, BuildOptions) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keel = dir.path().join("keel");
    std::fs::copy("/bin/true", &keel).expect("copy /bin/true as a fake keel");
    std::fs::write(dir.path().join("probe"), b"#!/bin/sh\necho probe\n").expect("write probe");
    let toml = format!(
        "hostname = \"repro\"\ncmdline = \"keel.debug\"\n\
[kernel]\nmodules = [\"button\"]\n\
[control]\nvirtio_serial = true\n\
[[files]]\nsource = \"probe\"\npath = \"/usr/bin/keel-probe\"\nmode = 0o755\n\
[[symlinks]]\npath = \"/etc/foo\"\ntarget = \"bar\"\n{extra}"
    );
    let host = dir.path().join("host.toml");
    std::fs::write(&host, toml).expect("write host.toml");
    let options = BuildOptions { keel_binary: keel, source_date_epoch: 1_700_000_000, ca_bundle: keel_build::build::default_ca_bundle() };
    (dir, host, options)
}

/// One member of a newc archive: name, mode and data.
struct Member {
    name: String,
    mode: u32,
    mtime: u32,
    data: Vec<u8>,
}

/// A minimal newc reader, independent of the writer under test.
fn members(gz: &Path) -> Vec<Member> {
    let mut bytes = Vec::new();
    let file = std::fs::File::open(gz).expect("open initramfs");
    flate2::read::GzDecoder::new(file).read_to_end(&mut bytes).expect("gunzip");
    let field = |at: usize, i: usize| {
        let hex = std::str::from_utf8(&bytes[at + 6 + i * 8..at + 14 + i * 8]).expect("ascii");
        u32::from_str_radix(hex, 16).expect("hex field") as usize
    };
    let align = |n: usize| (n + 3) & !3;
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        assert_eq!(&bytes[at..at + 6], b"070701", "magic at {at}");
        let (size, namesize) = (field(at, 6), field(at, 11));
        let name = String::from_utf8(bytes[at + 110..at + 110 + namesize - 1].to_vec()).expect("utf-8 name");
        let data_at = align(at + 110 + namesize);
        if name == "TRAILER!!!" {
            assert_eq!(data_at, bytes.len(), "nothing after the trailer");
            return out;
        }
        let data = bytes[data_at..data_at + size].to_vec();
        out.push(Member { name, mode: field(at, 1) as u32, mtime: field(at, 5) as u32, data });
        at = align(data_at + size);
    }
}

#[test]
fn same_input_gives_identical_images() {
    if !have_kernel("same_input_gives_identical_images") {
        return;
    }
    let (dir, host, options) = fixture("");
    let spec = HostSpec::load(&host).expect("host.toml loads");
    let first = build(&spec, &options, &dir.path().join("out1")).expect("first build");
    let second = build(&spec, &options, &dir.path().join("out2")).expect("second build");
    let (sha1, sha2) = (sha256_file(&first.initramfs).unwrap(), sha256_file(&second.initramfs).unwrap());
    assert_eq!(sha1, sha2, "initramfs.img differs between identical builds");
    // Negative control: a different input must give a different image.
    let later = BuildOptions { source_date_epoch: options.source_date_epoch + 1, ..options.clone() };
    let third = build(&spec, &later, &dir.path().join("out3")).expect("third build");
    assert_ne!(sha256_file(&third.initramfs).unwrap(), sha1, "the comparison cannot fail");
    assert_eq!(first.cmdline, "console=ttyS0 quiet panic=-1 keel.debug");
    let cmdline = std::fs::read_to_string(dir.path().join("out1/cmdline")).unwrap();
    assert_eq!(cmdline, "console=ttyS0 quiet panic=-1 keel.debug\n");
    assert!(std::fs::metadata(&first.vmlinuz).unwrap().len() > 1_000_000, "vmlinuz is a kernel");
}

#[test]
fn archive_has_the_contract_layout() {
    if !have_kernel("archive_has_the_contract_layout") {
        return;
    }
    let (dir, host, options) = fixture("");
    let spec = HostSpec::load(&host).expect("host.toml loads");
    let output = build(&spec, &options, &dir.path().join("out")).expect("build");
    let members = members(&output.initramfs);
    let find = |name: &str| members.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("{name} is missing"));
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| a.split('/').cmp(b.split('/')));
    assert_eq!(names, sorted, "members are sorted by path, parents first");
    assert_eq!(find("tmp").mode, 0o041777);
    assert_eq!(find("dev/console").mode, 0o020600);
    assert_eq!(find("usr/bin/keel").mode, 0o100755);
    assert_eq!(find("usr/bin/keel").data, std::fs::read("/bin/true").unwrap());
    assert_eq!(find("init").data, b"/usr/bin/keel");
    assert_eq!(find("usr/bin/keelctl").data, b"keel");
    assert_eq!(find("usr/bin/keel-probe").mode, 0o100755);
    assert_eq!(find("etc/foo").data, b"bar");
    assert_eq!(find("etc/hostname").data, b"repro\n");
    // keel's base modules (those this kernel has as modules), then the host's own.
    let modules = String::from_utf8(find("etc/keel/modules").data.clone()).unwrap();
    let expected: Vec<&str> = keel_build::image::BASE_MODULES.iter().copied().chain(["button"]).collect();
    assert_eq!(modules.lines().collect::<Vec<_>>(), expected);
    assert_eq!(find("etc/keel/keel.toml").data, b"control_port = \"org.keel.control\"\nshutdown_grace_secs = 5\n");
    let dep = members.iter().find(|m| m.name.starts_with("lib/modules/") && m.name.ends_with("/modules.dep"));
    let dep = String::from_utf8(dep.expect("modules.dep is shipped").data.clone()).unwrap();
    assert!(dep.lines().any(|l| l.starts_with("kernel/drivers/acpi/button.ko")), "{dep}");
    assert!(members.iter().any(|m| m.name.ends_with("/button.ko") && m.mode == 0o100644));
    assert!(members.iter().all(|m| m.mtime == 1_700_000_000), "SOURCE_DATE_EPOCH is every mtime");
}

#[test]
fn busybox_brings_its_applets() {
    if !have_kernel("busybox_brings_its_applets") {
        return;
    }
    if !Path::new("/bin/busybox").is_file() {
        eprintln!("SKIP: busybox_brings_its_applets: no /bin/busybox");
        return;
    }
    let (dir, host, options) = fixture("");
    let text = std::fs::read_to_string(&host).unwrap();
    std::fs::write(&host, format!("busybox = \"/bin/busybox\"\n{text}")).unwrap();
    let spec = HostSpec::load(&host).expect("host.toml loads");
    let output = build(&spec, &options, &dir.path().join("out")).expect("build");
    let members = members(&output.initramfs);
    let sh = members.iter().find(|m| m.name == "bin/sh").expect("bin/sh applet");
    assert_eq!((sh.mode, sh.data.as_slice()), (0o120777, &b"busybox"[..]));
    assert!(members.iter().any(|m| m.name == "bin/busybox" && m.mode == 0o100755));
}

#[test]
fn misspelled_key_names_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("typo-host.toml");
    std::fs::write(&host, "hostname = \"h\"\n[kernel]\nmodlues = [\"button\"]\n").unwrap();
    let err = HostSpec::load(&host).unwrap_err();
    assert!(matches!(err, HostError::Parse { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&host.display().to_string()), "file not named: {msg}");
    assert!(msg.contains("modlues"), "key not named: {msg}");
    assert!(msg.contains("line 3"), "line not named: {msg}");
}

#[test]
fn unknown_module_is_named() {
    if !have_kernel("unknown_module_is_named") {
        return;
    }
    let (dir, host, options) = fixture("");
    let text = std::fs::read_to_string(&host).unwrap().replace("[\"button\"]", "[\"button\", \"no-such-mod\"]");
    std::fs::write(&host, text).unwrap();
    let spec = HostSpec::load(&host).expect("host.toml loads");
    let err = build(&spec, &options, &dir.path().join("out")).unwrap_err();
    assert!(matches!(err, BuildError::Plan(PlanError::UnknownModules { .. })), "{err:?}");
    assert!(err.to_string().contains("no_such_mod"), "{err}");
    assert!(!dir.path().join("out/initramfs.img").exists(), "nothing is written on error");
}

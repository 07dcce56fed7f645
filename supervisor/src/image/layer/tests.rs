//! Whiteouts, opaque directories, hard links across layers and path escapes, on real
//! directories (the overlay target needs root for its 0:0 devices and trusted xattrs).

use super::*;
use crate::image::limits::{ImageLimits, Limits};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

/// One tar entry for the test layers.
pub enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a str),
    Link(&'a str, &'a str),
    Sym(&'a str, &'a str),
    Dev(&'a str),
}

/// A tar of `entries`, names written raw (the tar crate's builder refuses `..`).
pub fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, data): (&str, &[u8]) = match e {
            E::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (n, b"")
            }
            E::File(n, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                (n, d.as_bytes())
            }
            E::Link(n, t) | E::Sym(n, t) => {
                h.set_entry_type(if matches!(e, E::Link(..)) { tar::EntryType::Link } else { tar::EntryType::Symlink });
                h.set_mode(0o777);
                h.as_old_mut().linkname[..t.len()].copy_from_slice(t.as_bytes());
                (n, b"")
            }
            E::Dev(n) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o666);
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
                (n, b"")
            }
        };
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

const OPTS: Options = Options { allow_devices: false, same_owner: false };

/// Extract `tar` under the default limits.
fn ex(tar: &[u8], root: &Path, target: Target) -> Result<Usage, ExtractError> {
    ex_with(tar, root, target, ImageLimits::default())
}

fn ex_with(tar: &[u8], root: &Path, target: Target, limits: ImageLimits) -> Result<Usage, ExtractError> {
    let meter = RefCell::new(Meter::new(limits));
    extract(tar, root, target, OPTS, &meter)
}

/// The entry error of a refused layer (a limit instead is a test failure).
fn entry_err(result: Result<Usage, ExtractError>) -> LayerError {
    match result {
        Err(ExtractError::Entry(e)) => e,
        other => panic!("expected an entry error, got {other:?}"),
    }
}

fn flat(root: &Path, layers: &[Vec<u8>]) -> Result<(), ExtractError> {
    for layer in layers {
        ex(&layer[..], root, Target::Flat)?;
    }
    Ok(())
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn whiteout_deletes_a_lower_file_and_a_lower_tree() {
    let dir = tempfile::tempdir().unwrap();
    let l1 = tar_of(&[E::Dir("a/"), E::File("a/x", "1"), E::File("a/y", "2"), E::Dir("opt/"), E::File("opt/z", "3")]);
    let l2 = tar_of(&[E::File("a/.wh.x", ""), E::File(".wh.opt", "")]);
    flat(dir.path(), &[l1, l2]).unwrap();
    assert!(!dir.path().join("a/x").exists());
    assert_eq!(read(dir.path().join("a/y")), "2");
    assert!(!dir.path().join("opt").exists());
    assert!(!dir.path().join("a/.wh.x").exists());
    // A whiteout below a directory no layer has creates nothing.
    flat(dir.path(), &[tar_of(&[E::File("nowhere/deep/.wh.x", "")])]).unwrap();
    assert!(!dir.path().join("nowhere").exists());
}

#[test]
fn opaque_directory_keeps_only_this_layers_entries_whatever_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let l1 = tar_of(&[E::Dir("d/"), E::File("d/old", "o"), E::Dir("d/sub/"), E::File("d/sub/deep", "x")]);
    // The new file comes before the marker: it must survive.
    let l2 = tar_of(&[E::Dir("d/"), E::File("d/new", "n"), E::File("d/.wh..wh..opq", "")]);
    flat(dir.path(), &[l1, l2]).unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path().join("d")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["new"]);
}

#[test]
fn hard_link_to_a_file_of_a_lower_layer() {
    let dir = tempfile::tempdir().unwrap();
    let l1 = tar_of(&[E::File("f", "shared")]);
    let l2 = tar_of(&[E::Link("g", "f")]);
    flat(dir.path(), &[l1, l2.clone()]).unwrap();
    let (f, g) = (std::fs::metadata(dir.path().join("f")).unwrap(), std::fs::metadata(dir.path().join("g")).unwrap());
    assert_eq!(f.ino(), g.ino());
    // Into a layer of its own, the lower file is copied up and linked there.
    let lower = tempfile::tempdir().unwrap();
    ex(&tar_of(&[E::File("f", "shared")])[..], lower.path(), Target::Flat).unwrap();
    let upper = tempfile::tempdir().unwrap();
    let lowers = [lower.path().to_path_buf()];
    ex(&l2[..], upper.path(), Target::Overlay { lowers: &lowers }).unwrap();
    assert_eq!(read(upper.path().join("g")), "shared");
    assert_eq!(std::fs::metadata(upper.path().join("g")).unwrap().ino(), std::fs::metadata(upper.path().join("f")).unwrap().ino());
    // With nothing below, the same link is an error naming the entry.
    let alone = tempfile::tempdir().unwrap();
    let err = entry_err(ex(&l2[..], alone.path(), Target::Flat));
    assert_eq!(err.entry, "g");
    assert!(err.message.contains("which no layer so far has"), "{err}");
}

#[test]
fn entries_that_escape_the_root_are_refused_and_nothing_is_written_outside() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let cases: [(&[E], &str, &str); 5] = [
        (&[E::File("../escaped", "x")], "../escaped", "'..' would leave the layer root"),
        (&[E::Sym("abs", outer.path().to_str().unwrap()), E::File("abs/escaped", "x")], "abs/escaped", ESCAPE),
        (&[E::Sym("up", ".."), E::File("up/escaped", "x")], "up/escaped", ESCAPE),
        (&[E::Link("hl", "../escaped")], "hl", "'..' would leave the layer root"),
        (&[E::Dev("dev/mem")], "dev/mem", "device nodes are refused"),
    ];
    for (entries, entry, message) in cases {
        let err = entry_err(ex(&tar_of(entries)[..], &root, Target::Flat));
        assert_eq!(err.entry, entry);
        assert!(err.message.contains(message), "{entry}: {err}");
        assert!(!outer.path().join("escaped").exists());
    }
    // A symlink inside the root that stays inside is followed.
    let ok = tar_of(&[E::Dir("usr/"), E::Dir("usr/lib/"), E::Sym("lib", "usr/lib"), E::File("lib/x", "in")]);
    ex(&ok[..], &root, Target::Flat).unwrap();
    assert_eq!(read(root.join("usr/lib/x")), "in");
}

#[test]
fn overlay_layer_gets_whiteout_devices_and_opaque_xattr() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP overlay_layer_gets_whiteout_devices_and_opaque_xattr: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let l = tar_of(&[E::File("a/.wh.x", ""), E::Dir("d/"), E::File("d/.wh..wh..opq", "")]);
    ex(&l[..], dir.path(), Target::Overlay { lowers: &[] }).unwrap();
    let meta = std::fs::symlink_metadata(dir.path().join("a/x")).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(meta.rdev(), 0);
    let mut value = [0u8; 4];
    let n = rustix::fs::getxattr(dir.path().join("d").as_path(), "trusted.overlay.opaque", &mut value).unwrap();
    assert_eq!(&value[..n], b"y");
}

/// Limits of `n` for every per-layer resource and per-image ones far above.
fn tiny(entries: u64, inodes: u64, bytes: u64) -> ImageLimits {
    let big = ImageLimits::default();
    ImageLimits { layer: Limits { entries, inodes, bytes, decompressed: big.layer.decompressed }, ..big }
}

fn limit_of(result: Result<Usage, ExtractError>) -> (String, LimitExceeded) {
    match result {
        Err(ExtractError::Limit { entry, limit }) => (entry, limit),
        other => panic!("expected a limit, got {other:?}"),
    }
}

#[test]
fn entries_inodes_and_bytes_limits_refuse_the_entry_that_goes_over() {
    let files = tar_of(&[E::File("a", "1"), E::File("b", "2"), E::File("c", "3"), E::File("d", "4")]);
    let dir = tempfile::tempdir().unwrap();
    let (entry, hit) = limit_of(ex_with(&files, dir.path(), Target::Flat, tiny(3, 100, 100)));
    assert_eq!((entry.as_str(), hit.scope, hit.resource, hit.limit, hit.value), ("d", Scope::Layer, Resource::Entries, 3, 4));
    assert!(!dir.path().join("d").exists(), "nothing of the refused entry is written");
    // Control: the same layer under a limit of 4 entries.
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(ex_with(&files, dir.path(), Target::Flat, tiny(4, 100, 100)).unwrap().entries, 4);

    // Inodes: hard links cost an entry, not an inode.
    let links = tar_of(&[E::File("f", "x"), E::Link("l1", "f"), E::Link("l2", "f"), E::Link("l3", "f")]);
    let dir = tempfile::tempdir().unwrap();
    let usage = ex_with(&links, dir.path(), Target::Flat, tiny(100, 1, 100)).unwrap();
    assert_eq!((usage.entries, usage.inodes), (4, 1));
    let dir = tempfile::tempdir().unwrap();
    let (entry, hit) = limit_of(ex_with(&files, dir.path(), Target::Flat, tiny(100, 1, 100)));
    assert_eq!((entry.as_str(), hit.resource, hit.limit, hit.value), ("b", Resource::Inodes, 1, 2));
    // Directories a deep path implies count too: a/b/c/d is four inodes.
    let deep = tar_of(&[E::File("a/b/c/d", "x")]);
    let dir = tempfile::tempdir().unwrap();
    let (entry, hit) = limit_of(ex_with(&deep, dir.path(), Target::Flat, tiny(100, 3, 100)));
    assert_eq!((entry.as_str(), hit.resource, hit.limit, hit.value), ("a/b/c/d", Resource::Inodes, 3, 4));
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(ex_with(&deep, dir.path(), Target::Flat, tiny(100, 4, 100)).unwrap().inodes, 4);

    // Bytes: refused by the declared size, before the file is created.
    let big = tar_of(&[E::File("small", "12345"), E::File("big", &"x".repeat(100))]);
    let dir = tempfile::tempdir().unwrap();
    let (entry, hit) = limit_of(ex_with(&big, dir.path(), Target::Flat, tiny(100, 100, 104)));
    assert_eq!((entry.as_str(), hit.resource, hit.limit, hit.value), ("big", Resource::Bytes, 104, 105));
    assert!(!dir.path().join("big").exists());
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(ex_with(&big, dir.path(), Target::Flat, tiny(100, 100, 105)).unwrap().bytes, 105);
}

/// A GNU sparse entry `name` of `real_size` bytes: 512 bytes of data at offset 0, the
/// rest a hole (a final empty block at the end, as GNU tar writes it).
fn sparse_tar(name: &str, real_size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_size(512);
    h.set_mtime(0);
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    let gnu = h.as_gnu_mut().unwrap();
    gnu.set_real_size(real_size);
    gnu.sparse[0].set_offset(0);
    gnu.sparse[0].set_length(512);
    gnu.sparse[1].set_offset(real_size);
    gnu.sparse[1].set_length(0);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(&[b's'; 512]);
    out.extend_from_slice(&[0; 1024]);
    out
}

#[test]
fn a_huge_sparse_file_counts_its_full_size_and_is_refused_before_writing() {
    // 1 TiB declared, 512 bytes in the tar: refused by the default 16 GiB limit.
    let dir = tempfile::tempdir().unwrap();
    let (entry, hit) = limit_of(ex(&sparse_tar("huge", 1 << 40), dir.path(), Target::Flat));
    assert_eq!((entry.as_str(), hit.resource, hit.limit, hit.value), ("huge", Resource::Bytes, 16 << 30, 1 << 40));
    assert!(!dir.path().join("huge").exists());
    // Control: a small sparse file is taken, written out whole (holes as zeros, no
    // sparse holes that would escape the count).
    let dir = tempfile::tempdir().unwrap();
    let usage = ex(&sparse_tar("small", 1 << 20), dir.path(), Target::Flat).unwrap();
    assert_eq!(usage.bytes, 1 << 20);
    let meta = std::fs::metadata(dir.path().join("small")).unwrap();
    assert_eq!(meta.len(), 1 << 20);
    assert!(meta.blocks() * 512 >= 1 << 20, "written densely: {} blocks", meta.blocks());
    let content = std::fs::read(dir.path().join("small")).unwrap();
    assert!(content[..512].iter().all(|b| *b == b's') && content[512..].iter().all(|b| *b == 0));
}

/// A GNU long-name entry of `len` bytes for the file after it.
fn long_name_tar(len: usize) -> Vec<u8> {
    let long = "n".repeat(len);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_mode(0o644);
    h.set_size(long.len() as u64 + 1);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    let mut data = long.into_bytes();
    data.push(0);
    b.append(&h, &data[..]).unwrap();
    let mut f = tar::Header::new_gnu();
    f.set_entry_type(tar::EntryType::Regular);
    f.set_mode(0o644);
    f.set_size(0);
    f.as_old_mut().name[..5].copy_from_slice(b"short");
    f.set_cksum();
    b.append(&f, &[][..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn metadata_the_tar_reader_buffers_is_capped_per_entry() {
    // A 2 MiB long name would be read whole into memory: refused at 1 MiB.
    let dir = tempfile::tempdir().unwrap();
    let (entry, hit) = limit_of(ex(&long_name_tar(2 << 20), dir.path(), Target::Flat));
    assert_eq!((entry.as_str(), hit.resource, hit.limit), ("(tar)", Resource::EntryMetadata, ENTRY_METADATA_MAX));
    // Control: a long name of 200 bytes is read and used.
    let dir = tempfile::tempdir().unwrap();
    ex(&long_name_tar(200), dir.path(), Target::Flat).unwrap();
    assert!(dir.path().join("n".repeat(200)).exists());
    let dir = tempfile::tempdir().unwrap();
    let err = entry_err(ex(&long_name_tar(300), dir.path(), Target::Flat));
    assert!(err.message.contains("File name too long"), "{err}");
}

/// A tar with one file carrying these PAX xattrs.
fn xattr_tar(xattrs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let keys: Vec<(String, &[u8])> = xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v)).collect();
    b.append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), *v))).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_path("f").unwrap();
    h.set_mode(0o755);
    h.set_size(2);
    h.set_cksum();
    b.append(&h, &b"#!"[..]).unwrap();
    b.into_inner().unwrap()
}

fn get_xattr(path: &Path, key: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    rustix::fs::lgetxattr(path, key, &mut buf).ok().map(|n| buf[..n].to_vec())
}

#[test]
fn xattrs_from_a_layer_are_filtered() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP xattrs_from_a_layer_are_filtered: needs root for trusted.* and security.*");
        return;
    }
    let v3_root0 = [0x01, 0, 0, 0x03, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let v2 = [0x01, 0, 0, 0x02, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let v3_other = [0x01, 0, 0, 0x03, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa0, 0x86, 0x01, 0];
    // user::rwx user:1000:r-- group::r-x mask::r-x other::r-x (one named user, so
    // the kernel keeps it as an ACL rather than folding it into the mode).
    let mut acl = vec![2, 0, 0, 0];
    for (tag, perm, id) in [(0x01u16, 7u16, u32::MAX), (0x02, 4, 1000), (0x04, 5, u32::MAX), (0x10, 5, u32::MAX), (0x20, 5, u32::MAX)] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    let refused: [(&str, &[u8]); 6] = [
        ("trusted.overlay.opaque", b"y"),
        ("trusted.overlay.redirect", b"/etc"),
        ("user.overlay.opaque", b"y"),
        ("security.selinux", b"system_u:object_r:bin_t:s0"),
        ("security.ima", b"\x03\x02\x04"),
        ("system.posix_acl_access", &acl),
    ];
    // Control: this filesystem takes every one of them when set directly, so their
    // absence below is the filter's doing.
    let control = tempfile::tempdir().unwrap();
    let file = control.path().join("f");
    std::fs::write(&file, "#!").unwrap();
    for (key, value) in refused.iter().chain([("user.kept", &b"1"[..]), ("security.capability", &v2[..])].iter()) {
        match rustix::fs::lsetxattr(&file, *key, value, rustix::fs::XattrFlags::empty()) {
            Ok(()) => assert!(get_xattr(&file, key).is_some(), "{key}"),
            // SELinux/IMA labels need an LSM that takes them; the rest must work.
            Err(e) if key.starts_with("security.") && *key != "security.capability" => eprintln!("control: {key} not settable here: {e}"),
            Err(e) => panic!("control: {key}: {e}"),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut all: Vec<(&str, &[u8])> = refused.to_vec();
    all.push(("user.kept", b"1"));
    all.push(("security.capability", &v3_root0));
    ex(&xattr_tar(&all), dir.path(), Target::Flat).unwrap();
    let f = dir.path().join("f");
    for (key, _) in refused {
        assert_eq!(get_xattr(&f, key), None, "{key} must be dropped");
    }
    assert_eq!(get_xattr(&f, "user.kept").as_deref(), Some(&b"1"[..]));
    assert_eq!(get_xattr(&f, "security.capability").as_deref(), Some(&v2[..]), "v3 with root 0 is set as v2");
    // A v3 capability for another namespace root is dropped.
    let dir = tempfile::tempdir().unwrap();
    ex(&xattr_tar(&[("security.capability", &v3_other)]), dir.path(), Target::Flat).unwrap();
    assert_eq!(get_xattr(&dir.path().join("f"), "security.capability"), None);
}

/// A tar with one node of `kind` (char, block) or a FIFO.
fn node_tar(name: &str, kind: tar::EntryType, mode: u32) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_device_major(8).unwrap();
    h.set_device_minor(0).unwrap();
    h.set_size(0);
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &[][..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn device_nodes_are_refused_fifos_and_setuid_files_kept() {
    for (name, kind) in [("dev/sda", tar::EntryType::Block), ("dev/null2", tar::EntryType::Char)] {
        let dir = tempfile::tempdir().unwrap();
        let err = entry_err(ex(&node_tar(name, kind, 0o666), dir.path(), Target::Flat));
        assert!(err.message.contains("device nodes are refused"), "{err}");
        assert!(std::fs::symlink_metadata(dir.path().join(name)).is_err());
        // Control: allowed, the node is made (root only), so the refusal is the check's.
        if nix::unistd::geteuid().is_root() {
            let dir = tempfile::tempdir().unwrap();
            let meter = RefCell::new(Meter::new(ImageLimits::default()));
            extract(&node_tar(name, kind, 0o666)[..], dir.path(), Target::Flat, Options { allow_devices: true, same_owner: false }, &meter)
                .unwrap();
            let ft = std::fs::symlink_metadata(dir.path().join(name)).unwrap().file_type();
            assert!(ft.is_block_device() || ft.is_char_device());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    ex(&node_tar("run/fifo", tar::EntryType::Fifo, 0o600), dir.path(), Target::Flat).unwrap();
    assert!(std::fs::symlink_metadata(dir.path().join("run/fifo")).unwrap().file_type().is_fifo());
    // setuid and setgid bits survive (chmod comes after chown, which clears them).
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_path("bin/su").unwrap();
    h.set_mode(0o6755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(2);
    h.set_cksum();
    b.append(&h, &b"#!"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    for same_owner in [false, nix::unistd::geteuid().is_root()] {
        let dir = tempfile::tempdir().unwrap();
        let meter = RefCell::new(Meter::new(ImageLimits::default()));
        extract(&tar[..], dir.path(), Target::Flat, Options { allow_devices: false, same_owner }, &meter).unwrap();
        assert_eq!(std::fs::metadata(dir.path().join("bin/su")).unwrap().permissions().mode() & 0o7777, 0o6755);
    }
}

/// What a naive unpacker (paths joined, symlinks followed, as `tar -P` would) does
/// with `entries`: the negative control that shows an escape test's tar really escapes.
fn naive_unpack(entries: &[E], root: &Path) {
    for e in entries {
        match e {
            E::Dir(n) => std::fs::create_dir_all(root.join(n)).unwrap(),
            E::File(n, d) => std::fs::write(root.join(n), d).unwrap(),
            E::Sym(n, t) => std::os::unix::fs::symlink(t, root.join(n)).unwrap(),
            E::Link(n, t) => std::fs::hard_link(root.join(t), root.join(n)).unwrap(),
            E::Dev(_) => {}
        }
    }
}

#[test]
fn escapes_are_refused_and_a_naive_unpacker_shows_they_would_escape() {
    let outer = tempfile::tempdir().unwrap();
    let secret = outer.path().join("secret");
    std::fs::write(&secret, "host").unwrap();
    let out = outer.path().to_str().unwrap();
    let cases: [(&[E], &str, &str, &str); 4] = [
        (&[E::File("../escaped", "x")], "../escaped", "'..' would leave the layer root", "escaped"),
        (&[E::Sym("abs", out), E::File("abs/escaped", "x")], "abs/escaped", ESCAPE, "escaped"),
        (&[E::Sym("up", ".."), E::File("up/escaped", "x")], "up/escaped", ESCAPE, "escaped"),
        // A hard link through a symlink to a file outside (the host's secret).
        (&[E::Sym("host", out), E::Link("hl", "host/secret")], "hl", ESCAPE, "secret"),
    ];
    for (i, (entries, entry, message, victim)) in cases.into_iter().enumerate() {
        let root = outer.path().join(format!("root{i}"));
        std::fs::create_dir(&root).unwrap();
        let err = entry_err(ex(&tar_of(entries)[..], &root, Target::Flat));
        assert_eq!(err.entry, entry);
        assert!(err.message.contains(message), "{entry}: {err}");
        assert!(!outer.path().join("escaped").exists());
        assert_eq!(std::fs::metadata(&secret).unwrap().nlink(), 1, "no link to the host's file");
        // Negative control: unconfined, the same entries reach outside the root.
        let naive = outer.path().join(format!("naive{i}"));
        std::fs::create_dir(&naive).unwrap();
        naive_unpack(entries, &naive);
        let reached =
            if victim == "secret" { std::fs::metadata(&secret).unwrap().nlink() == 2 } else { outer.path().join(victim).exists() };
        assert!(reached, "case {i}: the naive unpacker should have escaped");
        let _ = std::fs::remove_file(outer.path().join("escaped"));
        let _ = std::fs::remove_file(naive.join("hl"));
    }
    // An absolute name is taken relative to the layer root.
    let root = outer.path().join("abs-root");
    std::fs::create_dir(&root).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(1);
    let name = format!("{out}/abs-escaped");
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    ex(&b.into_inner().unwrap(), &root, Target::Flat).unwrap();
    assert!(!outer.path().join("abs-escaped").exists());
    assert!(root.join(name.trim_start_matches('/')).exists());
}

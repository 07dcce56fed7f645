//! Whiteouts, opaque directories, hard links across layers and path escapes, on real
//! directories (the overlay target needs root for its 0:0 devices and trusted xattrs).

use super::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

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

fn flat(root: &Path, layers: &[Vec<u8>]) -> Result<(), LayerError> {
    for layer in layers {
        extract(&layer[..], root, Target::Flat, OPTS)?;
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
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("d")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
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
    extract(&tar_of(&[E::File("f", "shared")])[..], lower.path(), Target::Flat, OPTS).unwrap();
    let upper = tempfile::tempdir().unwrap();
    let lowers = [lower.path().to_path_buf()];
    extract(&l2[..], upper.path(), Target::Overlay { lowers: &lowers }, OPTS).unwrap();
    assert_eq!(read(upper.path().join("g")), "shared");
    assert_eq!(std::fs::metadata(upper.path().join("g")).unwrap().ino(), std::fs::metadata(upper.path().join("f")).unwrap().ino());
    // With nothing below, the same link is an error naming the entry.
    let alone = tempfile::tempdir().unwrap();
    let err = extract(&l2[..], alone.path(), Target::Flat, OPTS).unwrap_err();
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
        let err = extract(&tar_of(entries)[..], &root, Target::Flat, OPTS).unwrap_err();
        assert_eq!(err.entry, entry);
        assert!(err.message.contains(message), "{entry}: {err}");
        assert!(!outer.path().join("escaped").exists());
    }
    // A symlink inside the root that stays inside is followed.
    let ok = tar_of(&[E::Dir("usr/"), E::Dir("usr/lib/"), E::Sym("lib", "usr/lib"), E::File("lib/x", "in")]);
    extract(&ok[..], &root, Target::Flat, OPTS).unwrap();
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
    extract(&l[..], dir.path(), Target::Overlay { lowers: &[] }, OPTS).unwrap();
    let meta = std::fs::symlink_metadata(dir.path().join("a/x")).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(meta.rdev(), 0);
    let mut value = [0u8; 4];
    let n = rustix::fs::getxattr(dir.path().join("d").as_path(), "trusted.overlay.opaque", &mut value).unwrap();
    assert_eq!(&value[..n], b"y");
}

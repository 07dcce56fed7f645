//! Which extended attributes from a layer are kept (pure).
//!
//! A layer's PAX `SCHILY.xattr.*` records are applied by host root, so they are
//! filtered by namespace:
//!
//! - `user.*` is kept (ordinary file metadata), except `user.overlay.*`: with the
//!   `userxattr` mount option (user-namespaced containers) those are overlayfs's own
//!   whiteout, opaque and redirect markers, which only keel may set.
//! - `trusted.*` is dropped: overlayfs keeps its markers there (`trusted.overlay.*`),
//!   so a layer could forge whiteouts, opaque directories or redirects into other layers.
//! - `security.capability` is kept only as a well-formed `vfs_cap_data` (see
//!   [`capability`]); every other `security.*` (SELinux, IMA, EVM, SMACK labels) is
//!   dropped: labels are the host's policy, not the image's.
//! - `system.*` is dropped: keel does not support POSIX ACLs from images
//!   (`system.posix_acl_*` name host uids and gids), and the rest are not file data.
//!
//! Dropped attributes are logged; they never fail the layer (as `tar --xattrs` would
//! not on a filesystem without them).

/// What happens to one attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Set it with this value (possibly rewritten from the layer's).
    Keep(Vec<u8>),
    /// Drop it, for this reason.
    Drop(&'static str),
}

/// Decide about the attribute `key` = `value` from a layer.
pub fn decide(key: &str, value: &[u8]) -> Decision {
    if key == "security.capability" {
        return match capability(value) {
            Ok(kept) => Decision::Keep(kept),
            Err(why) => Decision::Drop(why),
        };
    }
    match key.split_once('.').map(|(ns, _)| ns) {
        Some("user") if key.starts_with("user.overlay.") => Decision::Drop("user.overlay.* are overlayfs markers"),
        Some("user") if key.len() > "user.".len() => Decision::Keep(value.to_vec()),
        Some("trusted") => Decision::Drop("trusted.* holds overlayfs markers"),
        Some("security") => Decision::Drop("only security.capability is taken from images"),
        Some("system") => Decision::Drop("system.* (POSIX ACLs) is not taken from images"),
        _ => Decision::Drop("not a known xattr namespace"),
    }
}

const VFS_CAP_REVISION_MASK: u32 = 0xff00_0000;
const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x0000_0001;
/// Bytes of a revision 2 value: magic_etc, then (permitted, inheritable) twice.
const XATTR_CAPS_SZ_2: usize = 20;
/// Revision 3 adds the root uid of the user namespace the value is for.
const XATTR_CAPS_SZ_3: usize = 24;
/// The highest capability number Linux defines (CAP_CHECKPOINT_RESTORE, 5.9).
const CAP_LAST_CAP: u32 = 40;

/// Check a `security.capability` value (Linux `struct vfs_cap_data`, little endian)
/// and return what to set:
///
/// - revision 2 (20 bytes) is kept as it is;
/// - revision 3 (24 bytes) with root uid 0 is rewritten as revision 2: an image's
///   capabilities are for the root of whatever namespace runs it, which is what a
///   revision 2 value means (the kernel does the same conversion for host root);
///   a non-zero root uid would tie the file to one host uid, so it is dropped;
/// - revision 1 (32-bit sets only, obsolete since Linux 2.6.25) and anything
///   malformed (wrong length, unknown flags, bits above the last capability) is dropped.
pub fn capability(value: &[u8]) -> Result<Vec<u8>, &'static str> {
    let word = |i: usize| u32::from_le_bytes([value[4 * i], value[4 * i + 1], value[4 * i + 2], value[4 * i + 3]]);
    let size = match value.len() {
        XATTR_CAPS_SZ_2 | XATTR_CAPS_SZ_3 => value.len(),
        _ => return Err("security.capability: not a revision 2 or 3 vfs_cap_data"),
    };
    let magic = word(0);
    let revision = magic & VFS_CAP_REVISION_MASK;
    match (revision, size) {
        (VFS_CAP_REVISION_2, XATTR_CAPS_SZ_2) | (VFS_CAP_REVISION_3, XATTR_CAPS_SZ_3) => {}
        _ => return Err("security.capability: revision and length disagree"),
    }
    if magic & !VFS_CAP_REVISION_MASK & !VFS_CAP_FLAGS_EFFECTIVE != 0 {
        return Err("security.capability: unknown flags");
    }
    // Words: 1 permitted low, 2 inheritable low, 3 permitted high, 4 inheritable high.
    let high_mask = !((1u32 << (CAP_LAST_CAP - 32 + 1)) - 1);
    if word(3) & high_mask != 0 || word(4) & high_mask != 0 {
        return Err("security.capability: capabilities Linux does not define");
    }
    if revision == VFS_CAP_REVISION_3 && word(5) != 0 {
        return Err("security.capability: revision 3 for a non-zero namespace root uid");
    }
    let mut out = Vec::with_capacity(XATTR_CAPS_SZ_2);
    out.extend_from_slice(&((magic & !VFS_CAP_REVISION_MASK) | VFS_CAP_REVISION_2).to_le_bytes());
    out.extend_from_slice(&value[4..XATTR_CAPS_SZ_2]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vfs_cap_data of `revision` with these words after magic_etc.
    pub fn cap(revision: u32, flags: u32, words: &[u32]) -> Vec<u8> {
        let mut v = (revision | flags).to_le_bytes().to_vec();
        for w in words {
            v.extend_from_slice(&w.to_le_bytes());
        }
        v
    }

    const NET_BIND: u32 = 1 << 10;

    #[test]
    fn namespaces() {
        assert_eq!(decide("user.mime_type", b"text/plain"), Decision::Keep(b"text/plain".to_vec()));
        for key in [
            "trusted.overlay.opaque",
            "trusted.overlay.redirect",
            "trusted.foo",
            "user.overlay.opaque",
            "user.overlay.whiteout",
            "security.selinux",
            "security.ima",
            "security.evm",
            "system.posix_acl_access",
            "system.posix_acl_default",
            "system.nfs4_acl",
            "other.x",
            "user.",
            "nodot",
        ] {
            assert!(matches!(decide(key, b"y"), Decision::Drop(_)), "{key}");
        }
    }

    #[test]
    fn capability_revision_2_is_kept_as_it_is() {
        let v2 = cap(VFS_CAP_REVISION_2, VFS_CAP_FLAGS_EFFECTIVE, &[NET_BIND, 0, 0, 0]);
        assert_eq!(decide("security.capability", &v2), Decision::Keep(v2.clone()));
        // CAP_CHECKPOINT_RESTORE (40) is the highest bit allowed.
        let high = cap(VFS_CAP_REVISION_2, 0, &[0, 0, 1 << 8, 0]);
        assert_eq!(capability(&high).unwrap(), high);
    }

    #[test]
    fn capability_revision_3_with_root_0_becomes_revision_2() {
        let v3 = cap(VFS_CAP_REVISION_3, VFS_CAP_FLAGS_EFFECTIVE, &[NET_BIND, 0, 0, 0, 0]);
        let v2 = cap(VFS_CAP_REVISION_2, VFS_CAP_FLAGS_EFFECTIVE, &[NET_BIND, 0, 0, 0]);
        assert_eq!(capability(&v3).unwrap(), v2);
        let other_root = cap(VFS_CAP_REVISION_3, VFS_CAP_FLAGS_EFFECTIVE, &[NET_BIND, 0, 0, 0, 100000]);
        assert!(capability(&other_root).unwrap_err().contains("non-zero namespace root"));
    }

    #[test]
    fn malformed_capabilities_are_dropped() {
        let v1 = cap(0x0100_0000, 0, &[NET_BIND, 0]);
        let cases: [(Vec<u8>, &str); 6] = [
            (v1, "not a revision 2 or 3"),
            (cap(VFS_CAP_REVISION_2, 0, &[NET_BIND, 0, 0]), "not a revision 2 or 3"),
            (cap(VFS_CAP_REVISION_3, 0, &[NET_BIND, 0, 0, 0]), "revision and length disagree"),
            (cap(VFS_CAP_REVISION_2, 0x2, &[NET_BIND, 0, 0, 0]), "unknown flags"),
            (cap(VFS_CAP_REVISION_2, 0, &[0, 0, 1 << 9, 0]), "Linux does not define"),
            (cap(VFS_CAP_REVISION_2, 0, &[0, 0, 0, 1 << 31]), "Linux does not define"),
        ];
        for (value, why) in cases {
            match decide("security.capability", &value) {
                Decision::Drop(reason) => assert!(reason.contains(why), "{value:?}: {reason}"),
                keep => panic!("{value:?} kept: {keep:?}"),
            }
        }
    }
}

//! A deterministic writer for the cpio "newc" format, the format of Linux initramfs.
//!
//! Each member is a 110-byte ASCII header (magic `070701` and 13 eight-digit hex
//! fields), the NUL-terminated name padded so that header plus name is a multiple of
//! 4 bytes, then the data padded to 4 bytes. The archive ends with a member named
//! `TRAILER!!!`. Owner and group are always 0, inodes are numbered from 1 in output
//! order, and every member gets the same mtime, so equal input gives equal bytes.
//! Limits: member data is at most 4 GiB - 1 (the size field has 32 bits); hard links
//! are not written.

use std::io::{self, Write};

/// The magic of newc headers (no checksum).
pub const MAGIC: &str = "070701";
/// Length of a newc header before the name.
pub const HEADER_LEN: usize = 110;
/// Name of the member that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// Why a member could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// Writing to the underlying stream failed.
    #[error("writing the archive: {0}")]
    Io(#[from] io::Error),
    /// The data does not fit the 32-bit size field.
    #[error("{name}: {size} bytes is too large for a cpio member (at most 4 GiB - 1)")]
    TooLarge {
        /// The member name.
        name: String,
        /// Its size in bytes.
        size: usize,
    },
    /// The name is empty or contains a NUL byte.
    #[error("{name:?}: not a valid cpio member name")]
    BadName {
        /// The member name.
        name: String,
    },
}

/// What a member is, with its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// A directory.
    Directory,
    /// A regular file with these contents.
    Regular(&'a [u8]),
    /// A symbolic link to this target.
    Symlink(&'a str),
    /// A character device node.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
}

impl Body<'_> {
    fn type_bits(&self) -> u32 {
        match self {
            Body::Directory => S_IFDIR,
            Body::Regular(_) => S_IFREG,
            Body::Symlink(_) => S_IFLNK,
            Body::CharDevice { .. } => S_IFCHR,
        }
    }

    fn data(&self) -> &[u8] {
        match self {
            Body::Regular(data) => data,
            Body::Symlink(target) => target.as_bytes(),
            Body::Directory | Body::CharDevice { .. } => &[],
        }
    }

    fn rdev(&self) -> (u32, u32) {
        match self {
            Body::CharDevice { major, minor } => (*major, *minor),
            _ => (0, 0),
        }
    }
}

/// The fields of one header that vary; the others are fixed by this writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Member name, relative (no leading `/`).
    pub name: &'a str,
    /// Inode number.
    pub ino: u32,
    /// Full mode: file type bits and permission bits.
    pub mode: u32,
    /// Link count.
    pub nlink: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    /// Data length in bytes.
    pub filesize: u32,
    /// Device numbers of a device node.
    pub rdev: (u32, u32),
}

/// Bytes of padding that bring `len` to a multiple of 4.
pub fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// The header, name, terminating NUL and padding of one member.
pub fn encode_header(header: &Header<'_>) -> Vec<u8> {
    let namesize = header.name.len() + 1;
    let fields = [
        header.ino,
        header.mode,
        0, // uid
        0, // gid
        header.nlink,
        header.mtime,
        header.filesize,
        0, // devmajor
        0, // devminor
        header.rdev.0,
        header.rdev.1,
        namesize as u32,
        0, // check
    ];
    let mut out = String::with_capacity(HEADER_LEN + namesize + 3);
    out.push_str(MAGIC);
    for field in fields {
        out.push_str(&format!("{field:08X}"));
    }
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(header.name.as_bytes());
    bytes.push(0);
    bytes.resize(bytes.len() + padding(HEADER_LEN + namesize), 0);
    bytes
}

/// Writes members one after another, numbering inodes and stamping one mtime.
#[derive(Debug)]
pub struct NewcWriter<W: Write> {
    out: W,
    next_ino: u32,
    mtime: u32,
}

impl<W: Write> NewcWriter<W> {
    /// A writer on `out` whose members all get modification time `mtime`.
    pub fn new(out: W, mtime: u32) -> Self {
        NewcWriter { out, next_ino: 1, mtime }
    }

    /// Append one member with permission bits `perm` (type bits come from `body`).
    pub fn append(&mut self, name: &str, perm: u32, body: Body<'_>) -> Result<(), CpioError> {
        if name.is_empty() || name.contains('\0') {
            return Err(CpioError::BadName { name: name.to_string() });
        }
        let data = body.data();
        let filesize = u32::try_from(data.len()).map_err(|_| CpioError::TooLarge { name: name.to_string(), size: data.len() })?;
        let header = Header {
            name,
            ino: self.next_ino,
            mode: body.type_bits() | (perm & 0o7777),
            nlink: if body == Body::Directory { 2 } else { 1 },
            mtime: self.mtime,
            filesize,
            rdev: body.rdev(),
        };
        self.out.write_all(&encode_header(&header))?;
        self.write_padded(data)?;
        self.next_ino += 1;
        Ok(())
    }

    /// Write the trailer and return the underlying stream.
    pub fn finish(mut self) -> Result<W, CpioError> {
        let trailer = Header { name: TRAILER, ino: 0, mode: 0, nlink: 1, mtime: 0, filesize: 0, rdev: (0, 0) };
        self.out.write_all(&encode_header(&trailer))?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn write_padded(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.out.write_all(&[0u8; 3][..padding(data.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(members: &[(&str, u32, Body<'_>)]) -> Vec<u8> {
        let mut writer = NewcWriter::new(Vec::new(), 7);
        for (name, perm, body) in members {
            writer.append(name, *perm, *body).unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn header_of_a_known_file() {
        let bytes = archive(&[("etc/hostname", 0o644, Body::Regular(b"demo\n"))]);
        let expected_header = concat!(
            "070701", "00000001", "000081A4", "00000000", "00000000", "00000001", "00000007", "00000005", "00000000", "00000000",
            "00000000", "00000000", "0000000D", "00000000",
        );
        assert_eq!(&bytes[..HEADER_LEN], expected_header.as_bytes());
        // 110 + 13 (name + NUL) = 123, padded to 124.
        assert_eq!(&bytes[HEADER_LEN..124], b"etc/hostname\0\0");
        // Data 5 bytes padded to 8.
        assert_eq!(&bytes[124..132], b"demo\n\0\0\0");
        assert_eq!(&bytes[132..138], MAGIC.as_bytes());
    }

    #[test]
    fn device_directory_and_symlink_fields() {
        let bytes = archive(&[
            ("dev", 0o755, Body::Directory),
            ("dev/console", 0o600, Body::CharDevice { major: 5, minor: 1 }),
            ("init", 0o777, Body::Symlink("/usr/bin/keel")),
        ]);
        let text = String::from_utf8_lossy(&bytes);
        let field = |member: usize, index: usize| {
            let start = text.match_indices(MAGIC).nth(member).unwrap().0 + 6 + index * 8;
            text[start..start + 8].to_string()
        };
        assert_eq!(field(0, 1), "000041ED");
        assert_eq!(field(0, 4), "00000002", "directories have two links");
        assert_eq!(field(1, 1), "00002180");
        assert_eq!((field(1, 9), field(1, 10)), ("00000005".into(), "00000001".into()));
        assert_eq!(field(2, 0), "00000003", "inodes count up");
        assert_eq!(field(2, 1), "0000A1FF");
        assert_eq!(field(2, 6), "0000000D", "symlink data is the target");
    }

    #[test]
    fn members_and_archive_are_four_byte_aligned() {
        for name_len in 1..=8 {
            let name = "n".repeat(name_len);
            for data_len in 0..=5 {
                let data = vec![b'x'; data_len];
                let bytes = archive(&[(&name, 0o644, Body::Regular(&data))]);
                assert_eq!(bytes.len() % 4, 0);
                let data_start = HEADER_LEN + name_len + 1 + padding(HEADER_LEN + name_len + 1);
                assert_eq!(data_start % 4, 0);
                assert_eq!(&bytes[data_start..data_start + data_len], &data[..]);
            }
        }
    }

    #[test]
    fn trailer_ends_the_archive() {
        let bytes = archive(&[]);
        let expected = format!("{MAGIC}{}{}{}", "0".repeat(32), "00000001", "0".repeat(56));
        assert_eq!(&bytes[..HEADER_LEN - 16], &expected.as_bytes()[..HEADER_LEN - 16]);
        assert_eq!(&bytes[HEADER_LEN - 16..HEADER_LEN], b"0000000B00000000");
        assert_eq!(&bytes[HEADER_LEN..], b"TRAILER!!!\0\0\0\0");
        assert_eq!(bytes.len(), 124);
    }

    #[test]
    fn output_is_deterministic() {
        let members = [("a", 0o755, Body::Directory), ("a/b", 0o600, Body::Regular(b"xyz"))];
        assert_eq!(archive(&members), archive(&members));
    }

    #[test]
    fn bad_names_are_rejected() {
        let mut writer = NewcWriter::new(Vec::new(), 0);
        let err = writer.append("a\0b", 0o644, Body::Directory).unwrap_err();
        assert!(matches!(err, CpioError::BadName { .. }));
    }
}

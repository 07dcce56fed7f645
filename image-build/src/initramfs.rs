//! Writing planned entries as a gzip-compressed newc cpio archive.
//!
//! Host files are read as they are written. The gzip header carries mtime 0 and no
//! file name, so the output depends only on the entries, their contents and `mtime`.
//! Compression is level 1 ("fast"): in unoptimised builds of keel-build the
//! compressor dominates the build time, and the larger archive costs the kernel little.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use crate::cpio::{Body, CpioError, NewcWriter};
use crate::names::ImagePath;
use crate::tree::{Entry, Node, Source, DEFAULT_FILE_MODE};

/// Why the archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A host file that goes into the image could not be read.
    #[error("{entry}: cannot read {}: {source}", path.display())]
    ReadSource {
        /// The entry's path in the image.
        entry: ImagePath,
        /// The file on the build host.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The archive itself could not be written.
    #[error(transparent)]
    Cpio(#[from] CpioError),
    /// The compressed stream could not be finished.
    #[error("finishing the gzip stream: {0}")]
    Gzip(#[source] io::Error),
}

/// Write `entries` (already sorted) as a cpio archive to `out`; every member gets `mtime`.
pub fn write_cpio<W: Write>(entries: &[Entry], mtime: u32, out: W) -> Result<W, WriteError> {
    let mut writer = NewcWriter::new(out, mtime);
    for entry in entries {
        write_entry(&mut writer, entry)?;
    }
    Ok(writer.finish()?)
}

/// Write `entries` as a gzip-compressed cpio archive to `out`.
pub fn write_cpio_gz<W: Write>(entries: &[Entry], mtime: u32, out: W) -> Result<W, WriteError> {
    let gz: GzEncoder<W> = GzBuilder::new().mtime(0).write(out, Compression::fast());
    let gz = write_cpio(entries, mtime, gz)?;
    gz.finish().map_err(WriteError::Gzip)
}

fn write_entry<W: Write>(writer: &mut NewcWriter<W>, entry: &Entry) -> Result<(), WriteError> {
    let name = entry.path.relative();
    match &entry.node {
        Node::Dir { mode } => writer.append(name, *mode, Body::Directory)?,
        Node::Symlink { target } => writer.append(name, 0o777, Body::Symlink(target))?,
        Node::CharDev { mode, major, minor } => writer.append(name, *mode, Body::CharDevice { major: *major, minor: *minor })?,
        Node::File { mode, source } => {
            let (data, source_mode) = read_source(&entry.path, source)?;
            writer.append(name, mode.unwrap_or(source_mode), Body::Regular(&data))?
        }
    }
    Ok(())
}

/// The contents of a file entry and the mode to use when the entry names none.
fn read_source(entry: &ImagePath, source: &Source) -> Result<(Vec<u8>, u32), WriteError> {
    match source {
        Source::Inline(bytes) => Ok((bytes.clone(), DEFAULT_FILE_MODE)),
        Source::Host(path) => {
            let error = |source| WriteError::ReadSource { entry: entry.clone(), path: path.clone(), source };
            let data = std::fs::read(path).map_err(error)?;
            let mode = std::fs::metadata(path).map_err(error)?.permissions().mode() & 0o7777;
            Ok((data, mode))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn entry(path: &str, node: Node) -> Entry {
        Entry { path: ImagePath::try_from(path).unwrap(), node }
    }

    #[test]
    fn host_files_take_their_mode_unless_one_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("probe");
        std::fs::write(&source, b"#!x").unwrap();
        std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o750)).unwrap();
        let entries = [
            entry("/a", Node::File { mode: None, source: Source::Host(source.clone()) }),
            entry("/b", Node::File { mode: Some(0o600), source: Source::Host(source) }),
        ];
        let bytes = write_cpio(&entries, 0, Vec::new()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let modes: Vec<&str> = text.match_indices("070701").map(|(i, _)| &text[i + 14..i + 22]).collect();
        assert_eq!(modes, ["000081E8", "00008180", "00000000"]);
    }

    #[test]
    fn missing_host_file_names_entry_and_file() {
        let entries = [entry("/usr/bin/keel", Node::File { mode: None, source: Source::Host("/nonexistent/k".into()) })];
        let err = write_cpio(&entries, 0, Vec::new()).unwrap_err();
        assert!(err.to_string().starts_with("/usr/bin/keel: cannot read /nonexistent/k"), "{err}");
    }

    #[test]
    fn gzip_output_is_deterministic_and_decompresses() {
        let entries = [
            entry("/etc", Node::Dir { mode: 0o755 }),
            entry("/etc/hostname", Node::File { mode: None, source: Source::Inline(b"h\n".to_vec()) }),
        ];
        let first = write_cpio_gz(&entries, 5, Vec::new()).unwrap();
        let second = write_cpio_gz(&entries, 5, Vec::new()).unwrap();
        assert_eq!(first, second);
        assert_eq!(&first[4..8], &[0, 0, 0, 0], "gzip mtime is zero");
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&first[..]).read_to_end(&mut plain).unwrap();
        assert_eq!(plain, write_cpio(&entries, 5, Vec::new()).unwrap());
    }
}

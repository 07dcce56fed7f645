//! How much an image may put on the host: entries, inodes, bytes of file content and
//! decompressed tar bytes, per layer and per image, and the size of the JSON documents
//! (manifests, indexes, configs) keel reads into memory.
//!
//! An image comes from whoever built it, so its layers are hostile input: a few KB of
//! gzip can expand to terabytes (a decompression bomb), a tar entry can declare an
//! exabyte-sized sparse file, and a layer can hold a billion empty files. The limits
//! are checked while the layer streams, before anything over them is written: the
//! decompressed stream is counted as it is read ([`MeteredReader`]), a file's declared
//! size is counted before its first byte is written, and the bytes the tar reader
//! consumes on its own between two entries (long names, PAX headers, skipped data)
//! are capped ([`ENTRY_METADATA_MAX`]), so memory stays bounded too.
//!
//! The defaults ([`ImageLimits::default`]) are far above real images (a full Debian
//! or CUDA layer has a few hundred thousand files and a few GiB) and far below what
//! would fill a host's disk or inode table unnoticed; tests pass tiny ones.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read};
use std::rc::Rc;

/// The largest manifest, index or config keel reads (containerd's limit too).
pub const DOCUMENT_MAX: u64 = 4 << 20;

/// The most bytes the tar reader may consume between two entries on its own: the
/// header blocks, GNU long names and links, PAX extended headers (xattrs) and the data
/// of entries that carry none (a directory with a size). The tar crate reads long names
/// and PAX headers into memory, so this bounds the memory one entry can cost.
pub const ENTRY_METADATA_MAX: u64 = 1 << 20;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// Tar members (files, directories, links, whiteouts…).
    Entries,
    /// Files, directories (also those a deep path implies), symlinks and nodes created
    /// on disk; a hard link creates none.
    Inodes,
    /// Bytes of file content, counted by each file's declared size (a sparse file's
    /// full size), before it is written.
    Bytes,
    /// Bytes of the decompressed layer stream.
    Decompressed,
    /// Bytes of one manifest, index or config document.
    Document,
    /// Bytes the tar reader consumed between two entries (see [`ENTRY_METADATA_MAX`]).
    EntryMetadata,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Entries => "tar entries",
            Resource::Inodes => "inodes",
            Resource::Bytes => "bytes of file content",
            Resource::Decompressed => "decompressed bytes",
            Resource::Document => "bytes of a JSON document",
            Resource::EntryMetadata => "bytes of metadata for one tar entry",
        })
    }
}

/// Whether a limit is one layer's or the whole image's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One layer.
    Layer,
    /// All layers of one import together.
    Image,
}

/// A limit that was reached: which, its value, and the count that went over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{} limit exceeded: more than {limit} {resource} ({value} reached)", match scope { Scope::Layer => "per-layer", Scope::Image => "per-image" })]
pub struct LimitExceeded {
    /// Per layer or per image.
    pub scope: Scope,
    /// What was counted.
    pub resource: Resource,
    /// The limit.
    pub limit: u64,
    /// The count that went over it.
    pub value: u64,
}

/// Counts for one scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tar members.
    pub entries: u64,
    /// Inodes created.
    pub inodes: u64,
    /// Bytes of file content (declared sizes).
    pub bytes: u64,
    /// Bytes of decompressed tar stream.
    pub decompressed: u64,
}

impl Usage {
    fn get(&self, resource: Resource) -> u64 {
        match resource {
            Resource::Entries => self.entries,
            Resource::Inodes => self.inodes,
            Resource::Bytes => self.bytes,
            Resource::Decompressed => self.decompressed,
            Resource::Document | Resource::EntryMetadata => 0,
        }
    }

    fn slot(&mut self, resource: Resource) -> Option<&mut u64> {
        match resource {
            Resource::Entries => Some(&mut self.entries),
            Resource::Inodes => Some(&mut self.inodes),
            Resource::Bytes => Some(&mut self.bytes),
            Resource::Decompressed => Some(&mut self.decompressed),
            Resource::Document | Resource::EntryMetadata => None,
        }
    }
}

/// The limits of one scope; a [`Usage`] over any of them is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most tar members.
    pub entries: u64,
    /// Most inodes created.
    pub inodes: u64,
    /// Most bytes of file content.
    pub bytes: u64,
    /// Most bytes of decompressed tar stream.
    pub decompressed: u64,
}

impl Limits {
    fn get(&self, resource: Resource) -> u64 {
        match resource {
            Resource::Entries => self.entries,
            Resource::Inodes => self.inodes,
            Resource::Bytes => self.bytes,
            Resource::Decompressed => self.decompressed,
            Resource::Document | Resource::EntryMetadata => u64::MAX,
        }
    }
}

const GIB: u64 = 1 << 30;

/// Every limit on image content, passed to the [`super::Store`] (tests use tiny ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Per layer.
    pub layer: Limits,
    /// Per image: the layers one import unpacks, together (layers already in the store
    /// cost nothing new and were counted when they were unpacked).
    pub image: Limits,
    /// Most bytes of one manifest, index or config.
    pub document: u64,
}

impl Default for ImageLimits {
    /// Per layer 1,000,000 entries and inodes, 16 GiB of content and of decompressed
    /// tar; per image 2,000,000 entries and inodes, 64 GiB of each; documents 4 MiB.
    fn default() -> Self {
        ImageLimits {
            layer: Limits { entries: 1_000_000, inodes: 1_000_000, bytes: 16 * GIB, decompressed: 16 * GIB },
            image: Limits { entries: 2_000_000, inodes: 2_000_000, bytes: 64 * GIB, decompressed: 64 * GIB },
            document: DOCUMENT_MAX,
        }
    }
}

/// Counts one import against its limits: the current layer and the image so far. The
/// first limit reached is remembered, so an error that surfaces later through another
/// layer (the tar reader wraps read errors) can still be reported as that limit.
#[derive(Debug, Clone)]
pub struct Meter {
    limits: ImageLimits,
    image: Usage,
    layer: Usage,
    exceeded: Option<LimitExceeded>,
}

impl Meter {
    /// A meter with nothing counted.
    pub fn new(limits: ImageLimits) -> Meter {
        Meter { limits, image: Usage::default(), layer: Usage::default(), exceeded: None }
    }

    /// Count `amount` more of `resource` in the current layer (and the image); refused
    /// when that goes over a limit (nothing is added then).
    pub fn add(&mut self, resource: Resource, amount: u64) -> Result<(), LimitExceeded> {
        for (scope, usage, limits) in [(Scope::Layer, &self.layer, &self.limits.layer), (Scope::Image, &self.image, &self.limits.image)] {
            let value = usage.get(resource).saturating_add(amount);
            let limit = limits.get(resource);
            if value > limit {
                let hit = LimitExceeded { scope, resource, limit, value };
                self.exceeded.get_or_insert(hit);
                return Err(hit);
            }
        }
        for usage in [&mut self.layer, &mut self.image] {
            if let Some(slot) = usage.slot(resource) {
                *slot += amount;
            }
        }
        Ok(())
    }

    /// Start counting a new layer; returns the finished layer's usage.
    pub fn next_layer(&mut self) -> Usage {
        std::mem::take(&mut self.layer)
    }

    /// The current layer's counts.
    pub fn layer(&self) -> Usage {
        self.layer
    }

    /// The image's counts so far.
    pub fn image(&self) -> Usage {
        self.image
    }

    /// The first limit reached, if any.
    pub fn exceeded(&self) -> Option<LimitExceeded> {
        self.exceeded
    }

    /// Record a limit reached outside [`Meter::add`] (the per-entry metadata cap).
    pub fn record(&mut self, hit: LimitExceeded) {
        self.exceeded.get_or_insert(hit);
    }
}

/// A meter shared by the reader that counts the decompressed stream and the unpacker.
pub type SharedMeter = Rc<RefCell<Meter>>;

/// Counts every byte read through it as [`Resource::Decompressed`]; a read that goes
/// over a limit fails (and the meter remembers why), so a decompression bomb stops
/// within one buffer of the limit.
pub struct MeteredReader<R> {
    inner: R,
    meter: SharedMeter,
}

impl<R: Read> MeteredReader<R> {
    /// Count what `inner` yields on `meter`.
    pub fn new(inner: R, meter: SharedMeter) -> Self {
        MeteredReader { inner, meter }
    }
}

impl<R: Read> Read for MeteredReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.borrow_mut().add(Resource::Decompressed, n as u64).map_err(io::Error::other)?;
        Ok(n)
    }
}

/// Read all of `reader`, refusing more than `limit` bytes (without reading further).
pub fn read_capped(reader: impl Read, limit: u64) -> io::Result<Result<Vec<u8>, LimitExceeded>> {
    let mut bytes = Vec::new();
    reader.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Ok(Err(LimitExceeded { scope: Scope::Image, resource: Resource::Document, limit, value: bytes.len() as u64 }));
    }
    Ok(Ok(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ImageLimits {
        let l = Limits { entries: 3, inodes: 3, bytes: 100, decompressed: 1000 };
        ImageLimits { layer: l, image: Limits { entries: 5, inodes: 5, bytes: 150, decompressed: 1500 }, document: 10 }
    }

    #[test]
    fn layer_limit_then_image_limit() {
        let mut m = Meter::new(tiny());
        m.add(Resource::Entries, 3).unwrap();
        let hit = m.add(Resource::Entries, 1).unwrap_err();
        assert_eq!(hit, LimitExceeded { scope: Scope::Layer, resource: Resource::Entries, limit: 3, value: 4 });
        assert_eq!(m.layer().entries, 3, "a refused amount is not counted");
        assert_eq!(m.next_layer().entries, 3);
        // The next layer starts at zero; the image keeps counting.
        m.add(Resource::Entries, 2).unwrap();
        let hit = m.add(Resource::Entries, 1).unwrap_err();
        assert_eq!((hit.scope, hit.limit, hit.value), (Scope::Image, 5, 6));
        assert_eq!(m.exceeded().unwrap().scope, Scope::Layer, "the first limit reached is kept");
        assert!(hit.to_string().contains("per-image limit exceeded: more than 5 tar entries (6 reached)"), "{hit}");
    }

    #[test]
    fn each_resource_has_its_own_limit() {
        for (resource, limit) in [(Resource::Inodes, 3), (Resource::Bytes, 100), (Resource::Decompressed, 1000)] {
            let mut m = Meter::new(tiny());
            m.add(resource, limit).unwrap();
            let hit = m.add(resource, 1).unwrap_err();
            assert_eq!((hit.resource, hit.limit, hit.value), (resource, limit, limit + 1));
            // Control: the other resources are still at zero and accept their limit.
            let mut other = Meter::new(tiny());
            other.add(resource, limit).unwrap();
        }
    }

    #[test]
    fn a_huge_amount_does_not_wrap() {
        let mut m = Meter::new(tiny());
        m.add(Resource::Bytes, 50).unwrap();
        let hit = m.add(Resource::Bytes, u64::MAX).unwrap_err();
        assert_eq!(hit.value, u64::MAX);
    }

    #[test]
    fn metered_reader_stops_at_the_decompressed_limit() {
        let meter = Rc::new(RefCell::new(Meter::new(tiny())));
        let mut r = MeteredReader::new(io::repeat(0).take(5000), meter.clone());
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("decompressed bytes"), "{err}");
        let hit = meter.borrow().exceeded().unwrap();
        assert_eq!((hit.scope, hit.resource, hit.limit), (Scope::Layer, Resource::Decompressed, 1000));
        // Control: under the limit the same reader reads to the end.
        let meter = Rc::new(RefCell::new(Meter::new(tiny())));
        let mut r = MeteredReader::new(io::repeat(0).take(900), meter.clone());
        assert_eq!(io::copy(&mut r, &mut io::sink()).unwrap(), 900);
        assert_eq!(meter.borrow().layer().decompressed, 900);
    }

    #[test]
    fn read_capped_refuses_one_byte_over() {
        assert_eq!(read_capped(&b"0123456789"[..], 10).unwrap().unwrap(), b"0123456789");
        let hit = read_capped(&b"0123456789X"[..], 10).unwrap().unwrap_err();
        assert_eq!((hit.resource, hit.limit, hit.value), (Resource::Document, 10, 11));
        // An endless reader is not read past the cap.
        let hit = read_capped(io::repeat(b'x'), 10).unwrap().unwrap_err();
        assert_eq!(hit.value, 11);
    }
}

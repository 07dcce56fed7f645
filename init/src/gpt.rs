//! GUID partition tables as plain values: parse, lay out, serialise, grow.
//!
//! keel-build writes the disk image's table with [`Gpt::to_bytes`]; keel at boot reads
//! it back with [`Gpt::parse`] and, when the virtual disk was made larger than the
//! image, moves the backup table to the new end and grows the last partition
//! ([`Gpt::grow_last`]). Everything here is pure (bytes in, bytes out); the device I/O
//! and the BLKPG ioctl live in `grow`. Layout per UEFI 2.10 §5.3: protective MBR in
//! LBA 0, header in LBA 1, 128 entries of 128 bytes from LBA 2, and the same entries
//! plus a backup header at the end of the disk.

/// Logical block size assumed throughout (virtual disks, and what keel-build writes).
pub const SECTOR: u64 = 512;
/// Number of partition entries in the array.
pub const ENTRIES: u32 = 128;
/// Size of one entry.
pub const ENTRY_SIZE: u32 = 128;
/// Sectors taken by the entry array (128 × 128 bytes = 32 sectors).
pub const ENTRY_SECTORS: u64 = (ENTRIES as u64 * ENTRY_SIZE as u64) / SECTOR;
/// Bytes at the start of the disk holding MBR, header and entries (LBA 0–33).
pub const PRIMARY_BYTES: usize = ((2 + ENTRY_SECTORS) * SECTOR) as usize;
/// Bytes at the end of the disk holding entries and backup header (last 33 LBAs).
pub const BACKUP_BYTES: usize = ((1 + ENTRY_SECTORS) * SECTOR) as usize;
/// Partitions start and end on 1 MiB boundaries (2048 sectors).
pub const ALIGN_SECTORS: u64 = 2048;

const SIGNATURE: &[u8; 8] = b"EFI PART";
const REVISION: u32 = 0x0001_0000;
const HEADER_SIZE: u32 = 92;
const NAME_UNITS: usize = 36;

/// A GUID in its on-disk byte order (the first three fields little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Parse `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` (case-insensitive).
    pub fn parse(text: &str) -> Option<Guid> {
        let hex: String = text.split('-').collect();
        let groups: Vec<usize> = text.split('-').map(str::len).collect();
        if groups != [8, 4, 4, 4, 12] || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut raw = [0u8; 16];
        for (i, byte) in raw.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        let mut disk = raw;
        disk[0..4].reverse();
        disk[4..6].reverse();
        disk[6..8].reverse();
        Some(Guid(disk))
    }

    /// A version-4-shaped GUID from 16 bytes of a hash (reproducible "random" GUIDs).
    pub fn from_hash(bytes: &[u8]) -> Guid {
        let mut raw = [0u8; 16];
        raw.copy_from_slice(&bytes[..16]);
        raw[7] = (raw[7] & 0x0f) | 0x40; // version nibble (field 3 is little-endian)
        raw[8] = (raw[8] & 0x3f) | 0x80;
        Guid(raw)
    }

    /// Whether this is the all-zero GUID of an unused entry.
    pub fn is_nil(&self) -> bool {
        self.0 == [0u8; 16]
    }
}

/// The EFI system partition's type.
pub const TYPE_ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// Root partition for x86-64 (Discoverable Partitions Specification).
pub const TYPE_ROOT_X86_64: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
/// /var partition (Discoverable Partitions Specification).
pub const TYPE_VAR: &str = "4D21B016-B534-45C2-A9FB-5C16E091FD2D";

/// One used partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// What the partition is for.
    pub type_guid: Guid,
    /// This partition's own GUID.
    pub unique_guid: Guid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
    /// Attribute bits.
    pub attributes: u64,
    /// The name (PARTLABEL), at most 36 UTF-16 code units.
    pub name: String,
}

impl Partition {
    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR
    }
}

/// A partition table: the header's fields that matter and the used entries, in slot
/// order (slot i is partition number i + 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    /// The disk's GUID.
    pub disk_guid: Guid,
    /// First sector a partition may use.
    pub first_usable: u64,
    /// Last sector a partition may use.
    pub last_usable: u64,
    /// Used entries; `None` keeps an unused slot between used ones.
    pub slots: Vec<Option<Partition>>,
}

/// Why bytes are not a valid GPT, or a table cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GptError {
    /// Fewer bytes than the table needs.
    #[error("GPT: {have} bytes read, {need} needed")]
    Short {
        /// Bytes available.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// LBA 1 does not start with "EFI PART".
    #[error("GPT: no \"EFI PART\" signature in LBA 1 (not a GPT disk)")]
    Signature,
    /// The header's CRC32 does not match.
    #[error("GPT: header CRC32 is {stored:#010x}, computed {computed:#010x} (corrupt header)")]
    HeaderCrc {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// The entry array's CRC32 does not match.
    #[error("GPT: partition entry array CRC32 is {stored:#010x}, computed {computed:#010x} (corrupt entries)")]
    EntriesCrc {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the entries.
        computed: u32,
    },
    /// A header field has a value keel does not handle.
    #[error("GPT: unsupported header: {0}")]
    Unsupported(String),
    /// The partitions do not fit on the disk.
    #[error("GPT layout: {0}")]
    Layout(String),
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

/// What one partition of a new layout asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSpec {
    /// The PARTLABEL.
    pub name: String,
    /// Its type.
    pub type_guid: Guid,
    /// Its unique GUID.
    pub unique_guid: Guid,
    /// Size in bytes (rounded up to 1 MiB); `None` takes the rest of the disk (last only).
    pub size: Option<u64>,
}

/// A partition's growth: slot index and last sector before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Growth {
    /// Slot index (partition number − 1).
    pub slot: usize,
    /// First sector (unchanged).
    pub first_lba: u64,
    /// Last sector before.
    pub old_last: u64,
    /// Last sector after.
    pub new_last: u64,
}

fn align_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}

impl Gpt {
    /// Lay out `specs` one after the other from 1 MiB on a disk of `disk_sectors`.
    pub fn layout(disk_sectors: u64, disk_guid: Guid, specs: &[PartitionSpec]) -> Result<Gpt, GptError> {
        let last_usable = last_usable_for(disk_sectors)
            .ok_or_else(|| GptError::Layout(format!("a disk of {disk_sectors} sectors is too small for a GPT")))?;
        let mut next = ALIGN_SECTORS;
        let mut slots = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let last = match spec.size {
                Some(bytes) => next + align_up(bytes, ALIGN_SECTORS * SECTOR) / SECTOR - 1,
                None if i + 1 == specs.len() => aligned_end(last_usable),
                None => return Err(GptError::Layout(format!("partition {}: only the last may take the rest", spec.name))),
            };
            if last > last_usable || last < next {
                return Err(GptError::Layout(format!(
                    "partition {} does not fit: it would end at sector {last}, the disk's last usable sector is {last_usable}",
                    spec.name
                )));
            }
            if spec.name.encode_utf16().count() > NAME_UNITS {
                return Err(GptError::Layout(format!("partition name {:?} is longer than 36 UTF-16 units", spec.name)));
            }
            slots.push(Some(Partition {
                type_guid: spec.type_guid,
                unique_guid: spec.unique_guid,
                first_lba: next,
                last_lba: last,
                attributes: 0,
                name: spec.name.clone(),
            }));
            next = last + 1;
        }
        Ok(Gpt { disk_guid, first_usable: 2 + ENTRY_SECTORS, last_usable, slots })
    }

    /// The entry array (128 entries × 128 bytes).
    pub fn entries_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
        for (i, slot) in self.slots.iter().enumerate().take(ENTRIES as usize) {
            let Some(p) = slot else { continue };
            let e = &mut out[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&p.type_guid.0);
            e[16..32].copy_from_slice(&p.unique_guid.0);
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
            for (j, unit) in p.name.encode_utf16().take(NAME_UNITS).enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
            }
        }
        out
    }

    /// One header sector: at `current`, pointing at `backup`, entries at `entries_lba`.
    fn header(&self, current: u64, backup: u64, entries_lba: u64, entries_crc: u32) -> Vec<u8> {
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&REVISION.to_le_bytes());
        h[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        h[24..32].copy_from_slice(&current.to_le_bytes());
        h[32..40].copy_from_slice(&backup.to_le_bytes());
        h[40..48].copy_from_slice(&self.first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.0);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRIES.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&h[..HEADER_SIZE as usize]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// The table for a disk of `disk_sectors`: (bytes for LBA 0–33 with the protective
    /// MBR, bytes for the last 33 LBAs with the backup entries and header).
    pub fn to_bytes(&self, disk_sectors: u64) -> (Vec<u8>, Vec<u8>) {
        let entries = self.entries_bytes();
        let entries_crc = crc32(&entries);
        let last = disk_sectors - 1;
        let mut primary = protective_mbr(disk_sectors);
        primary.extend(self.header(1, last, 2, entries_crc));
        primary.extend(&entries);
        let mut backup = entries;
        backup.extend(self.header(last, 1, last - ENTRY_SECTORS, entries_crc));
        (primary, backup)
    }

    /// Parse the primary table from the first [`PRIMARY_BYTES`] of a disk, checking the
    /// signature and both CRC32s. Also returns the header's backup LBA.
    pub fn parse(primary: &[u8]) -> Result<(Gpt, u64), GptError> {
        if primary.len() < PRIMARY_BYTES {
            return Err(GptError::Short { have: primary.len(), need: PRIMARY_BYTES });
        }
        let h = &primary[SECTOR as usize..2 * SECTOR as usize];
        if &h[0..8] != SIGNATURE {
            return Err(GptError::Signature);
        }
        let size = le32(h, 12);
        if size != HEADER_SIZE {
            return Err(GptError::Unsupported(format!("header size {size}, expected {HEADER_SIZE}")));
        }
        let stored = le32(h, 16);
        let mut copy = h[..HEADER_SIZE as usize].to_vec();
        copy[16..20].fill(0);
        let computed = crc32(&copy);
        if stored != computed {
            return Err(GptError::HeaderCrc { stored, computed });
        }
        let (entries_lba, count, entry_size) = (le64(h, 72), le32(h, 80), le32(h, 84));
        if entries_lba != 2 || count != ENTRIES || entry_size != ENTRY_SIZE {
            return Err(GptError::Unsupported(format!(
                "entries at LBA {entries_lba}, {count} × {entry_size} bytes (keel handles LBA 2, 128 × 128)"
            )));
        }
        let entries = &primary[2 * SECTOR as usize..PRIMARY_BYTES];
        let (stored, computed) = (le32(h, 88), crc32(entries));
        if stored != computed {
            return Err(GptError::EntriesCrc { stored, computed });
        }
        let mut disk_guid = Guid::default();
        disk_guid.0.copy_from_slice(&h[56..72]);
        let mut slots: Vec<Option<Partition>> = entries.chunks(ENTRY_SIZE as usize).map(parse_entry).collect();
        while slots.last().is_some_and(Option::is_none) {
            slots.pop();
        }
        let gpt = Gpt { disk_guid, first_usable: le64(h, 40), last_usable: le64(h, 48), slots };
        Ok((gpt, le64(h, 32)))
    }

    /// The used partition named `name` and its slot index.
    pub fn find(&self, name: &str) -> Option<(usize, &Partition)> {
        self.slots.iter().enumerate().find_map(|(i, s)| s.as_ref().filter(|p| p.name == name).map(|p| (i, p)))
    }

    /// Make the table fit a disk of `disk_sectors` and grow partition `name` up to the
    /// new end (aligned down to 1 MiB). `None` when there is nothing to do: the disk did
    /// not grow, or the partition already ends where it would. Errors when `name` is
    /// missing or is not the last partition on the disk.
    pub fn grow_last(&mut self, disk_sectors: u64, name: &str) -> Result<Option<Growth>, GptError> {
        let last_usable = last_usable_for(disk_sectors)
            .ok_or_else(|| GptError::Layout(format!("a disk of {disk_sectors} sectors is too small for a GPT")))?;
        let (slot, part) = self.find(name).ok_or_else(|| GptError::Layout(format!("no partition named {name}")))?;
        let (first_lba, old_last) = (part.first_lba, part.last_lba);
        let later = self.slots.iter().flatten().any(|p| p.first_lba > first_lba);
        if later {
            return Err(GptError::Layout(format!("partition {name} is not the last on the disk; it cannot grow")));
        }
        if last_usable < self.last_usable {
            return Err(GptError::Layout(format!(
                "the disk ({disk_sectors} sectors) is smaller than its partition table says (last usable sector {})",
                self.last_usable
            )));
        }
        let new_last = aligned_end(last_usable).max(old_last);
        if last_usable == self.last_usable && new_last == old_last {
            return Ok(None);
        }
        self.last_usable = last_usable;
        if let Some(Some(p)) = self.slots.get_mut(slot) {
            p.last_lba = new_last;
        }
        Ok(Some(Growth { slot, first_lba, old_last, new_last }))
    }
}

/// The last usable sector of a disk of `disk_sectors` (before the backup entries).
fn last_usable_for(disk_sectors: u64) -> Option<u64> {
    disk_sectors.checked_sub(2 + ENTRY_SECTORS).filter(|&l| l > ALIGN_SECTORS)
}

/// The last sector before the 1 MiB boundary at or below `last_usable + 1`.
fn aligned_end(last_usable: u64) -> u64 {
    (last_usable + 1) / ALIGN_SECTORS * ALIGN_SECTORS - 1
}

fn parse_entry(e: &[u8]) -> Option<Partition> {
    let mut type_guid = Guid::default();
    type_guid.0.copy_from_slice(&e[0..16]);
    if type_guid.is_nil() {
        return None;
    }
    let mut unique_guid = Guid::default();
    unique_guid.0.copy_from_slice(&e[16..32]);
    let units: Vec<u16> = e[56..128].chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
    Some(Partition {
        type_guid,
        unique_guid,
        first_lba: le64(e, 32),
        last_lba: le64(e, 40),
        attributes: le64(e, 48),
        name: String::from_utf16_lossy(&units),
    })
}

/// LBA 0: a protective MBR with one partition of type 0xEE covering the disk.
pub fn protective_mbr(disk_sectors: u64) -> Vec<u8> {
    let mut mbr = vec![0u8; SECTOR as usize];
    let p = &mut mbr[446..462];
    p[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    p[4] = 0xEE;
    p[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(disk_sectors - 1).unwrap_or(u32::MAX);
    p[12..16].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    mbr
}

#[cfg(test)]
#[path = "gpt_tests.rs"]
mod tests;

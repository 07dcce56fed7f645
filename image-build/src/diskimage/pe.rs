//! Making objcopy's PE output reproducible: it stamps the build time into the COFF
//! header, so the time is set to the build's epoch and the PE checksum recomputed.

/// Why bytes are not a PE image this can fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a PE image: {0}")]
pub struct PeError(pub &'static str);

/// Set the COFF TimeDateStamp to `timestamp` and recompute the optional header's CheckSum.
pub fn normalize(image: &mut [u8], timestamp: u32) -> Result<(), PeError> {
    if image.get(0..2) != Some(b"MZ") {
        return Err(PeError("no MZ header"));
    }
    let pe = u32::from_le_bytes(image.get(0x3c..0x40).ok_or(PeError("truncated DOS header"))?.try_into().unwrap_or_default()) as usize;
    if image.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err(PeError("no PE signature"));
    }
    let checksum_at = pe + 24 + 64;
    if image.len() < checksum_at + 4 {
        return Err(PeError("truncated optional header"));
    }
    image[pe + 8..pe + 12].copy_from_slice(&timestamp.to_le_bytes());
    image[checksum_at..checksum_at + 4].fill(0);
    let sum = checksum(image, checksum_at);
    image[checksum_at..checksum_at + 4].copy_from_slice(&sum.to_le_bytes());
    Ok(())
}

/// The PE checksum: 16-bit one's-complement-style sum (carries folded) of the file with
/// the checksum field skipped, plus the file length.
pub fn checksum(image: &[u8], checksum_at: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, chunk) in image.chunks(2).enumerate() {
        let at = i * 2;
        if at >= checksum_at && at < checksum_at + 4 {
            continue;
        }
        let word = u16::from_le_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u64::from(word);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    (sum as u32).wrapping_add(image.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_pe() -> Vec<u8> {
        let mut image = vec![0u8; 512];
        image[0..2].copy_from_slice(b"MZ");
        image[0x3c] = 0x80;
        image[0x80..0x84].copy_from_slice(b"PE\0\0");
        image[0x88..0x8c].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        image[300] = 7;
        image
    }

    #[test]
    fn the_timestamp_is_replaced_and_the_checksum_recomputed() {
        let mut a = tiny_pe();
        normalize(&mut a, 0).unwrap();
        assert_eq!(&a[0x88..0x8c], &[0, 0, 0, 0]);
        let at = 0x80 + 24 + 64;
        // Word sum: "MZ" 0x5a4d + 0x80 (e_lfanew) + "PE" 0x4550 + 7, plus the length 512.
        let expected = 0x5a4d + 0x80 + 0x4550 + 7 + 512;
        assert_eq!(u32::from_le_bytes(a[at..at + 4].try_into().unwrap()), expected);
        let mut b = tiny_pe();
        b[0x88] = 0x99;
        normalize(&mut b, 0).unwrap();
        assert_eq!(a, b, "only the timestamp differed");
    }

    #[test]
    fn other_bytes_are_refused() {
        assert_eq!(normalize(&mut [0u8; 10], 0), Err(PeError("no MZ header")));
        let mut no_pe = tiny_pe();
        no_pe[0x80] = b'X';
        assert_eq!(normalize(&mut no_pe, 0), Err(PeError("no PE signature")));
    }

    #[test]
    fn the_systemd_stub_checksum_matches_its_own_when_it_has_one() {
        let Ok(stub) = std::fs::read(super::super::uki::STUB) else {
            eprintln!("SKIP: systemd-boot-efi not installed");
            return;
        };
        let pe = u32::from_le_bytes(stub[0x3c..0x40].try_into().unwrap()) as usize;
        let at = pe + 24 + 64;
        let stored = u32::from_le_bytes(stub[at..at + 4].try_into().unwrap());
        if stored != 0 {
            assert_eq!(checksum(&stub, at), stored);
        }
    }
}

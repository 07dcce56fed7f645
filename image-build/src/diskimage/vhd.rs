//! Making qemu-img's fixed VHD reproducible: its footer carries the creation time and
//! a random UUID, so both are set from the build's epoch and the checksum recomputed.

/// The VHD footer is the last 512 bytes of a fixed VHD.
pub const FOOTER_LEN: usize = 512;
/// Seconds from the Unix epoch to the VHD epoch (2000-01-01 00:00:00 UTC).
const VHD_EPOCH: u64 = 946_684_800;

/// Why a footer cannot be normalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a VHD footer: no \"conectix\" cookie")]
pub struct VhdError;

/// Set the footer's timestamp (from `epoch`) and UUID, and recompute its checksum.
pub fn normalize_footer(footer: &mut [u8; FOOTER_LEN], epoch: u64, uuid: [u8; 16]) -> Result<(), VhdError> {
    if &footer[0..8] != b"conectix" {
        return Err(VhdError);
    }
    let stamp = u32::try_from(epoch.saturating_sub(VHD_EPOCH)).unwrap_or(u32::MAX);
    footer[24..28].copy_from_slice(&stamp.to_be_bytes());
    footer[68..84].copy_from_slice(&uuid);
    footer[64..68].fill(0);
    let sum: u32 = footer.iter().map(|&b| u32::from(b)).sum();
    footer[64..68].copy_from_slice(&(!sum).to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_uuid_and_checksum() {
        let mut footer = [0u8; FOOTER_LEN];
        footer[0..8].copy_from_slice(b"conectix");
        footer[24..28].copy_from_slice(&[1, 2, 3, 4]);
        normalize_footer(&mut footer, VHD_EPOCH + 10, [7; 16]).unwrap();
        assert_eq!(&footer[24..28], &[0, 0, 0, 10]);
        assert_eq!(&footer[68..84], &[7; 16]);
        let sum: u32 = footer.iter().enumerate().filter(|(i, _)| !(64..68).contains(i)).map(|(_, &b)| u32::from(b)).sum();
        assert_eq!(u32::from_be_bytes(footer[64..68].try_into().unwrap()), !sum);
        assert_eq!(normalize_footer(&mut [0u8; FOOTER_LEN], 0, [0; 16]), Err(VhdError));
    }
}

//! The partition layout of a disk image, as a pure function of the sizes and the
//! build's epoch (which makes every GUID reproducible).

use keel_init::gpt::{Gpt, GptError, Guid, PartitionSpec, TYPE_ESP, TYPE_ROOT_X86_64, TYPE_VAR};
use sha2::{Digest, Sha256};

/// PARTLABEL of the EFI system partition.
pub const ESP_LABEL: &str = "esp";
/// PARTLABEL of the root slot the image boots from.
pub const ROOT_A_LABEL: &str = "keel-root-a";
/// PARTLABEL of the second, empty root slot (for updates).
pub const ROOT_B_LABEL: &str = "keel-root-b";
/// PARTLABEL (and ext4 label) of the data partition mounted on /var.
pub const VAR_LABEL: &str = keel_init::storage::VAR_LABEL;
/// Size of the EFI system partition.
pub const ESP_SIZE: u64 = 64 << 20;
/// Size of each root slot: the erofs root must fit in it.
pub const ROOT_SLOT_SIZE: u64 = 256 << 20;
/// The smallest data partition.
pub const MIN_VAR_SIZE: u64 = 64 << 20;
/// The smallest disk image: 1 MiB GPT at each end, ESP, two root slots, a small /var.
pub const MIN_DISK_SIZE: u64 = (2 << 20) + ESP_SIZE + 2 * ROOT_SLOT_SIZE + MIN_VAR_SIZE;

/// A reproducible GUID for `purpose`, from the epoch.
pub fn derived_guid(epoch: u64, purpose: &str) -> Guid {
    let digest = Sha256::new().chain_update(format!("keel-build disk\0{purpose}\0{epoch}")).finalize();
    Guid::from_hash(&digest)
}

fn guid(text: &str) -> Guid {
    Guid::parse(text).unwrap_or_else(|| panic!("built-in partition type {text}"))
}

/// The table of a disk of `size` bytes: esp, keel-root-a, keel-root-b, keel-var (the rest).
pub fn plan(size: u64, epoch: u64) -> Result<Gpt, GptError> {
    if size < MIN_DISK_SIZE {
        return Err(GptError::Layout(format!("a disk image needs at least {} MiB, {} MiB asked", MIN_DISK_SIZE >> 20, size >> 20)));
    }
    let part =
        |name: &str, ty: &str, size| PartitionSpec { name: name.into(), type_guid: guid(ty), unique_guid: derived_guid(epoch, name), size };
    let specs = [
        part(ESP_LABEL, TYPE_ESP, Some(ESP_SIZE)),
        part(ROOT_A_LABEL, TYPE_ROOT_X86_64, Some(ROOT_SLOT_SIZE)),
        part(ROOT_B_LABEL, TYPE_ROOT_X86_64, Some(ROOT_SLOT_SIZE)),
        part(VAR_LABEL, TYPE_VAR, None),
    ];
    Gpt::layout(size / keel_init::gpt::SECTOR, derived_guid(epoch, "disk"), &specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_partitions_in_order_and_var_takes_the_rest() {
        let gpt = plan(4 << 30, 0).unwrap();
        let names: Vec<&str> = gpt.slots.iter().flatten().map(|p| p.name.as_str()).collect();
        assert_eq!(names, [ESP_LABEL, ROOT_A_LABEL, ROOT_B_LABEL, VAR_LABEL]);
        let var = gpt.find(VAR_LABEL).unwrap().1;
        assert_eq!(var.first_lba * 512, (1 << 20) + ESP_SIZE + 2 * ROOT_SLOT_SIZE);
        assert_eq!((var.last_lba + 1) * 512, (4 << 30) - (1 << 20));
        assert_eq!(plan(4 << 30, 0).unwrap(), gpt, "same epoch, same GUIDs");
        assert_ne!(plan(4 << 30, 1).unwrap().disk_guid, gpt.disk_guid);
        let err = plan(100 << 20, 0).unwrap_err();
        assert!(err.to_string().contains("at least"), "{err}");
    }
}

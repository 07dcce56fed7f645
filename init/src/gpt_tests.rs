use super::*;

const MIB: u64 = 1 << 20;

fn guid(n: u8) -> Guid {
    Guid::from_hash(&[n; 16])
}

fn spec(name: &str, ty: &str, n: u8, size: Option<u64>) -> PartitionSpec {
    PartitionSpec { name: name.into(), type_guid: Guid::parse(ty).unwrap(), unique_guid: guid(n), size }
}

fn keel_layout(disk_sectors: u64) -> Gpt {
    let specs = [
        spec("esp", TYPE_ESP, 1, Some(64 * MIB)),
        spec("keel-root-a", TYPE_ROOT_X86_64, 2, Some(300 * MIB)),
        spec("keel-root-b", TYPE_ROOT_X86_64, 3, Some(300 * MIB)),
        spec("keel-var", TYPE_VAR, 4, None),
    ];
    Gpt::layout(disk_sectors, guid(9), &specs).unwrap()
}

/// A whole disk image of `sectors` with the table written at both ends.
fn disk(gpt: &Gpt, sectors: u64) -> Vec<u8> {
    let (primary, backup) = gpt.to_bytes(sectors);
    let mut bytes = vec![0u8; (sectors * SECTOR) as usize];
    bytes[..primary.len()].copy_from_slice(&primary);
    let end = bytes.len();
    bytes[end - backup.len()..].copy_from_slice(&backup);
    bytes
}

#[test]
fn guids_use_the_mixed_endian_disk_order() {
    let esp = Guid::parse(TYPE_ESP).unwrap();
    assert_eq!(esp.0[..4], [0x28, 0x73, 0x2A, 0xC1]);
    assert_eq!(esp.0[4..8], [0x1F, 0xF8, 0xD2, 0x11]);
    assert_eq!(esp.0[8..], [0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B]);
    assert_eq!(Guid::parse("not-a-guid"), None);
    assert_eq!(Guid::parse("C12A7328F81F11D2BA4B00A0C93EC93B"), None);
    assert_eq!(guid(7).0[7] >> 4, 4, "version 4");
}

#[test]
fn layout_is_aligned_and_the_last_partition_takes_the_rest() {
    let sectors = 4096 * 2048; // 4 GiB
    let gpt = keel_layout(sectors);
    let parts: Vec<&Partition> = gpt.slots.iter().flatten().collect();
    assert_eq!(parts[0].first_lba, 2048);
    assert_eq!(parts[0].size_bytes(), 64 * MIB);
    assert_eq!(parts[1].first_lba, 2048 + 64 * 2048);
    for p in &parts {
        assert_eq!(p.first_lba % ALIGN_SECTORS, 0, "{}", p.name);
        assert_eq!((p.last_lba + 1) % ALIGN_SECTORS, 0, "{}", p.name);
    }
    assert_eq!(parts[3].last_lba, sectors - 2048 - 1, "the last MiB holds the backup table");
    assert_eq!(gpt.last_usable, sectors - 34);
    let too_small = Gpt::layout(1000 * 2048, guid(1), &[spec("big", TYPE_VAR, 1, Some(2000 * MIB))]);
    assert!(matches!(too_small, Err(GptError::Layout(m)) if m.contains("big does not fit")));
}

#[test]
fn written_tables_parse_back() {
    let sectors = 2048 * 1024;
    let gpt = keel_layout(sectors);
    let bytes = disk(&gpt, sectors);
    let (parsed, backup_lba) = Gpt::parse(&bytes[..PRIMARY_BYTES]).unwrap();
    assert_eq!(parsed, gpt);
    assert_eq!(backup_lba, sectors - 1);
    assert_eq!(parsed.find("keel-var").unwrap().0, 3);
    assert_eq!(&bytes[510..512], &[0x55, 0xAA]);
    assert_eq!(bytes[446 + 4], 0xEE);
    // The backup header is the primary one with current/backup swapped and its own CRC.
    let backup = &bytes[bytes.len() - SECTOR as usize..];
    assert_eq!(&backup[0..8], b"EFI PART");
    assert_eq!(le64(backup, 24), sectors - 1);
    assert_eq!(le64(backup, 32), 1);
    assert_eq!(le64(backup, 72), sectors - 33);
}

#[test]
fn an_independent_tool_reads_the_table() {
    let Ok(out) = std::process::Command::new("sfdisk").arg("--version").output() else {
        eprintln!("SKIP: sfdisk (util-linux) not installed");
        return;
    };
    assert!(out.status.success());
    let dir = crate::scratch::TempDir::new("gpt");
    let path = dir.0.join("disk.img");
    let sectors = 2048 * 1024;
    std::fs::write(&path, disk(&keel_layout(sectors), sectors)).unwrap();
    let out = std::process::Command::new("sfdisk").args(["--json"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let parts = json["partitiontable"]["partitions"].as_array().unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["esp", "keel-root-a", "keel-root-b", "keel-var"]);
    assert_eq!(parts[0]["type"], TYPE_ESP);
    assert_eq!(parts[3]["start"], 2048 * (1 + 64 + 300 + 300));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("corrupt"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn corruption_is_named() {
    let sectors = 2048 * 256;
    let gpt = keel_layout_small(sectors);
    let good = disk(&gpt, sectors);
    let mut bad_sig = good.clone();
    bad_sig[512] = b'X';
    assert_eq!(Gpt::parse(&bad_sig[..PRIMARY_BYTES]).unwrap_err(), GptError::Signature);
    let mut bad_header = good.clone();
    bad_header[512 + 48] ^= 1;
    assert!(matches!(Gpt::parse(&bad_header[..PRIMARY_BYTES]), Err(GptError::HeaderCrc { .. })));
    let mut bad_entries = good.clone();
    bad_entries[1024 + 60] ^= 1;
    let err = Gpt::parse(&bad_entries[..PRIMARY_BYTES]).unwrap_err();
    assert!(err.to_string().contains("entry array CRC32"), "{err}");
    assert!(matches!(Gpt::parse(&good[..100]), Err(GptError::Short { have: 100, .. })));
}

fn keel_layout_small(sectors: u64) -> Gpt {
    let specs = [spec("esp", TYPE_ESP, 1, Some(16 * MIB)), spec("keel-var", TYPE_VAR, 4, None)];
    Gpt::layout(sectors, guid(9), &specs).unwrap()
}

#[test]
fn growing_moves_the_backup_and_extends_the_last_partition() {
    let small = 2048 * 1024; // 1 GiB
    let big = 2 * small;
    let gpt = keel_layout(small);
    let (mut grown, _) = Gpt::parse(&disk(&gpt, small)[..PRIMARY_BYTES]).unwrap();
    let growth = grown.grow_last(big, "keel-var").unwrap().unwrap();
    assert_eq!(growth.slot, 3);
    assert_eq!(growth.old_last, small - 2049);
    assert_eq!(growth.new_last, big - 2049);
    assert_eq!(grown.last_usable, big - 34);
    // Written to the bigger disk, it parses back, and growing again does nothing.
    let bytes = disk(&grown, big);
    let (mut again, backup_lba) = Gpt::parse(&bytes[..PRIMARY_BYTES]).unwrap();
    assert_eq!(backup_lba, big - 1);
    assert_eq!(again.grow_last(big, "keel-var").unwrap(), None);
    // The other partitions did not move.
    for name in ["esp", "keel-root-a", "keel-root-b"] {
        assert_eq!(again.find(name).unwrap().1, gpt.find(name).unwrap().1);
    }
}

#[test]
fn growth_refuses_what_it_cannot_do() {
    let sectors = 2048 * 1024;
    let mut gpt = keel_layout(sectors);
    let err = gpt.grow_last(sectors * 2, "keel-root-a").unwrap_err();
    assert!(err.to_string().contains("keel-root-a is not the last"), "{err}");
    let err = gpt.grow_last(sectors * 2, "nope").unwrap_err();
    assert!(err.to_string().contains("no partition named nope"), "{err}");
    let err = gpt.grow_last(sectors / 2, "keel-var").unwrap_err();
    assert!(err.to_string().contains("smaller than its partition table"), "{err}");
    assert_eq!(gpt.grow_last(sectors, "keel-var").unwrap(), None, "same size: nothing to do");
}

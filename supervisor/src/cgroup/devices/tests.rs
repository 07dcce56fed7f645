//! The device filter run by a small interpreter of the instructions it uses, over the
//! same `struct bpf_cgroup_dev_ctx` the kernel passes; and its encoding byte for byte.

use super::program::{build, bytecode, op, Insn};
use super::*;
use crate::spec::Privilege;

/// `struct bpf_cgroup_dev_ctx`.
struct Ctx {
    access_type: u32,
    major: u32,
    minor: u32,
}

fn ctx(kind: DeviceKind, access: Access, major: u32, minor: u32) -> Ctx {
    Ctx { access_type: (u32::from(access.bits()) << 16) | kind.bpf_type(), major, minor }
}

/// Run `program` the way the kernel would; panics on anything the filter must not do
/// (an unknown opcode, a read outside the context, running off the end, a loop).
fn run(program: &[Insn], ctx: &Ctx) -> u64 {
    let mut regs = [0u64; 11];
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps <= program.len(), "the filter must not loop");
        let insn = program.get(pc).unwrap_or_else(|| panic!("ran off the end at {pc}"));
        let (dst, src) = (insn.dst as usize, insn.src as usize);
        pc += 1;
        match insn.code {
            op::LDX_MEM_W => {
                assert_eq!(src, 1, "loads only from the context");
                regs[dst] = u64::from(match insn.off {
                    0 => ctx.access_type,
                    4 => ctx.major,
                    8 => ctx.minor,
                    off => panic!("context read at offset {off}"),
                });
            }
            op::AND32_IMM => regs[dst] = u64::from(regs[dst] as u32 & insn.imm as u32),
            op::RSH32_IMM => regs[dst] = u64::from((regs[dst] as u32) >> insn.imm),
            op::MOV32_REG => regs[dst] = u64::from(regs[src] as u32),
            op::MOV32_IMM => regs[dst] = u64::from(insn.imm as u32),
            op::JNE_IMM => {
                assert!(insn.off >= 0, "jumps only forward");
                if regs[dst] != insn.imm as i64 as u64 {
                    pc += insn.off as usize;
                }
            }
            op::EXIT => return regs[0],
            code => panic!("unknown opcode {code:#x}"),
        }
    }
}

fn allowed(kind: DeviceKind, access: Access, major: u32, minor: u32) -> bool {
    run(&build(&DEFAULT_RULES), &ctx(kind, access, major, minor)) == 1
}

use DeviceKind::{Block, Char};

#[test]
fn the_oci_default_devices_are_allowed() {
    for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2)] {
        for access in [Access::READ, Access::WRITE, Access(6), Access::MKNOD, Access::ALL] {
            assert!(allowed(Char, access, major, minor), "c {major}:{minor} {access:?}");
        }
    }
    for minor in [0, 1, 7, 4095] {
        assert!(allowed(Char, Access(6), 136, minor), "pts {minor}");
    }
}

#[test]
fn other_devices_are_denied() {
    // /dev/mem, /dev/kmem, /dev/port, /dev/kmsg, /dev/tty0, /dev/fuse, /dev/net/tun.
    for (major, minor) in [(1, 1), (1, 2), (1, 4), (1, 11), (4, 0), (10, 229), (10, 200)] {
        for access in [Access::READ, Access::WRITE, Access(6)] {
            assert!(!allowed(Char, access, major, minor), "c {major}:{minor} {access:?}");
        }
    }
    // The disks: sda and a virtio disk.
    for (major, minor) in [(8, 0), (254, 0), (253, 1)] {
        assert!(!allowed(Block, Access::READ, major, minor), "b {major}:{minor}");
        assert!(!allowed(Block, Access::WRITE, major, minor), "b {major}:{minor}");
    }
    // The allowed char numbers do not allow the block device of the same number.
    assert!(!allowed(Block, Access::READ, 1, 3));
    assert!(!allowed(Block, Access::READ, 136, 0));
    // Mknod is allowed alone; asking for mknod and read of /dev/mem is not.
    assert!(allowed(Char, Access::MKNOD, 1, 1) && allowed(Block, Access::MKNOD, 8, 0));
    assert!(!allowed(Char, Access(3), 1, 1));
}

#[test]
fn negative_control_an_allow_all_rule_allows_the_disk() {
    // The interpreter and the rule matching really can say yes to b 8:0.
    let all = [DeviceRule { kind: DeviceKind::Any, major: None, minor: None, access: Access::ALL }];
    assert_eq!(run(&build(&all), &ctx(Block, Access(6), 8, 0)), 1);
    assert_eq!(run(&build(&[]), &ctx(Char, Access::READ, 1, 3)), 0, "no rule: deny");
}

#[test]
fn a_rule_block_tests_type_access_major_and_minor() {
    let rule = DeviceRule { kind: Char, major: Some(1), minor: Some(3), access: Access(6) };
    let program = build(&[rule]);
    // Prologue 6, then: type, access (3), major, minor, return 1; then return 0.
    assert_eq!(program.len(), 6 + 6 + 2 + 2);
    let jumps: Vec<(u8, i32, i16)> = program[6..12].iter().filter(|i| i.code == op::JNE_IMM).map(|i| (i.dst, i.imm, i.off)).collect();
    // Every failed test lands on the final `return 0` (index 14).
    assert_eq!(jumps, [(2, 2, 7), (6, 0, 4), (4, 1, 3), (5, 3, 2)]);
    assert_eq!(program[8].imm, 1, "requested bits outside rw: mknod");
}

#[test]
fn instructions_encode_like_struct_bpf_insn() {
    let insn = Insn { code: op::LDX_MEM_W, dst: 4, src: 1, off: 4, imm: 0 };
    assert_eq!(insn.encode(), [0x61, 0x14, 4, 0, 0, 0, 0, 0]);
    let jump = Insn { code: op::JNE_IMM, dst: 2, src: 0, off: 5, imm: 136 };
    assert_eq!(jump.encode(), [0x55, 0x02, 5, 0, 136, 0, 0, 0]);
    let exit = Insn { code: op::EXIT, dst: 0, src: 0, off: 0, imm: 0 };
    assert_eq!(exit.encode(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    let program = build(&DEFAULT_RULES);
    let code = bytecode(&program);
    assert_eq!(code.len(), program.len() * 8);
    assert_eq!(&code[code.len() - 16..], [0xb4, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn a_privileged_container_gets_every_device_and_an_unprivileged_one_not() {
    let privileged = |kind, access, major, minor| {
        run(&build(rules_for(Privilege::Privileged { host_pid: false })), &ctx(kind, access, major, minor)) == 1
    };
    let isolated = |kind, access, major, minor| run(&build(rules_for(Privilege::Unprivileged)), &ctx(kind, access, major, minor)) == 1;
    for (kind, major, minor) in [(DeviceKind::Block, 253, 0), (DeviceKind::Char, 1, 1), (DeviceKind::Char, 10, 200)] {
        assert!(privileged(kind, Access::READ, major, minor) && privileged(kind, Access::WRITE, major, minor), "{major}:{minor}");
        assert!(!isolated(kind, Access::READ, major, minor), "control: {major}:{minor} is denied without privileged");
    }
}

#[test]
fn an_allow_all_rule_ends_the_program_with_no_unreachable_instruction() {
    let program = build(&PRIVILEGED_RULES);
    let exit = program.iter().position(|i| i.code == op::EXIT).unwrap();
    assert_eq!(exit, program.len() - 1, "nothing after the first exit: the verifier refuses unreachable code");
    assert!(program.iter().all(|i| i.code != op::JNE_IMM), "no test: every access is allowed");
    // Control: the default rules keep their final `return 0` after the last rule.
    let default = build(&DEFAULT_RULES);
    assert!(default.iter().filter(|i| i.code == op::EXIT).count() > 1);
}

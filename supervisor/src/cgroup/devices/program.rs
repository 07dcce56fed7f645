//! The device filter as eBPF bytecode, built from a rule list (pure).
//!
//! The kernel calls a `BPF_PROG_TYPE_CGROUP_DEVICE` program with a pointer to
//! `struct bpf_cgroup_dev_ctx` (include/uapi/linux/bpf.h) in r1:
//!
//! ```text
//! offset 0: u32 access_type  (access << 16) | type;  access: BPF_DEVCG_ACC_MKNOD 1,
//!                            READ 2, WRITE 4; type: BPF_DEVCG_DEV_BLOCK 1, CHAR 2
//! offset 4: u32 major
//! offset 8: u32 minor
//! ```
//!
//! and allows the access when it returns 1. The program loads the four values into
//! r2 (type), r3 (access), r4 (major) and r5 (minor), then tests one rule after the
//! other; a rule that matches returns 1, the end returns 0 (deny by default). A rule
//! matches when the type matches (unless it is for any type), every requested access
//! bit is among the rule's, and major and minor match (unless wildcards).

use super::{Access, DeviceKind, DeviceRule};

/// Offsets in `struct bpf_cgroup_dev_ctx`.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;

/// Instruction classes and fields (include/uapi/linux/bpf_common.h, bpf.h), written
/// as class | operation | source like the kernel's macros, zero parts included.
#[allow(clippy::identity_op)]
pub(super) mod op {
    /// `BPF_LDX | BPF_MEM | BPF_W`: dst = *(u32 *)(src + off).
    pub const LDX_MEM_W: u8 = 0x01 | 0x60 | 0x00;
    /// `BPF_ALU | BPF_AND | BPF_K`: dst = (u32)(dst & imm).
    pub const AND32_IMM: u8 = 0x04 | 0x50 | 0x00;
    /// `BPF_ALU | BPF_RSH | BPF_K`: dst = (u32)(dst >> imm).
    pub const RSH32_IMM: u8 = 0x04 | 0x70 | 0x00;
    /// `BPF_ALU | BPF_MOV | BPF_X`: dst = (u32)src.
    pub const MOV32_REG: u8 = 0x04 | 0xb0 | 0x08;
    /// `BPF_ALU | BPF_MOV | BPF_K`: dst = (u32)imm.
    pub const MOV32_IMM: u8 = 0x04 | 0xb0 | 0x00;
    /// `BPF_JMP | BPF_JNE | BPF_K`: if dst != imm, pc += off.
    pub const JNE_IMM: u8 = 0x05 | 0x50 | 0x00;
    /// `BPF_JMP | BPF_EXIT`: return r0.
    pub const EXIT: u8 = 0x05 | 0x90;
}

/// Registers the program uses.
pub(super) mod reg {
    pub const R0: u8 = 0;
    pub const CTX: u8 = 1;
    pub const TYPE: u8 = 2;
    pub const ACCESS: u8 = 3;
    pub const MAJOR: u8 = 4;
    pub const MINOR: u8 = 5;
    pub const SCRATCH: u8 = 6;
}

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register.
    pub dst: u8,
    /// Source register.
    pub src: u8,
    /// Signed offset (memory access, jumps).
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn { code, dst, src, off, imm }
    }

    /// The 8 bytes the kernel reads: code, dst (low nibble) | src (high nibble), off
    /// and imm in the machine's byte order.
    pub fn encode(&self) -> [u8; 8] {
        let mut bytes = [0u8; 8];
        bytes[0] = self.code;
        bytes[1] = (self.dst & 0x0f) | (self.src << 4);
        bytes[2..4].copy_from_slice(&self.off.to_ne_bytes());
        bytes[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        bytes
    }
}

fn load(dst: u8, off: i16) -> Insn {
    Insn::new(op::LDX_MEM_W, dst, reg::CTX, off, 0)
}

fn jne(dst: u8, imm: u32, off: i16) -> Insn {
    // Majors, minors and masks are u32 in the context; the instruction's imm is the
    // same 32 bits, compared after the register's zero extension (values the rules
    // use stay below 2^31, see DeviceRule).
    Insn::new(op::JNE_IMM, dst, 0, off, imm as i32)
}

fn ret(value: i32) -> [Insn; 2] {
    [Insn::new(op::MOV32_IMM, reg::R0, 0, 0, value), Insn::new(op::EXIT, 0, 0, 0, 0)]
}

/// r2..r5 from the context.
fn prologue() -> Vec<Insn> {
    vec![
        load(reg::TYPE, CTX_ACCESS_TYPE),
        Insn::new(op::AND32_IMM, reg::TYPE, 0, 0, 0xffff),
        load(reg::ACCESS, CTX_ACCESS_TYPE),
        Insn::new(op::RSH32_IMM, reg::ACCESS, 0, 0, 16),
        load(reg::MAJOR, CTX_MAJOR),
        load(reg::MINOR, CTX_MINOR),
    ]
}

/// The tests of one rule, each jumping past the rule when it fails, then `return 1`.
fn rule_block(rule: &DeviceRule) -> Vec<Insn> {
    // Tests as (register, value, whether it needs the scratch copy of the access).
    let mut tests: Vec<(u8, u32, bool)> = Vec::new();
    match rule.kind {
        DeviceKind::Any => {}
        kind => tests.push((reg::TYPE, kind.bpf_type(), false)),
    }
    if rule.access != Access::ALL {
        // Requested bits outside the rule's: (access & !allowed) != 0.
        tests.push((reg::SCRATCH, u32::from((!rule.access.bits()) & Access::ALL.bits()), true));
    }
    if let Some(major) = rule.major {
        tests.push((reg::MAJOR, major, false));
    }
    if let Some(minor) = rule.minor {
        tests.push((reg::MINOR, minor, false));
    }
    let length: usize = tests.iter().map(|(_, _, scratch)| if *scratch { 3 } else { 1 }).sum();
    let mut block = Vec::with_capacity(length + 2);
    for (register, value, scratch) in tests {
        if scratch {
            block.push(Insn::new(op::MOV32_REG, reg::SCRATCH, reg::ACCESS, 0, 0));
            block.push(Insn::new(op::AND32_IMM, reg::SCRATCH, 0, 0, value as i32));
            block.push(jne(reg::SCRATCH, 0, 0));
        } else {
            block.push(jne(register, value, 0));
        }
    }
    // Every jump lands on the first instruction after this block's `return 1`.
    let end = block.len() + 2;
    for (index, insn) in block.iter_mut().enumerate() {
        if insn.code == op::JNE_IMM {
            insn.off = (end - index - 1) as i16;
        }
    }
    block.extend(ret(1));
    block
}

/// The whole program: prologue, one block per rule, `return 0`. A rule that matches
/// every access (a privileged container's `a *:* rwm`) ends the program: the kernel's
/// verifier refuses instructions no path reaches.
pub fn build(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut program = prologue();
    for rule in rules {
        let block = rule_block(rule);
        let unconditional = block.len() == 2;
        program.extend(block);
        if unconditional {
            return program;
        }
    }
    program.extend(ret(0));
    program
}

/// The program as the bytes `BPF_PROG_LOAD` takes.
pub fn bytecode(program: &[Insn]) -> Vec<u8> {
    program.iter().flat_map(Insn::encode).collect()
}

//! Classic-BPF code generation for the seccomp filter (pure; no kernel involved).
//!
//! The program has a fixed head and a binary search:
//!
//! ```text
//! arch != AUDIT_ARCH_X86_64        -> kill the process
//! nr >= __X32_SYSCALL_BIT          -> EPERM   (x32 calls, and anything larger)
//! nr >  highest number in the table -> ENOSYS (calls newer than the policy)
//! binary search over runs of numbers with the same verdict -> the verdict
//! ```
//!
//! The table ([`Verdict`] per number, 0 up to the highest) is cut into runs of equal
//! verdicts; each tree node compares the number with the first of a run (`jge`), so a call
//! costs about log2(runs) comparisons. Argument tests sit in the leaf of their call.
//! Conditional jumps reach at most 255 instructions ahead; a node whose left subtree is
//! longer jumps through an unconditional `ja` (32-bit offset) instead.

use super::policy::{ArgTest, Cmp};
use super::SeccompError;

/// One classic-BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset when the condition holds.
    pub jt: u8,
    /// Jump offset when it does not.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

/// What the filter answers for one system call number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A fixed seccomp return value (`SECCOMP_RET_*`).
    Ret(u32),
    /// [`RET_ALLOW`] when any of the tests holds, [`RET_EPERM`] otherwise.
    Args(Vec<ArgTest>),
}

/// `AUDIT_ARCH_X86_64` from `<linux/audit.h>`: `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
pub const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

/// `__X32_SYSCALL_BIT`: x32 system call numbers are offset by this.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Longest program the kernel accepts (`BPF_MAXINSNS`).
pub const BPF_MAX_INSNS: usize = 4096;

/// `SECCOMP_RET_KILL_PROCESS`.
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `SECCOMP_RET_ERRNO`; the errno goes in the low 16 bits.
pub const RET_ERRNO: u32 = 0x0005_0000;
/// `SECCOMP_RET_ALLOW`.
pub const RET_ALLOW: u32 = 0x7fff_0000;
/// Fail with `EPERM`: Docker's `defaultErrnoRet`.
pub const RET_EPERM: u32 = RET_ERRNO | libc::EPERM as u32;
/// Fail with `ENOSYS`, as the kernel does for a number it does not know.
pub const RET_ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

/// Offsets in `struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }`; x86_64 is
/// little-endian, so an argument's lower half is at the start of its 8 bytes.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARGS: u32 = 16;

/// Opcodes (`<linux/bpf_common.h>`).
pub(super) const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
pub(super) const AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
pub(super) const JA: u16 = 0x05; // BPF_JMP | BPF_JA
pub(super) const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
pub(super) const JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
pub(super) const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
pub(super) const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// Builds the program for `table` (verdict of number n at index n; numbers past the end get
/// `ENOSYS`).
pub fn program(table: &[Verdict]) -> Result<Vec<Insn>, SeccompError> {
    let highest = table.len().checked_sub(1).ok_or(SeccompError::EmptyPolicy)?;
    let highest = u32::try_from(highest).map_err(|_| SeccompError::TooLong { len: highest })?;
    let mut prog = vec![
        stmt(LD_W_ABS, DATA_ARCH),
        jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, DATA_NR),
        jump(JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(RET_K, RET_EPERM),
        jump(JGT_K, highest, 0, 1),
        stmt(RET_K, RET_ENOSYS),
    ];
    prog.extend(tree(&runs(table))?);
    if prog.len() > BPF_MAX_INSNS {
        return Err(SeccompError::TooLong { len: prog.len() });
    }
    Ok(prog)
}

/// A run of consecutive numbers, from `start`, with one verdict.
struct Run<'a> {
    start: u32,
    verdict: &'a Verdict,
}

/// Cuts `table` into runs of equal [`Verdict::Ret`]s; every [`Verdict::Args`] is its own run.
fn runs(table: &[Verdict]) -> Vec<Run<'_>> {
    let mut out: Vec<Run<'_>> = Vec::new();
    for (nr, verdict) in (0u32..).zip(table) {
        let joins = matches!(
            (out.last(), verdict),
            (Some(Run { verdict: Verdict::Ret(prev), .. }), Verdict::Ret(this)) if prev == this
        );
        if !joins {
            out.push(Run { start: nr, verdict });
        }
    }
    out
}

/// The search over `runs` (non-empty; the number is in the accumulator and lies within them).
fn tree(runs: &[Run<'_>]) -> Result<Vec<Insn>, SeccompError> {
    let (left_runs, right_runs) = runs.split_at(runs.len() / 2);
    let Some(first_right) = right_runs.first() else {
        return Err(SeccompError::EmptyPolicy);
    };
    if left_runs.is_empty() {
        return leaf(first_right.verdict);
    }
    let left = tree(left_runs)?;
    let right = tree(right_runs)?;
    let mut out = Vec::with_capacity(left.len() + right.len() + 2);
    match u8::try_from(left.len()) {
        Ok(skip) => out.push(jump(JGE_K, first_right.start, skip, 0)),
        Err(_) => {
            let skip = u32::try_from(left.len()).map_err(|_| SeccompError::TooLong { len: left.len() })?;
            out.push(jump(JGE_K, first_right.start, 0, 1));
            out.push(stmt(JA, skip));
        }
    }
    out.extend(left);
    out.extend(right);
    Ok(out)
}

/// The code that ends in the verdict of one run.
fn leaf(verdict: &Verdict) -> Result<Vec<Insn>, SeccompError> {
    match verdict {
        Verdict::Ret(ret) => Ok(vec![stmt(RET_K, *ret)]),
        Verdict::Args(tests) => arg_tests(tests),
    }
}

/// Each test loads its argument and jumps to the final `ret ALLOW` when it holds; falling
/// through all of them reaches `ret EPERM`.
fn arg_tests(tests: &[ArgTest]) -> Result<Vec<Insn>, SeccompError> {
    let mut out = Vec::new();
    let mut to_allow = Vec::new();
    for test in tests {
        if test.index > 5 {
            return Err(SeccompError::BadArgIndex { index: test.index });
        }
        out.push(stmt(LD_W_ABS, DATA_ARGS + 8 * u32::from(test.index)));
        let (code, k, allow_on_true) = match test.cmp {
            Cmp::Eq(v) => (JEQ_K, v, true),
            Cmp::Gt(v) => (JGT_K, v, true),
            Cmp::Lt(v) => (JGE_K, v, false),
            Cmp::MaskedEq { mask, value } => {
                out.push(stmt(AND_K, mask));
                (JEQ_K, value, true)
            }
        };
        to_allow.push((out.len(), allow_on_true));
        out.push(jump(code, k, 0, 0));
    }
    out.push(stmt(RET_K, RET_EPERM));
    let allow_at = out.len();
    out.push(stmt(RET_K, RET_ALLOW));
    for (at, allow_on_true) in to_allow {
        let offset = u8::try_from(allow_at - at - 1).map_err(|_| SeccompError::TooManyArgTests { count: tests.len() })?;
        let insn = &mut out[at];
        if allow_on_true {
            insn.jt = offset;
        } else {
            insn.jf = offset;
        }
    }
    Ok(out)
}

/// An instruction without jump offsets.
const fn stmt(code: u16, k: u32) -> Insn {
    Insn { code, jt: 0, jf: 0, k }
}

/// A conditional jump.
const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

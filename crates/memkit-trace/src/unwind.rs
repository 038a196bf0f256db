//! Stack capture on every allocation: DWARF call frame information with a
//! rule cache, so that programs built without frame pointers (Debian's own
//! binaries, glibc) unwind as well as those with them.
//!
//! On x86_64 nearly every frame is described by three facts: the CFA is
//! `rsp + n` or `rbp + n`, the return address sits at `CFA - 8`, and the
//! caller's `rbp` is either unchanged or saved at `CFA + m`. The first time a
//! pc is seen its rule is computed from `.eh_frame` (found through glibc's
//! lock-free `_dl_find_object`, parsed with gimli) and packed into one word
//! of a direct-mapped cache; every later unwind through that pc costs a few
//! loads. Nothing here takes a lock; the only allocation is gimli's unwind
//! context on a cache miss, from whatever global allocator the final library
//! has (memkit's core for libmemkit_check.so, never its checked front-end).
//!
//! Every stack read is bounds-checked against the calling thread's stack, so
//! a wrong rule (a corrupt table, a code page reused after `dlclose`) can end
//! a stack early but never fault.

use core::sync::atomic::{AtomicU64, Ordering::*};

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, NativeEndian, RegisterRule, UnwindContext,
    UnwindSection, X86_64,
};

use crate::modules;

/// Deepest stack recorded.
pub const MAX_FRAMES: usize = 64;

const CACHE_BITS: u32 = 16;
const CACHE_LEN: usize = 1 << CACHE_BITS;

/// One cache slot: the pc it describes and its packed rule. A writer
/// clears the key, stores the rule, then the key; a reader checks the key
/// before and after reading the rule.
struct Entry {
    key: AtomicU64,
    rule: AtomicU64,
}

static CACHE: [Entry; CACHE_LEN] = [const {
    Entry {
        key: AtomicU64::new(0),
        rule: AtomicU64::new(0),
    }
}; CACHE_LEN];

/// A frame's rule, packed into 64 bits:
/// bits 0-1 kind, 2 CFA register (1 = rbp), 3 rbp saved, 4-27 CFA offset
/// (signed), 28-43 rbp offset from the CFA (signed), 48-63 module index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rule(u64);

pub(crate) const KIND_STEP: u64 = 1;
/// The outermost frame, or one we cannot describe: the stack ends here.
const KIND_STOP: u64 = 2;

impl Rule {
    fn step(cfa_rbp: bool, cfa_off: i64, rbp_off: Option<i64>, module: u16) -> Option<Self> {
        if !(-(1 << 23)..(1 << 23)).contains(&cfa_off) {
            return None;
        }
        let (saved, ro) = match rbp_off {
            Some(o) if (-(1 << 15)..(1 << 15)).contains(&o) => (1u64, o),
            Some(_) => return None,
            None => (0, 0),
        };
        Some(Rule(
            KIND_STEP
                | (cfa_rbp as u64) << 2
                | saved << 3
                | ((cfa_off as u64) & 0xff_ffff) << 4
                | ((ro as u64) & 0xffff) << 28
                | (module as u64) << 48,
        ))
    }
    fn stop(module: u16) -> Self {
        Rule(KIND_STOP | (module as u64) << 48)
    }
    pub(crate) fn kind(self) -> u64 {
        self.0 & 3
    }
    pub(crate) fn module(self) -> u16 {
        (self.0 >> 48) as u16
    }
    pub(crate) fn cfa_rbp(self) -> bool {
        self.0 & 4 != 0
    }
    pub(crate) fn rbp_saved(self) -> bool {
        self.0 & 8 != 0
    }
    pub(crate) fn cfa_off(self) -> i64 {
        (((self.0 >> 4) & 0xff_ffff) as i64) << 40 >> 40
    }
    pub(crate) fn rbp_off(self) -> i64 {
        (((self.0 >> 28) & 0xffff) as i64) << 48 >> 48
    }
}

fn slot(pc: u64) -> &'static Entry {
    let h = pc.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - CACHE_BITS);
    &CACHE[h as usize]
}

#[inline]
fn cached(pc: u64) -> Option<Rule> {
    let e = slot(pc);
    if e.key.load(Acquire) != pc {
        return None;
    }
    let r = e.rule.load(Acquire);
    (e.key.load(Acquire) == pc && r != 0).then_some(Rule(r))
}

fn remember(pc: u64, r: Rule) {
    let e = slot(pc);
    e.key.store(0, Release);
    e.rule.store(r.0, Release);
    e.key.store(pc, Release);
}

/// Bumped whenever cached rules or module offsets may have gone stale
/// (`dlclose`): per-thread records of earlier walks ([`crate::recent`])
/// made under an older generation are not reused.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The current generation of the rules and modules.
#[inline(always)]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Acquire)
}

/// Marks every earlier walk as stale.
pub(crate) fn new_generation() {
    GENERATION.fetch_add(1, AcqRel);
}

/// Forgets every cached rule (after `dlclose`: code addresses may be reused).
pub fn forget_rules() {
    crate::memo::invalidate();
    new_generation();
    for e in CACHE.iter() {
        e.key.store(0, Release);
    }
    new_generation();
}

/// The rule for `pc` (a return address minus one, or the capture point).
#[inline(always)]
pub(crate) fn rule_for(pc: u64) -> Rule {
    if let Some(r) = cached(pc) {
        return r;
    }
    rule_slow(pc)
}

#[cold]
#[inline(never)]
fn rule_slow(pc: u64) -> Rule {
    let r = compute(pc as usize);
    remember(pc, r);
    r
}

/// Reads the frame description for `pc` from its object's `.eh_frame`.
fn compute(pc: usize) -> Rule {
    let Some(obj) = modules::find_object(pc) else {
        return Rule::stop(0);
    };
    let module = modules::index_of(&obj).unwrap_or(0);
    if obj.eh_frame.is_null() {
        return Rule::stop(module);
    }
    describe(pc, &obj, module).unwrap_or(Rule::stop(module))
}

fn describe(pc: usize, obj: &modules::DlFindObject, module: u16) -> Option<Rule> {
    let end = obj.map_end as usize;
    let hdr_at = obj.eh_frame as usize;
    if hdr_at >= end {
        return None;
    }
    // SAFETY: .eh_frame_hdr lies in the object's mapping, which is mapped
    // from map_start to map_end (gaps between segments are reserved); gimli
    // reads only the structures the header and tables point at.
    let hdr_bytes = unsafe { core::slice::from_raw_parts(hdr_at as *const u8, end - hdr_at) };
    let bases = BaseAddresses::default()
        .set_eh_frame_hdr(hdr_at as u64)
        .set_text(obj.map_start as u64);
    let hdr = EhFrameHdr::new(hdr_bytes, NativeEndian)
        .parse(&bases, 8)
        .ok()?;
    let frame_at = match hdr.eh_frame_ptr() {
        gimli::Pointer::Direct(a) => a as usize,
        gimli::Pointer::Indirect(_) => return None,
    };
    if frame_at < obj.map_start as usize || frame_at >= end {
        return None;
    }
    // SAFETY: as above, for .eh_frame.
    let frame_bytes = unsafe { core::slice::from_raw_parts(frame_at as *const u8, end - frame_at) };
    let bases = bases.set_eh_frame(frame_at as u64);
    let eh_frame = EhFrame::new(frame_bytes, NativeEndian);
    let table = hdr.table()?;
    let fde = table
        .fde_for_address(&eh_frame, &bases, pc as u64, EhFrame::cie_from_offset)
        .ok()?;
    let mut ctx = Box::new(UnwindContext::new());
    let row = fde
        .unwind_info_for_address(&eh_frame, &bases, &mut ctx, pc as u64)
        .ok()?;
    let (cfa_rbp, cfa_off) = match *row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RSP => {
            (false, offset)
        }
        CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RBP => {
            (true, offset)
        }
        _ => return None,
    };
    match row.register(X86_64::RA) {
        Some(RegisterRule::Offset(-8)) => {}
        // The outermost frame (_start, clone) leaves its return address undefined.
        _ => return Some(Rule::stop(module)),
    }
    let rbp = match row.register(X86_64::RBP) {
        None | Some(RegisterRule::Undefined | RegisterRule::SameValue) => None,
        Some(RegisterRule::Offset(o)) => Some(o),
        _ => return None,
    };
    Rule::step(cfa_rbp, cfa_off, rbp, module)
}

/// The registers an unwind starts from.
#[derive(Clone, Copy, Debug)]
pub struct Regs {
    pub pc: usize,
    pub sp: usize,
    pub bp: usize,
}

/// This very point of the caller (inlined into it): its pc, sp and rbp.
#[inline(always)]
pub fn here() -> Regs {
    let (pc, sp, bp): (usize, usize, usize);
    // SAFETY: reads three registers; touches no memory.
    unsafe {
        core::arch::asm!(
            "lea {pc}, [rip]",
            "mov {sp}, rsp",
            "mov {bp}, rbp",
            pc = out(reg) pc, sp = out(reg) sp, bp = out(reg) bp,
            options(nomem, nostack, preserves_flags),
        );
    }
    Regs { pc, sp, bp }
}

/// One recorded frame: module index in the top 16 bits, the offset of the
/// pc from the module's load bias below (a raw address for module 0).
pub type Frame = u64;

/// Makes a frame word.
pub fn frame(module: u16, offset: usize) -> Frame {
    (module as u64) << 48 | (offset as u64 & 0xffff_ffff_ffff)
}

/// Splits a frame word.
pub fn split(f: Frame) -> (u16, usize) {
    ((f >> 48) as u16, (f & 0xffff_ffff_ffff) as usize)
}

/// Where one frame's rule puts its caller: the CFA (the caller's `sp`; the
/// return address lies just below it) and the slot of the saved `rbp` (0
/// when `rbp` is unchanged). Both are checked against the stack
/// `[sp, stack_end)`.
#[derive(Clone, Copy)]
pub(crate) struct Step {
    pub cfa: usize,
    pub bp_at: usize,
}

/// The step of the frame at (`sp`, `bp`) under rule `r`: `None` where the
/// stack ends (the rule says so, or the rule points outside the stack).
#[inline(always)]
pub(crate) fn step(r: Rule, sp: usize, bp: usize, stack_end: usize) -> Option<Step> {
    if r.kind() != KIND_STEP {
        return None;
    }
    let base = if r.cfa_rbp() { bp } else { sp };
    let cfa = (base as i64).wrapping_add(r.cfa_off()) as usize;
    if cfa <= sp || cfa > stack_end || !cfa.is_multiple_of(8) || cfa < 8 {
        return None;
    }
    let mut bp_at = 0;
    if r.rbp_saved() {
        bp_at = (cfa as i64).wrapping_add(r.rbp_off()) as usize;
        if bp_at < sp || bp_at.wrapping_add(8) > stack_end || bp_at == 0 {
            return None;
        }
    }
    Some(Step { cfa, bp_at })
}

/// A pc's offset in its module (a raw address for module 0).
#[inline(always)]
pub(crate) fn offset_in(module: u16, pc: usize) -> usize {
    if module == 0 {
        pc
    } else {
        pc.wrapping_sub(modules::bias(module))
    }
}

/// Unwinds from `regs` into `out`, reading the stack only inside
/// `[regs.sp, stack_end)`. Frames whose module is `skip` are dropped from the
/// top of the stack except the last of them (the entry point the program
/// called, such as `malloc`). Returns the number of frames written.
pub fn capture(
    regs: Regs,
    stack_end: usize,
    skip: u16,
    out: &mut [core::mem::MaybeUninit<Frame>],
) -> usize {
    let mut n = 0;
    let (mut pc, mut sp, mut bp) = (regs.pc, regs.sp, regs.bp);
    let mut first = true;
    let mut in_skip = true;
    while n < out.len() {
        // A return address points after the call: look up the call itself.
        let lookup = if first { pc } else { pc.wrapping_sub(1) };
        let r = rule_for(lookup as u64);
        let module = r.module();
        let f = frame(module, offset_in(module, pc));
        if in_skip && module == skip && skip != 0 {
            out[0].write(f);
            n = 1;
        } else {
            in_skip = false;
            out[n].write(f);
            n += 1;
        }
        first = false;
        let Some(s) = step(r, sp, bp, stack_end) else {
            break;
        };
        // SAFETY: step checked sp < cfa <= stack_end: cfa - 8 is inside the stack.
        let ra = unsafe { *((s.cfa - 8) as *const usize) };
        if ra == 0 {
            break;
        }
        if s.bp_at != 0 {
            // SAFETY: step checked the slot against the stack.
            bp = unsafe { *(s.bp_at as *const usize) };
        }
        pc = ra;
        sp = s.cfa;
    }
    n
}

/// The `sp` of the first frame, walking from `regs` towards the callers
/// (the frame of `regs` itself never counts), whose pc lies in none of the
/// modules of `skip`; `None` when the walk ends first (a frame without
/// unwind rules, the stack's end, `max` frames).
pub fn first_sp_outside(regs: Regs, stack_end: usize, skip: &[u16], max: usize) -> Option<usize> {
    let (mut pc, mut sp, mut bp) = (regs.pc, regs.sp, regs.bp);
    for i in 0..max {
        // A return address points after the call: look up the call itself.
        let r = rule_for(if i == 0 { pc } else { pc.wrapping_sub(1) } as u64);
        if i > 0 && r.module() != 0 && !skip.contains(&r.module()) {
            return Some(sp);
        }
        let s = step(r, sp, bp, stack_end)?;
        // SAFETY: step checked sp < cfa <= stack_end: cfa - 8 is inside the stack.
        let ra = unsafe { *((s.cfa - 8) as *const usize) };
        if ra == 0 {
            return None;
        }
        if s.bp_at != 0 {
            // SAFETY: step checked the slot against the stack.
            bp = unsafe { *(s.bp_at as *const usize) };
        }
        pc = ra;
        sp = s.cfa;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_pack_and_unpack() {
        for &(rbp, cfa, saved, m) in &[
            (false, 8i64, None, 1u16),
            (true, 16, Some(-16i64), 4095),
            (false, -64, Some(-8), 7),
            (false, (1 << 23) - 8, Some((1 << 15) - 8), 2),
            (true, -(1 << 23), Some(-(1 << 15)), 3),
        ] {
            let r = Rule::step(rbp, cfa, saved, m).unwrap();
            assert_eq!(r.kind(), KIND_STEP);
            assert_eq!(r.cfa_rbp(), rbp);
            assert_eq!(r.cfa_off(), cfa);
            assert_eq!(r.rbp_saved(), saved.is_some());
            if let Some(s) = saved {
                assert_eq!(r.rbp_off(), s);
            }
            assert_eq!(r.module(), m);
        }
        assert!(Rule::step(false, 1 << 23, None, 1).is_none());
        assert!(Rule::step(false, 8, Some(1 << 15), 1).is_none());
    }

    #[test]
    fn frames_split() {
        let f = frame(17, 0x1234_5678);
        assert_eq!(split(f), (17, 0x1234_5678));
    }
}

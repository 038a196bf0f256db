//! A thread's last walk, kept so that the next capture from the same place
//! costs a few loads a frame instead of a rule lookup a frame and a depot
//! lookup.
//!
//! An unwind step is a function of the frame's registers (pc, sp, rbp), its
//! rule (a function of the pc, fixed within a [generation](crate::unwind))
//! and the stack words it reads (the return address, the saved rbp). So when
//! a new walk reaches a frame whose registers equal those of the same frame
//! of the last walk (same depth, same count of frames kept so far), the rest
//! of the last walk is the rest of this one *if* every stack word that walk
//! read still holds what it held: re-reading those words (one or two a
//! frame) and comparing is exact, not a guess. A loop that allocates from
//! one place matches from the first frame and gets the last stack's id
//! without touching the depot; a deep program (an interpreter) matches its
//! outer frames and walks only the inner ones.
//!
//! The record lives in the caller's thread-local storage: a front-end keeps
//! one per call family (allocations, frees) so that alternating calls do not
//! evict each other. A capture that finds the record in use (a signal
//! handler that allocates, interrupting a capture on the same thread) walks
//! without it.

use core::cell::Cell;
use core::sync::atomic::{compiler_fence, Ordering::SeqCst};

use crate::depot::{self, StackId};
use crate::unwind::{self, Frame, Regs};

/// Deepest capture that uses the record (`depth` above it walks without).
pub const RECENT_FRAMES: usize = 32;
/// Raw frames recorded (the front-end's own frames, dropped from the
/// stack, count here too).
const RAW: usize = RECENT_FRAMES + 4;

/// One frame of the walk: its registers, the slot its saved rbp was read
/// from (0: none), and in `kept` how many frames had been kept before it
/// (bit 31: still inside the skipped module's frames) and two flags.
#[derive(Clone, Copy, Default)]
struct RawFrame {
    pc: usize,
    sp: usize,
    bp: usize,
    bp_at: usize,
    kept: u32,
}

const IN_SKIP: u32 = 1 << 31;
/// The frame's step computed its CFA from rbp.
const USES_BP: u32 = 1 << 30;
/// The rest of the walk depends on the rbp this frame was entered with
/// (some frame from here on computes its CFA from rbp before any frame
/// reloads rbp from the stack). Where it does not, rbp is not compared: in
/// code built without frame pointers it holds whatever the function kept
/// there.
const BP_MATTERS: u32 = 1 << 29;
const FLAGS: u32 = USES_BP | BP_MATTERS;

/// A thread's last walk. All zeros is a valid empty record, so it can sit
/// in zero-initialised static TLS.
pub struct RecentStack {
    busy: Cell<bool>,
    /// Raw frames walked, frames kept, and the depth asked for.
    raw: Cell<u32>,
    kept: Cell<u32>,
    depth: Cell<u32>,
    skip: Cell<u16>,
    /// The depot id of the kept frames (0: not interned).
    id: Cell<StackId>,
    generation: Cell<u64>,
    stack_end: Cell<usize>,
    /// Where the last frame's return address was read as 0 (0: the walk
    /// ended without reading one).
    end_at: Cell<usize>,
    frames: [Cell<RawFrame>; RAW],
    out: [Cell<Frame>; RECENT_FRAMES],
}

impl RecentStack {
    pub const fn new() -> Self {
        RecentStack {
            busy: Cell::new(false),
            raw: Cell::new(0),
            kept: Cell::new(0),
            depth: Cell::new(0),
            skip: Cell::new(0),
            id: Cell::new(0),
            generation: Cell::new(0),
            stack_end: Cell::new(0),
            end_at: Cell::new(0),
            frames: [const {
                Cell::new(RawFrame {
                    pc: 0,
                    sp: 0,
                    bp: 0,
                    bp_at: 0,
                    kept: 0,
                })
            }; RAW],
            out: [const { Cell::new(0) }; RECENT_FRAMES],
        }
    }
}

impl Default for RecentStack {
    fn default() -> Self {
        Self::new()
    }
}

/// [`crate::capture_interned`], reusing what `recent` (the calling thread's
/// own record, never shared with another thread) holds of the last walk.
/// The same stack id as `capture_interned` would give, for the same frames.
pub fn capture_interned_recent(
    regs: Regs,
    stack_end: usize,
    skip: u16,
    depth: usize,
    recent: &RecentStack,
) -> StackId {
    let depth = depth.min(unwind::MAX_FRAMES);
    if depth > RECENT_FRAMES || recent.busy.get() {
        return crate::capture_interned(regs, stack_end, skip, depth);
    }
    recent.busy.set(true);
    compiler_fence(SeqCst);
    let reusable = recent.generation.get() == unwind::generation()
        && recent.stack_end.get() == stack_end
        && recent.depth.get() == depth as u32
        && recent.skip.get() == skip
        && recent.raw.get() != 0;
    let id = match walk(regs, stack_end, skip, depth, recent, reusable) {
        Some(id) => id,
        // The old record did not hold after all: walk afresh.
        None => walk(regs, stack_end, skip, depth, recent, false).unwrap_or_else(|| {
            recent.raw.set(0);
            crate::capture_interned(regs, stack_end, skip, depth)
        }),
    };
    compiler_fence(SeqCst);
    recent.busy.set(false);
    id
}

/// Walks from `regs`, writing the record as it goes; from the first frame
/// that matches the old record (when `reuse`), verifies the rest of it
/// instead. `None`: a verification failed (the record is half rewritten:
/// walk again without reuse), or the walk was too deep to record.
fn walk(
    regs: Regs,
    stack_end: usize,
    skip: u16,
    depth: usize,
    rec: &RecentStack,
    reuse: bool,
) -> Option<StackId> {
    let old_raw = if reuse { rec.raw.get() as usize } else { 0 };
    let (mut pc, mut sp, mut bp) = (regs.pc, regs.sp, regs.bp);
    let mut kept = 0usize;
    let mut in_skip = true;
    let mut j = 0usize;
    loop {
        let tag = kept as u32 | if in_skip { IN_SKIP } else { 0 };
        if j < old_raw {
            let f = rec.frames[j].get();
            if f.pc == pc
                && f.sp == sp
                && f.kept & !FLAGS == tag
                && (f.kept & BP_MATTERS == 0 || f.bp == bp)
            {
                mark_bp(rec, j);
                return verify(rec, j, old_raw, bp);
            }
        }
        if j >= RAW {
            return None;
        }
        // A return address points after the call: look up the call itself.
        let lookup = if j == 0 { pc } else { pc.wrapping_sub(1) };
        let r = unwind::rule_for(lookup as u64);
        let module = r.module();
        let f = unwind::frame(module, unwind::offset_in(module, pc));
        let mut raw = RawFrame {
            pc,
            sp,
            bp,
            bp_at: 0,
            kept: tag,
        };
        if in_skip && module == skip && skip != 0 {
            rec.out[0].set(f);
            kept = 1;
        } else {
            in_skip = false;
            rec.out[kept].set(f);
            kept += 1;
        }
        j += 1;
        let mut end_at = 0;
        let next = if kept < depth {
            if r.cfa_rbp() {
                raw.kept |= USES_BP;
            }
            unwind::step(r, sp, bp, stack_end)
        } else {
            None
        };
        let next = next.and_then(|s| {
            // SAFETY: step checked sp < cfa <= stack_end.
            let ra = unsafe { *((s.cfa - 8) as *const usize) };
            if ra == 0 {
                end_at = s.cfa - 8;
                return None;
            }
            Some((s, ra))
        });
        let Some((s, ra)) = next else {
            rec.frames[j - 1].set(raw);
            rec.raw.set(j as u32);
            rec.kept.set(kept as u32);
            rec.end_at.set(end_at);
            rec.depth.set(depth as u32);
            rec.skip.set(skip);
            rec.stack_end.set(stack_end);
            rec.generation.set(unwind::generation());
            mark_bp(rec, j);
            return Some(intern(rec));
        };
        if s.bp_at != 0 {
            raw.bp_at = s.bp_at;
            // SAFETY: step checked the slot against the stack.
            bp = unsafe { *(s.bp_at as *const usize) };
        }
        rec.frames[j - 1].set(raw);
        pc = ra;
        sp = s.cfa;
    }
}

/// Sets [`BP_MATTERS`] on raw frames `[0, upto)` from their steps, given
/// the flag of frame `upto` (none past the walk's end).
fn mark_bp(rec: &RecentStack, upto: usize) {
    let mut matters = upto < rec.raw.get() as usize
        && rec.frames[upto].get().kept & BP_MATTERS != 0;
    for i in (0..upto).rev() {
        let mut f = rec.frames[i].get();
        matters = f.kept & USES_BP != 0 || (f.bp_at == 0 && matters);
        f.kept = if matters { f.kept | BP_MATTERS } else { f.kept & !BP_MATTERS };
        rec.frames[i].set(f);
    }
}

/// The new walk reached raw frame `j` of the record with the same pc and
/// sp (and rbp, where it matters; the walk's is `bp`): checks every stack
/// word the record's walk read from there on.
fn verify(rec: &RecentStack, j: usize, raw: usize, mut bp: usize) -> Option<StackId> {
    for i in j..raw - 1 {
        // SAFETY: the capture holds `busy`: nothing writes the record.
        let (f, next) = unsafe { (&*rec.frames[i].as_ptr(), &*rec.frames[i + 1].as_ptr()) };
        // SAFETY: the recorded walk read these words, after checking them
        // against this thread's stack (same stack end, same registers
        // where they matter).
        unsafe {
            if *((next.sp - 8) as *const usize) != next.pc {
                return None;
            }
            if f.bp_at != 0 {
                bp = *(f.bp_at as *const usize);
            }
        }
        if next.kept & BP_MATTERS != 0 && bp != next.bp {
            return None;
        }
    }
    let end_at = rec.end_at.get();
    // SAFETY: as above.
    if end_at != 0 && unsafe { *(end_at as *const usize) } != 0 {
        return None;
    }
    if j == 0 && rec.id.get() != 0 {
        return Some(rec.id.get());
    }
    Some(intern(rec))
}

fn intern(rec: &RecentStack) -> StackId {
    let n = rec.kept.get() as usize;
    let cells = &rec.out[..n];
    // SAFETY: Cell<Frame> has Frame's layout; nothing writes the record
    // while the depot reads it (the capture holds `busy`).
    let frames = unsafe { &*(cells as *const [core::cell::Cell<Frame>] as *const [Frame]) };
    let id = depot::intern(frames);
    rec.id.set(id);
    id
}

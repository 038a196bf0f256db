//! Capture with a memo of the thread's previous stack: what
//! [`capture_interned`](crate::capture_interned) returns, for a fraction of
//! the cost when consecutive stacks of a thread share their outer frames
//! (they nearly always do: a loop allocating, an interpreter's frames).
//!
//! The memo keeps, for each frame of the thread's previous stack, the
//! registers the unwind had there (pc, sp, rbp) and which stack words its
//! step read (the return address at `CFA - 8`, the saved rbp). An unwind is
//! a function of its start registers, the rules of the pcs it meets and the
//! words it reads. So once a new unwind reaches a frame with the registers
//! the memo recorded there, the memo's next frame is the new stack's next
//! frame as long as the words that step read still hold the values
//! recorded: one load and a compare per frame instead of a rule lookup and
//! the arithmetic. Where a word differs (the frame returned and another call
//! took its place) the unwind goes on from that frame the usual way.
//! A stack identical to the previous one (every word unchanged) keeps its
//! depot id without being hashed again.
//!
//! rbp is only compared where it matters: where some frame from there on
//! uses it as its CFA base before a frame restores it from the stack
//! (without frame pointers rbp is an ordinary register with any value).
//!
//! Results are exactly those of `capture_interned`; rules forgotten after a
//! `dlclose` ([`crate::unwind::forget_rules`]) void every memo.
//! The memo belongs to one thread (the caller keeps one per thread) and is
//! touched by nothing else; it neither allocates nor locks.

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

use crate::depot::{self, StackId};
use crate::modules;
use crate::unwind::{self, frame, Frame, Regs, KIND_STEP};

/// Unwind steps a memo holds: the deepest output plus the front-end's own
/// frames dropped from the top of a stack.
const STEPS: usize = unwind::MAX_FRAMES + 16;

/// Bumped when cached rules are forgotten: a memo of another generation is
/// empty.
static GENERATION: AtomicU32 = AtomicU32::new(1);

/// Voids every memo (their frames may name unloaded code).
pub(crate) fn invalidate() {
    GENERATION.fetch_add(1, Relaxed);
}

/// One frame of a recorded unwind.
#[derive(Clone, Copy)]
struct Step {
    /// The frame's pc (the capture point for step 0, else a return address),
    /// stack pointer (the CFA of the frame below) and rbp.
    pc: usize,
    sp: usize,
    bp: usize,
    frame: Frame,
    /// Where this frame's step read the caller's rbp (0: rbp unchanged).
    bp_at: usize,
    /// This frame's CFA is rbp-based.
    cfa_rbp: bool,
    /// The rbp this frame starts with decides the rest of the unwind.
    need_bp: bool,
}

/// How a recorded unwind ended after its last step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// The output was full (or the memo): a longer stack may go on.
    Full,
    /// The last frame's rule or bounds ended it (the same registers end the
    /// same way).
    Stop,
    /// The return address at this address was 0.
    ZeroRa(usize),
}

/// An [`End`] as plain integers (so that all-zero is `Full`).
#[derive(Clone, Copy)]
struct EndWord {
    kind: u8,
    at: usize,
}

impl EndWord {
    fn of(e: End) -> Self {
        match e {
            End::Full => EndWord { kind: 0, at: 0 },
            End::Stop => EndWord { kind: 1, at: 0 },
            End::ZeroRa(at) => EndWord { kind: 2, at },
        }
    }
    fn get(self) -> End {
        match self.kind {
            1 => End::Stop,
            2 => End::ZeroRa(self.at),
            _ => End::Full,
        }
    }
}

/// One thread's memo. All-zero bytes are a valid, empty memo (so a caller
/// may allocate it zeroed).
pub struct Memo {
    generation: u32,
    own: u16,
    depth: u32,
    stack_end: usize,
    /// Steps of the recorded unwind, in `steps[cur]`.
    n: usize,
    cur: usize,
    end: EndWord,
    /// The depot id of the recorded stack.
    id: StackId,
    steps: [[Step; STEPS]; 2],
}

/// Bytes a memo takes (for the overhead figures).
pub const MEMO_BYTES: usize = core::mem::size_of::<Memo>();

/// What the step of one frame found.
enum Next {
    /// The caller's pc, sp, rbp, and where rbp was read (0: unchanged).
    Frame(usize, usize, usize, usize),
    End(End),
}

/// The frame word at `pc` (`first`: the capture point, else a return
/// address), whether its CFA is rbp-based, and its step: exactly
/// `unwind::capture`'s loop body.
#[inline(always)]
fn full_step(pc: usize, sp: usize, bp: usize, first: bool, stack_end: usize) -> (Frame, bool, Next) {
    let lookup = if first { pc } else { pc.wrapping_sub(1) };
    let r = unwind::rule_for(lookup as u64);
    let module = r.module();
    let offset = if module == 0 {
        pc
    } else {
        pc.wrapping_sub(modules::bias(module))
    };
    let f = frame(module, offset);
    if r.kind() != KIND_STEP {
        return (f, false, Next::End(End::Stop));
    }
    let cfa_rbp = r.cfa_rbp();
    let base = if cfa_rbp { bp } else { sp };
    let cfa = (base as i64).wrapping_add(r.cfa_off()) as usize;
    if cfa <= sp || cfa > stack_end || !cfa.is_multiple_of(8) || cfa < 8 {
        return (f, cfa_rbp, Next::End(End::Stop));
    }
    // SAFETY: sp < cfa <= stack_end, so cfa - 8 is inside the stack.
    let ra = unsafe { *((cfa - 8) as *const usize) };
    let (mut new_bp, mut bp_at) = (bp, 0);
    if r.rbp_saved() {
        let at = (cfa as i64).wrapping_add(r.rbp_off()) as usize;
        if at < sp || at + 8 > stack_end {
            return (f, cfa_rbp, Next::End(End::Stop));
        }
        // SAFETY: bounds-checked against the stack just above.
        new_bp = unsafe { *(at as *const usize) };
        bp_at = at;
    }
    if ra == 0 {
        return (f, cfa_rbp, Next::End(End::ZeroRa(cfa - 8)));
    }
    (f, cfa_rbp, Next::Frame(ra, cfa, new_bp, bp_at))
}

/// Reads a stack word the memo recorded.
///
/// # Safety
/// `at` lies in the calling thread's stack between the current stack
/// pointer and the stack's end (true of every address a memo of this
/// thread recorded from the same start sp or above it).
#[inline(always)]
unsafe fn word(at: usize) -> usize {
    // SAFETY: the caller's condition.
    unsafe { core::ptr::read_volatile(at as *const usize) }
}

impl Memo {
    /// Whether the recorded stack is the stack at `regs` now.
    #[inline(always)]
    fn same_stack(&self, regs: Regs) -> bool {
        let t = &self.steps[self.cur];
        let n = self.n;
        if n == 0 {
            return false;
        }
        let s0 = &t[0];
        if s0.pc != regs.pc || s0.sp != regs.sp || (s0.need_bp && s0.bp != regs.bp) {
            return false;
        }
        for k in 0..n - 1 {
            let (s, next) = (&t[k], &t[k + 1]);
            // SAFETY: recorded from this very start sp, below the stack end
            // (same thread, same stack_end: the memo's key).
            unsafe {
                if word(next.sp - 8) != next.pc || (s.bp_at != 0 && word(s.bp_at) != next.bp) {
                    return false;
                }
            }
        }
        match self.end.get() {
            // SAFETY: as above.
            End::ZeroRa(at) => unsafe { word(at) == 0 },
            End::Full | End::Stop => true,
        }
    }
}

/// [`crate::capture_interned`] with the calling thread's `memo`.
#[inline(always)]
pub fn capture_interned(
    regs: Regs,
    stack_end: usize,
    own: u16,
    depth: usize,
    memo: &mut Memo,
) -> StackId {
    let depth = depth.clamp(1, unwind::MAX_FRAMES);
    let generation = GENERATION.load(Relaxed);
    if memo.generation != generation
        || memo.stack_end != stack_end
        || memo.own != own
        || memo.depth != depth as u32
    {
        memo.generation = generation;
        memo.stack_end = stack_end;
        memo.own = own;
        memo.depth = depth as u32;
        memo.n = 0;
    } else if memo.same_stack(regs) {
        return memo.id;
    }
    capture_slow(regs, stack_end, own, depth, memo)
}

#[inline(never)]
fn capture_slow(regs: Regs, stack_end: usize, own: u16, depth: usize, memo: &mut Memo) -> StackId {
    let (cur, n, trail_end) = (memo.cur, memo.n, memo.end.get());
    let [a, b] = &mut memo.steps;
    let (trail, out) = if cur == 0 { (&a[..n], b) } else { (&b[..n], a) };

    let (mut pc, mut sp, mut bp) = (regs.pc, regs.sp, regs.bp);
    // Steps written; trail cursor; the own frames dropped from the top
    // (as unwind::capture: all but the last of them).
    let (mut i, mut j) = (0usize, 0usize);
    let mut skipped = 0usize;
    let mut in_skip = own != 0;
    let end;
    // Records step i with frame `f`; true when the output is full.
    let mut push = |i: usize, s: Step, skipped: &mut usize, in_skip: &mut bool| -> bool {
        out[i] = s;
        if *in_skip && (s.frame >> 48) as u16 == own {
            *skipped = i;
        } else {
            *in_skip = false;
        }
        i + 1 - *skipped >= depth
    };
    'unwind: loop {
        if i == STEPS {
            end = End::Full;
            break;
        }
        {
            while j < n && trail[j].sp < sp {
                j += 1;
            }
            // Follow the trail while its words are unchanged; where one
            // changed, this frame is stepped anew below.
            while j < n
                && (i == 0) == (j == 0)
                && trail[j].pc == pc
                && trail[j].sp == sp
                && (!trail[j].need_bp || trail[j].bp == bp)
            {
                let s = trail[j];
                let next = if j + 1 < n {
                    let nx = &trail[j + 1];
                    // SAFETY: the trail was recorded on this thread's stack
                    // with the same stack end, and the frames read lie at or
                    // above this frame's sp, inside the stack.
                    let ra_ok = unsafe { word(nx.sp - 8) } == nx.pc;
                    // SAFETY: as above.
                    let new_bp = if s.bp_at != 0 { unsafe { word(s.bp_at) } } else { bp };
                    if !ra_ok || (s.bp_at != 0 && new_bp != nx.bp) {
                        None
                    } else {
                        Some(Next::Frame(nx.pc, nx.sp, new_bp, s.bp_at))
                    }
                } else {
                    match trail_end {
                        End::Stop => Some(Next::End(End::Stop)),
                        // SAFETY: as above.
                        End::ZeroRa(at) if unsafe { word(at) } == 0 => {
                            Some(Next::End(End::ZeroRa(at)))
                        }
                        _ => None,
                    }
                };
                let Some(next) = next else {
                    break;
                };
                let full = push(i, Step { bp, ..s }, &mut skipped, &mut in_skip);
                i += 1;
                if full {
                    end = End::Full;
                    break 'unwind;
                }
                match next {
                    Next::Frame(npc, nsp, nbp, _) => {
                        (pc, sp, bp) = (npc, nsp, nbp);
                        j += 1;
                        if i == STEPS {
                            end = End::Full;
                            break 'unwind;
                        }
                    }
                    Next::End(e) => {
                        end = e;
                        break 'unwind;
                    }
                }
            }
        }
        let (f, cfa_rbp, next) = full_step(pc, sp, bp, i == 0, stack_end);
        let bp_at = match next {
            Next::Frame(_, _, _, at) => at,
            Next::End(_) => 0,
        };
        let s = Step {
            pc,
            sp,
            bp,
            frame: f,
            bp_at,
            cfa_rbp,
            need_bp: false,
        };
        let full = push(i, s, &mut skipped, &mut in_skip);
        i += 1;
        if full {
            end = End::Full;
            break;
        }
        match next {
            Next::Frame(npc, nsp, nbp, _) => {
                (pc, sp, bp) = (npc, nsp, nbp);
            }
            Next::End(e) => {
                end = e;
                break;
            }
        }
    }
    // Which frames depend on the rbp they start with: those whose CFA is
    // rbp-based, and those that pass it on unchanged to one that depends.
    let mut need = false;
    for s in out[..i].iter_mut().rev() {
        need = s.cfa_rbp || (s.bp_at == 0 && need);
        s.need_bp = need;
    }
    let mut frames = [0 as Frame; unwind::MAX_FRAMES];
    let m = i - skipped;
    for (d, s) in frames.iter_mut().zip(&out[skipped..i]) {
        *d = s.frame;
    }
    let id = depot::intern(&frames[..m]);
    memo.cur = 1 - cur;
    memo.n = i;
    memo.end = EndWord::of(end);
    memo.id = id;
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stacks of every shape a memo meets: deeper and shallower than the
    /// previous, the same pc at the same sp reached from another caller,
    /// identical repeats.
    #[inline(never)]
    fn leaf(memo: &mut Memo, end: usize, depth: usize, checked: &mut usize) {
        let regs = unwind::here();
        let with = capture_interned(regs, end, 0, depth, memo);
        let plain = crate::capture_interned(regs, end, 0, depth);
        assert_eq!(depot::frames(with), depot::frames(plain));
        assert_ne!(with, 0);
        *checked += 1;
    }

    #[inline(never)]
    fn a(memo: &mut Memo, end: usize, n: u32, path: u64, depth: usize, checked: &mut usize) {
        if n == 0 {
            leaf(memo, end, depth, checked);
            leaf(memo, end, depth, checked);
        } else if path & 1 == 0 {
            a(memo, end, n - 1, path >> 1, depth, checked);
        } else {
            b(memo, end, n - 1, path >> 1, depth, checked);
        }
        core::hint::black_box(n);
    }

    #[inline(never)]
    fn b(memo: &mut Memo, end: usize, n: u32, path: u64, depth: usize, checked: &mut usize) {
        let pad = core::hint::black_box([n as u8; 24]);
        if n == 0 {
            leaf(memo, end, depth, checked);
        } else if path & 1 == 0 {
            a(memo, end, n - 1, path >> 1, depth, checked);
        } else {
            b(memo, end, n - 1, path >> 1, depth, checked);
        }
        core::hint::black_box(pad);
    }

    #[test]
    fn same_frames_as_a_plain_capture() {
        let end = crate::thread::stack_end(
            unwind::here().sp,
            &core::cell::Cell::new(0),
            &core::cell::Cell::new(0),
        );
        let mut memo: Box<Memo> = unsafe_zeroed();
        let mut checked = 0;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..400 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 12) as u32;
            let depth = if round % 5 == 0 { 1 + (x >> 20) as usize % 8 } else { 64 };
            a(&mut memo, end, n, x >> 8, depth, &mut checked);
            if round % 50 == 0 {
                invalidate();
            }
        }
        assert!(checked >= 400);
    }

    fn unsafe_zeroed() -> Box<Memo> {
        let layout = std::alloc::Layout::new::<Memo>();
        // SAFETY: a non-zero-sized layout; an all-zero Memo is valid.
        unsafe { Box::from_raw(std::alloc::alloc_zeroed(layout) as *mut Memo) }
    }
}

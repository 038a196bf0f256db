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

/// One frame of a recorded unwind (its frame word is kept apart, in
/// [`Memo::frames`], so that the stack is a slice for the depot).
#[derive(Clone, Copy)]
struct Step {
    /// The frame's pc (the capture point for step 0, else a return address),
    /// stack pointer (the CFA of the frame below) and rbp.
    pc: usize,
    sp: usize,
    bp: usize,
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
    /// Steps of the recorded unwind.
    n: usize,
    /// The own frames dropped from its top: its stack is
    /// `frames[skipped..n]`.
    skipped: usize,
    end: EndWord,
    /// The depot id of the recorded stack, and its serial.
    id: StackId,
    serial: u32,
    steps: [Step; STEPS],
    frames: [Frame; STEPS],
}

/// Bytes a memo takes (for the overhead figures).
pub const MEMO_BYTES: usize = core::mem::size_of::<Memo>();

/// What the step of one frame found.
enum Next {
    /// The caller's pc, sp and rbp.
    Frame(usize, usize, usize),
    End(End),
}

/// One frame stepped from its registers (`first`: pc is the capture point,
/// else a return address): its frame word, its step (with where rbp was
/// read, 0 if not) and what follows. Exactly `unwind::capture`'s loop body.
#[inline(always)]
fn full_step(
    pc: usize,
    sp: usize,
    bp: usize,
    first: bool,
    stack_end: usize,
) -> (Frame, Step, Next) {
    let lookup = if first { pc } else { pc.wrapping_sub(1) };
    let r = unwind::rule_for(lookup as u64);
    let module = r.module();
    let offset = if module == 0 {
        pc
    } else {
        pc.wrapping_sub(modules::bias(module))
    };
    let f = frame(module, offset);
    let mut step = Step {
        pc,
        sp,
        bp,
        bp_at: 0,
        cfa_rbp: false,
        need_bp: false,
    };
    if r.kind() != KIND_STEP {
        return (f, step, Next::End(End::Stop));
    }
    step.cfa_rbp = r.cfa_rbp();
    let base = if step.cfa_rbp { bp } else { sp };
    let cfa = (base as i64).wrapping_add(r.cfa_off()) as usize;
    if cfa <= sp || cfa > stack_end || !cfa.is_multiple_of(8) || cfa < 8 {
        return (f, step, Next::End(End::Stop));
    }
    // SAFETY: sp < cfa <= stack_end, so cfa - 8 is inside the stack.
    let ra = unsafe { *((cfa - 8) as *const usize) };
    let mut new_bp = bp;
    if r.rbp_saved() {
        let at = (cfa as i64).wrapping_add(r.rbp_off()) as usize;
        if at < sp || at + 8 > stack_end {
            return (f, step, Next::End(End::Stop));
        }
        // SAFETY: bounds-checked against the stack just above.
        new_bp = unsafe { *(at as *const usize) };
        step.bp_at = at;
    }
    if ra == 0 {
        return (f, step, Next::End(End::ZeroRa(cfa - 8)));
    }
    (f, step, Next::Frame(ra, cfa, new_bp))
}

/// Reads a stack word the memo recorded.
///
/// # Safety
/// `at` lies in the calling thread's stack between the current stack
/// pointer and the stack's end (true of every address a memo of this
/// thread recorded at or above the frame the unwind is at).
#[inline(always)]
unsafe fn word(at: usize) -> usize {
    // SAFETY: the caller's condition.
    unsafe { core::ptr::read_volatile(at as *const usize) }
}

impl Memo {
    /// Whether the recorded stack is the stack at `regs` now.
    #[inline(always)]
    fn same_stack(&self, regs: Regs) -> bool {
        let n = self.n;
        if n == 0 {
            return false;
        }
        let s0 = &self.steps[0];
        if s0.pc != regs.pc || s0.sp != regs.sp || (s0.need_bp && s0.bp != regs.bp) {
            return false;
        }
        let t = &self.steps[..n.min(STEPS)];
        for w in t.windows(2) {
            let (s, next) = (&w[0], &w[1]);
            // SAFETY: recorded from this very start sp, below the stack end
            // (same thread, same stack_end: the memo's key).
            unsafe {
                // The saved rbp only where the rest of the unwind depends
                // on it (code without frame pointers keeps any value there).
                if word(next.sp - 8) != next.pc
                    || (s.bp_at != 0 && next.need_bp && word(s.bp_at) != next.bp)
                {
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

    /// Marks which steps depend on the rbp they start with (those whose
    /// CFA is rbp-based, and those that pass rbp on unchanged to one that
    /// does), for steps `..upto`, given the flag of step `upto`.
    fn mark_need_bp(&mut self, upto: usize) {
        let mut need = upto < self.n && self.steps[upto].need_bp;
        for s in self.steps[..upto].iter_mut().rev() {
            need = s.cfa_rbp || (s.bp_at == 0 && need);
            s.need_bp = need;
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
    capture(regs, stack_end, own, depth, memo);
    memo.id
}

/// [`capture_interned`], as the stack's depot serial
/// ([`depot::serial`] of its id, kept in the memo: a repeated stack costs
/// no depot lookup either).
#[inline(always)]
pub fn capture_serial(
    regs: Regs,
    stack_end: usize,
    own: u16,
    depth: usize,
    memo: &mut Memo,
) -> u32 {
    capture(regs, stack_end, own, depth, memo);
    memo.serial
}

/// Memos a [`MemoSet`] holds.
pub const WAYS: usize = 4;

/// A thread's few memos, for programs that allocate from several places in
/// turn (three call sites in a loop, an interpreter's handful of
/// allocation points): each keeps the stack of captures that started at
/// its first frame, so alternating stacks each find theirs. All-zero bytes
/// are a valid, empty set.
pub struct MemoSet {
    /// The memo of the latest capture, and the next to be replaced.
    last: usize,
    victim: usize,
    memos: [Memo; WAYS],
}

/// Bytes a memo set takes (for the overhead figures).
pub const MEMO_SET_BYTES: usize = core::mem::size_of::<MemoSet>();

impl Memo {
    /// Whether its recorded unwind starts at `regs`' pc and sp, under the
    /// same key.
    #[inline(always)]
    fn starts_at(&self, regs: Regs, key: (u32, usize, u16, u32)) -> bool {
        self.n != 0
            && self.steps[0].pc == regs.pc
            && self.steps[0].sp == regs.sp
            && (self.generation, self.stack_end, self.own, self.depth) == key
    }

    /// Becomes a copy of `o` (its recorded steps only).
    fn copy_from(&mut self, o: &Memo) {
        let n = o.n.min(STEPS);
        self.generation = o.generation;
        self.own = o.own;
        self.depth = o.depth;
        self.stack_end = o.stack_end;
        self.n = n;
        self.skipped = o.skipped;
        self.end = o.end;
        self.id = o.id;
        self.serial = o.serial;
        self.steps[..n].copy_from_slice(&o.steps[..n]);
        self.frames[..n].copy_from_slice(&o.frames[..n]);
    }
}

/// [`capture_serial`] with the calling thread's memo set: the latest memo
/// first, then the others, each taken if it holds this very stack; when
/// none does, the oldest is replaced by a copy of the latest (the best
/// trail to join) and the capture goes on in it. The same frames as a
/// plain capture.
#[inline(always)]
pub fn capture_serial_set(
    regs: Regs,
    stack_end: usize,
    own: u16,
    depth: usize,
    set: &mut MemoSet,
) -> u32 {
    let d = depth.clamp(1, unwind::MAX_FRAMES) as u32;
    let key = (GENERATION.load(Relaxed), stack_end, own, d);
    let last = set.last % WAYS;
    if set.memos[last].starts_at(regs, key) && set.memos[last].same_stack(regs) {
        return set.memos[last].serial;
    }
    capture_set_slow(regs, stack_end, own, depth, set, key)
}

#[inline(never)]
fn capture_set_slow(
    regs: Regs,
    stack_end: usize,
    own: u16,
    depth: usize,
    set: &mut MemoSet,
    key: (u32, usize, u16, u32),
) -> u32 {
    let last = set.last % WAYS;
    for k in 1..WAYS {
        let c = (last + k) % WAYS;
        if set.memos[c].starts_at(regs, key) && set.memos[c].same_stack(regs) {
            set.last = c;
            return set.memos[c].serial;
        }
    }
    let w;
    {
        let mut v = set.victim % WAYS;
        if v == last {
            v = (v + 1) % WAYS;
        }
        set.victim = (v + 1) % WAYS;
        let (a, b) = if v < last {
            let (lo, hi) = set.memos.split_at_mut(last);
            (&mut lo[v], &hi[0])
        } else {
            let (lo, hi) = set.memos.split_at_mut(v);
            (&mut hi[0], &lo[last])
        };
        a.copy_from(b);
        w = v;
    }
    set.last = w;
    capture_serial(regs, stack_end, own, depth, &mut set.memos[w])
}

/// Captures into the memo (its `id` and `serial` are the stack's).
#[inline(always)]
fn capture(regs: Regs, stack_end: usize, own: u16, depth: usize, memo: &mut Memo) {
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
        return;
    }
    capture_slow(regs, stack_end, own, depth, memo);
}

/// Where the own frames at the top of a stack stop being dropped (as
/// `unwind::capture`: all but the last of them).
struct Skip {
    own: u16,
    active: bool,
    skipped: usize,
}

impl Skip {
    #[inline(always)]
    fn see(&mut self, index: usize, f: Frame) {
        if self.active {
            if (f >> 48) as u16 == self.own && self.own != 0 {
                self.skipped = index;
            } else {
                self.active = false;
            }
        }
    }
}

/// Steps frame `i` from its registers, moved on to the caller's, and
/// counts it against the depth: its step, its frame word, and how the
/// unwind ends with it (`None`: it goes on).
#[inline(always)]
fn advance(
    pc: &mut usize,
    sp: &mut usize,
    bp: &mut usize,
    i: usize,
    stack_end: usize,
    skip: &mut Skip,
    depth: usize,
) -> (Step, Frame, Option<End>) {
    let (f, step, next) = full_step(*pc, *sp, *bp, i == 0, stack_end);
    skip.see(i, f);
    if i + 1 - skip.skipped >= depth {
        return (step, f, Some(End::Full));
    }
    match next {
        Next::Frame(npc, nsp, nbp) => {
            (*pc, *sp, *bp) = (npc, nsp, nbp);
            (step, f, None)
        }
        Next::End(e) => (step, f, Some(e)),
    }
}

#[inline(never)]
fn capture_slow(regs: Regs, stack_end: usize, own: u16, depth: usize, memo: &mut Memo) {
    let n = memo.n;
    let mut trail_end = memo.end.get();
    let (mut pc, mut sp, mut bp) = (regs.pc, regs.sp, regs.bp);
    let mut skip = Skip {
        own,
        active: own != 0,
        skipped: 0,
    };
    // Frames stepped before the unwind meets the trail (the recorded
    // unwind), kept apart until then: the trail is read meanwhile.
    let mut top = [core::mem::MaybeUninit::<(Step, Frame)>::uninit(); STEPS];
    let (mut i, mut j) = (0usize, 0usize);
    let mut met = false;
    let mut end = 'before: loop {
        if i == STEPS {
            break End::Full;
        }
        while j < n && memo.steps[j].sp < sp {
            j += 1;
        }
        if j < n && (i == 0) == (j == 0) {
            let t = &memo.steps[j];
            if t.pc == pc && t.sp == sp && (!t.need_bp || t.bp == bp) {
                met = true;
                break End::Full;
            }
        }
        let (step, f, fin) = advance(&mut pc, &mut sp, &mut bp, i, stack_end, &mut skip, depth);
        top[i].write((step, f));
        i += 1;
        if let Some(e) = fin {
            break 'before e;
        }
    };
    // The trail's part from j on moves to i (where the new stack is at that
    // frame), the new frames before it.
    let mut len = i;
    if met {
        let keep = (n - j).min(STEPS - i);
        if keep < n - j {
            trail_end = End::Full;
        }
        if i != j {
            memo.steps.copy_within(j..j + keep, i);
            memo.frames.copy_within(j..j + keep, i);
        }
        len = i + keep;
    }
    for (k, t) in top[..i].iter().enumerate() {
        // SAFETY: the first i entries were written above.
        let (step, f) = unsafe { t.assume_init() };
        memo.steps[k] = step;
        memo.frames[k] = f;
    }
    // From i on the memo holds the trail, at this very frame: take its steps
    // while the words they read are unchanged.
    let mut k = i;
    let mut from_trail = met;
    if met {
        let fin = loop {
            skip.see(k, memo.frames[k]);
            let full = k + 1 - skip.skipped >= depth;
            memo.steps[k].bp = bp;
            if full {
                break Some(End::Full);
            }
            if k + 1 < len {
                let (s, nx) = (memo.steps[k], memo.steps[k + 1]);
                // SAFETY: the trail was recorded on this thread's stack with
                // the same stack end, from this frame's sp; the words its
                // steps read lie above it, inside the stack.
                if unsafe { word(nx.sp - 8) } != nx.pc {
                    break None;
                }
                if s.bp_at != 0 {
                    // SAFETY: as above.
                    let v = unsafe { word(s.bp_at) };
                    // Compared only where the rest of the unwind depends on
                    // it; the value read is what the next frame starts with.
                    if nx.need_bp && v != nx.bp {
                        break None;
                    }
                    bp = v;
                }
                k += 1;
            } else {
                break match trail_end {
                    End::Stop => Some(End::Stop),
                    // SAFETY: as above.
                    End::ZeroRa(w) if unsafe { word(w) } == 0 => Some(End::ZeroRa(w)),
                    _ => None,
                };
            }
        };
        match fin {
            Some(e) => {
                end = e;
                len = k + 1;
            }
            None => {
                // Step k changed: stepped anew from here on.
                from_trail = false;
                (pc, sp) = (memo.steps[k].pc, memo.steps[k].sp);
                i = k;
                end = loop {
                    if i == STEPS {
                        break End::Full;
                    }
                    let (step, f, fin) =
                        advance(&mut pc, &mut sp, &mut bp, i, stack_end, &mut skip, depth);
                    memo.steps[i] = step;
                    memo.frames[i] = f;
                    i += 1;
                    if let Some(e) = fin {
                        break e;
                    }
                };
                len = i;
            }
        }
    }
    memo.n = len;
    memo.skipped = skip.skipped;
    memo.end = EndWord::of(end);
    // Flags from the trail stay true where the rest of it was kept.
    memo.mark_need_bp(if from_trail { i } else { len });
    let id = depot::intern(&memo.frames[skip.skipped..len]);
    memo.id = id;
    memo.serial = depot::serial(id);
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
        // The same frames: the same offsets (low 48 bits); the module index
        // above them may differ when parallel tests registered the test
        // binary twice (seen once in CI: 1 and 2, the same file).
        let offsets = |id| {
            depot::frames(id)
                .iter()
                .map(|f| f & ((1 << 48) - 1))
                .collect::<Vec<_>>()
        };
        assert_eq!(offsets(with), offsets(plain));
        assert_ne!(with, 0);
        SET.with(|set| {
            // SAFETY: this thread's set, used by nothing else meanwhile.
            let set = unsafe { &mut *set.get() };
            let serial = capture_serial_set(regs, end, 0, depth, set);
            assert_eq!(depot::frames_of_serial(serial), depot::frames(plain));
        });
        *checked += 1;
    }

    #[inline(never)]
    fn a(memo: &mut Memo, end: usize, n: u32, path: u64, depth: usize, checked: &mut usize) {
        if n == 0 {
            leaf(memo, end, depth, checked);
            leaf(memo, end, depth, checked);
        } else if path & 3 == 3 {
            c(memo, end, n - 1, path >> 2, depth, checked);
        } else if path & 1 == 0 {
            a(memo, end, n - 1, path >> 1, depth, checked);
        } else {
            b(memo, end, n - 1, path >> 1, depth, checked);
        }
        core::hint::black_box(n);
    }

    std::thread_local! {
        static SET: std::cell::UnsafeCell<Box<MemoSet>> = std::cell::UnsafeCell::new(zeroed_set());
    }

    fn zeroed_set() -> Box<MemoSet> {
        let layout = std::alloc::Layout::new::<MemoSet>();
        // SAFETY: a non-zero-sized layout; an all-zero MemoSet is valid.
        unsafe { Box::from_raw(std::alloc::alloc_zeroed(layout) as *mut MemoSet) }
    }

    #[repr(align(128))]
    struct Aligned(#[allow(dead_code)] [u8; 128]);

    /// A frame whose CFA is rbp-based (the over-aligned local makes the
    /// compiler realign the stack through rbp).
    #[inline(never)]
    fn c(memo: &mut Memo, end: usize, n: u32, path: u64, depth: usize, checked: &mut usize) {
        let pad = core::hint::black_box(Aligned([n as u8; 128]));
        if path & 1 == 0 {
            a(memo, end, n, path >> 1, depth, checked);
        } else {
            b(memo, end, n, path >> 1, depth, checked);
        }
        core::hint::black_box(&pad);
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
            let depth = if round % 5 == 0 {
                1 + (x >> 20) as usize % 8
            } else {
                64
            };
            a(&mut memo, end, n, x >> 8, depth, &mut checked);
            if round % 50 == 0 {
                invalidate();
            }
        }
        assert!(checked >= 400);
    }

    /// A few stacks in turn (what the set is for): every capture still the
    /// plain unwinder's.
    #[test]
    fn set_follows_alternating_stacks() {
        let end = crate::thread::stack_end(
            unwind::here().sp,
            &core::cell::Cell::new(0),
            &core::cell::Cell::new(0),
        );
        let mut memo: Box<Memo> = unsafe_zeroed();
        let mut checked = 0;
        let shapes = [
            (3u32, 0b1010u64),
            (5, 0b0110),
            (3, 0b0001),
            (7, 0b1111_0011),
        ];
        for round in 0..200 {
            let (n, path) = shapes[round % shapes.len()];
            a(&mut memo, end, n, path, 64, &mut checked);
        }
        assert!(checked >= 400);
    }

    fn unsafe_zeroed() -> Box<Memo> {
        let layout = std::alloc::Layout::new::<Memo>();
        // SAFETY: a non-zero-sized layout; an all-zero Memo is valid.
        unsafe { Box::from_raw(std::alloc::alloc_zeroed(layout) as *mut Memo) }
    }
}

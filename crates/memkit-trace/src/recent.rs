//! A thread's last walk, kept so that the next capture through the same
//! frames costs a load or two a frame instead of a rule lookup a frame and
//! a depot lookup.
//!
//! An unwind step is a function of the frame's registers (pc, sp, rbp), its
//! rule (a function of the pc, fixed within a [generation](crate::unwind))
//! and the stack words it reads (the return address, the saved rbp). So when
//! a new walk reaches a frame with the pc and sp of a frame of the last walk
//! (and its rbp, where the rest of the walk depends on it), the rest of the
//! last walk is the rest of this one *as long as* every stack word that walk
//! read still holds what it held: the capture re-reads those words and
//! compares them, which is exact, not a guess; where one differs it unwinds
//! from there on as usual. Stack pointers only grow along a walk, so a new
//! walk finds the frame to join at by merging the two walks' sp sequences:
//! a deeper or shallower call into the same outer frames joins them too.
//! A loop that allocates from one place follows the last walk from the first
//! frame and gets its depot id without touching the depot; a deep program
//! (an interpreter) unwinds its inner frames and follows the outer ones.
//!
//! The record lives in the caller's thread-local storage: a front-end keeps
//! one per call family (allocations, frees) so that alternating calls do not
//! evict each other. A capture that finds the record in use (a signal
//! handler that allocates, interrupting a capture on the same thread) walks
//! without it.

use core::cell::Cell;
use core::mem::MaybeUninit;
use core::sync::atomic::{compiler_fence, Ordering::SeqCst};

use crate::depot::{self, StackId};
use crate::unwind::{self, Frame, Regs};

/// Deepest capture that uses the record (`depth` above it walks without).
pub const RECENT_FRAMES: usize = 32;
/// Raw frames recorded (the front-end's own frames, dropped from the
/// stack, count here too; a deeper walk is not recorded).
const RAW: usize = RECENT_FRAMES + 4;
/// Slots for the record's frames: a new walk that follows the old one to
/// its end (or to the depth) writes its own frames in front of the
/// followed ones, which stay where they are; room for the walk to move.
const SLOTS: usize = 2 * RAW;

/// One frame of a walk: its registers, the frame word it gave, the slot its
/// saved rbp was read from (0: none) and two flags.
#[derive(Clone, Copy)]
struct RawFrame {
    pc: usize,
    sp: usize,
    bp: usize,
    bp_at: usize,
    word: Frame,
    flags: u32,
}

/// The frame's rule computes the CFA from rbp.
const USES_BP: u32 = 1;
/// The rest of the walk depends on the rbp this frame was entered with
/// (some frame from here on computes its CFA from rbp before any frame
/// reloads rbp from the stack). Where it does not, rbp is not compared: in
/// code built without frame pointers it holds whatever the function kept
/// there.
const BP_MATTERS: u32 = 2;
/// The frame was entered while the walk was still in the skipped module's
/// frames (joining there requires the same position).
const IN_SKIP: u32 = 4;

/// `end_at` of a walk that stopped because it had `depth` frames.
const AT_DEPTH: usize = 1;

/// A thread's last walk. All zeros is a valid empty record, so it can sit
/// in zero-initialised static TLS.
pub struct RecentStack {
    busy: Cell<bool>,
    /// Raw frames walked, frames kept, and the depth asked for.
    raw: Cell<u32>,
    kept: Cell<u32>,
    depth: Cell<u32>,
    skip: Cell<u16>,
    /// The depot id of the kept frames.
    id: Cell<StackId>,
    generation: Cell<u64>,
    stack_end: Cell<usize>,
    /// How the walk ended: [`AT_DEPTH`], 0 (the last frame's rule or bounds
    /// ended it, without reading), or where its return address was read as 0.
    end_at: Cell<usize>,
    /// The record's raw frames are `frames[lo..lo + raw]`.
    lo: Cell<u32>,
    frames: [Cell<RawFrame>; SLOTS],
    /// Each slot's frame word again (`words[p]` is `frames[p].word`), so
    /// that the frames kept are one slice: `words[p..p + kept]`.
    words: [Cell<Frame>; SLOTS],
    /// The suffix sums of [`depot::hash`] over the words,
    /// `q[p] = words[p] + HASH_BASE * q[p + 1]`, for every slot from the
    /// record's first kept frame on (`q[SLOTS]` is 0), so the hash of the
    /// kept frames `words[a..a + n]` is `q[a] - HASH_BASE^n * q[a + n]`:
    /// a walk that follows the last one to its end hashes only its own
    /// new frames.
    q: [Cell<u64>; SLOTS + 1],
    /// The stack words the recorded walk read and what they held, as one
    /// flat list (the return address slots, the saved-rbp slots the walk
    /// depends on, the end word), so that a repeat of the walk is checked
    /// by a load and a compare a word ([`same_as_last`]); built after each
    /// walk from `frames` ([`flatten`]).
    checks: [Cell<(usize, usize)>; CHECKS],
    nchecks: Cell<u32>,
    /// What rbp must hold at the first frame (when `bp_needed`), and
    /// whether no rbp can match (two frames wanting different ones).
    bp0: Cell<usize>,
    bp_needed: Cell<bool>,
    never: Cell<bool>,
    /// The first frame's pc and sp, for the flat list's test (copies:
    /// the frame's slot moves with `lo`).
    pc0: Cell<usize>,
    sp0: Cell<usize>,
    /// Whether `checks` describes the walk in `frames`.
    flat: Cell<bool>,
}

/// At most two words a frame and the end word.
const CHECKS: usize = 2 * RAW + 1;

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
                    word: 0,
                    flags: 0,
                })
            }; SLOTS],
            lo: Cell::new(0),
            words: [const { Cell::new(0) }; SLOTS],
            q: [const { Cell::new(0) }; SLOTS + 1],
            checks: [const { Cell::new((0, 0)) }; CHECKS],
            nchecks: Cell::new(0),
            bp0: Cell::new(0),
            bp_needed: Cell::new(false),
            never: Cell::new(false),
            pc0: Cell::new(0),
            sp0: Cell::new(0),
            flat: Cell::new(false),
        }
    }
}

impl RecentStack {
    /// The recorded walk's raw frames.
    #[inline(always)]
    fn old(&self) -> &[Cell<RawFrame>] {
        let lo = self.lo.get() as usize;
        &self.frames[lo..lo + self.raw.get() as usize]
    }
}

impl Default for RecentStack {
    fn default() -> Self {
        Self::new()
    }
}

/// [`crate::capture_interned`], reusing what `recent` (the calling thread's
/// own record, never shared with another thread) holds of the last walk.
/// The same frames as `capture_interned` would give, hence the same id.
/// The repeat of the last walk is tested here, inlined into the caller
/// (a loop's case); anything else walks out of line.
#[inline(always)]
pub fn capture_interned_recent(
    regs: Regs,
    stack_end: usize,
    skip: u16,
    depth: usize,
    recent: &RecentStack,
) -> StackId {
    let depth = depth.min(unwind::MAX_FRAMES);
    if depth > RECENT_FRAMES || recent.busy.get() {
        return capture_plain(regs, stack_end, skip, depth);
    }
    recent.busy.set(true);
    compiler_fence(SeqCst);
    let reusable = recent.generation.get() == unwind::generation()
        && recent.stack_end.get() == stack_end
        && recent.depth.get() == depth as u32
        && recent.skip.get() == skip
        && recent.raw.get() != 0;
    let id = if reusable && recent.id.get() != 0 && same_as_last(regs, recent) {
        recent.id.get()
    } else {
        capture_walk(regs, stack_end, skip, depth, recent, reusable)
    };
    compiler_fence(SeqCst);
    recent.busy.set(false);
    id
}

/// [`crate::capture_interned`], out of line (its frame buffer stays out of
/// the caller's frame).
#[inline(never)]
fn capture_plain(regs: Regs, stack_end: usize, skip: u16, depth: usize) -> StackId {
    crate::capture_interned(regs, stack_end, skip, depth)
}

/// [`capture_interned_recent`] when the walk is not the last one: walks,
/// following the record where it joins it.
#[inline(never)]
fn capture_walk(
    regs: Regs,
    stack_end: usize,
    skip: u16,
    depth: usize,
    recent: &RecentStack,
    reusable: bool,
) -> StackId {
    walk(regs, stack_end, skip, depth, recent, reusable).unwrap_or_else(|| {
        recent.raw.set(0);
        capture_plain(regs, stack_end, skip, depth)
    })
}

/// Whether the walk from `regs` is the recorded one from its first frame
/// (the common case of a loop): the same first registers, and every stack
/// word the recorded walk read still holding what it read (the flat list
/// [`flatten`] made of them, on the walk's first repeat).
#[inline(always)]
fn same_as_last(regs: Regs, rec: &RecentStack) -> bool {
    if !rec.flat.get() {
        // The list is built on the walk's first repeat, not after every
        // walk (a program whose stacks seldom repeat, CPython, paid 6% more
        // instructions building lists it never used).
        if !same_by_frames(regs, rec) {
            return false;
        }
        flatten(rec);
        return true;
    }
    if rec.pc0.get() != regs.pc || rec.sp0.get() != regs.sp || rec.never.get() {
        return false;
    }
    if rec.bp_needed.get() && rec.bp0.get() != regs.bp {
        return false;
    }
    let n = rec.nchecks.get() as usize;
    // SAFETY: the capture holds `busy`: nothing writes the record.
    let checks =
        unsafe { &*(&rec.checks[..n] as *const [Cell<(usize, usize)>] as *const [(usize, usize)]) };
    let mut differ = 0usize;
    for &(at, word) in checks {
        // SAFETY: the recorded walk read these words of this thread's stack
        // (same stack end), inside [sp, stack_end) for the same first sp.
        differ |= unsafe { *(at as *const usize) } ^ word;
    }
    differ == 0
}

/// [`same_as_last`] before the record's flat list is built, frame by
/// frame: the same first registers, and every stack
/// word the recorded walk read still holding what it read. Writes nothing.
#[inline(always)]
fn same_by_frames(regs: Regs, rec: &RecentStack) -> bool {
    // SAFETY: the capture holds `busy`: nothing writes the record.
    let old = unsafe { &*(rec.old() as *const [Cell<RawFrame>] as *const [RawFrame]) };
    let f = &old[0];
    if f.pc != regs.pc || f.sp != regs.sp || (f.flags & BP_MATTERS != 0 && f.bp != regs.bp) {
        return false;
    }
    let mut bp = regs.bp;
    for w in old.windows(2) {
        let (f, next) = (&w[0], &w[1]);
        // SAFETY: the recorded walk read these words of this thread's stack
        // (same stack end), from the same registers where they matter.
        unsafe {
            if *((next.sp - 8) as *const usize) != next.pc {
                return false;
            }
            if f.bp_at != 0 {
                bp = *(f.bp_at as *const usize);
            }
        }
        if next.flags & BP_MATTERS != 0 && bp != next.bp {
            return false;
        }
    }
    let e = rec.end_at.get();
    // SAFETY: as above.
    e == AT_DEPTH || e == 0 || unsafe { *(e as *const usize) } == 0
}

/// Builds the record's flat list of the words its walk read and what they
/// held: exactly the conditions the walk's steps depended on (the return
/// address each frame was found by; the rbp each frame that needs it was
/// entered with, from the slot it was last reloaded from, else the first
/// frame's rbp; the word that ended the walk).
fn flatten(rec: &RecentStack) {
    let old = rec.old();
    let mut n = 0;
    let mut push = |at: usize, word: usize| {
        rec.checks[n].set((at, word));
        n += 1;
    };
    let (mut bp0, mut needed, mut never) = (0, false, false);
    let mut need = |want: usize| {
        if needed && bp0 != want {
            never = true;
        }
        (bp0, needed) = (want, true);
    };
    let first = old[0].get();
    rec.pc0.set(first.pc);
    rec.sp0.set(first.sp);
    if first.flags & BP_MATTERS != 0 {
        need(first.bp);
    }
    // Where the rbp in hand came from: 0, the first frame's registers.
    let mut bp_from = 0usize;
    for i in 1..old.len() {
        let (f, next) = (old[i - 1].get(), old[i].get());
        push(next.sp - 8, next.pc);
        if f.bp_at != 0 {
            bp_from = f.bp_at;
        }
        if next.flags & BP_MATTERS != 0 {
            if bp_from == 0 {
                need(next.bp);
            } else {
                push(bp_from, next.bp);
            }
        }
    }
    let e = rec.end_at.get();
    if e != AT_DEPTH && e != 0 {
        push(e, 0);
    }
    rec.nchecks.set(n as u32);
    rec.bp0.set(bp0);
    rec.bp_needed.set(needed);
    rec.never.set(never);
    rec.flat.set(true);
}

/// The frames kept so far, and whether the walk is still in the skipped
/// module's top frames.
struct Kept {
    out: [MaybeUninit<Frame>; RECENT_FRAMES],
    n: usize,
    in_skip: bool,
}

impl Kept {
    /// Keeps `word` (the skipped module's top frames but the last are dropped).
    #[inline(always)]
    fn push(&mut self, word: Frame, skip: u16) {
        if self.in_skip && unwind::split(word).0 == skip && skip != 0 {
            self.out[0].write(word);
            self.n = 1;
        } else {
            self.in_skip = false;
            self.out[self.n].write(word);
            self.n += 1;
        }
    }
}

/// How following the old walk from a joined frame ended.
enum Follow {
    /// The new walk has `depth` frames.
    AtDepth,
    /// The old walk's end holds (`end_at` as recorded).
    End(usize),
    /// The last followed frame must be stepped by its rule: the old walk
    /// ended at its depth, or a word it read has changed since.
    Step,
}

/// Walks from `regs`, following the old record where it joins it. `None`
/// when the walk is too deep to record.
fn walk(
    regs: Regs,
    stack_end: usize,
    skip: u16,
    depth: usize,
    rec: &RecentStack,
    reuse: bool,
) -> Option<StackId> {
    let lo = rec.lo.get() as usize;
    let old = if reuse { rec.old() } else { &[] };
    let old_raw = old.len();
    let mut buf = [const { MaybeUninit::<RawFrame>::uninit() }; RAW];
    let mut kept = Kept {
        out: [const { MaybeUninit::uninit() }; RECENT_FRAMES],
        n: 0,
        in_skip: true,
    };
    let (mut pc, mut sp, mut bp) = (regs.pc, regs.sp, regs.bp);
    let mut j = 0usize; // raw frames of the new walk, in `buf`
    let mut k = 0usize; // cursor into the old walk (its first frame with sp >= ours)
                        // The walk ends on the old record's frames [k, k + m), left in place.
    let mut tail = None;
    let end_at;
    'frames: loop {
        if j >= RAW {
            return None;
        }
        // Fields read in place (Cell::get copied whole frames).
        let at = old.as_ptr() as *const RawFrame;
        // SAFETY: k < old_raw: a frame of the record; Cell<T> is a T, and
        // the capture alone touches the record (it holds `busy`).
        while k < old_raw && unsafe { (*at.add(k)).sp } < sp {
            k += 1;
        }
        let joins = k < old_raw && {
            // SAFETY: as above.
            let f = unsafe { &*at.add(k) };
            f.sp == sp
                && f.pc == pc
                && (f.flags & BP_MATTERS == 0 || f.bp == bp)
                && if kept.in_skip {
                    // Joining inside the skipped frames: at the same position.
                    f.flags & IN_SKIP != 0 && j == k
                } else {
                    f.flags & IN_SKIP == 0
                }
        };
        // The frame to step (already kept when it was followed).
        let mut frame;
        let followed = joins;
        if joins && kept.in_skip {
            // Inside the skipped frames, one frame at a time.
            let f = old[k].get();
            frame = RawFrame {
                bp,
                flags: (f.flags & USES_BP) | IN_SKIP,
                ..f
            };
            kept.push(f.word, skip);
            if kept.n >= depth {
                buf[j].write(frame);
                j += 1;
                end_at = AT_DEPTH;
                break;
            }
            if k + 1 < old_raw {
                let next = old[k + 1].get();
                // SAFETY: the old walk read these words of this thread's
                // stack (same stack end), from the same registers where
                // they matter.
                let (ra, nbp) = unsafe {
                    let nbp = if f.bp_at != 0 {
                        *(f.bp_at as *const usize)
                    } else {
                        bp
                    };
                    (*((next.sp - 8) as *const usize), nbp)
                };
                if ra == next.pc && (next.flags & BP_MATTERS == 0 || nbp == next.bp) {
                    buf[j].write(frame);
                    j += 1;
                    k += 1;
                    (pc, sp, bp) = (next.pc, next.sp, nbp);
                    continue;
                }
            } else {
                let e = rec.end_at.get();
                // SAFETY: as above.
                if e != AT_DEPTH && (e == 0 || unsafe { *(e as *const usize) } == 0) {
                    buf[j].write(frame);
                    j += 1;
                    end_at = e;
                    break;
                }
            }
            frame.bp_at = 0;
        } else if joins {
            // Follow the old walk from frame k, verifying only.
            let room = depth - kept.n;
            let lim = room.min(old_raw - k);
            let mut m = 0;
            // Fields read and written in place (a whole RawFrame copied in
            // and out was a third of this loop's instructions).
            let at = old[k..].as_ptr() as *mut RawFrame;
            let follow = loop {
                // SAFETY: k + m < old_raw: a frame of the record, which
                // the capture alone touches (it holds `busy`); Cell<T> is
                // a T, written through a raw pointer.
                let bp_at = unsafe {
                    let f = at.add(m);
                    // The frame's entering rbp, for whoever compares it later.
                    (*f).bp = bp;
                    (*f).bp_at
                };
                m += 1;
                if m == lim {
                    if m == room {
                        break Follow::AtDepth;
                    }
                    let e = rec.end_at.get();
                    // SAFETY: the old walk read this word, as below.
                    if e != AT_DEPTH && (e == 0 || unsafe { *(e as *const usize) } == 0) {
                        break Follow::End(e);
                    }
                    break Follow::Step;
                }
                // SAFETY: k + m < old_raw, as above; the old walk read
                // these words of this thread's stack (same stack end),
                // from the same registers where they matter.
                let (ra, nbp, npc, nflags, nbp_want) = unsafe {
                    let next = at.add(m);
                    let nbp = if bp_at != 0 {
                        *(bp_at as *const usize)
                    } else {
                        bp
                    };
                    let ra = *(((*next).sp - 8) as *const usize);
                    (ra, nbp, (*next).pc, (*next).flags, (*next).bp)
                };
                if ra != npc || (nflags & BP_MATTERS != 0 && nbp != nbp_want) {
                    break Follow::Step;
                }
                bp = nbp;
            };
            // A walk that ends on the followed frames keeps them in the
            // record's slots (the words are read from there); one that
            // steps on, or cannot be recorded, copies their words.
            if matches!(follow, Follow::Step) || j + m > RAW {
                for i in 0..m {
                    kept.out[kept.n + i].write(old[k + i].get().word);
                }
            }
            kept.n += m;
            match follow {
                Follow::AtDepth => {
                    tail = Some((k, m));
                    end_at = AT_DEPTH;
                    break;
                }
                Follow::End(e) => {
                    tail = Some((k, m));
                    end_at = e;
                    break;
                }
                Follow::Step => {
                    if j + m > RAW {
                        return None;
                    }
                    for i in 0..m - 1 {
                        buf[j + i].write(old[k + i].get());
                    }
                    j += m - 1;
                    k += m - 1;
                    let f = old[k].get();
                    (pc, sp) = (f.pc, f.sp);
                    frame = RawFrame {
                        bp,
                        bp_at: 0,
                        flags: f.flags & USES_BP,
                        ..f
                    };
                }
            }
        } else {
            frame = RawFrame {
                pc,
                sp,
                bp,
                bp_at: 0,
                word: 0,
                flags: if kept.in_skip { IN_SKIP } else { 0 },
            };
        }
        // A return address points after the call: look up the call itself.
        let lookup = if j == 0 { pc } else { pc.wrapping_sub(1) };
        let r = unwind::rule_for(lookup as u64);
        if r.cfa_rbp() {
            frame.flags |= USES_BP;
        }
        if !followed {
            let module = r.module();
            frame.word = unwind::frame(module, unwind::offset_in(module, pc));
            kept.push(frame.word, skip);
            if kept.n >= depth {
                buf[j].write(frame);
                j += 1;
                end_at = AT_DEPTH;
                break;
            }
        }
        match unwind::step(r, sp, bp, stack_end) {
            None => {
                buf[j].write(frame);
                j += 1;
                end_at = 0;
                break 'frames;
            }
            Some(s) => {
                // SAFETY: step checked sp < cfa <= stack_end.
                let ra = unsafe { *((s.cfa - 8) as *const usize) };
                if ra == 0 {
                    buf[j].write(frame);
                    j += 1;
                    end_at = s.cfa - 8;
                    break 'frames;
                }
                if s.bp_at != 0 {
                    frame.bp_at = s.bp_at;
                    // SAFETY: step checked the slot against the stack.
                    bp = unsafe { *(s.bp_at as *const usize) };
                }
                buf[j].write(frame);
                j += 1;
                pc = ra;
                sp = s.cfa;
            }
        }
    }
    let n = kept.n;
    // The new record: buf[..j], in front of the followed tail where the
    // walk ended on one (the tail stays in its slots, with its words and
    // suffix sums), else at the end of the slots.
    let (start, m, mut matters) = match tail {
        Some((k, m)) if j + m <= RAW => {
            let mut at = lo + k;
            let matters = rec.frames[at].get().flags & BP_MATTERS != 0;
            if at < j {
                // No room in front: the tail moves to the end of the slots
                // (its sums are computed again, from q[SLOTS] = 0).
                let to = SLOTS - m;
                // SAFETY: both ranges inside the slots (at + m <= SLOTS);
                // Cell<T> is a T; the ranges may overlap.
                unsafe {
                    core::ptr::copy(rec.frames[at].as_ptr(), rec.frames[to].as_ptr(), m);
                    core::ptr::copy(rec.words[at].as_ptr(), rec.words[to].as_ptr(), m);
                }
                for p in (to..SLOTS).rev() {
                    sum_at(rec, p);
                }
                at = to;
            }
            (at - j, m, matters)
        }
        Some(_) => {
            rec.raw.set(0);
            // SAFETY: push and the follow loop wrote the first n words.
            let frames =
                unsafe { &*(&kept.out[..n] as *const [MaybeUninit<Frame>] as *const [Frame]) };
            let id = depot::intern(frames);
            rec.id.set(id);
            return Some(id);
        }
        None => (SLOTS - j, 0, false),
    };
    // BP_MATTERS, from the outermost new frame in.
    for i in (0..j).rev() {
        // SAFETY: the first j were written.
        let mut f = unsafe { buf[i].assume_init() };
        matters = f.flags & USES_BP != 0 || (f.bp_at == 0 && matters);
        f.flags = if matters {
            f.flags | BP_MATTERS
        } else {
            f.flags & !BP_MATTERS
        };
        rec.frames[start + i].set(f);
        rec.words[start + i].set(f.word);
    }
    // The kept frames: the last n - m new ones (the skipped module's frames
    // before them are dropped), then the tail.
    let first = start + j - (n - m);
    for p in (first..start + j).rev() {
        sum_at(rec, p);
    }
    let end = start + j + m;
    let h = rec.q[first]
        .get()
        .wrapping_sub(depot::HASH_POWERS[n].wrapping_mul(rec.q[end].get()));
    rec.lo.set(start as u32);
    rec.raw.set((end - start) as u32);
    rec.kept.set(n as u32);
    rec.end_at.set(end_at);
    rec.depth.set(depth as u32);
    rec.skip.set(skip);
    rec.stack_end.set(stack_end);
    rec.generation.set(unwind::generation());
    rec.flat.set(false);
    // SAFETY: Cell<Frame> is a Frame; the capture holds `busy`.
    let frames = unsafe { &*(&rec.words[first..end] as *const [Cell<Frame>] as *const [Frame]) };
    let id = depot::intern_hashed(frames, h);
    rec.id.set(id);
    Some(id)
}

/// Sets slot `p`'s suffix sum from its word and the next slot's sum.
#[inline(always)]
fn sum_at(rec: &RecentStack, p: usize) {
    let q = rec.words[p]
        .get()
        .wrapping_add(depot::HASH_BASE.wrapping_mul(rec.q[p + 1].get()));
    rec.q[p].set(q);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captures at the bottom of a recursion of `n` frames, both ways.
    #[inline(never)]
    fn down(
        n: usize,
        rec: &RecentStack,
        skip: u16,
        depth: usize,
        out: &mut Vec<(StackId, StackId)>,
    ) {
        if n > 0 {
            // Two call sites, so that frames differ in their return addresses.
            if n % 3 == 0 {
                down(n - 1, rec, skip, depth, out);
            } else {
                down(n - 1, rec, skip, depth, out);
            }
            core::hint::black_box(n);
            return;
        }
        let regs = unwind::here();
        let end = regs.sp + (1 << 20);
        let a = crate::capture_interned(regs, end, skip, depth);
        let b = capture_interned_recent(regs, end, skip, depth, rec);
        out.push((a, b));
    }

    /// Moves the record to the front of its slots (as walks that join
    /// ever later in a deeper walk move it), keeping its suffix sums.
    fn to_the_front(rec: &RecentStack) {
        let (lo, raw) = (rec.lo.get() as usize, rec.raw.get() as usize);
        for i in 0..raw {
            rec.frames[i].set(rec.frames[lo + i].get());
            rec.words[i].set(rec.words[lo + i].get());
        }
        for p in (0..raw).rev() {
            sum_at(rec, p);
        }
        rec.lo.set(0);
    }

    /// [`down`] with a stack end fixed by the caller (so that walks from
    /// different depths may join).
    #[inline(never)]
    fn deep(n: usize, rec: &RecentStack, end: usize, out: &mut Vec<(StackId, StackId)>) {
        if n > 0 {
            deep(n - 1, rec, end, out);
            core::hint::black_box(n);
            return;
        }
        let regs = unwind::here();
        let a = crate::capture_interned(regs, end, 0, 30);
        let b = capture_interned_recent(regs, end, 0, 30, rec);
        out.push((a, b));
    }

    /// A walk that joins a record with no room in front of the join for
    /// its new frames: the followed frames move to the end of the slots.
    #[test]
    fn a_record_without_room_in_front() {
        let rec = RecentStack::new();
        let mut out = Vec::new();
        let end = unwind::here().sp + (1 << 20);
        for n in [0usize, 3, 5, 9, 2, 12, 20] {
            deep(n, &rec, end, &mut out);
            to_the_front(&rec);
            // Deeper: more new frames before the join than the record
            // has slots in front of it.
            deep(n + 3, &rec, end, &mut out);
            assert_eq!(
                rec.lo.get() as usize + rec.raw.get() as usize,
                SLOTS,
                "the walk did not move the followed frames to the end"
            );
            deep(n + 3, &rec, end, &mut out);
            deep(n, &rec, end, &mut out);
        }
        for (i, (a, b)) in out.iter().enumerate() {
            assert_eq!(depot::frames(*a), depot::frames(*b), "capture {i}");
            assert_eq!(a, b, "capture {i}");
        }
    }

    #[test]
    fn same_frames_as_a_full_walk() {
        let rec = RecentStack::new();
        let mut out = Vec::new();
        for &(depth, skip) in &[
            (30usize, 0u16),
            (8, 0),
            (30, crate::modules::module_of(down as *const () as usize)),
        ] {
            for n in [0usize, 1, 2, 5, 5, 9, 3, 3, 12, 40, 7, 7, 0, 25, 24, 26] {
                down(n, &rec, skip, depth, &mut out);
                down(n, &rec, skip, depth, &mut out);
                // One call site, so that the repeats are the recorded walk
                // itself (found by its flat list of words).
                for _ in 0..3 {
                    down(n, &rec, skip, depth, &mut out);
                }
            }
        }
        for (i, (a, b)) in out.iter().enumerate() {
            assert_eq!(depot::frames(*a), depot::frames(*b), "capture {i}");
            // The same hash too (one thread: a stack is stored once).
            assert_eq!(a, b, "capture {i}");
        }
    }
}

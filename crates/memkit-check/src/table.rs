//! The side table: what the checker knows about every block it handed out
//! and every block in quarantine, keyed by the pointer the program holds.
//!
//! Kept outside the heap, so that an overflow can corrupt a red zone but
//! not the record that validates the next `free`. 256 shards, each an
//! open-addressing table (linear probing, backward-shift deletion, at most
//! three quarters full: at half, python's tables were 30 MiB of its 100)
//! behind its own spin lock; all shards are taken around `fork`, so the child
//! finds none held. The tables' memory comes from memkit's core.

use crate::Padded;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use memkit_alloc::lock::SpinLock;

/// How the block was allocated (and must be freed).
pub use memkit_abi::Kind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Live = 1,
    Quarantined = 2,
}

/// One block's record (32 bytes: a table of them is the checker's largest
/// structure after the heap itself; two records a cache line).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Meta {
    /// The pointer the program holds (0: empty slot).
    pub user: usize,
    /// Bytes asked for (bits 0-40: at most `block::MAX_SIZE`, 2^40) and
    /// the freeing thread (bits 41-63).
    size_ft: u64,
    pub alloc_stack: u32,
    pub free_stack: u32,
    /// The allocating thread (bits 0-23: Linux thread ids stay below
    /// 2^22), the [`Kind`] (bits 24-26), [`QUARANTINED`], [`BIG`] and
    /// [`GUARD`]: one word, written and read whole (separate byte fields
    /// were written one by one and then copied as one word with the
    /// record, a store-forwarding stall on every free).
    thread_flags: u32,
    /// The core block around `user`, for a block that is not [`BIG`]:
    /// `user - start` (bits 16-31) and `end - start` (bits 0-15), in
    /// 16-byte units (such a block, one the core finds by address, is at
    /// most 256 KiB). 0 for a big block, whose range `block::BIG` holds.
    /// Until 2026-12-03 the record held both addresses whole (48 bytes).
    span: u32,
}

const SIZE_BITS: u32 = 41;
const SIZE_MASK: u64 = (1 << SIZE_BITS) - 1;

const TID_MASK: u32 = (1 << 24) - 1;
const KIND_SHIFT: u32 = 24;
/// In quarantine ([`State::Quarantined`]).
const QUARANTINED: u32 = 1 << 27;
/// A huge core block or a guarded mapping (tracked by address in
/// `block::BIG`).
const BIG: u32 = 1 << 28;
/// A guarded mapping (`guard=`), not a core block.
const GUARD: u32 = 1 << 29;
/// Made by `realloc` (see `block::realloc`: such a block may be resized
/// in place).
const REALLOCED: u32 = 1 << 30;

const _: () = assert!(core::mem::size_of::<Meta>() == 32);

impl Meta {
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn new(
        user: usize,
        start: usize,
        end: usize,
        size: usize,
        alloc_stack: u32,
        alloc_thread: u32,
        kind: Kind,
        big: bool,
        guard: bool,
    ) -> Self {
        let span = if big {
            0
        } else {
            let (left, len) = (user - start, end - start);
            debug_assert!(left % 16 == 0 && len % 16 == 0 && len < 16 << 16 && left < len);
            (((left / 16) << 16) | (len / 16)) as u32
        };
        Meta {
            user,
            size_ft: size as u64,
            alloc_stack,
            free_stack: 0,
            thread_flags: (alloc_thread & TID_MASK)
                | (kind as u32) << KIND_SHIFT
                | if big { BIG } else { 0 }
                | if guard { GUARD } else { 0 },
            span,
        }
    }

    /// Bytes asked for.
    #[inline(always)]
    pub fn size(&self) -> usize {
        (self.size_ft & SIZE_MASK) as usize
    }

    #[inline(always)]
    pub fn set_size(&mut self, size: usize) {
        self.size_ft = (self.size_ft & !SIZE_MASK) | size as u64;
    }

    /// The thread that freed the block (0 while live).
    #[inline(always)]
    pub fn free_thread(&self) -> u32 {
        (self.size_ft >> SIZE_BITS) as u32
    }

    #[inline(always)]
    pub fn set_free_thread(&mut self, tid: u32) {
        self.size_ft = (self.size_ft & SIZE_MASK) | ((tid & TID_MASK) as u64) << SIZE_BITS;
    }

    /// The core block of a block that is not big: (start, end).
    #[inline(always)]
    pub fn small_range(&self) -> (usize, usize) {
        debug_assert!(!self.big());
        let start = self.user - (self.span >> 16) as usize * 16;
        (start, start + (self.span & 0xffff) as usize * 16)
    }

    /// The core block's length, for a block that is not big.
    #[inline(always)]
    pub fn small_len(&self) -> usize {
        (self.span & 0xffff) as usize * 16
    }

    /// The span word (the same for the same core block).
    #[inline(always)]
    pub fn span(&self) -> u32 {
        self.span
    }

    #[inline(always)]
    pub fn kind(&self) -> Kind {
        Kind::from_raw(((self.thread_flags >> KIND_SHIFT) & 7) as usize)
    }

    #[inline(always)]
    pub fn state(&self) -> State {
        if self.thread_flags & QUARANTINED != 0 {
            State::Quarantined
        } else {
            State::Live
        }
    }

    #[inline(always)]
    pub fn set_state(&mut self, s: State) {
        self.thread_flags = match s {
            State::Live => self.thread_flags & !QUARANTINED,
            State::Quarantined => self.thread_flags | QUARANTINED,
        };
    }

    /// The thread that allocated the block.
    #[inline(always)]
    pub fn alloc_thread(&self) -> u32 {
        self.thread_flags & TID_MASK
    }

    /// A huge core block or a guarded mapping.
    #[inline(always)]
    pub fn big(&self) -> bool {
        self.thread_flags & BIG != 0
    }

    /// A guarded mapping.
    #[inline(always)]
    pub fn guard(&self) -> bool {
        self.thread_flags & GUARD != 0
    }

    /// Made by `realloc`.
    #[inline(always)]
    pub fn realloced(&self) -> bool {
        self.thread_flags & REALLOCED != 0
    }

    #[inline(always)]
    pub fn set_realloced(&mut self) {
        self.thread_flags |= REALLOCED;
    }
}

const EMPTY: Meta = Meta {
    user: 0,
    size_ft: 0,
    alloc_stack: 0,
    free_stack: 0,
    thread_flags: 0,
    span: 0,
};

type Shard = SpinLock<Inner>;

pub struct Inner {
    slots: Vec<Meta>,
    len: usize,
}

const SHARDS: usize = 256;

static TABLE: [Padded<Shard>; SHARDS] = [const {
    Padded(SpinLock::new(Inner {
        slots: Vec::new(),
        len: 0,
    }))
}; SHARDS];

/// Each shard's slots and their count, as of its last growth, readable
/// without its lock: only for [`prefetch`] (a stale pair names memory that
/// a prefetch may touch harmlessly; nothing is read through it).
static HINT_AT: [AtomicUsize; SHARDS] = [const { AtomicUsize::new(0) }; SHARDS];
static HINT_LEN: [AtomicUsize; SHARDS] = [const { AtomicUsize::new(0) }; SHARDS];

/// Starts loading the slot where `user`'s record would be found, without
/// the lock (a free prefetches it before its stack capture, so that the
/// table's cache miss overlaps the walk).
#[inline(always)]
pub fn prefetch(user: usize) {
    let i = shard_index(user);
    let (at, n) = (HINT_AT[i].load(Relaxed), HINT_LEN[i].load(Relaxed));
    if n != 0 {
        crate::block::prefetch(at.wrapping_add(home(user, n) * core::mem::size_of::<Meta>()));
    }
}

/// The shard of a 64 KiB region: blocks carved from one page share a
/// shard (one lock, one table, for a thread working through its page).
fn region(user: usize) -> u64 {
    ((user >> 16) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Where a record's probe starts in a table of `n` slots: the region's
/// hash plus the block's 16-byte index inside it, so that neighbouring
/// blocks have neighbouring records (a page's frees and mallocs touch a
/// few cache lines of the table, not one each).
fn home(user: usize, n: usize) -> usize {
    ((region(user) >> 24) as usize).wrapping_add((user >> 4) & 0xfff) & (n - 1)
}

fn shard_index(user: usize) -> usize {
    (region(user) >> 56) as usize % SHARDS
}

fn shard_of(user: usize) -> &'static Shard {
    &TABLE[shard_index(user)]
}

/// A held shard: the guard gives access to its records.
pub struct Guard(memkit_alloc::lock::Guard<'static, Inner>);

fn lock(s: &'static Shard) -> Guard {
    Guard(s.lock())
}

impl Guard {
    fn inner(&mut self) -> &mut Inner {
        &mut self.0
    }

    fn find(&mut self, user: usize) -> Option<usize> {
        let inner = self.inner();
        let n = inner.slots.len();
        if n == 0 {
            return None;
        }
        let mut i = home(user, n);
        loop {
            let u = inner.slots[i].user;
            if u == user {
                return Some(i);
            }
            if u == 0 {
                return None;
            }
            i = (i + 1) & (n - 1);
        }
    }

    /// The record of `user`.
    pub fn get(&mut self, user: usize) -> Option<&mut Meta> {
        let i = self.find(user)?;
        Some(&mut self.inner().slots[i])
    }

    /// Adds (or replaces) a record: one probe for both.
    pub fn insert(&mut self, m: Meta) {
        let inner = self.inner();
        if (inner.len + 1) * 4 > inner.slots.len() * 3 {
            grow(inner, shard_index(m.user));
        }
        let n = inner.slots.len();
        let mut i = home(m.user, n);
        loop {
            let u = inner.slots[i].user;
            if u == m.user {
                inner.slots[i] = m;
                return;
            }
            if u == 0 {
                inner.slots[i] = m;
                inner.len += 1;
                return;
            }
            i = (i + 1) & (n - 1);
        }
    }

    /// Removes the record of `user`, moving it into `out` (written only
    /// when found):
    /// one copy of the record, where an `Option<Meta>` returned through
    /// the callers' closures was copied three times on every free.
    #[inline(always)]
    pub fn remove_into(&mut self, user: usize, out: &mut core::mem::MaybeUninit<Meta>) -> bool {
        let Some(mut i) = self.find(user) else {
            return false;
        };
        let inner = self.inner();
        let n = inner.slots.len();
        out.write(inner.slots[i]);
        inner.slots[i] = EMPTY;
        inner.len -= 1;
        // Backward shift: pull later members of the run into the hole.
        let mut j = i;
        loop {
            j = (j + 1) & (n - 1);
            let u = inner.slots[j].user;
            if u == 0 {
                break;
            }
            let home = home(u, n);
            // Move j to i unless its home lies cyclically in (i, j].
            let between = if i <= j {
                home > i && home <= j
            } else {
                home > i || home <= j
            };
            if !between {
                inner.slots[i] = inner.slots[j];
                inner.slots[j] = EMPTY;
                i = j;
            }
        }
        true
    }

    /// Every record of the shard.
    pub fn each(&mut self, mut f: impl FnMut(&mut Meta)) {
        for m in self.inner().slots.iter_mut().filter(|m| m.user != 0) {
            f(m);
        }
    }
}

#[cold]
#[inline(never)]
fn grow(inner: &mut Inner, shard: usize) {
    let n = (inner.slots.len() * 2).max(64);
    let old = core::mem::replace(&mut inner.slots, vec![EMPTY; n]);
    inner.len = 0;
    for o in old.into_iter().filter(|o| o.user != 0) {
        place(inner, o);
    }
    HINT_AT[shard].store(inner.slots.as_ptr() as usize, Relaxed);
    HINT_LEN[shard].store(n, Relaxed);
}

fn place(inner: &mut Inner, m: Meta) {
    let n = inner.slots.len();
    let mut i = home(m.user, n);
    while inner.slots[i].user != 0 {
        i = (i + 1) & (n - 1);
    }
    inner.slots[i] = m;
    inner.len += 1;
}

/// The shard holding `user`, locked.
pub fn shard(user: usize) -> Guard {
    lock(shard_of(user))
}

/// The shard of `user` if its lock is free now.
pub fn try_shard(user: usize) -> Option<Guard> {
    shard_of(user).try_lock().map(Guard)
}

/// Runs `f` on every record, one shard at a time.
pub fn for_each(mut f: impl FnMut(&mut Meta)) {
    for s in TABLE.iter() {
        lock(s).each(&mut f);
    }
}

/// Runs `f` on every record, for a caller that holds every shard
/// ([`lock_all`]): the leak check, which takes them before it stops the
/// other threads, so that no thread is stopped holding one.
///
/// # Safety
/// The caller holds every shard through [`lock_all`].
pub unsafe fn for_each_held(mut f: impl FnMut(&mut Meta)) {
    for s in TABLE.iter() {
        // SAFETY: per the contract, the shard is ours until unlock_all.
        let inner = unsafe { &mut *s.as_ptr() };
        for m in inner.slots.iter_mut().filter(|m| m.user != 0) {
            f(m);
        }
    }
}

/// Takes every shard (before `fork`, and around the leak check's stop).
pub fn lock_all() {
    for s in TABLE.iter() {
        s.raw_lock();
    }
}

/// Releases every shard (after `fork`, in parent and child).
pub fn unlock_all() {
    for s in TABLE.iter() {
        // SAFETY: taken by lock_all in this process (or its parent).
        unsafe { s.raw_unlock() };
    }
}

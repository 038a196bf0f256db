//! Size classes ("bins").
//!
//! Sizes up to 128 bytes step by 16 (the minimum alignment); above that every
//! power-of-two range is split into 8 classes, so a request is rounded up by
//! less than 1/8 of its size: internal waste stays at or below 12.5%.
//!
//! `bin 0` is unused so that a zeroed `[_; NBINS]` never aliases a real class.

/// Largest block served from segment pages; larger requests are huge blocks.
pub const MEDIUM_MAX: usize = 256 * 1024;
/// Largest size served through the lookup table on the fast path. Up to
/// 32 KiB (a 2 KiB table): with the table ending at 1 KiB, programs whose
/// sizes fall on both sides of 1 KiB at random mispredicted the branch
/// between the table and the `lzcnt` decode on almost every other `malloc`
/// (glibc-thread, sizes 4 B-32 KiB ~ 1/size: 267k of its 1.34M
/// mispredictions).
pub const SMALL_FAST_MAX: usize = 32 * 1024;
/// Number of bins, including the unused bin 0.
pub const NBINS: usize = 97;

/// Bin of a size `1..=MEDIUM_MAX` (0 is treated as 1).
#[inline]
pub const fn bin_of(size: usize) -> usize {
    if size <= 128 {
        if size == 0 {
            1
        } else {
            (size + 15) >> 4
        }
    } else {
        let s = size - 1;
        let p = (usize::BITS - 1 - s.leading_zeros()) as usize; // 2^p <= s < 2^(p+1)
        let idx = (s >> (p - 3)) & 7;
        8 + (p - 7) * 8 + idx + 1
    }
}

/// Block size of a bin.
#[inline]
pub const fn bin_size(bin: usize) -> usize {
    if bin <= 8 {
        bin * 16
    } else {
        let g = (bin - 9) / 8;
        let i = (bin - 9) % 8;
        let p = 7 + g;
        (1 << p) + (i + 1) * (1 << (p - 3))
    }
}

/// Bin for every `(size + 15) / 16` up to [`SMALL_FAST_MAX`]: one load on the
/// fast path instead of a `lzcnt` sequence.
pub static SMALL_BIN: [u8; SMALL_FAST_MAX / 16 + 1] = {
    let mut t = [0u8; SMALL_FAST_MAX / 16 + 1];
    let mut i = 0;
    while i < t.len() {
        t[i] = bin_of(if i == 0 { 1 } else { i * 16 }) as u8;
        i += 1;
    }
    t
};

/// [`bin_size`] of every bin, for fast paths (one load instead of a decode).
pub static BIN_BYTES: [u32; NBINS] = {
    let mut t = [0u32; NBINS];
    let mut b = 1;
    while b < NBINS {
        t[b] = bin_size(b) as u32;
        b += 1;
    }
    t
};

/// Alignments [`ALIGNED_BIN`] covers: `1 << ALIGN_SHIFT_MIN` (32) up to
/// `1 << ALIGN_SHIFT_MAX` (a slice, 64 KiB: pages start slice-aligned).
pub const ALIGN_SHIFT_MIN: usize = 5;
pub const ALIGN_SHIFT_MAX: usize = 16;

/// `ALIGNED_BIN[log2(align) - ALIGN_SHIFT_MIN][bin]`: the smallest bin at
/// least `bin` whose block size is a multiple of `align` (0: none up to
/// [`MEDIUM_MAX`]). Blocks of such a bin are aligned by where they lie.
pub static ALIGNED_BIN: [[u8; NBINS]; ALIGN_SHIFT_MAX - ALIGN_SHIFT_MIN + 1] = {
    let mut t = [[0u8; NBINS]; ALIGN_SHIFT_MAX - ALIGN_SHIFT_MIN + 1];
    let mut a = 0;
    while a < t.len() {
        let align = 1usize << (a + ALIGN_SHIFT_MIN);
        let mut b = 1;
        while b < NBINS {
            let mut c = b;
            while c < NBINS && !bin_size(c).is_multiple_of(align) {
                c += 1;
            }
            t[a][b] = if c < NBINS { c as u8 } else { 0 };
            b += 1;
        }
        a += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_bins_are_the_smallest_aligned_ones() {
        for (a, row) in ALIGNED_BIN.iter().enumerate() {
            let align = 1usize << (a + ALIGN_SHIFT_MIN);
            for (b, &c) in row.iter().enumerate().skip(1) {
                let c = c as usize;
                if c == 0 {
                    assert!((b..NBINS).all(|x| bin_size(x) % align != 0));
                    continue;
                }
                assert!(
                    c >= b && bin_size(c) % align == 0,
                    "align {align} bin {b}: {c}"
                );
                assert!((b..c).all(|x| bin_size(x) % align != 0));
            }
        }
        // Every alignment up to a slice has one for the smallest sizes: a
        // power of two at least the alignment is a block size.
        assert_eq!(
            bin_size(ALIGNED_BIN[ALIGN_SHIFT_MAX - ALIGN_SHIFT_MIN][1] as usize),
            1 << 16
        );
    }

    #[test]
    fn classes_cover_every_size_with_bounded_waste() {
        let mut last_bin = 0;
        for size in 1..=MEDIUM_MAX {
            let b = bin_of(size);
            assert!(b >= last_bin && b < NBINS, "size {size} bin {b}");
            last_bin = b;
            let bs = bin_size(b);
            assert!(bs >= size, "size {size} in bin {b} of {bs}");
            assert_eq!(bs % 16, 0);
            // Waste at most 12.5% above the 16-byte granularity floor.
            if size > 128 {
                assert!((bs - size) * 8 <= size, "size {size} bin size {bs}");
            }
            if size <= SMALL_FAST_MAX {
                assert_eq!(SMALL_BIN[(size + 15) >> 4] as usize, b);
            }
        }
        assert_eq!(bin_of(MEDIUM_MAX), NBINS - 1);
        assert_eq!(bin_size(NBINS - 1), MEDIUM_MAX);
        for (b, &bytes) in BIN_BYTES.iter().enumerate().skip(1) {
            assert_eq!(bytes as usize, bin_size(b));
        }
    }

    #[test]
    fn bin_size_is_the_largest_size_of_its_bin() {
        for b in 1..NBINS {
            assert_eq!(bin_of(bin_size(b)), b);
            assert_eq!(bin_of(bin_size(b) + 1), b + 1);
        }
    }
}

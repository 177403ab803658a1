//! [`CacheAligned`]: a buffer whose first value starts a cache line.
//!
//! A tile row that straddles two 64-byte lines costs two line reads; measured on this
//! project's machine (one core, 2×2 tile steps): operands from L1 ≈ 1000 GMAC/s when every
//! row starts a line against ≈ 210 when the buffer starts 16 bytes past one — which is where
//! the system allocator puts large blocks. Every buffer the tiles load from is one of these
//! (with rows a whole number of lines long). (Stores of sums into a caller's output that
//! straddle lines cost little: measured faster than storing aligned and copying.)
//!
//! Scratch buffers that are fully written before they are read (rounded inputs, packed
//! weight chunks, sums) come [`recycled`](CacheAligned::recycled) from a per-thread spare
//! instead of freshly zeroed: a new multi-megabyte buffer costs a page fault per 4 KB (or a
//! `memset`), measured at 20–35% of a 577-row tile product.

/// `len` values of `T` starting on a 64-byte boundary (a few spare values are allocated in
/// front to get there).
#[derive(Debug)]
pub(super) struct CacheAligned<T> {
    buffer: Vec<T>,
    offset: usize,
    len: usize,
}

/// Bytes per cache line.
const LINE: usize = 64;

impl<T: Copy + Default> CacheAligned<T> {
    /// `len` values of `T::default()`.
    pub(super) fn zeroed(len: usize) -> Self {
        let spare = LINE / size_of::<T>().max(1);
        let mut buffer = vec![T::default(); len + spare];
        crate::allocator::advise_huge_pages(&mut buffer);
        // `align_offset` may decline (usize::MAX); the buffer is then used from its start:
        // correct, only slower.
        let offset = match buffer.as_ptr().align_offset(LINE) {
            o if o <= spare => o,
            _ => 0,
        };
        Self { buffer, offset, len }
    }

    /// A copy, aligned again (a plain `Vec` clone would land wherever the allocator puts it).
    fn copied(&self) -> Self {
        let mut copy = Self::zeroed(self.len);
        copy.as_mut_slice().copy_from_slice(self.as_slice());
        copy
    }

    /// Values that can be held without reallocating.
    fn capacity(&self) -> usize {
        self.buffer.len().saturating_sub(self.offset)
    }

    /// No values, nothing allocated.
    pub(super) fn empty() -> Self {
        Self { buffer: Vec::new(), offset: 0, len: 0 }
    }

    /// The values.
    pub(super) fn as_slice(&self) -> &[T] {
        &self.buffer[self.offset..self.offset + self.len]
    }

    /// The values, mutable.
    pub(super) fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.buffer[self.offset..self.offset + self.len]
    }
}

impl<T: Copy + Default> Clone for CacheAligned<T> {
    fn clone(&self) -> Self {
        self.copied()
    }
}

/// Spare buffers kept per thread and value type: enough for a product's input, its output
/// and a packed weight chunk to be reused at once.
const SPARES: usize = 3;

/// Per-thread spare buffers of one value type, for [`CacheAligned::recycled`].
pub(super) trait Spare: Copy + Default + 'static {
    /// Runs `f` on this thread's spare buffers of the type.
    fn with_spares<R>(f: impl FnOnce(&mut Vec<CacheAligned<Self>>) -> R) -> R;
}

macro_rules! spare_slot {
    ($t:ty) => {
        impl Spare for $t {
            fn with_spares<R>(f: impl FnOnce(&mut Vec<CacheAligned<Self>>) -> R) -> R {
                thread_local! {
                    static SPARES: std::cell::RefCell<Vec<CacheAligned<$t>>> = const { std::cell::RefCell::new(Vec::new()) };
                }
                // `f` only moves buffers in or out (no nested use of the slot).
                SPARES.with_borrow_mut(f)
            }
        }
    };
}
spare_slot!(half::bf16);
spare_slot!(f32);

impl<T: Spare> CacheAligned<T> {
    /// `len` values whose contents are unspecified (left from an earlier use, or zero): the
    /// smallest of this thread's spare buffers that is large enough, else a new zeroed one.
    /// For scratch that the caller writes in full before reading (or whose unwritten values
    /// it never uses).
    pub(super) fn recycled(len: usize) -> Self {
        let spare = T::with_spares(|spares| {
            let best = spares
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= len)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            best.map(|i| spares.swap_remove(i))
        });
        match spare {
            Some(mut buffer) => {
                buffer.len = len;
                buffer
            }
            None => Self::zeroed(len),
        }
    }

    /// Hands the buffer to this thread's spares (which keep the largest few).
    pub(super) fn recycle(self) {
        T::with_spares(|spares| {
            spares.push(self);
            if spares.len() > SPARES
                && let Some((smallest, _)) = spares.iter().enumerate().min_by_key(|(_, b)| b.capacity())
            {
                spares.swap_remove(smallest);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_start_a_cache_line_and_hold_their_length() {
        for len in [0, 1, 31, 32, 1000, 1 << 20] {
            let mut b = CacheAligned::<half::bf16>::zeroed(len);
            assert_eq!(b.as_slice().len(), len);
            assert_eq!(b.as_mut_slice().as_ptr() as usize % LINE, 0, "len {len}");
            assert!(b.as_slice().iter().all(|v| *v == half::bf16::ZERO));
            let f = CacheAligned::<f32>::zeroed(len);
            assert_eq!(f.as_slice().as_ptr() as usize % LINE, 0);
            b.as_mut_slice().iter_mut().enumerate().for_each(|(i, v)| *v = half::bf16::from_f32(i as f32));
            let copy = b.clone();
            assert_eq!(copy.as_slice(), b.as_slice());
            assert_eq!(copy.as_slice().as_ptr() as usize % LINE, 0, "clones are aligned too");
        }
    }

    #[test]
    fn recycled_buffers_are_reused_when_large_enough() {
        // A thread of its own: the spares are per thread.
        std::thread::spawn(|| {
            let mut first = CacheAligned::<f32>::recycled(1000);
            first.as_mut_slice()[0] = 7.0;
            let address = first.as_slice().as_ptr();
            first.recycle();
            let again = CacheAligned::<f32>::recycled(500);
            assert_eq!(again.as_slice().len(), 500);
            assert_eq!(again.as_slice().as_ptr(), address, "the spare is reused");
            assert_eq!(again.as_slice().as_ptr() as usize % LINE, 0);
            let larger = CacheAligned::<f32>::recycled(5000);
            assert_eq!(larger.as_slice().len(), 5000);
            assert_eq!(larger.as_slice().as_ptr() as usize % LINE, 0);
            assert!(larger.as_slice().iter().all(|v| *v == 0.0), "a new buffer is zeroed");
            let larger_address = larger.as_slice().as_ptr();
            again.recycle();
            larger.recycle();
            // Both are kept; each request gets the smallest that fits.
            let small = CacheAligned::<f32>::recycled(800);
            assert_eq!(small.as_slice().as_ptr(), address);
            assert_eq!(CacheAligned::<f32>::recycled(4000).as_slice().as_ptr(), larger_address);
        })
        .join()
        .expect("the test thread");
    }
}

//! The tile instructions, as inline assembly (the Rust intrinsics are not stable).

#[cfg(target_arch = "x86_64")]
pub use x86::*;

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use half::bf16;
    use std::arch::asm;
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};

    /// Prefetches into L1 the column tiles (contiguous, one per step, 16 lines each) that the
    /// step [`PREFETCH_STEPS`] after `step` reads from each of `tiles`: the hardware
    /// prefetchers leave tile loads waiting on L2. Past an operand's end these are the next
    /// block's tiles or nothing (a prefetch never faults).
    #[inline(always)]
    fn prefetch_column_tiles<const N: usize>(tiles: [*const bf16; N], step: usize) {
        for tile in tiles {
            let ahead = tile.wrapping_add((step + PREFETCH_STEPS) * TILE_VALUES).cast::<i8>();
            for line in 0..TILE_VALUES * 2 / 64 {
                // SAFETY: a prefetch reads nothing and never faults, whatever the address.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line * 64)) };
            }
        }
    }

    /// Steps ahead whose column tiles [`multiply_steps`] prefetches. Measured on the 2×2
    /// kernel, one core, 704 rows against Llama-7B's q (4096 × 4096) and gate (11 008 × 4096)
    /// weights: 1.02–1.08× with 4 steps (2: 1.07×, 8: 1.05×, 16: 0.99× on the q shape); whole
    /// stages, 2 threads, one binary with the prefetch toggled, both orders: bf16 prefill
    /// 1.04–1.06×, CLIP-L 1.06× (4 steps ahead against 2 or 8: 1.01–1.04×). The split f16
    /// kernels, with four column tiles per step, run without it (f16 Llama prefill 0.93× with
    /// all four; the two high-part tiles alone: 1.03× and 1.00× in the two orders).
    const PREFETCH_STEPS: usize = 4;
    /// bf16 values per 32-value step of one tile row, and per tile.
    const TILE_K: usize = 32;
    const TILE_VALUES: usize = 16 * TILE_K;

    /// Palette 1, tiles 0–7 all 16 rows × 64 bytes: 0–3 the f32 sums, 4–5 weight rows,
    /// 6–7 packed inputs.
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    const CONFIG: TileConfig = {
        let mut c = [0u8; 64];
        c[0] = 1;
        let mut t = 0;
        while t < 8 {
            c[16 + 2 * t] = 64;
            c[48 + t] = 16;
            t += 1;
        }
        TileConfig(c)
    };

    /// Loads the tile configuration on the calling thread.
    fn configure() {
        // SAFETY: only called after `available()` granted the tile state; the config is a
        // valid palette-1 layout.
        unsafe {
            asm!("ldtilecfg [{0}]", in(reg) &CONFIG as *const TileConfig, options(nostack, readonly));
        }
    }

    /// Returns the tile state to its initial (unused) state.
    fn release() {
        // SAFETY: as above.
        unsafe {
            asm!("tilerelease", options(nostack, nomem));
        }
    }

    /// The tiles configured on this thread while it lives ([`configure`] when made,
    /// [`release`] when dropped), for one rayon job's run of tile products.
    pub struct Configured(());

    impl Configured {
        /// Configures the tiles on the calling thread.
        pub fn new() -> Self {
            configure();
            Self(())
        }
    }

    impl Drop for Configured {
        fn drop(&mut self) {
            release();
        }
    }

    /// Four 16×16 sums of `steps` tile steps: weight tiles `a0`, `a1` (16 rows × 32 values,
    /// contiguous, one per step) times packed input tiles `b0`, `b1`, into `c` as tiles
    /// (a0,b0), (a0,b1), (a1,b0), (a1,b1), each `[16 outputs][16 inputs]` f32 — added to the
    /// sums already in `c` when `accumulate`, else starting from zero.
    ///
    /// # Safety
    /// The tiles are configured on this thread; `a0`, `a1`, `b0`, `b1` each cover `steps`
    /// tiles of 512 bf16, `c` 1024 f32.
    pub unsafe fn block_2x2(
        a0: *const bf16,
        a1: *const bf16,
        b0: *const bf16,
        b1: *const bf16,
        steps: usize,
        c: *mut f32,
        accumulate: bool,
    ) {
        let sums = [c, c.wrapping_add(256), c.wrapping_add(512), c.wrapping_add(768)];
        // SAFETY: the caller guarantees the extents read and written: four 16×16 sum tiles at
        // 64-byte rows from `c`, `steps` contiguous 512-value tiles from each operand.
        unsafe {
            if accumulate {
                load_sums(sums, 64);
            } else {
                zero_sums();
            }
            multiply_steps([a0, a1], TILE_VALUES, 64, [b0, b1], steps);
            store_sums(sums, 64);
        }
    }

    /// Four 16×16 sums of `steps` tile steps with the activations as the row operand:
    /// `a0`, `a1` point at 16 rows each of row-major bf16 inputs (`a_stride` bytes apart,
    /// step `s` at value offset `32·s`), `b0`, `b1` at `steps` contiguous pair-interleaved
    /// weight tiles (16 outputs each). The sums `[32 rows][32 outputs]` f32 are stored at `c`
    /// with `c_stride` bytes between rows: (a0,b0) at the top left, (a0,b1) to its right,
    /// (a1,·) 16 rows below.
    ///
    /// # Safety
    /// The tiles are configured on this thread; `a0`/`a1` cover 16 rows of `32·steps` values,
    /// `b0`/`b1` `steps` tiles of 512 bf16, and `c` 32 rows of 32 f32 at `c_stride`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn block_2x2_rows(
        a0: *const bf16,
        a1: *const bf16,
        a_stride: usize,
        b0: *const bf16,
        b1: *const bf16,
        steps: usize,
        c: *mut f32,
        c_stride: usize,
    ) {
        let row16 = c.wrapping_byte_add(16 * c_stride);
        let sums = [c, c.wrapping_add(16), row16, row16.wrapping_add(16)];
        // SAFETY: the caller guarantees the extents read and written: 16 rows at `a_stride`
        // bytes from `a0`/`a1` covering `32·steps` values, `steps` tiles from `b0`/`b1`, and
        // 32 rows of 32 f32 at `c_stride` from `c`.
        unsafe {
            zero_sums();
            multiply_steps([a0, a1], TILE_K, a_stride, [b0, b1], steps);
            store_sums(sums, c_stride);
        }
    }

    /// [`block_2x2_rows`] for at most 16 rows: one row-operand tile `a` against `b0`, `b1`,
    /// the two 16×16 sums stored side by side at `c` (`[16 rows][32 outputs]`, `c_stride`
    /// bytes between rows) — half the tile products of a 2×2 block whose second half would
    /// only be padding (a last block of 1–16 rows, e.g. CLIP's 577th token).
    ///
    /// # Safety
    /// The tiles are configured on this thread; `a` covers 16 rows of `32·steps` values at
    /// `a_stride` bytes, `b0`/`b1` `steps` tiles of 512 bf16, and `c` 16 rows of 32 f32.
    pub unsafe fn block_1x2_rows(a: *const bf16, a_stride: usize, b0: *const bf16, b1: *const bf16, steps: usize, c: *mut f32, c_stride: usize) {
        // SAFETY: the caller guarantees the extents read and written.
        unsafe {
            zero_two_sums();
            for s in 0..steps {
                prefetch_column_tiles([b0, b1], s);
                asm!(
                    "tileloadd tmm4, [{a} + {a_stride}*1]",
                    "tileloadd tmm6, [{b0} + {sixty_four}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{b1} + {sixty_four}*1]",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    a = in(reg) a.add(s * TILE_K),
                    a_stride = in(reg) a_stride,
                    b0 = in(reg) b0.add(s * TILE_VALUES),
                    b1 = in(reg) b1.add(s * TILE_VALUES),
                    sixty_four = in(reg) 64usize,
                    options(nostack, readonly),
                );
            }
            store_two_sums(c, c_stride);
        }
    }

    /// [`block_2x2_rows`] of operands each split in two bf16 parts, `a = a_hi + a_lo` and
    /// `b = b_hi + b_lo` (e.g. f32 inputs and f16 weights, see `split_f16.rs`): per step the
    /// sums gain `a_hi·b_hi + a_lo·b_hi + a_hi·b_lo` (the `a_lo·b_lo` term, at most 2⁻¹⁶ of
    /// the product, dropped). `a_hi`/`a_lo` point at 16 rows each (`a_stride` bytes apart),
    /// `b_hi`/`b_lo` at `steps` contiguous weight tiles each. The sums start from those at `c`
    /// when `accumulate`, else from zero, and are stored at `c` as by [`block_2x2_rows`].
    ///
    /// # Safety
    /// The tiles are configured on this thread; each `a` pointer covers 16 rows of `32·steps`
    /// values at `a_stride` bytes, each `b` pointer `steps` tiles of 512 bf16, and `c` 32 rows
    /// of 32 f32 at `c_stride`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn block_2x2_split_rows(
        a_hi: [*const bf16; 2],
        a_lo: [*const bf16; 2],
        a_stride: usize,
        b_hi: [*const bf16; 2],
        b_lo: [*const bf16; 2],
        steps: usize,
        c: *mut f32,
        c_stride: usize,
        accumulate: bool,
    ) {
        let row16 = c.wrapping_byte_add(16 * c_stride);
        let sums = [c, c.wrapping_add(16), row16, row16.wrapping_add(16)];
        // SAFETY: the caller guarantees the extents read and written and the configuration.
        unsafe {
            if accumulate {
                load_sums(sums, c_stride);
            } else {
                zero_sums();
            }
            for s in 0..steps {
                // tmm6/7: b_hi, then b_lo; tmm4/5: a_hi, a_lo, a_hi again.
                asm!(
                    "tileloadd tmm6, [{bh0} + {sixty_four}*1]",
                    "tileloadd tmm7, [{bh1} + {sixty_four}*1]",
                    "tileloadd tmm4, [{ah0} + {a_stride}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{ah1} + {a_stride}*1]",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    "tileloadd tmm4, [{al0} + {a_stride}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{al1} + {a_stride}*1]",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    "tileloadd tmm6, [{bl0} + {sixty_four}*1]",
                    "tileloadd tmm7, [{bl1} + {sixty_four}*1]",
                    "tileloadd tmm4, [{ah0} + {a_stride}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{ah1} + {a_stride}*1]",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    ah0 = in(reg) a_hi[0].add(s * TILE_K),
                    ah1 = in(reg) a_hi[1].add(s * TILE_K),
                    al0 = in(reg) a_lo[0].add(s * TILE_K),
                    al1 = in(reg) a_lo[1].add(s * TILE_K),
                    a_stride = in(reg) a_stride,
                    bh0 = in(reg) b_hi[0].add(s * TILE_VALUES),
                    bh1 = in(reg) b_hi[1].add(s * TILE_VALUES),
                    bl0 = in(reg) b_lo[0].add(s * TILE_VALUES),
                    bl1 = in(reg) b_lo[1].add(s * TILE_VALUES),
                    sixty_four = in(reg) 64usize,
                    options(nostack, readonly),
                );
            }
            store_sums(sums, c_stride);
        }
    }

    /// [`block_2x2_split_rows`] for at most 16 rows: one row tile of each part against the
    /// two output tiles, the two 16×16 sums side by side at `c` (`[16 rows][32 outputs]`).
    ///
    /// # Safety
    /// As for [`block_2x2_split_rows`], with 16 rows of sums at `c`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn block_1x2_split_rows(
        a_hi: *const bf16,
        a_lo: *const bf16,
        a_stride: usize,
        b_hi: [*const bf16; 2],
        b_lo: [*const bf16; 2],
        steps: usize,
        c: *mut f32,
        c_stride: usize,
        accumulate: bool,
    ) {
        // SAFETY: the caller guarantees the extents read and written and the configuration.
        unsafe {
            if accumulate {
                load_two_sums(c, c_stride);
            } else {
                zero_two_sums();
            }
            for s in 0..steps {
                asm!(
                    "tileloadd tmm6, [{bh0} + {sixty_four}*1]",
                    "tileloadd tmm7, [{bh1} + {sixty_four}*1]",
                    "tileloadd tmm4, [{ah} + {a_stride}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{al} + {a_stride}*1]",
                    "tdpbf16ps tmm0, tmm5, tmm6",
                    "tdpbf16ps tmm1, tmm5, tmm7",
                    "tileloadd tmm6, [{bl0} + {sixty_four}*1]",
                    "tileloadd tmm7, [{bl1} + {sixty_four}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    ah = in(reg) a_hi.add(s * TILE_K),
                    al = in(reg) a_lo.add(s * TILE_K),
                    a_stride = in(reg) a_stride,
                    bh0 = in(reg) b_hi[0].add(s * TILE_VALUES),
                    bh1 = in(reg) b_hi[1].add(s * TILE_VALUES),
                    bl0 = in(reg) b_lo[0].add(s * TILE_VALUES),
                    bl1 = in(reg) b_lo[1].add(s * TILE_VALUES),
                    sixty_four = in(reg) 64usize,
                    options(nostack, readonly),
                );
            }
            store_two_sums(c, c_stride);
        }
    }

    /// Sets the two sum tiles of a 1×2 block (tmm0, tmm1) to zero.
    ///
    /// # Safety
    /// The tiles are configured on this thread.
    #[inline(always)]
    unsafe fn zero_two_sums() {
        // SAFETY: touches tile registers only.
        unsafe {
            asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
        }
    }

    /// Loads the two sum tiles of a 1×2 block (tmm0, tmm1) from 16 rows of 32 f32 at `c`
    /// (`c_stride` bytes between rows): tmm0 the left 16 columns, tmm1 the right.
    ///
    /// # Safety
    /// The tiles are configured on this thread; `c` covers the 16 rows.
    #[inline(always)]
    unsafe fn load_two_sums(c: *mut f32, c_stride: usize) {
        // SAFETY: the caller guarantees the extents.
        unsafe {
            asm!(
                "tileloadd tmm0, [{c0} + {stride}*1]",
                "tileloadd tmm1, [{c1} + {stride}*1]",
                c0 = in(reg) c,
                c1 = in(reg) c.wrapping_add(16),
                stride = in(reg) c_stride,
                options(nostack, readonly),
            );
        }
    }

    /// Stores the two sum tiles of a 1×2 block (tmm0, tmm1), as [`load_two_sums`] reads them.
    ///
    /// # Safety
    /// The tiles are configured on this thread; `c` covers the 16 rows.
    #[inline(always)]
    unsafe fn store_two_sums(c: *mut f32, c_stride: usize) {
        // SAFETY: the caller guarantees the extents.
        unsafe {
            asm!(
                "tilestored [{c0} + {stride}*1], tmm0",
                "tilestored [{c1} + {stride}*1], tmm1",
                c0 = in(reg) c,
                c1 = in(reg) c.wrapping_add(16),
                stride = in(reg) c_stride,
                options(nostack),
            );
        }
    }

    /// Sets the four sum tiles (tmm0–3) to zero.
    ///
    /// # Safety
    /// The tiles are configured on this thread.
    #[inline(always)]
    unsafe fn zero_sums() {
        // SAFETY: touches tile registers only.
        unsafe {
            asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
        }
    }

    /// Loads the four sum tiles (tmm0–3) from `sums` (16 rows of 16 f32 each, `stride` bytes
    /// between rows).
    ///
    /// # Safety
    /// The tiles are configured on this thread; each pointer covers its 16 rows.
    #[inline(always)]
    unsafe fn load_sums(sums: [*mut f32; 4], stride: usize) {
        // SAFETY: the caller guarantees the extents.
        unsafe {
            asm!(
                "tileloadd tmm0, [{c0} + {stride}*1]",
                "tileloadd tmm1, [{c1} + {stride}*1]",
                "tileloadd tmm2, [{c2} + {stride}*1]",
                "tileloadd tmm3, [{c3} + {stride}*1]",
                c0 = in(reg) sums[0],
                c1 = in(reg) sums[1],
                c2 = in(reg) sums[2],
                c3 = in(reg) sums[3],
                stride = in(reg) stride,
                options(nostack, readonly),
            );
        }
    }

    /// Stores the four sum tiles (tmm0–3) to `sums`, as [`load_sums`] reads them.
    ///
    /// # Safety
    /// The tiles are configured on this thread; each pointer covers its 16 rows.
    #[inline(always)]
    unsafe fn store_sums(sums: [*mut f32; 4], stride: usize) {
        // SAFETY: the caller guarantees the extents.
        unsafe {
            asm!(
                "tilestored [{c0} + {stride}*1], tmm0",
                "tilestored [{c1} + {stride}*1], tmm1",
                "tilestored [{c2} + {stride}*1], tmm2",
                "tilestored [{c3} + {stride}*1], tmm3",
                c0 = in(reg) sums[0],
                c1 = in(reg) sums[1],
                c2 = in(reg) sums[2],
                c3 = in(reg) sums[3],
                stride = in(reg) stride,
                options(nostack),
            );
        }
    }

    /// `steps` steps of the 2×2 product into the sum tiles: row-operand tiles from `a`
    /// (step `s` at value offset `a_step·s`, rows `a_stride` bytes apart), column-operand
    /// tiles contiguous from `b` (512 values per step): tmm0 += a0·b0, tmm1 += a0·b1,
    /// tmm2 += a1·b0, tmm3 += a1·b1.
    ///
    /// # Safety
    /// The tiles are configured on this thread; the operands cover `steps` steps.
    #[inline(always)]
    unsafe fn multiply_steps(a: [*const bf16; 2], a_step: usize, a_stride: usize, b: [*const bf16; 2], steps: usize) {
        for s in 0..steps {
            prefetch_column_tiles(b, s);
            // SAFETY: the caller guarantees the extents read.
            unsafe {
                asm!(
                    "tileloadd tmm4, [{a0} + {a_stride}*1]",
                    "tileloadd tmm6, [{b0} + {sixty_four}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{b1} + {sixty_four}*1]",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{a1} + {a_stride}*1]",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a[0].add(s * a_step),
                    a1 = in(reg) a[1].add(s * a_step),
                    a_stride = in(reg) a_stride,
                    b0 = in(reg) b[0].add(s * TILE_VALUES),
                    b1 = in(reg) b[1].add(s * TILE_VALUES),
                    sixty_four = in(reg) 64usize,
                    options(nostack, readonly),
                );
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod fallback {
    //! Stubs: `available()` is false off x86-64, so none of these is ever called.
    pub struct Configured(());
    impl Configured {
        pub fn new() -> Self {
            Self(())
        }
    }
    pub unsafe fn block_2x2(_: *const half::bf16, _: *const half::bf16, _: *const half::bf16, _: *const half::bf16, _: usize, _: *mut f32, _: bool) {}
    #[allow(clippy::missing_safety_doc)]
    pub unsafe fn block_1x2_rows(_: *const half::bf16, _: usize, _: *const half::bf16, _: *const half::bf16, _: usize, _: *mut f32, _: usize) {}
    #[allow(clippy::too_many_arguments, clippy::missing_safety_doc)]
    pub unsafe fn block_2x2_split_rows(_: [*const half::bf16; 2], _: [*const half::bf16; 2], _: usize, _: [*const half::bf16; 2], _: [*const half::bf16; 2], _: usize, _: *mut f32, _: usize, _: bool) {}
    #[allow(clippy::too_many_arguments, clippy::missing_safety_doc)]
    pub unsafe fn block_1x2_split_rows(_: *const half::bf16, _: *const half::bf16, _: usize, _: [*const half::bf16; 2], _: [*const half::bf16; 2], _: usize, _: *mut f32, _: usize, _: bool) {}
    #[allow(clippy::too_many_arguments, clippy::missing_safety_doc)]
    pub unsafe fn block_2x2_rows(_: *const half::bf16, _: *const half::bf16, _: usize, _: *const half::bf16, _: *const half::bf16, _: usize, _: *mut f32, _: usize) {}
}
#[cfg(not(target_arch = "x86_64"))]
pub use fallback::*;

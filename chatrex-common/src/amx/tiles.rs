//! The tile instructions, as inline assembly (the Rust intrinsics are not stable).

#[cfg(target_arch = "x86_64")]
pub use x86::*;

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use half::bf16;
    use std::arch::asm;

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
    pub fn configure() {
        // SAFETY: only called after `available()` granted the tile state; the config is a
        // valid palette-1 layout.
        unsafe {
            asm!("ldtilecfg [{0}]", in(reg) &CONFIG as *const TileConfig, options(nostack, readonly));
        }
    }

    /// Returns the tile state to its initial (unused) state.
    pub fn release() {
        // SAFETY: as above.
        unsafe {
            asm!("tilerelease", options(nostack, nomem));
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
        // SAFETY: the caller guarantees the extents read and written below.
        unsafe {
            if accumulate {
                asm!(
                    "tileloadd tmm0, [{c0} + {sixty_four}*1]",
                    "tileloadd tmm1, [{c1} + {sixty_four}*1]",
                    "tileloadd tmm2, [{c2} + {sixty_four}*1]",
                    "tileloadd tmm3, [{c3} + {sixty_four}*1]",
                    c0 = in(reg) c,
                    c1 = in(reg) c.add(256),
                    c2 = in(reg) c.add(512),
                    c3 = in(reg) c.add(768),
                    sixty_four = in(reg) 64usize,
                    options(nostack, readonly),
                );
            } else {
                asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
            }
            for s in 0..steps {
                asm!(
                    "tileloadd tmm4, [{a0} + {sixty_four}*1]",
                    "tileloadd tmm6, [{p0} + {sixty_four}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{p1} + {sixty_four}*1]",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{a1} + {sixty_four}*1]",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a0.add(s * 512),
                    a1 = in(reg) a1.add(s * 512),
                    p0 = in(reg) b0.add(s * 512),
                    p1 = in(reg) b1.add(s * 512),
                    sixty_four = in(reg) 64usize,
                    options(nostack, readonly),
                );
            }
            asm!(
                "tilestored [{c0} + {sixty_four}*1], tmm0",
                "tilestored [{c1} + {sixty_four}*1], tmm1",
                "tilestored [{c2} + {sixty_four}*1], tmm2",
                "tilestored [{c3} + {sixty_four}*1], tmm3",
                c0 = in(reg) c,
                c1 = in(reg) c.add(256),
                c2 = in(reg) c.add(512),
                c3 = in(reg) c.add(768),
                sixty_four = in(reg) 64usize,
                options(nostack),
            );
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
        // SAFETY: the caller guarantees the extents read and written below.
        unsafe {
            asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
            for s in 0..steps {
                asm!(
                    "tileloadd tmm4, [{a0} + {a_stride}*1]",
                    "tileloadd tmm6, [{p0} + {sixty_four}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tileloadd tmm7, [{p1} + {sixty_four}*1]",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tileloadd tmm5, [{a1} + {a_stride}*1]",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) a0.add(s * 32),
                    a1 = in(reg) a1.add(s * 32),
                    a_stride = in(reg) a_stride,
                    p0 = in(reg) b0.add(s * 512),
                    p1 = in(reg) b1.add(s * 512),
                    sixty_four = in(reg) 64usize,
                    options(nostack, readonly),
                );
            }
            asm!(
                "tilestored [{c00} + {stride}*1], tmm0",
                "tilestored [{c01} + {stride}*1], tmm1",
                "tilestored [{c10} + {stride}*1], tmm2",
                "tilestored [{c11} + {stride}*1], tmm3",
                c00 = in(reg) c,
                c01 = in(reg) c.add(16),
                c10 = in(reg) c.byte_add(16 * c_stride),
                c11 = in(reg) c.byte_add(16 * c_stride).add(16),
                stride = in(reg) c_stride,
                options(nostack),
            );
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod fallback {
    //! Stubs: `available()` is false off x86-64, so none of these is ever called.
    pub fn configure() {}
    pub fn release() {}
    pub unsafe fn block_2x2(_: *const half::bf16, _: *const half::bf16, _: *const half::bf16, _: *const half::bf16, _: usize, _: *mut f32, _: bool) {}
    #[allow(clippy::too_many_arguments, clippy::missing_safety_doc)]
    pub unsafe fn block_2x2_rows(_: *const half::bf16, _: *const half::bf16, _: usize, _: *const half::bf16, _: *const half::bf16, _: usize, _: *mut f32, _: usize) {}
}
#[cfg(not(target_arch = "x86_64"))]
pub use fallback::*;

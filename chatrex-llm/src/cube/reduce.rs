//! Reductions over a cube in shared memory (no plane operations: wgpu may have none).

use cubecl::prelude::*;

/// The sum of `value` over every unit of the cube, returned to all of them: a tree in
/// `scratch` (one slot per unit; the cube size a power of two). Ends with a barrier, so
/// `scratch` can be reused at once.
#[cube]
pub(super) fn cube_sum(mut scratch: Shared<[f32]>, value: f32) -> f32 {
    let t = UNIT_POS as usize;
    scratch[t] = value;
    sync_cube();
    let mut stride = CUBE_DIM as usize / 2;
    while stride > 0 {
        if t < stride {
            scratch[t] += scratch[t + stride];
        }
        sync_cube();
        stride /= 2;
    }
    let total = scratch[0];
    sync_cube();
    total
}

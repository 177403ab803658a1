//! Process-wide allocator tuning for the CPU backend.
//!
//! Burn's CPU backend allocates a fresh buffer for most operation outputs. glibc serves
//! large requests with `mmap` and returns them on `free`, so every big intermediate is
//! page-faulted in (and zeroed by the kernel) again — about a tenth of UPN's CPU time. Raising
//! the mmap and trim thresholds keeps freed memory in the heap for reuse. This is the
//! application's decision (it affects the whole process), so binaries call it explicitly.

/// Keeps large freed buffers for reuse (glibc only; a no-op elsewhere). Returns whether the
/// setting was applied.
pub fn reuse_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // 1 GiB: buffers below this come from the heap and go back to it on free.
        const THRESHOLD: i32 = 1 << 30;
        // SAFETY: mallopt only changes glibc's allocation policy; it is safe to call at any time.
        #[allow(unsafe_code)]
        let ok = unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD) == 1
        };
        ok
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

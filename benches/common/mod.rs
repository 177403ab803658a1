//! Shared bench helpers: a peak-tracking allocator and the result records the comparison
//! script (`tools/bench/compare.py`) reads.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts live heap bytes and their peak.
pub struct PeakAlloc;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size > layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// Live heap bytes now.
pub fn current_bytes() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Starts a new peak window; returns the live bytes at its start.
pub fn reset_peak() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// Peak live bytes since the last [`reset_peak`].
pub fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// One measured stage, written to `target/bench-results/<name>.json`.
#[derive(serde::Serialize)]
pub struct Record {
    pub name: String,
    pub seconds: f64,
    pub peak_bytes: usize,
    pub extra_peak_bytes: usize,
    pub note: String,
}

/// Runs `f` once to measure time and memory (the peak above what was live before), prints
/// and records it; criterion then measures the timing distribution.
pub fn measure_once<R>(name: &str, note: &str, f: impl FnOnce() -> R) -> R {
    let base = reset_peak();
    let t = Instant::now();
    let out = f();
    record(name, t.elapsed().as_secs_f64(), base, note);
    out
}

/// Like the PyTorch scripts in `tools/bench/`: one warm-up run, then the best time of
/// `repeat` runs is printed and recorded with the heap peak of all of them.
pub fn measure_best<R>(name: &str, note: &str, repeat: usize, mut f: impl FnMut() -> R) -> R {
    let base = reset_peak();
    let mut out = f();
    let mut best = f64::INFINITY;
    for _ in 0..repeat {
        let t = Instant::now();
        out = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    record(name, best, base, &format!("{note}; best of {repeat} after a warm-up"));
    out
}

/// Records a stage timed by the caller: `seconds`, the heap peak since the last
/// [`reset_peak`] (which returned `base`), and a note; prints it and writes
/// `target/bench-results/<name>.json`.
pub fn record(name: &str, seconds: f64, base: usize, note: &str) {
    let peak = peak_bytes();
    let rec = Record {
        name: name.into(),
        seconds,
        peak_bytes: peak,
        extra_peak_bytes: peak.saturating_sub(base),
        note: note.into(),
    };
    eprintln!(
        "[{name}] {seconds:.3} s, heap peak {:.1} MB ({:.1} MB above the model and inputs) {note}",
        peak as f64 / 1e6,
        rec.extra_peak_bytes as f64 / 1e6
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{name}.json")), serde_json::to_string_pretty(&rec).unwrap());
}

/// Criterion settings for multi-second stages.
pub fn slow_criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args()
}

/// Threads the CPU backend uses (rayon's pool).
pub fn threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The weight dtypes a bench runs: `CHATREX_BENCH_DTYPES` (comma-separated, e.g. `bf16` or
/// `f32,bf16`), default f32, f16 and bf16. An unknown name stops the bench with a message.
pub fn dtypes() -> Vec<chatrex::WeightDType> {
    use chatrex::WeightDType;
    match std::env::var("CHATREX_BENCH_DTYPES") {
        Ok(list) => list
            .split(',')
            .map(|name| {
                name.trim()
                    .parse::<WeightDType>()
                    .unwrap_or_else(|e| panic!("CHATREX_BENCH_DTYPES: {name:?}: {e}"))
            })
            .collect(),
        Err(_) => vec![WeightDType::F32, WeightDType::F16, WeightDType::BF16],
    }
}

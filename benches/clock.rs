//! The cost of reading the time, for choosing expiration's hot-path clock.
//!
//! `cargo bench --bench clock`. Candidates side by side: `std::time::Instant::now()` (the vDSO's
//! `clock_gettime(CLOCK_MONOTONIC)`), `std::time::SystemTime::now()`, and `quanta::Instant::now()`
//! (the CPU's time-stamp counter, calibrated once), and `clock_gettime(CLOCK_MONOTONIC_COARSE)`.
//! A get hit costs about 17 ns here, and the target for a get hit with expiration is 1.25x that,
//! so a clock read must cost a few nanoseconds.

use std::hint::black_box;
use std::time::{Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};

/// `clock_gettime(CLOCK_MONOTONIC_COARSE)`: the kernel's last tick, read from the vDSO without a
/// system call; its resolution is the tick (1 to 4 ms).
#[cfg(target_os = "linux")]
fn coarse_now() -> (i64, i64) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec` for the duration of the call, and
    // CLOCK_MONOTONIC_COARSE is a clock id every Linux since 2.6.32 accepts.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    assert_eq!(rc, 0);
    (ts.tv_sec, ts.tv_nsec)
}

#[cfg(not(target_os = "linux"))]
fn coarse_now() -> (i64, i64) {
    (0, 0)
}

fn clocks(c: &mut Criterion) {
    let mut g = c.benchmark_group("clock_read");
    g.bench_function("std_instant", |b| b.iter(|| black_box(Instant::now())));
    g.bench_function("std_system_time", |b| {
        b.iter(|| black_box(SystemTime::now()))
    });
    g.bench_function("monotonic_coarse", |b| b.iter(|| black_box(coarse_now())));
    let _ = quanta::Instant::now(); // calibrate outside the measurement
    g.bench_function("quanta_instant", |b| {
        b.iter(|| black_box(quanta::Instant::now()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(10);
    targets = clocks
}
criterion_main!(benches);

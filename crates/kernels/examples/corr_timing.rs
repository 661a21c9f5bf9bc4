//! Wall-clock timing of the correlation kernels, for `benches/bench_corr.py`.
//!
//! ```text
//! corr_timing N D [method] [repeats]      # correlation_matrix, N rows of D values
//! corr_timing --similarity L N [repeats]  # similarity_matrix (pearson), L matrices of N x N
//! ```
//!
//! `correlation_matrix` is the accumulator `layer_corr` uses, given every
//! row at once. With `CORR_TIMING_STREAM=1` the rows are pushed as the SQL
//! aggregate pushes a large group (borrowed, one block, copied into the row
//! store, which spills past 256 MB; `CORR_TIMING_SPILL=off` keeps it in
//! memory).
//!
//! The data are deterministic (fixed seed, one generator per row, so the
//! values do not depend on the number of threads) and shaped like
//! activations: a ReLU of a gaussian with a per-row offset and scale, so
//! rows have different means, different sparsity (roughly 20–80 % zeros)
//! and are correlated through a shared component. For `--similarity` the L
//! matrices are symmetric with a unit diagonal and related to each other.
//!
//! One untimed warm-up run comes first (it also pages in the allocator's
//! arenas and starts the rayon pool) for inputs up to 256 MiB; for larger
//! ones it would only add a multi-second run for a negligible effect. Every
//! timed call gets its own copy of the input, since `correlation_matrix`
//! consumes its rows (the copy is not timed; the last call takes the
//! original, so a single run holds one copy). Output: one JSON line on
//! stdout, `{n, d, method, seconds_median, seconds_all, cpu_seconds_median,
//! cpu_seconds_all, peak_rss_bytes, ...}` (CPU: user + system time of all
//! threads during each timed run),
//! where `peak_rss_bytes` is `VmHWM` of this process: the input (twice when
//! repeated, since one copy is kept for the next run) plus the kernel's own
//! memory.

use std::time::Instant;

use layercorr_kernels::compare::similarity_matrix;
use layercorr_kernels::corr::correlation_matrix;
use layercorr_kernels::{
    BlockBuffers, CompareMethod, CorrAccumulator, CorrMethod, RowMatrix, SpillPolicy,
};
use rayon::prelude::*;

/// Inputs up to this size get one untimed warm-up run; beyond it the
/// one-time costs (thread pool start, first page faults of the result) are
/// lost in the noise of a multi-second run. `benches/bench_corr.py` uses the
/// same rule for its peers.
const WARM_UP_MAX_BYTES: usize = 256 << 20;

/// Small, fast, deterministic generator (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 1.0) * (1.0 / (1u64 << 24) as f32)
    }

    /// Two standard normals (Box–Muller).
    fn normal_pair(&mut self) -> (f32, f32) {
        let r = (-2.0 * self.unit().ln()).sqrt();
        let t = std::f32::consts::TAU * self.unit();
        (r * t.cos(), r * t.sin())
    }
}

/// `n x d` ReLU'd gaussians: row `i` is `max(0, a_i + b_i (0.6 s + 0.8 e))`
/// with `s` a shared pattern over the columns, `e` row noise, `a_i` an
/// offset in [-0.8, 0.8] and `b_i` a scale in [0.5, 2].
fn activations(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut shared = vec![0f32; d];
    let mut g = SplitMix(seed);
    for pair in shared.chunks_mut(2) {
        let (a, b) = g.normal_pair();
        pair[0] = a;
        if pair.len() > 1 {
            pair[1] = b;
        }
    }
    let mut data = vec![0f32; n * d];
    data.par_chunks_mut(d).enumerate().for_each(|(i, row)| {
        let mut g = SplitMix(seed ^ (i as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let offset = 1.6 * g.unit() - 0.8;
        let scale = 0.5 + 1.5 * g.unit();
        for (k, pair) in row.chunks_mut(2).enumerate() {
            let (a, b) = g.normal_pair();
            let base = 2 * k;
            pair[0] = (offset + scale * (0.6 * shared[base] + 0.8 * a)).max(0.0);
            if pair.len() > 1 {
                pair[1] = (offset + scale * (0.6 * shared[base + 1] + 0.8 * b)).max(0.0);
            }
        }
    });
    data
}

/// `l` symmetric `n x n` matrices with unit diagonal; matrix `k` mixes a
/// shared base with its own noise in proportion `k / l`.
fn layer_matrices(l: usize, n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut g = SplitMix(seed);
    let base: Vec<f32> = (0..n * n).map(|_| 2.0 * g.unit() - 1.0).collect();
    (0..l)
        .into_par_iter()
        .map(|k| {
            let mut g = SplitMix(seed ^ (k as u64 + 7).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let w = k as f32 / l as f32;
            let mut m = vec![0f32; n * n];
            for i in 0..n {
                m[i * n + i] = 1.0;
                for j in i + 1..n {
                    let v = (1.0 - w) * base[i * n + j] + w * (2.0 * g.unit() - 1.0);
                    m[i * n + j] = v;
                    m[j * n + i] = v;
                }
            }
            m
        })
        .collect()
}

/// `VmHWM` (peak resident set) of this process, in bytes.
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite timings"));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

fn json_list(xs: &[f64]) -> String {
    let items: Vec<String> = xs.iter().map(|x| format!("{x:.6}")).collect();
    format!("[{}]", items.join(","))
}

fn usage() -> ! {
    eprintln!(
        "usage: corr_timing N D [pearson|spearman|cosine|euclidean|gram] [repeats]\n       \
         corr_timing --similarity L N [repeats]"
    );
    std::process::exit(2)
}

fn parse<T: std::str::FromStr>(s: Option<&String>, what: &str) -> T {
    match s.map(|s| s.parse::<T>()) {
        Some(Ok(v)) => v,
        _ => {
            eprintln!("corr_timing: bad or missing {what}");
            usage()
        }
    }
}

/// CPU time (user + system) of every thread of this process so far, in
/// seconds: on a machine shared with other work, a steadier measure of the
/// work done than the wall clock. 0 where `getrusage` is not at hand.
#[cfg(not(target_os = "linux"))]
fn cpu_seconds() -> f64 {
    0.0
}

/// See the other build of this function.
#[cfg(target_os = "linux")]
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Runs `f` `repeats` times (after an optional warm-up) and returns the
/// wall and CPU times of each run.
fn time_runs<I, S, F, R>(
    repeats: usize,
    warm_up: bool,
    mut input: S,
    mut f: F,
) -> (Vec<f64>, Vec<f64>)
where
    S: FnMut() -> I,
    F: FnMut(I) -> R,
{
    if warm_up {
        std::hint::black_box(f(input()));
    }
    (0..repeats)
        .map(|_| {
            let x = input();
            let (t, c) = (Instant::now(), cpu_seconds());
            let r = f(x);
            let times = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
            drop(std::hint::black_box(r));
            times
        })
        .unzip()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args[0] == "-h" || args[0] == "--help" {
        usage();
    }
    let threads = rayon::current_num_threads();
    if args[0] == "--similarity" {
        let l: usize = parse(args.get(1), "L");
        let n: usize = parse(args.get(2), "N");
        let repeats: usize = args.get(3).map_or(5, |_| parse(args.get(3), "repeats"));
        let t = Instant::now();
        let mats = layer_matrices(l, n, 42);
        let gen = t.elapsed().as_secs_f64();
        let refs: Vec<&[f32]> = mats.iter().map(|m| &m[..]).collect();
        let (times, _) = time_runs(
            repeats.max(1),
            true,
            || (),
            |()| similarity_matrix(&refs, n, CompareMethod::Pearson).expect("valid matrices"),
        );
        println!(
            "{{\"mode\":\"similarity\",\"l\":{l},\"n\":{n},\"method\":\"pearson\",\
             \"seconds_median\":{:.6},\"seconds_all\":{},\"peak_rss_bytes\":{},\
             \"input_bytes\":{},\"generate_seconds\":{gen:.3},\"threads\":{threads}}}",
            median(&times),
            json_list(&times),
            peak_rss_bytes(),
            l * n * n * 4,
        );
        return;
    }
    let n: usize = parse(args.first(), "N");
    let d: usize = parse(args.get(1), "D");
    let method: CorrMethod = args
        .get(2)
        .map_or(CorrMethod::Pearson, |_| parse(args.get(2), "method"));
    let repeats: usize = args
        .get(3)
        .map_or(3, |_| parse(args.get(3), "repeats"))
        .max(1);
    let input_bytes = n * d * 4;
    // CORR_TIMING_STREAM=1: rows borrowed and pushed as one block, as from
    // a DuckDB chunk (see the module documentation).
    let stream = std::env::var("CORR_TIMING_STREAM").is_ok_and(|v| v == "1");
    let t = Instant::now();
    let data = activations(n, d, 42);
    let gen = t.elapsed().as_secs_f64();
    let warm_up = input_bytes <= WARM_UP_MAX_BYTES;
    let mut check = f32::NAN;
    // The last call takes the generated buffer itself, so that with one
    // repeat (the largest sizes) only one copy of the input ever exists.
    let mut data = Some(data);
    let mut calls_left = repeats + usize::from(warm_up);
    let (times, cpu) = time_runs(
        repeats,
        warm_up,
        || {
            calls_left -= 1;
            let buf = if calls_left == 0 {
                data.take().expect("input still there")
            } else {
                data.as_ref().expect("input still there").clone()
            };
            RowMatrix::from_vec(buf, n, d).expect("shape")
        },
        |rows| {
            let m = if stream {
                streamed(&rows, method)
            } else {
                correlation_matrix(rows, method).expect("valid activations")
            };
            check = m.get(0, 1);
            m
        },
    );
    println!(
        "{{\"mode\":\"corr\",\"n\":{n},\"d\":{d},\"method\":\"{method}\",\
         \"seconds_median\":{:.6},\"seconds_all\":{},\"cpu_seconds_median\":{:.6},\
         \"cpu_seconds_all\":{},\"peak_rss_bytes\":{},\
         \"input_bytes\":{input_bytes},\"warm_up\":{warm_up},\"r01\":{check},\
         \"generate_seconds\":{gen:.3},\"threads\":{threads},\"stream\":{stream}}}",
        median(&times),
        json_list(&times),
        median(&cpu),
        json_list(&cpu),
        peak_rss_bytes(),
    );
}

/// The matrix of a [`CorrAccumulator`] given borrowed rows as one block.
fn streamed(rows: &RowMatrix, method: CorrMethod) -> layercorr_kernels::SquareMatrix<f32> {
    let keep_in_memory = std::env::var("CORR_TIMING_SPILL").is_ok_and(|v| v == "off");
    let policy = SpillPolicy::in_temp_dir((!keep_in_memory).then_some(256 << 20));
    let batch: Vec<&[f32]> = (0..rows.n()).map(|i| rows.row(i)).collect();
    let mut acc = CorrAccumulator::new(rows.d(), method);
    acc.push_rows(&batch, &policy, &mut BlockBuffers::default())
        .expect("valid activations");
    let order: Vec<usize> = (0..rows.n()).collect();
    acc.finish(&order).expect("valid activations")
}

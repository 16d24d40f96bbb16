//! Sorting a tier's packed shuffle keys (see `select`): a bucket pass over
//! the keys' range, then an insertion sort that only moves keys within
//! their bucket.
//!
//! A general comparison sort spends ~90 instructions per key on the ~150
//! keys of a continent tier, a third of the server's work per answer. These
//! keys are random and spread smoothly over their range (their bit
//! patterns are floats, so the spread is roughly logarithmic), which a
//! bucket pass exploits: about one bucket per key, a handful of keys in
//! the fullest. A tier whose keys crowd into one bucket (possible, not
//! expected) goes to the comparison sort instead, so the worst case stays
//! O(n log n).
//!
//! The result is exactly the ascending order of the `u64`s, the same as
//! `sort_unstable`'s: keys carry distinct slots, so there are no ties to
//! order differently.

/// Tiers this small are left to the comparison sort: its sorting networks
/// beat the fixed cost of the buckets.
const SMALL: usize = 32;

/// Past this many keys in one bucket, insertion sort could go quadratic:
/// the comparison sort is used instead.
const CROWDED: u32 = 32;

/// The largest tier sorted with buckets (a power of two). Larger ones, rare
/// (a global tier of a network this size), go to the comparison sort. Fixed
/// so that indexes masked to it need no bounds checks.
const MAX: usize = 1024;

/// Reusable buffers for [`sort`], so that sorting allocates nothing.
#[derive(Clone, Debug)]
pub struct Scratch {
    spare: Box<[u64; MAX]>,
    counts: Box<[u32; MAX]>,
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            spare: Box::new([0; MAX]),
            counts: Box::new([0; MAX]),
        }
    }
}

/// Sorts `keys` ascending.
pub fn sort(keys: &mut [u64], scratch: &mut Scratch) {
    let n = keys.len();
    if !(SMALL < n && n <= MAX) {
        keys.sort_unstable();
        return;
    }
    let (mut lo, mut hi) = (u64::MAX, 0);
    for &k in keys.iter() {
        if k < lo {
            lo = k;
        }
        if k > hi {
            hi = k;
        }
    }
    // Buckets of 2^shift consecutive values, fewer than 2n of them over
    // the range (the power of two at or above n, halved at most once by
    // the range's own width): at most MAX.
    let span = hi - lo;
    let wanted_bits = n.next_power_of_two().trailing_zeros();
    let shift = (u64::BITS - span.leading_zeros()).saturating_sub(wanted_bits);
    let buckets = (span >> shift) as usize + 1;
    // The mask changes nothing (buckets <= MAX) but lets the compiler drop
    // the bounds checks.
    let bucket = |k: u64| ((k - lo) >> shift) as usize & (MAX - 1);

    let counts = &mut scratch.counts[..buckets];
    counts.fill(0);
    for &k in keys.iter() {
        scratch.counts[bucket(k)] += 1;
    }
    // Counts become each bucket's start.
    let counts = &mut scratch.counts[..buckets];
    let mut fullest = 0;
    let mut sum = 0;
    for c in counts.iter_mut() {
        let count = *c;
        fullest = fullest.max(count);
        *c = sum;
        sum += count;
    }
    if fullest > CROWDED {
        keys.sort_unstable();
        return;
    }

    for &k in keys.iter() {
        let b = bucket(k);
        let at = scratch.counts[b] as usize;
        scratch.spare[at & (MAX - 1)] = k;
        scratch.counts[b] += 1;
    }
    // Buckets are in order, so a key moves back past keys of its own
    // bucket only: at most CROWDED steps. Whether a key moves at all is a
    // coin toss for the branch predictor (about one key in four does;
    // that branch was most of the sort's cycles), so the first step is
    // taken without a branch: the largest key so far, kept in a register,
    // goes to the end either way, and only a second step, rare and well
    // predicted, branches.
    let sorted = &mut scratch.spare[..n];
    let mut top = sorted[0];
    for i in 1..n {
        let k = sorted[i];
        let moves = top > k;
        top = top.max(k);
        sorted[i] = top;
        let mut j = i - usize::from(moves);
        while j > 0 && sorted[j - 1] > k {
            sorted[j] = sorted[j - 1];
            j -= 1;
        }
        sorted[j] = k;
    }
    keys.copy_from_slice(sorted);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shuffle_rng::ShuffleRng;
    use rand::{Rng, SeedableRng};

    fn check(keys: Vec<u64>, scratch: &mut Scratch) {
        let mut want = keys.clone();
        want.sort_unstable();
        let mut got = keys;
        sort(&mut got, scratch);
        assert_eq!(got, want);
    }

    #[test]
    fn same_order_as_a_comparison_sort() {
        let mut rng = ShuffleRng::seed_from_u64(7);
        let mut scratch = Scratch::default();
        // Around the small-tier boundary and well past it; shuffle keys as
        // select packs them (floats' bits, slots below).
        for n in [
            0, 1, 2, 31, 32, 33, 34, 63, 64, 65, 150, 577, 1023, 1024, 1025, 5000,
        ] {
            for _ in 0..20 {
                let keys = (0..n)
                    .map(|slot| {
                        let bandwidth = f64::from(rng.random_range(1u32..100_000));
                        let key = -(1.0 - rng.random::<f64>()).ln() / bandwidth;
                        (key.to_bits() & !0xff_ffff) | slot as u64
                    })
                    .collect();
                check(keys, &mut scratch);
            }
        }
    }

    #[test]
    fn crowded_and_degenerate_ranges() {
        let mut scratch = Scratch::default();
        // One outlier stretches the range: nearly every key in bucket 0,
        // which goes to the comparison sort.
        let mut keys: Vec<u64> = (0..200u64).rev().collect();
        keys.push(u64::MAX);
        check(keys.clone(), &mut scratch);
        // The same, sorted with the buckets once the outlier is gone: the
        // scratch from the crowded attempt must not leak into it.
        keys.pop();
        check(keys, &mut scratch);
        // Keys that differ in their lowest bits only (span below the
        // bucket count: shift 0).
        check(
            (0..100u64).rev().map(|k| k + 1_000_000).collect(),
            &mut scratch,
        );
        // Already sorted, reversed, and the extremes of the range.
        check((0..1000u64).map(|k| k << 40).collect(), &mut scratch);
        check((0..1000u64).rev().map(|k| k << 40).collect(), &mut scratch);
        let mut ends: Vec<u64> = (0..40u64).collect();
        ends.extend((0..40u64).map(|k| u64::MAX - k));
        check(ends, &mut scratch);
        // Repeated values (select never makes them, sort still must).
        check([5u64, 3, 5, 3, 9].repeat(20), &mut scratch);
    }
}

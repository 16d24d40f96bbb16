//! Exp(1) variates by the ziggurat method (Marsaglia and Tsang, 2000),
//! 256 layers, for the bandwidth-weighted shuffle: every host of every
//! answer draws one, ~190 per /mirrorlist answer, so this is the hottest
//! arithmetic of selection.
//!
//! `rand_distr`'s `Exp1` is the same method, but measured at ~55
//! instructions a draw under callgrind (a generic routine called through
//! `Rng::sample`); this one is ~15 in the common case: one 64-bit draw
//! whose low byte picks a layer and whose top 53 bits place the point, a
//! multiply and a compare. About 1.1% of draws (the layer edges and the
//! tail) take the slow path, which is exact.
//!
//! The tables are built once per process from the method's two constants.

use std::sync::LazyLock;

use rand::RngCore;

/// The right edge of the base layer's rectangle: the tail starts here.
const R: f64 = 7.697_117_470_131_05;
/// The area of each layer (the base layer's includes the tail).
const V: f64 = 3.949_659_822_581_572e-3;
/// 2^-53: a 53-bit integer times this is uniform in [0, 1).
const TO_UNIT: f64 = 1.0 / (1u64 << 53) as f64;

/// The layers: `x[i]` is the right edge of layer `i` (`x[0]` the width the
/// base layer would have as a plain rectangle of area [`V`]), `x[256]` is
/// 0; `f[i]` is exp(-x[i]).
#[derive(Debug)]
pub struct Ziggurat {
    /// `x[i]` × 2^-53, so a point is one multiply from the 53 random bits.
    scaled: [f64; 256],
    x: [f64; 257],
    f: [f64; 257],
}

static TABLES: LazyLock<Ziggurat> = LazyLock::new(Ziggurat::build);

/// The process's tables.
pub fn ziggurat() -> &'static Ziggurat {
    &TABLES
}

impl Ziggurat {
    fn build() -> Ziggurat {
        let (x, _) = edges();
        let mut f = [0.0; 257];
        let mut scaled = [0.0; 256];
        for i in 0..257 {
            f[i] = (-x[i]).exp();
        }
        for i in 0..256 {
            scaled[i] = x[i] * TO_UNIT;
        }
        Ziggurat { scaled, x, f }
    }

    /// One Exp(1) variate: finite, >= 0.
    #[inline]
    pub fn sample(&self, rng: &mut impl RngCore) -> f64 {
        loop {
            let bits = rng.next_u64();
            let i = (bits & 0xff) as usize;
            let x = (bits >> 11) as f64 * self.scaled[i];
            // Left of the next layer's edge, the point is under the curve
            // whatever its height.
            if x < self.x[i + 1] {
                return x;
            }
            if let Some(x) = self.edge(i, x, rng) {
                return x;
            }
        }
    }

    /// The slow path: the tail beyond [`R`] for the base layer, else the
    /// wedge of layer `i` between the curve and its rectangle.
    #[cold]
    fn edge(&self, i: usize, x: f64, rng: &mut impl RngCore) -> Option<f64> {
        if i == 0 {
            // Exp is memoryless: the tail is R plus another Exp(1).
            let u = unit_open(rng);
            return Some(R - u.ln());
        }
        // A height uniform over the layer; below the curve is accepted.
        let y = self.f[i] + (self.f[i + 1] - self.f[i]) * unit_open(rng);
        (y < (-x).exp()).then_some(x)
    }
}

/// Uniform in (0, 1]: never 0, so its logarithm is finite.
fn unit_open(rng: &mut impl RngCore) -> f64 {
    ((rng.next_u64() >> 11) + 1) as f64 * TO_UNIT
}

/// The layer edges, and the last edge as computed before it is set to 0
/// (how well the constants close the ziggurat).
fn edges() -> ([f64; 257], f64) {
    let mut x = [0.0; 257];
    x[0] = V / (-R).exp();
    x[1] = R;
    for i in 1..256 {
        // Layer i has area V: x[i] × (f(x[i+1]) − f(x[i])) = V.
        x[i + 1] = -(V / x[i] + (-x[i]).exp()).ln();
    }
    let last = x[256];
    x[256] = 0.0;
    (x, last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shuffle_rng::ShuffleRng;
    use rand::SeedableRng;

    #[test]
    fn the_layers_close_at_zero_and_shrink() {
        let (x, last) = edges();
        assert!(last.abs() < 1e-9, "the top edge lands at {last}");
        assert!(x.windows(2).all(|w| w[0] > w[1]), "edges decrease");
        let z = ziggurat();
        assert_eq!(z.f[256], 1.0);
        assert!((z.f[1] - (-R).exp()).abs() < 1e-18);
    }

    #[test]
    fn draws_follow_exp1() {
        let z = ziggurat();
        let mut rng = ShuffleRng::seed_from_u64(42);
        let n = 400_000;
        let mut xs: Vec<f64> = (0..n).map(|_| z.sample(&mut rng)).collect();
        assert!(xs.iter().all(|x| x.is_finite() && *x >= 0.0));
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
        // Kolmogorov–Smirnov distance to 1 − e^−x; 1.95/√n is the 0.1%
        // critical value.
        xs.sort_by(f64::total_cmp);
        let d = xs
            .iter()
            .enumerate()
            .map(|(k, &x)| {
                let cdf = 1.0 - (-x).exp();
                (cdf - k as f64 / n as f64)
                    .abs()
                    .max((cdf - (k + 1) as f64 / n as f64).abs())
            })
            .fold(0.0, f64::max);
        assert!(d < 1.95 / (n as f64).sqrt(), "KS distance {d}");
        // The tail beyond R (slow path) has its share: e^−R ≈ 4.5e-4.
        let tail = xs.iter().filter(|&&x| x > R).count() as f64 / n as f64;
        assert!((tail - (-R).exp()).abs() < 1.5e-4, "tail share {tail}");
    }
}

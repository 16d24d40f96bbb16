//! The shuffle's random numbers: wyrand (Wang Yi's generator, the one
//! behind Go's runtime and the `fastrand` crate), a 64-bit counter mixed
//! by one 64 × 64 → 128-bit multiply.
//!
//! Each answer draws ~190 numbers (one Exp(1) variate per host,
//! [`crate::exp`]), so the generator's cost is per host: xoshiro256++
//! (`rand`'s `SmallRng`) measured ~15 instructions a draw under callgrind,
//! about 5% of a /mirrorlist answer, most of it loading and storing its
//! four words of state. wyrand keeps one word, adds a constant and
//! multiplies. Its output passes BigCrush and PractRand; it is not
//! cryptographic, and need not be: the draws only spread clients across
//! mirrors in proportion to their bandwidth.
//!
//! Each connection task seeds its own from the operating system's
//! generator (`rand::rng()`); tests seed it with a fixed number.

use rand::{RngCore, SeedableRng};

/// The counter's increment (an odd constant: the period is 2^64).
const INCREMENT: u64 = 0xa076_1d64_78bd_642f;
/// What the counter is xored with before the multiply.
const MIX: u64 = 0xe703_7ed1_a0b4_28db;

/// The shuffle's generator. Cloning it repeats its sequence.
#[derive(Debug, Clone)]
pub struct ShuffleRng {
    state: u64,
}

impl RngCore for ShuffleRng {
    #[inline]
    fn next_u32(&mut self) -> u32 {
        // The high half: the multiply mixes it best.
        (self.next_u64() >> 32) as u32
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(INCREMENT);
        let product = u128::from(self.state) * u128::from(self.state ^ MIX);
        (product >> 64) as u64 ^ product as u64
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        let mut chunks = dst.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let bytes = self.next_u64().to_le_bytes();
            rest.copy_from_slice(&bytes[..rest.len()]);
        }
    }
}

impl SeedableRng for ShuffleRng {
    type Seed = [u8; 8];

    fn from_seed(seed: [u8; 8]) -> ShuffleRng {
        ShuffleRng {
            state: u64::from_le_bytes(seed),
        }
    }

    // `SeedableRng`'s default spreads the number through a PCG step; the
    // counter needs no such care (every state is as good as any other), so
    // the seed is the state.
    fn seed_from_u64(state: u64) -> ShuffleRng {
        ShuffleRng { state }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers for state 0, worked out apart from this code (with
    /// Python's integers), so a wrong constant or mix fails here.
    #[test]
    fn matches_the_published_generator() {
        let mut rng = ShuffleRng::seed_from_u64(0);
        assert_eq!(rng.next_u64(), 0x111c_b3a7_8f59_a58e);
        assert_eq!(rng.next_u64(), 0xceab_d938_ff4e_856d);
        assert_eq!(rng.next_u64(), 0x61fb_5131_8f47_d2a4);
        let mut rng = ShuffleRng::seed_from_u64(0);
        assert_eq!(rng.next_u32(), 0x111c_b3a7);
    }

    /// Every bit of the output is set about half the time, and each byte
    /// value of the low byte (the ziggurat's layer) about 1/256 of it.
    #[test]
    fn bits_and_low_bytes_are_balanced() {
        let mut rng = ShuffleRng::seed_from_u64(12_345);
        const N: usize = 256 * 1024;
        let mut ones = [0u32; 64];
        let mut bytes = [0u32; 256];
        for _ in 0..N {
            let x = rng.next_u64();
            for (bit, count) in ones.iter_mut().enumerate() {
                *count += ((x >> bit) & 1) as u32;
            }
            bytes[(x & 0xff) as usize] += 1;
        }
        for (bit, &count) in ones.iter().enumerate() {
            let share = f64::from(count) / N as f64;
            assert!((share - 0.5).abs() < 0.005, "bit {bit} set {share}");
        }
        // 1024 expected per value; six standard deviations is ~192.
        for (value, &count) in bytes.iter().enumerate() {
            assert!((832..=1216).contains(&count), "low byte {value}: {count}");
        }
    }

    #[test]
    fn fill_bytes_is_the_little_endian_stream() {
        let mut a = ShuffleRng::seed_from_u64(3);
        let mut b = a.clone();
        let mut buf = [0u8; 13];
        a.fill_bytes(&mut buf);
        let first = b.next_u64().to_le_bytes();
        let second = b.next_u64().to_le_bytes();
        assert_eq!(&buf[..8], &first);
        assert_eq!(&buf[8..], &second[..5]);
    }

    #[test]
    fn seeds_give_different_streams() {
        let mut a = ShuffleRng::seed_from_u64(1);
        let mut b = ShuffleRng::from_seed(2u64.to_le_bytes());
        assert_ne!(a.next_u64(), b.next_u64());
        let mut c = ShuffleRng::seed_from_u64(1);
        let mut d = ShuffleRng::from_seed(1u64.to_le_bytes());
        assert_eq!(c.next_u64(), d.next_u64());
    }
}

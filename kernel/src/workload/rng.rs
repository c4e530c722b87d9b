//! The workload's random draws: a small, seedable PRNG, and draws from a plan's histograms.

use dks_protocol::scenario::Histogram;

/// A small, seedable PRNG (xorshift64*).
#[derive(Debug)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// A value of `histogram` (see `dks_protocol::scenario::Histogram`).
    pub(super) fn draw(&mut self, histogram: &Histogram) -> u64 {
        let total: u64 = histogram.buckets.iter().map(|b| b.weight).sum();
        let mut pick = self.below(total);
        let mut low = 0u64;
        for bucket in &histogram.buckets {
            let high = u64::from(bucket.up_to_bytes);
            if pick < bucket.weight {
                return low + 1 + self.below(high - low);
            }
            pick -= bucket.weight;
            low = high;
        }
        low
    }

    /// A time around `mean_ms`: uniform in [mean/2, 3·mean/2], at least 1.
    pub(super) fn around(&mut self, mean_ms: u32) -> u64 {
        let mean = u64::from(mean_ms.max(1));
        (mean / 2 + self.below(mean + 1)).max(1)
    }
}

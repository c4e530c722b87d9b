//! Injected allocation failures.
//!
//! A [`FailurePattern`] says which allocation attempts fail on purpose; the
//! pool still fails for real when it runs out. Patterns are deterministic:
//! a fraction draws from a PRNG seeded by the configuration, so a failing
//! test case replays exactly.

use crate::frame::Urgency;

/// Which allocations fail on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePattern {
    /// None.
    Never,
    /// Every `n`th attempt (the `n`th, `2n`th, ...), whatever its urgency.
    /// `EveryNth(0)` and `EveryNth(1)` fail every attempt.
    EveryNth(u32),
    /// Each attempt independently, with probability `per_mille / 1000`.
    Fraction {
        /// Failures per thousand attempts.
        per_mille: u16,
    },
    /// Every atomic attempt; normal ones succeed.
    AllAtomic,
}

/// Decides, attempt by attempt, whether to fail.
#[derive(Clone, Debug)]
pub(crate) struct Injector {
    pattern: FailurePattern,
    attempts: u64,
    rng: SplitMix64,
}

impl Injector {
    pub(crate) fn new(pattern: FailurePattern, seed: u64) -> Self {
        Self {
            pattern,
            attempts: 0,
            rng: SplitMix64(seed),
        }
    }

    pub(crate) fn set_pattern(&mut self, pattern: FailurePattern) {
        self.pattern = pattern;
    }

    /// Returns whether this attempt fails on purpose.
    pub(crate) fn fails(&mut self, urgency: Urgency) -> bool {
        self.attempts += 1;
        match self.pattern {
            FailurePattern::Never => false,
            FailurePattern::EveryNth(n) => n <= 1 || self.attempts.is_multiple_of(u64::from(n)),
            FailurePattern::Fraction { per_mille } => self.rng.next() % 1000 < u64::from(per_mille),
            FailurePattern::AllAtomic => urgency == Urgency::Atomic,
        }
    }
}

/// A small, fast, seedable PRNG (Steele, Lea and Flood's SplitMix64).
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests;

//! Group charges: the memory-cgroup analogue for stack memory.
//!
//! Every stack belongs to a group ([`GroupId`], an index into the kernel's
//! table of [`GroupCharge`]s). A group's charge is the populated memory of
//! its live stacks, in pages, and it may have a limit.
//!
//! # Where the limit applies
//!
//! A charge that may fail is taken where failing is allowed: thread creation
//! ([`GroupCharge::try_charge`]; on failure the creation gives everything
//! back). A stack fault cannot fail without killing its thread, so it charges
//! with [`GroupCharge::force_charge`], which may go over the limit and counts
//! when it does, as memcg does for charges that must not fail. Charges are
//! lock-free atomics, safe from any CPU and from the fault path.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

const NO_LIMIT: u64 = u64::MAX;

/// The number of a group: an index into the kernel's table of charges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupId(u16);

impl GroupId {
    /// Returns group number `index`.
    #[must_use]
    pub const fn new(index: u16) -> Self {
        Self(index)
    }

    /// Returns the group number as an index into a table of groups.
    #[must_use]
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }
}

/// A charge that would exceed the group's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChargeError {
    /// Pages asked for.
    pub pages: u64,
    /// Pages charged at the time.
    pub charged_pages: u64,
    /// The group's limit.
    pub limit_pages: u64,
}

impl fmt::Display for ChargeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "charging {} stack pages would exceed the group limit ({} of {} in use)",
            self.pages, self.charged_pages, self.limit_pages
        )
    }
}

impl core::error::Error for ChargeError {}

/// The stack memory charged to one group, with an optional limit.
#[derive(Debug)]
pub struct GroupCharge {
    charged_pages: AtomicU64,
    peak_pages: AtomicU64,
    limit_pages: AtomicU64,
    over_limit: AtomicU64,
}

impl GroupCharge {
    /// Returns an empty charge with at most `limit_pages` pages (`None`: no
    /// limit).
    #[must_use]
    pub const fn new(limit_pages: Option<u64>) -> Self {
        let limit = match limit_pages {
            Some(limit) => limit,
            None => NO_LIMIT,
        };
        Self {
            charged_pages: AtomicU64::new(0),
            peak_pages: AtomicU64::new(0),
            limit_pages: AtomicU64::new(limit),
            over_limit: AtomicU64::new(0),
        }
    }

    /// Returns the pages charged now.
    #[must_use]
    pub fn charged_pages(&self) -> u64 {
        self.charged_pages.load(Ordering::Relaxed)
    }

    /// Returns the most pages ever charged at once.
    #[must_use]
    pub fn peak_pages(&self) -> u64 {
        self.peak_pages.load(Ordering::Relaxed)
    }

    /// Returns the limit, if any.
    #[must_use]
    pub fn limit_pages(&self) -> Option<u64> {
        match self.limit_pages.load(Ordering::Relaxed) {
            NO_LIMIT => None,
            limit => Some(limit),
        }
    }

    /// Sets the limit (`None`: no limit). Charges already taken stay.
    pub fn set_limit(&self, limit_pages: Option<u64>) {
        self.limit_pages
            .store(limit_pages.unwrap_or(NO_LIMIT), Ordering::Relaxed);
    }

    /// Returns how many forced charges went over the limit.
    #[must_use]
    pub fn over_limit_charges(&self) -> u64 {
        self.over_limit.load(Ordering::Relaxed)
    }

    /// Charges `pages` pages, or fails without charging anything if that
    /// would exceed the limit.
    pub fn try_charge(&self, pages: u64) -> Result<(), ChargeError> {
        let limit_pages = self.limit_pages.load(Ordering::Relaxed);
        let result =
            self.charged_pages
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |charged| {
                    charged.checked_add(pages).filter(|&new| new <= limit_pages)
                });
        match result {
            Ok(old) => {
                self.peak_pages.fetch_max(old + pages, Ordering::Relaxed);
                Ok(())
            }
            Err(charged_pages) => Err(ChargeError {
                pages,
                charged_pages,
                limit_pages,
            }),
        }
    }

    /// Charges `pages` pages even beyond the limit (for charges that must not
    /// fail, like a stack fault), counting it when the limit is exceeded.
    pub fn force_charge(&self, pages: u64) {
        let new = self.charged_pages.fetch_add(pages, Ordering::Relaxed) + pages;
        self.peak_pages.fetch_max(new, Ordering::Relaxed);
        if new > self.limit_pages.load(Ordering::Relaxed) {
            self.over_limit.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Gives back `pages` pages.
    ///
    /// # Panics
    ///
    /// In debug builds, if fewer pages are charged (an accounting bug).
    pub fn uncharge(&self, pages: u64) {
        let old = self.charged_pages.fetch_sub(pages, Ordering::Relaxed);
        debug_assert!(old >= pages, "uncharging {pages} pages of {old}");
    }
}

impl Default for GroupCharge {
    fn default() -> Self {
        Self::new(None)
    }
}

#[cfg(test)]
mod tests;

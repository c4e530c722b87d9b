//! The stack policies of DESIGN §4.
//!
//! Each thread gets a [`Policy`] at creation; several run side by side. What
//! each one does at every event of a thread's life:
//!
//! | event            | `static`  | `fault`          | `guaranteed`      | `reclaim`                 | `switch`                        | `pack`                                  |
//! |------------------|-----------|------------------|-------------------|---------------------------|---------------------------------|-----------------------------------------|
//! | creation         | all pages | top page         | top page          | top page                  | top page                        | top page                                |
//! | before switch-in | -         | -                | admit if magazine ≥ need | admit if magazine ≥ need | admit, then map every page | restore if packed, then admit           |
//! | stack fault      | never     | magazine; fatal if empty | magazine, never empty | magazine, never empty | never                   | magazine, never empty; fatal if packed  |
//! | after switch-in  | -         | refill (atomic)  | -                 | -                         | -                               | -                                       |
//! | switch-out       | -         | -                | -                 | -                         | unmap dead pages, Accessed clear| -                                       |
//! | memory pressure  | -         | -                | -                 | unmap dead pages if asleep| unmap dead pages if asleep      | unmap dead pages if asleep              |
//! | long sleep       | -         | -                | -                 | -                         | -                               | pack: live bytes to a buffer, free pages|
//! | wake-up          | -         | -                | -                 | -                         | -                               | restore (page from the magazine)        |
//! | exit             | release   | release          | release           | release                   | release                         | release (and its buffer)                |
//!
//! `need(T) = max_pages - populated(T)`. "Dead" pages are populated pages
//! wholly below the saved stack pointer and its red zone
//! ([`reclaim::dead_pages`](crate::reclaim::dead_pages)). Packing and
//! restoring are in [`pack`](crate::pack).

use core::fmt;
use core::str::FromStr;

use crate::layout::StackLayout;
use crate::page_set::PageSet;

/// How a thread's stack is populated and given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Linux today: every page populated at creation, freed at exit.
    Static,
    /// The RFC as posted: faults served from the magazine, refilled after the
    /// switch with atomic allocations; a fault on an empty magazine is fatal.
    Fault,
    /// As `Fault`, but a CPU switches to the task only when its magazine
    /// covers the task's need, so no fault can find it empty.
    Guaranteed,
    /// As `Guaranteed`, and pages below a sleeping task's stack pointer are
    /// given back under memory pressure.
    Reclaim,
    /// Dave Hansen's proposal: every page mapped while the task runs; at
    /// switch-out, dead pages never accessed are unmapped without a flush.
    Switch,
    /// As `Reclaim`, and the live bytes of a thread asleep longer than a
    /// threshold are packed into a small buffer and its pages given back; the
    /// stack is restored on the wake path, before it can run ([`pack`](crate::pack)).
    Pack,
}

impl Policy {
    /// Every policy, in the order reports list them.
    pub const ALL: [Self; 6] = [
        Self::Static,
        Self::Fault,
        Self::Guaranteed,
        Self::Reclaim,
        Self::Switch,
        Self::Pack,
    ];

    /// The number of policies: the size of every per-policy table.
    pub const COUNT: usize = Self::ALL.len();

    /// Returns the policy's position in [`Self::ALL`], its index in per-policy tables.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Returns the policy's name as scenarios and reports spell it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Fault => "fault",
            Self::Guaranteed => "guaranteed",
            Self::Reclaim => "reclaim",
            Self::Switch => "switch",
            Self::Pack => "pack",
        }
    }

    /// Returns the pages populated when a thread is created.
    #[must_use]
    pub const fn initial_pages(self, layout: &StackLayout) -> PageSet {
        match self {
            Self::Static => layout.all_pages(),
            Self::Fault | Self::Guaranteed | Self::Reclaim | Self::Switch | Self::Pack => {
                PageSet::top(1)
            }
        }
    }

    /// Returns whether the task's stack grows by faults.
    #[must_use]
    pub const fn grows_by_fault(self) -> bool {
        matches!(
            self,
            Self::Fault | Self::Guaranteed | Self::Reclaim | Self::Pack
        )
    }

    /// Returns whether a CPU must admit the task before switching to it
    /// (its magazine covers the task's need).
    #[must_use]
    pub const fn needs_admission(self) -> bool {
        matches!(
            self,
            Self::Guaranteed | Self::Reclaim | Self::Switch | Self::Pack
        )
    }

    /// Returns whether every page is mapped before the task runs.
    #[must_use]
    pub const fn maps_all_while_running(self) -> bool {
        matches!(self, Self::Switch)
    }

    /// Returns whether the magazine is refilled after switching to the task.
    #[must_use]
    pub const fn refills_after_switch(self) -> bool {
        matches!(self, Self::Fault)
    }

    /// Returns whether dead pages are given back while the task sleeps.
    #[must_use]
    pub const fn reclaims_while_asleep(self) -> bool {
        matches!(self, Self::Reclaim | Self::Switch | Self::Pack)
    }

    /// Returns whether the stack of a long sleeper is packed into a buffer.
    #[must_use]
    pub const fn packs_while_asleep(self) -> bool {
        matches!(self, Self::Pack)
    }
}

const _: () = {
    let mut i = 0;
    while i < Policy::COUNT {
        assert!(
            Policy::ALL[i].index() == i,
            "Policy::ALL is in declaration order"
        );
        i += 1;
    }
};

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownPolicy;

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown policy; use ")?;
        for (i, policy) in Policy::ALL.iter().enumerate() {
            let separator = match i {
                0 => "",
                i if i + 1 == Policy::COUNT => " or ",
                _ => ", ",
            };
            write!(f, "{separator}{policy}")?;
        }
        Ok(())
    }
}

impl core::error::Error for UnknownPolicy {}

impl FromStr for Policy {
    type Err = UnknownPolicy;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|policy| policy.name() == name)
            .ok_or(UnknownPolicy)
    }
}

/// Policies travel as their names (`"static"`, ...), in records, plans and reports.
#[cfg(feature = "serde")]
impl serde::Serialize for Policy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Policy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = Policy;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a policy name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Policy, E> {
                name.parse()
                    .map_err(|_| E::unknown_variant(name, &POLICY_NAMES))
            }
        }
        deserializer.deserialize_str(Name)
    }
}

/// The names of [`Policy::ALL`], in that order.
pub const POLICY_NAMES: [&str; Policy::COUNT] = {
    let mut names = [""; Policy::COUNT];
    let mut i = 0;
    while i < Policy::COUNT {
        names[i] = Policy::ALL[i].name();
        i += 1;
    }
    names
};

#[cfg(test)]
mod tests;

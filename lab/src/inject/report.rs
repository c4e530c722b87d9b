//! What was injected into a boot ([`Injected`]), what the kernel says it handled
//! ([`Handled`]), and the two side by side ([`Report`]).

use dks_protocol::record::Record;
use serde::Serialize;

use super::{MceKind, Plan};

/// What the driver injected into one boot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Injected {
    /// NMIs QEMU accepted (`inject-nmi` answered).
    pub nmis: u64,
    /// Machine checks QEMU acted on.
    pub machine_checks: u64,
    /// Of those, the ones the kernel reported with a `MachineCheck` record of their CPU and
    /// bank before the next was sent (always `machine_checks` or one less when the boot ended
    /// in between, unless injection stopped).
    pub machine_checks_reported: u64,
    /// Why the injection stopped short because of the kernel (a machine check not reported in
    /// time, QEMU refusing one because of the guest's settings): the boot cannot count as a
    /// success then.
    pub shortfall: Option<String>,
    /// Things worth knowing that change no verdict (the boot ended before all NMIs were sent,
    /// what QEMU said about an injection).
    pub notes: Vec<String>,
}

/// What the kernel says it handled, from its records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Handled {
    /// NMIs handled, all CPUs (the last `TrapStat`); `None` without a `TrapStat` record.
    pub nmis: Option<u64>,
    /// Of those, NMIs that interrupted another trap handler.
    pub nmis_nested: Option<u64>,
    /// #MC exceptions taken (the last `TrapStat`).
    pub machine_check_exceptions: Option<u64>,
    /// `MachineCheck` records, by severity.
    pub mce_corrected: u64,
    /// See [`Handled::mce_corrected`].
    pub mce_recoverable: u64,
    /// See [`Handled::mce_corrected`].
    pub mce_fatal: u64,
}

impl Handled {
    /// Reads what the kernel handled from a boot's records.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record<'static>>) -> Handled {
        let mut handled = Handled::default();
        for record in records {
            match record {
                Record::TrapStat(stat) => {
                    handled.nmis = Some(stat.nmis);
                    handled.nmis_nested = Some(stat.nmis_nested);
                    handled.machine_check_exceptions = Some(stat.machine_check_exceptions);
                }
                Record::MachineCheck(mc) => match mc.severity.as_ref() {
                    "corrected" => handled.mce_corrected += 1,
                    "recoverable" => handled.mce_recoverable += 1,
                    _ => handled.mce_fatal += 1,
                },
                _ => {}
            }
        }
        handled
    }

    /// `MachineCheck` records of `kind`.
    pub fn machine_checks(&self, kind: MceKind) -> u64 {
        match kind {
            MceKind::Corrected => self.mce_corrected,
            MceKind::Recoverable => self.mce_recoverable,
            MceKind::Fatal => self.mce_fatal,
        }
    }
}

/// Injection into one boot: the plan, what was injected, what the kernel handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// What was asked.
    pub plan: Plan,
    /// CPUs the kernel reported in its `Boot` record.
    pub cpus: Option<u32>,
    /// What the driver did.
    pub injected: Injected,
    /// What the kernel reported.
    pub handled: Handled,
}

impl Report {
    /// One line per kind of injection, for `dks run`'s output.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(nmi) = self.plan.nmi {
            let handled = match self.handled.nmis {
                Some(n) => format!(
                    "the kernel handled {n} ({} nested; each NMI reaches every one of {} CPU(s))",
                    self.handled.nmis_nested.unwrap_or(0),
                    self.cpus.map_or("?".into(), |c| c.to_string())
                ),
                None => "the kernel printed no TrapStat record".into(),
            };
            lines.push(format!(
                "injected {} NMI(s) (asked: {nmi}); {handled}",
                self.injected.nmis
            ));
        }
        if let Some(mce) = self.plan.mce {
            lines.push(format!(
                "injected {} {} machine check(s) (asked: {mce}); the kernel reported {} \
                 (MachineCheck records of that severity)",
                self.injected.machine_checks,
                mce.kind.name(),
                self.handled.machine_checks(mce.kind),
            ));
        }
        if let Some(shortfall) = &self.injected.shortfall {
            lines.push(format!("injection stopped short: {shortfall}"));
        }
        lines.extend(
            self.injected
                .notes
                .iter()
                .map(|n| format!("injection: {n}")),
        );
        lines
    }
}

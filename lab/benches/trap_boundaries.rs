//! NMIs and machine checks at every instruction boundary of the trap entry (issue 9).
//!
//! For each instruction of the entry paths that must survive an NMI or a machine check at
//! any moment (the #PF entry and exit, the whole-frame bounce and its copy, an interrupt's
//! entry and exit, the preemption's move to the thread's stack and its resumption, the
//! context switch, the #MC entry, the NMI entry, and the #MC's return into an interrupted NMI
//! handler), the bench stops a CPU exactly there with a breakpoint through QEMU's gdb stub,
//! injects an NMI or a machine check through the stub's monitor channel (`qRcmd`, QEMU's
//! human monitor), removes the breakpoint and lets the boot run on: the NMI or #MC is taken
//! before that instruction executes. Every boot must end in success, every listed instruction
//! must be reached, and every injection must be handled (the `trap_stat` counts).
//!
//! `cargo bench -p dks-lab --bench trap_boundaries` (about 8 minutes on a 2-core machine; not
//! part of the test suite; `-- --only WORDS` runs the plans whose name contains WORDS, `--
//! --kernel PATH` boots another kernel ELF). It prints one line per plan, writes each plan's
//! console to `target/trap_boundaries-N.log`, and exits non-zero when a boot did not succeed or
//! an instruction was not reached.
//!
//! The stub is as powerful as QEMU's monitor (which can run host commands): QEMU connects to a
//! socket the bench listens on, in a folder only its user can open, as `dks` does for QMP.
//! Instruction boundaries come from the kernel ELF: each region starts at a symbol of the entry
//! assembly (`kernel/hw/src/trap_entry.rs` and `hw/src/context.rs`, which mark regions with global
//! labels) and ends at the next symbol; iced-x86 decodes it.

use std::fs::Permissions;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use dks_core::Policy;
use dks_lab::boot::{self, BootOutcome};
use dks_lab::config::{BootConfig, MemorySize};
use dks_lab::{kernel, qemu, scenario};
use dks_protocol::record::{Record, TrapStat};
use object::{Object, ObjectSection, ObjectSymbol};

/// How long a breakpoint may take to be hit before the instruction counts as not reached.
const REACH_TIMEOUT: Duration = Duration::from_secs(8);
/// How long one gdb command may wait for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a boot may take.
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);

/// What is injected at a breakpoint, and what triggers the handler the breakpoint is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// An NMI (to every CPU) at an instruction of ordinary or #PF/interrupt context.
    Nmi,
    /// A recoverable machine check on the stopped CPU.
    MachineCheck,
    /// A recoverable machine check triggers the #MC handler; an NMI at its instruction.
    NmiInMachineCheck,
    /// An NMI triggers the NMI handler; a machine check at its instruction.
    MachineCheckInNmi,
    /// An NMI, then a machine check inside its handler (at `nmi_dispatch`'s call), returns
    /// into the NMI handler without `iretq`; a second NMI at each instruction of that return
    /// must stay blocked until the first NMI's own `iretq`.
    NmiInMachineCheckInNmi,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Nmi => "NMI",
            Kind::MachineCheck => "#MC",
            Kind::NmiInMachineCheck => "NMI in #MC",
            Kind::MachineCheckInNmi => "#MC in NMI",
            Kind::NmiInMachineCheckInNmi => "NMI in #MC in NMI",
        }
    }
}

/// A recoverable (action optional) error on `cpu`, as `--inject-mce recoverable` sends it.
fn recoverable(cpu: u32) -> String {
    format!("mce {cpu} 1 0xbd000000000000cf 0x5 0x1234000 0")
}

/// One boot: what it runs, where it injects what.
struct Plan {
    name: &'static str,
    kernel_args: Vec<String>,
    cpus: u8,
    initrd: Option<PathBuf>,
    memory: MemorySize,
    /// Injections start once a CPU reaches this symbol (the workload runs).
    gate: Option<&'static str>,
    regions: &'static [&'static str],
    kinds: &'static [Kind],
}

/// Everything a workload boot does: interrupts, preemptions, stack faults by the thousand.
const WORKLOAD_REGIONS: &[&str] = &[
    "trap_common",
    "trap_return",
    "trap_common_moved",
    "trap_preempt_move",
    "trap_preempt_resume",
    "trap_pf_entry",
    "context_switch",
    "context_switch_load",
];
/// The whole-frame bounce of a lazy-region fault (`bench=costs` takes 256 of them with
/// interrupts off).
const BOUNCE_REGIONS: &[&str] = &[
    "trap_pf_bounce",
    "trap_pf_copy",
    "trap_pf_copy_fpu",
    "trap_run_bounced",
    "trap_run_bounced_call",
];

/// A region: its symbol, the addresses of its instructions, and of its first `call`.
#[derive(Clone)]
struct Region {
    name: String,
    instructions: Vec<u64>,
    first_call: Option<u64>,
}

/// The kernel's symbols and code.
struct Image {
    symbols: Vec<(u64, String)>,
    text_base: u64,
    text: Vec<u8>,
}

impl Image {
    fn read(elf: &[u8]) -> Image {
        let file = object::File::parse(elf).expect("the kernel is an ELF file");
        let mut symbols: Vec<(u64, String)> = file
            .symbols()
            .filter(|s| s.address() != 0)
            .filter_map(|s| Some((s.address(), s.name().ok()?.to_owned())))
            .collect();
        symbols.sort();
        let text = file.section_by_name(".text").expect("a .text section");
        Image {
            symbols,
            text_base: text.address(),
            text: text.data().expect(".text data").to_vec(),
        }
    }

    /// The address of the symbol named `exactly`, or else of the first whose name contains
    /// `part` (mangled Rust names).
    fn address(&self, part: &str) -> u64 {
        self.symbols
            .iter()
            .find(|(_, n)| n == part)
            .or_else(|| self.symbols.iter().find(|(_, n)| n.contains(part)))
            .unwrap_or_else(|| panic!("no symbol {part} in the kernel"))
            .0
    }

    /// The instructions from symbol `name` to the next symbol (or to alignment padding).
    fn region(&self, name: &str) -> Region {
        let start = self.address(name);
        let end = self
            .symbols
            .iter()
            .map(|(a, _)| *a)
            .find(|&a| a > start)
            .unwrap_or(self.text_base + self.text.len() as u64);
        let slice = &self.text[(start - self.text_base) as usize..(end - self.text_base) as usize];
        let mut decoder = iced_x86::Decoder::with_ip(64, slice, start, 0);
        let mut region = Region {
            name: name.to_owned(),
            instructions: Vec::new(),
            first_call: None,
        };
        for instruction in &mut decoder {
            // Alignment padding ends a region: the entry code has no NOP of its own.
            match instruction.mnemonic() {
                iced_x86::Mnemonic::Nop | iced_x86::Mnemonic::Int3 => break,
                iced_x86::Mnemonic::Call if region.first_call.is_none() => {
                    region.first_call = Some(instruction.ip());
                }
                _ => {}
            }
            region.instructions.push(instruction.ip());
        }
        region
    }
}

/// QEMU's gdb stub, spoken to over the remote serial protocol.
struct Gdb {
    stream: UnixStream,
    buffer: Vec<u8>,
    /// QEMU closed the connection (the boot ended): every later answer is `W00`.
    closed: bool,
}

#[derive(Debug)]
enum Stop {
    /// A CPU stopped (its 0-based index).
    Cpu(u32),
    /// The boot ended.
    Ended,
}

impl Gdb {
    fn send(&mut self, packet: &str) {
        let sum = packet.bytes().fold(0u8, u8::wrapping_add);
        self.write(format!("${packet}#{sum:02x}").as_bytes());
    }

    fn write(&mut self, bytes: &[u8]) {
        if !self.closed && self.stream.write_all(bytes).is_err() {
            self.closed = true;
        }
    }

    /// The next packet, or `None` after `timeout`.
    fn receive(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.closed {
                return Some("W00".into());
            }
            if let Some(start) = self.buffer.iter().position(|&b| b == b'$')
                && let Some(hash) = self.buffer[start..].iter().position(|&b| b == b'#')
                && self.buffer.len() >= start + hash + 3
            {
                let packet =
                    String::from_utf8_lossy(&self.buffer[start + 1..start + hash]).into_owned();
                self.buffer.drain(..start + hash + 3);
                self.write(b"+");
                return Some(packet);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("read timeout");
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => self.closed = true,
            }
        }
    }

    /// Sends `packet` and returns its answer (console output packets skipped).
    fn command(&mut self, packet: &str) -> String {
        self.send(packet);
        loop {
            let answer = self
                .receive(ANSWER_TIMEOUT)
                .unwrap_or_else(|| panic!("no answer to {packet}"));
            if !(answer.starts_with('O') && answer != "OK") {
                return answer;
            }
        }
    }

    /// Runs a human-monitor command; panics unless QEMU accepted it (or has ended).
    fn monitor(&mut self, text: &str) {
        let hex: String = text.bytes().map(|b| format!("{b:02x}")).collect();
        let answer = self.command(&format!("qRcmd,{hex}"));
        assert!(
            answer == "OK" || self.closed,
            "monitor command {text:?}: {answer}"
        );
    }

    fn set_breakpoint(&mut self, address: u64) {
        let answer = self.command(&format!("Z0,{address:x},1"));
        assert!(
            answer == "OK" || self.closed,
            "breakpoint at {address:#x}: {answer}"
        );
    }

    fn clear_breakpoint(&mut self, address: u64) {
        let answer = self.command(&format!("z0,{address:x},1"));
        assert!(
            answer == "OK" || self.closed,
            "breakpoint at {address:#x}: {answer}"
        );
    }

    fn parse_stop(answer: &str) -> Stop {
        if answer.starts_with('W') || answer.starts_with('X') {
            return Stop::Ended;
        }
        let thread = answer
            .split(';')
            .find_map(|part| part.split_once("thread:").map(|(_, id)| id))
            .and_then(|id| u32::from_str_radix(id, 16).ok())
            .unwrap_or(1);
        Stop::Cpu(thread - 1)
    }

    /// Reads the 8-byte little-endian word at `address` of guest memory (0 after the end).
    fn read_u64(&mut self, address: u64) -> u64 {
        let hex = self.command(&format!("m{address:x},8"));
        (0..8)
            .filter_map(|i| u64::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
            .enumerate()
            .fold(0, |word, (i, byte)| word | (byte << (8 * i)))
    }

    /// Lets the machine run in short slices until the machine-check handler has run on `cpu`
    /// (the kernel's `mce::EXCEPTIONS` passed `before`) and returned (its frame is no longer
    /// marked live in the CPU's `trap_state`): a machine check while MCIP is still set would
    /// shut the CPU down (QEMU: a triple fault). Returns false if the boot ended.
    fn settle(&mut self, marks: &Marks, cpu: u32, before: u64) -> bool {
        for _ in 0..500 {
            self.send("c");
            std::thread::sleep(Duration::from_millis(10));
            self.write(&[3]);
            match self.receive(ANSWER_TIMEOUT).map(|a| Self::parse_stop(&a)) {
                Some(Stop::Cpu(_)) => {}
                _ => return false,
            }
            let handled = self.read_u64(marks.exceptions) > before;
            let live = self.read_u64(marks.trap_state(cpu)) & 0xff_0000 != 0;
            if handled && !live {
                return true;
            }
        }
        panic!("the machine check on CPU {cpu} was not handled within 500 slices");
    }

    /// Lets the machine run until a breakpoint stops a CPU or `timeout` passes (then stops it
    /// and returns `None`).
    fn run_to_breakpoint(&mut self, timeout: Duration) -> Option<Stop> {
        self.send("c");
        match self.receive(timeout) {
            Some(answer) => Some(Self::parse_stop(&answer)),
            None => {
                self.write(&[3]);
                let answer = self.receive(ANSWER_TIMEOUT).expect("stopped");
                match Self::parse_stop(&answer) {
                    Stop::Ended => Some(Stop::Ended),
                    Stop::Cpu(_) => None,
                }
            }
        }
    }
}

/// Where the kernel keeps what [`Gdb::settle`] reads.
#[derive(Clone, Copy)]
struct Marks {
    /// `mce::EXCEPTIONS`.
    exceptions: u64,
    /// `hw::percpu::BLOCKS`: 64 bytes per CPU, `trap_state` at offset 16.
    percpu: u64,
}

impl Marks {
    fn find(image: &Image) -> Marks {
        Marks {
            exceptions: image.address("3mce10EXCEPTIONS"),
            percpu: image.address("6percpu6BLOCKS"),
        }
    }

    fn trap_state(&self, cpu: u32) -> u64 {
        self.percpu + 64 * u64::from(cpu) + 16
    }
}

/// What one boot gave.
struct PlanOutcome {
    plan: &'static str,
    instructions: usize,
    injected: usize,
    missed: Vec<String>,
    outcome: BootOutcome,
}

/// Drives one boot: listens for the stub, starts QEMU, injects at every instruction.
fn run(kernel: &Path, image: &Image, plan: &Plan) -> PlanOutcome {
    let regions: Vec<Region> = plan.regions.iter().map(|r| image.region(r)).collect();
    let dir = tempfile::Builder::new()
        .prefix("dks-gdb.")
        .permissions(Permissions::from_mode(0o700))
        .tempdir()
        .expect("a private folder for the gdb socket");
    let path = dir.path().join("gdb.sock");
    let listener = UnixListener::bind(&path).expect("the gdb socket");
    let config = BootConfig {
        kernel_args: plan.kernel_args.clone(),
        cpus: plan.cpus,
        memory: plan.memory,
        timeout: BOOT_TIMEOUT,
        initrd: plan.initrd.clone(),
        ..BootConfig::new(kernel)
    };
    let mut command = qemu::command(&qemu::find().expect("QEMU"), &config, None);
    let chardev = path.to_string_lossy().replace(',', ",,");
    command.args([
        "-chardev",
        &format!("socket,id=dks-gdb,path={chardev}"),
        "-gdb",
        "chardev:dks-gdb",
        "-S",
    ]);
    let instructions: usize = regions.iter().map(|r| r.instructions.len()).sum();
    let marks = Marks::find(image);
    let kinds = plan.kinds;
    let gate = plan.gate.map(|g| image.address(g));
    // The NMI entry's `call nmi_dispatch`: inside the NMI handler, its frame marked live.
    let nmi_call = image.region("trap_nmi_entry").first_call;
    let driver = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("QEMU connects to the gdb socket");
        let mut gdb = Gdb {
            stream,
            buffer: Vec::new(),
            closed: false,
        };
        let mut injected = 0;
        let mut missed = Vec::new();
        if let Some(gate) = gate {
            gdb.set_breakpoint(gate);
            assert!(
                matches!(gdb.run_to_breakpoint(BOOT_TIMEOUT), Some(Stop::Cpu(_))),
                "the gate was not reached"
            );
            gdb.clear_breakpoint(gate);
        }
        'all: for &kind in kinds {
            for region in &regions {
                for &address in &region.instructions {
                    let exceptions = gdb.read_u64(marks.exceptions);
                    if kind == Kind::NmiInMachineCheckInNmi {
                        // First into the NMI handler, then a #MC there.
                        let call = nmi_call.expect("the NMI entry");
                        gdb.set_breakpoint(call);
                        gdb.monitor("nmi");
                        let stop = gdb.run_to_breakpoint(REACH_TIMEOUT);
                        gdb.clear_breakpoint(call);
                        let Some(Stop::Cpu(cpu)) = stop else {
                            missed.push(format!(
                                "{} {:#x} ({})",
                                region.name,
                                address,
                                kind.name()
                            ));
                            if matches!(stop, Some(Stop::Ended)) {
                                break 'all;
                            }
                            continue;
                        };
                        gdb.monitor(&recoverable(cpu));
                    }
                    gdb.set_breakpoint(address);
                    match kind {
                        Kind::NmiInMachineCheck => gdb.monitor(&recoverable(0)),
                        Kind::MachineCheckInNmi => gdb.monitor("nmi"),
                        _ => {}
                    }
                    let stop = gdb.run_to_breakpoint(REACH_TIMEOUT);
                    gdb.clear_breakpoint(address);
                    let cpu = match stop {
                        Some(Stop::Cpu(cpu)) => cpu,
                        Some(Stop::Ended) => {
                            missed.push(format!("{} {address:#x}: the boot ended", region.name));
                            break 'all;
                        }
                        None => {
                            missed.push(format!("{} {address:#x} ({})", region.name, kind.name()));
                            continue;
                        }
                    };
                    match kind {
                        Kind::Nmi | Kind::NmiInMachineCheck | Kind::NmiInMachineCheckInNmi => {
                            gdb.monitor("nmi")
                        }
                        Kind::MachineCheck | Kind::MachineCheckInNmi => {
                            gdb.monitor(&recoverable(cpu))
                        }
                    }
                    injected += 1;
                    let mce_cpu = match kind {
                        Kind::NmiInMachineCheck => Some(0),
                        Kind::MachineCheckInNmi | Kind::NmiInMachineCheckInNmi => Some(cpu),
                        Kind::Nmi | Kind::MachineCheck => None,
                    };
                    // The next trigger injects another machine check: let this one finish.
                    if let Some(mce_cpu) = mce_cpu
                        && !gdb.settle(&marks, mce_cpu, exceptions)
                    {
                        break 'all;
                    }
                }
            }
        }
        // Detach: the boot runs to its end.
        gdb.send("D");
        let _ = gdb.receive(Duration::from_secs(2));
        (injected, missed)
    });
    let outcome = boot::run_command(command, BOOT_TIMEOUT, |_| {}).expect("the boot ran");
    let (injected, missed) = driver.join().expect("the gdb driver");
    drop(dir);
    PlanOutcome {
        plan: plan.name,
        instructions: instructions * kinds.len(),
        injected,
        missed,
        outcome,
    }
}

fn trap_stat(outcome: &BootOutcome) -> Option<TrapStat> {
    outcome
        .records()
        .filter_map(|r| match r {
            Record::TrapStat(t) => Some(*t),
            _ => None,
        })
        .last()
}

/// The `adversarial-irqoff` scenario's plan, run for `seconds` (the breakpoints need time).
fn workload_plan(scratch: &Path, seconds: u32) -> (Vec<String>, PathBuf, MemorySize) {
    let mut scenario = scenario::load("adversarial-irqoff").expect("the built-in scenario");
    scenario.duration_ms = seconds * 1000;
    let each = [Policy::Static, Policy::Fault, Policy::Guaranteed];
    let boots = scenario.boots(&each).expect("the plan");
    assert_eq!(boots.len(), 1, "one boot");
    let path = scratch.join("plan.json");
    std::fs::write(&path, serde_json::to_vec(&boots[0].plan).expect("JSON")).expect("write");
    (scenario.kernel_args(&boots[0].plan), path, scenario.memory)
}

fn main() -> ExitCode {
    // `-- --only WORDS`: the plans whose name contains WORDS; `-- --kernel PATH`: boot that
    // kernel instead of building the repository's.
    let args: Vec<String> = std::env::args().collect();
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let only = value_of("--only");
    let kernel = match value_of("--kernel") {
        Some(path) => PathBuf::from(path),
        None => kernel::build_once().unwrap_or_else(|e| panic!("{e:#}")),
    };
    let image = Image::read(&std::fs::read(&kernel).expect("read the kernel"));
    let scratch = tempfile::Builder::new()
        .prefix("dks-trap-boundaries.")
        .tempdir()
        .expect("a scratch folder");
    let (workload_args, workload_initrd, workload_memory) = workload_plan(scratch.path(), 120);
    let workload = |name, regions, kinds| Plan {
        name,
        kernel_args: workload_args.clone(),
        cpus: 2,
        initrd: Some(workload_initrd.clone()),
        memory: workload_memory,
        gate: Some("workload4path7descend"),
        regions,
        kinds,
    };
    let plans = [
        workload(
            "workload: interrupt, preemption, #PF, switch",
            WORKLOAD_REGIONS,
            &[Kind::Nmi, Kind::MachineCheck],
        ),
        Plan {
            name: "bench=costs: whole-frame bounce (interrupts off)",
            kernel_args: vec!["bench=costs".into()],
            cpus: 1,
            initrd: None,
            memory: MemorySize::DEFAULT,
            gate: Some("bench3run"),
            regions: BOUNCE_REGIONS,
            kinds: &[Kind::Nmi, Kind::MachineCheck],
        },
        Plan {
            name: "test: whole-frame bounce with interrupts on (sti)",
            kernel_args: vec!["test=nonstack_fault_on_unpopulated_edge".into()],
            cpus: 1,
            initrd: None,
            memory: MemorySize::DEFAULT,
            gate: None,
            regions: &["trap_run_bounced_sti"],
            kinds: &[Kind::Nmi],
        },
        Plan {
            name: "test: whole-frame bounce with interrupts on (sti), #MC",
            kernel_args: vec!["test=nonstack_fault_on_unpopulated_edge".into()],
            cpus: 1,
            initrd: None,
            memory: MemorySize::DEFAULT,
            gate: None,
            regions: &["trap_run_bounced_sti"],
            kinds: &[Kind::MachineCheck],
        },
        workload(
            "workload: NMI in the #MC entry",
            &["trap_mc_entry"],
            &[Kind::NmiInMachineCheck],
        ),
        workload(
            "workload: #MC in the NMI entry",
            &["trap_nmi_entry"],
            &[Kind::MachineCheckInNmi],
        ),
        workload(
            "workload: NMI while a #MC returns into the NMI handler",
            &["trap_mc_into_nmi"],
            &[Kind::NmiInMachineCheckInNmi],
        ),
    ];
    let started = Instant::now();
    let mut bad = 0;
    for (index, plan) in plans.iter().enumerate() {
        if only
            .as_ref()
            .is_some_and(|words| !plan.name.contains(words.as_str()))
        {
            continue;
        }
        let result = run(&kernel, &image, plan);
        let stat = trap_stat(&result.outcome);
        let ok = result.outcome.is_success() && result.missed.is_empty();
        bad += usize::from(!ok);
        println!(
            "[{:>4.0} s] {}: {} of {} instruction boundaries injected, boot: {}, trap_stat: {}",
            started.elapsed().as_secs_f64(),
            result.plan,
            result.injected,
            result.instructions,
            result.outcome.describe(),
            stat.map_or("none".into(), |s| format!(
                "{} NMIs ({} nested), {} #MC, {} recoverable",
                s.nmis, s.nmis_nested, s.machine_check_exceptions, s.mce_recoverable
            ))
        );
        for miss in &result.missed {
            println!("    not reached: {miss}");
        }
        let log = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../target/trap_boundaries-{index}.log"));
        std::fs::write(&log, &result.outcome.serial_log).expect("write the console");
        if !result.outcome.is_success() {
            println!("    console: {}", log.display());
        }
    }
    if bad > 0 {
        println!("{bad} plan(s) failed");
        ExitCode::FAILURE
    } else {
        println!("every plan succeeded");
        ExitCode::SUCCESS
    }
}

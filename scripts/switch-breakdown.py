# Steps one yield round trip of the cost boot's `switch` measurement (bench::switches: a thread
# yields to a partner of the same policy and back: two context switches) instruction by
# instruction through QEMU's gdb stub and counts its instructions by part (docs/switch.md).
# Run by scripts/switch-breakdown, which starts QEMU and passes SOCKET (QEMU's gdb socket),
# MEASURER (the address of the measuring thread's closure), START (the address of its first
# rdtsc), NTH (which policy's measurement: 1 for the first of IMPLEMENTED) and TRACE.
#
# Every instruction is attributed to a part by the innermost function (inlined ones included,
# from the kernel's debug info) that names one: see PARTS; what no part names is the scheduler
# and the context switch, which every policy runs.
import collections
import os

import gdb

# (a piece of a function's name, the part it belongs to), most specific first.
PARTS = [
    ("unmap_stack_page", "per page unmapped: exchange the entry"),
    ("Magazine::take", "per page mapped: take a frame"),
    ("map_stack_page", "per page mapped: write the entry"),
    ("read_entry", "per page scanned: read the entry"),
    ("pte::decode", "per page scanned: read the entry"),
    ("Magazine::put", "per page unmapped: frame to the magazine"),
    ("page_set::", "per page: iterate the page set"),
    ("IrqMutex", "locks"),
    ("libc::memcpy", "copies (memcpy)"),
    ("dead_pages", "bookkeeping: switch-out"),
    ("switch_out_plan", "bookkeeping: switch-out"),
    ("give_back", "bookkeeping: switch-out"),
    ("switch_out_with_mechanism", "bookkeeping: switch-out"),
    ("switch::prepare", "bookkeeping: switch-in"),
    ("switch::finish", "bookkeeping: switch-in"),
    ("admit_with_mechanism", "bookkeeping: switch-in"),
    ("stacks::switch::admit", "bookkeeping: switch-in"),
    ("stacks::switch::switched_out", "bookkeeping: switch-out"),
    ("note_running_extra", "bookkeeping: running-extra figure"),
]
ORDER = ["scheduler and context switch", "locks", "per page mapped: take a frame",
         "per page mapped: write the entry", "per page scanned: read the entry",
         "per page unmapped: exchange the entry", "per page unmapped: frame to the magazine",
         "per page: iterate the page set", "copies (memcpy)", "bookkeeping: switch-in", "bookkeeping: switch-out",
         "bookkeeping: running-extra figure"]


def frames():
    """The names of the inline frames at the PC, innermost first, up to the real function."""
    names = []
    frame = gdb.newest_frame()
    while frame is not None:
        names.append(frame.name() or "?")
        if frame.type() != gdb.INLINE_FRAME:
            break
        frame = frame.older()
    return names


def part_of(names):
    for name in names:
        for piece, part in PARTS:
            if piece in name:
                return part
    return "scheduler and context switch"


gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute("target remote " + os.environ["SOCKET"])
gdb.execute("break dks_kernel::bench::run")
gdb.execute("continue", to_string=True)
gdb.execute("delete")
gdb.execute("hbreak *" + os.environ["MEASURER"])
for _ in range(int(os.environ["NTH"])):
    gdb.execute("continue", to_string=True)
gdb.execute("delete")
# Past the measurement's warm-up rounds (bench::switches drops the first 100).
gdb.execute("hbreak *" + os.environ["START"])
for _ in range(150):
    gdb.execute("continue", to_string=True)
gdb.execute("delete")
steps = []
while True:
    names = frames()
    insn = gdb.execute("x/i $pc", to_string=True).split(":", 1)[-1].strip()
    steps.append((names, insn))
    if (len(steps) > 1 and insn.startswith("rdtsc")) or len(steps) > 20000:
        break
    gdb.execute("stepi", to_string=True)
gdb.execute("kill")

counts = collections.Counter(part_of(names) for names, _ in steps[:-1])
if not steps[-1][1].startswith("rdtsc"):
    print("@@ error: the round trip did not end at the measurer's next rdtsc")
    raise SystemExit(1)
# Per switch: the round trip is two switches.
for part in ORDER:
    print(f"@@ {part:<42} {counts[part] / 2:>7.1f}")
print(f"@@ {'total per switch':<42} {(len(steps) - 1) / 2:>7.1f}")
if os.environ.get("TRACE"):
    with open(os.environ["TRACE"], "x") as out:
        for names, insn in steps:
            out.write(f"{part_of(names):<42} {' < '.join(n[-60:] for n in names)}\t{insn}\n")

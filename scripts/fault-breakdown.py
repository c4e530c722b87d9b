# Steps one stack fault of the cost boot instruction by instruction through QEMU's gdb stub and
# counts its instructions by part (docs/fault-path.md). Run by scripts/fault-breakdown, which
# starts QEMU and passes SOCKET (QEMU's gdb socket) and TRACE (a file for the trace, or "").
#
# Every instruction is attributed to a part by the innermost function (inlined ones included,
# from the kernel's debug info) that names one: see PARTS. The first stack fault after
# `bench::run` starts is the first of `bench=costs`'s `stack_fault` measurement.
import collections
import os

import gdb

# (a piece of a function's name, the part it belongs to), most specific first.
PARTS = [
    ("stack_page_faulted_in", "account"),
    ("Tally::count", "account"),
    ("CpuCounters::count", "account"),
    ("Ledger::add_pages", "account"),
    ("force_charge", "account"),
    ("Slot::mirror", "map: stack state"),
    ("note_magazine", "map: stack state"),
    ("note_faulted_in", "map: stack state"),
    ("stack_pages::map", "map: write the entry"),
    ("map_stack_page", "map: write the entry"),
    ("Magazine::take", "map: take a frame"),
    ("try_lock", "map: locks"),
    ("with_stack", "map: locks"),
    ("current_cpu", "map: checks"),
    ("fault::handle::{closure", "map: checks"),
    ("fault::serve", "map: checks"),
    ("page_addr", "locate"),
    ("depth_in_bytes", "locate"),
    ("stack_top", "locate"),
    ("slot_base", "locate"),
    ("StackLayout::locate", "locate"),
    ("read_entry", "locate"),
    ("stack_pages::entry", "locate"),
    ("pte::decode", "locate"),
]
ORDER = ["entry", "dispatch", "locate", "map: locks", "map: checks", "map: take a frame",
         "map: write the entry", "map: stack state", "account", "exit"]


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
    return "dispatch"


gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute("target remote " + os.environ["SOCKET"])
gdb.execute("break dks_kernel::bench::run")
gdb.execute("continue", to_string=True)
gdb.execute("delete")
gdb.execute("hbreak trap_pf_entry")
gdb.execute("continue", to_string=True)
gdb.execute("delete")
steps = []
while True:
    names = frames()
    insn = gdb.execute("x/i $pc", to_string=True).split(":", 1)[-1].strip()
    steps.append((names, insn))
    if insn.startswith("iretq") or len(steps) > 5000:
        break
    gdb.execute("stepi", to_string=True)
gdb.execute("kill")

counts = collections.Counter()
entry_done = False
for names, insn in steps:
    if names[0] == "trap_pf_entry":
        part = "exit" if entry_done else "entry"
    else:
        entry_done = True
        part = part_of(names)
    counts[part] += 1
# Lines for the wrapper start with "@@ " (gdb prints its own lines around them).
if counts["account"] == 0 or steps[-1][1].split()[0] != "iretq":
    print("@@ error: the stepped fault was not a served stack fault")
    raise SystemExit(1)
for part in ORDER:
    print(f"@@ {part:<22} {counts[part]:>5}")
print(f"@@ {'total':<22} {len(steps):>5}")
if os.environ.get("TRACE"):
    with open(os.environ["TRACE"], "x") as out:
        for names, insn in steps:
            out.write(f"{part_of(names):<20} {' < '.join(n[-60:] for n in names)}\t{insn}\n")

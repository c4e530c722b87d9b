// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
/*
 * The census programs: how deep Linux threads use their kernel stacks.
 *
 * - census_task (iter/task): one record per thread of the host, read when user space reads
 *   the iterator: its stack's high-water mark and how deep it sleeps.
 * - census_exit (tp_btf/sched_switch): one record per thread at its last context switch
 *   (prev is TASK_DEAD), pushed to a ring buffer; the dying thread still runs on its stack.
 *
 * The high-water mark follows Linux's stack_not_used(): the stack is zeroed when it is
 * allocated, so the first non-zero word from the stack's far end (its lowest address, after
 * the STACK_END_MAGIC canary in word 0) is the deepest the thread ever went. With VMAP_STACK
 * the pages are vmalloc'ed; they are read one page at a time with bpf_probe_read_kernel into
 * a per-CPU buffer, and a page that cannot be read ends the thread's measurement (counted,
 * never guessed).
 *
 * The record layout is read byte by byte in src/record.rs; keep the two in step.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

/* Tracing helpers (bpf_probe_read_kernel) need a GPL-compatible licence. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";

#define PAGE_BYTES 4096
#define WORD_BYTES 8
#define WORDS_PER_PAGE (PAGE_BYTES / WORD_BYTES)
/* 64 KiB, the largest stack the scenarios know; a larger one is reported, not scanned. */
#define MAX_STACK_PAGES 16
#define PF_KTHREAD 0x00200000
#define TASK_DEAD 0x00000080

enum census_status {
	/* used_bytes (and, from the iterator, sleeping_depth_bytes) hold the reading. */
	STATUS_MEASURED = 0,
	/* The thread had no stack (a zombie, or already freed) or lost it while being read. */
	STATUS_EXITED = 1,
	/* A page of the stack could not be read (unreadable_pages says how many). */
	STATUS_UNREADABLE = 2,
	/* Every word after the canary was zero: no mark to read. */
	STATUS_BLANK = 3,
	/* The stack area is larger than MAX_STACK_PAGES (stack_pages says how large). */
	STATUS_TOO_LARGE = 4,
};

struct census_record {
	__u32 tid;
	__u32 tgid;
	__u32 status;
	__u32 used_bytes;
	/* Stack top minus the saved stack pointer; 0 when that pointer is not in the stack. */
	__u32 sleeping_depth_bytes;
	/* Pages of the stack: from its vm_struct (VMAP_STACK), else default_stack_pages. */
	__u32 stack_pages;
	__u32 unreadable_pages;
	__u32 kthread;
	char comm[16];
};

/* Set by user space before the programs are loaded. */
const volatile __u32 default_stack_pages = 4;
/* A test hook: when N > 0, the first page of every N-th thread the iterator visits is read
 * from an address that cannot be read, so the unreadable-page path runs for real. */
const volatile __u32 inject_unreadable_every = 0;

/* Counters of census_exit, read by user space. */
__u64 exits_seen = 0;
__u64 exits_dropped = 0;

struct page_buf {
	__u64 words[WORDS_PER_PAGE];
};

/* One page buffer per CPU for each program, so neither can clobber the other's. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct page_buf);
} iter_page SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct page_buf);
} exit_page SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} exits SEC(".maps");

/* Kernels before 5.14 call the task state `state`. */
struct task_struct___pre_5_14 {
	long state;
} __attribute__((preserve_access_index));

static __always_inline unsigned int task_state(struct task_struct *task)
{
	if (bpf_core_field_exists(task->__state))
		return BPF_CORE_READ(task, __state);
	return BPF_CORE_READ((struct task_struct___pre_5_14 *)task, state);
}

static __always_inline __u32 stack_pages_of(struct task_struct *task)
{
	if (bpf_core_field_exists(task->stack_vm_area)) {
		struct vm_struct *area = BPF_CORE_READ(task, stack_vm_area);
		if (area) {
			__u32 pages = BPF_CORE_READ(area, nr_pages);
			if (pages)
				return pages;
		}
	}
	return default_stack_pages;
}

static __always_inline void identify(struct task_struct *task, struct census_record *r)
{
	r->tid = BPF_CORE_READ(task, pid);
	r->tgid = BPF_CORE_READ(task, tgid);
	r->kthread = (BPF_CORE_READ(task, flags) & PF_KTHREAD) ? 1 : 0;
	BPF_CORE_READ_STR_INTO(&r->comm, task, comm);
}

/*
 * Fills status, used_bytes, stack_pages and unreadable_pages from the stack at `stack`.
 * `inject` makes the first page unreadable (the test hook).
 */
static __always_inline void measure(struct task_struct *task, void *stack, struct page_buf *buf,
				    struct census_record *r, bool inject)
{
	__u32 pages = stack_pages_of(task);

	r->stack_pages = pages;
	if (pages > MAX_STACK_PAGES) {
		r->status = STATUS_TOO_LARGE;
		return;
	}
	for (__u32 page = 0; page < MAX_STACK_PAGES; page++) {
		if (page >= pages)
			break;
		const void *src = stack + page * PAGE_BYTES;
		if (inject && page == 0)
			src = (const void *)(unsigned long)PAGE_BYTES;
		if (bpf_probe_read_kernel(buf, sizeof(*buf), src)) {
			r->unreadable_pages++;
			r->status = STATUS_UNREADABLE;
			return;
		}
		/* Word 0 of the stack holds the STACK_END_MAGIC canary. */
		for (__u32 word = page == 0 ? 1 : 0; word < WORDS_PER_PAGE; word++) {
			if (buf->words[word]) {
				__u32 unused = page * PAGE_BYTES + word * WORD_BYTES;
				r->used_bytes = pages * PAGE_BYTES - unused;
				r->status = STATUS_MEASURED;
				return;
			}
		}
	}
	r->status = STATUS_BLANK;
}

SEC("iter/task")
int census_task(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct census_record r = {};
	__u32 zero = 0;

	if (!task)
		return 0;
	identify(task, &r);
	void *stack = BPF_CORE_READ(task, stack);
	if (!stack) {
		r.status = STATUS_EXITED;
		bpf_seq_write(seq, &r, sizeof(r));
		return 0;
	}
	struct page_buf *buf = bpf_map_lookup_elem(&iter_page, &zero);
	if (!buf)
		return 0;
	bool inject = inject_unreadable_every &&
		      ctx->meta->seq_num % inject_unreadable_every == 0;
	measure(task, stack, buf, &r, inject);

	unsigned long top = (unsigned long)stack + (unsigned long)r.stack_pages * PAGE_BYTES;
	unsigned long sp = BPF_CORE_READ(task, thread.sp);
	if (sp > (unsigned long)stack && sp <= top)
		r.sleeping_depth_bytes = top - sp;

	/* A thread that exited while it was read has lost its stack (or got another one). */
	if (BPF_CORE_READ(task, stack) != stack)
		r.status = STATUS_EXITED;
	bpf_seq_write(seq, &r, sizeof(r));
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(census_exit, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u32 zero = 0;

	if (task_state(prev) != TASK_DEAD)
		return 0;
	__sync_fetch_and_add(&exits_seen, 1);
	struct census_record *r = bpf_ringbuf_reserve(&exits, sizeof(*r), 0);
	if (!r) {
		__sync_fetch_and_add(&exits_dropped, 1);
		return 0;
	}
	__builtin_memset(r, 0, sizeof(*r));
	identify(prev, r);
	void *stack = BPF_CORE_READ(prev, stack);
	struct page_buf *buf = bpf_map_lookup_elem(&exit_page, &zero);
	if (!stack || !buf) {
		r->status = STATUS_EXITED;
		bpf_ringbuf_submit(r, 0);
		return 0;
	}
	measure(prev, stack, buf, r, false);
	bpf_ringbuf_submit(r, 0);
	return 0;
}

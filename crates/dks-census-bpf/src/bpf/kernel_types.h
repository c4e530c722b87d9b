/* SPDX-License-Identifier: (MIT OR GPL-2.0-only) */
/*
 * The few kernel types the census programs read, declared by hand instead of a generated
 * vmlinux.h: only the fields used, each struct marked preserve_access_index, so clang emits
 * CO-RE relocations and libbpf finds every field's real offset in the running kernel's BTF
 * (/sys/kernel/btf/vmlinux) when it loads the programs. No header of the build machine's
 * kernel is needed, and no bpftool.
 */
#ifndef DKS_CENSUS_KERNEL_TYPES_H
#define DKS_CENSUS_KERNEL_TYPES_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

/* UAPI numbers (include/uapi/linux/bpf.h): stable ABI. */
enum bpf_map_type {
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_RINGBUF = 27,
};

struct vm_struct {
	unsigned int nr_pages;
} __attribute__((preserve_access_index));

struct thread_struct {
	unsigned long sp;
} __attribute__((preserve_access_index));

struct task_struct {
	unsigned int __state;
	void *stack;
	unsigned int flags;
	int exit_state;
	int pid;
	int tgid;
	char comm[16];
	struct vm_struct *stack_vm_area;
	struct thread_struct thread;
} __attribute__((preserve_access_index));

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} __attribute__((preserve_access_index));

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} __attribute__((preserve_access_index));

#endif

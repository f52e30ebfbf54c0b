//! Shared plumbing for every sensor: scope filter, configuration globals, the ring buffer with
//! batched wake-ups, the enter→exit argument stash, per-CPU scratch and loss counters.

use core::ptr::read_volatile;

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_ANY, BPF_F_NO_PREALLOC, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::generated::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_get_current_task_btf, bpf_ktime_get_boot_ns,
        bpf_probe_read_kernel, bpf_probe_read_user_str, bpf_send_signal, bpf_task_pt_regs,
    },
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use monitor_common::{
    CGROUP_MAX_DEPTH, CGROUP2_SUPER_MAGIC, DENTRY_INODE, DENTRY_PARENT, Escape, EventHeader,
    EventKind, FDTABLE_FD, FILE_DENTRY, FILE_INODE, FILES_FDT, INODE_INO, INODE_SB, PATH_MAX,
    SB_DEV, SB_MAGIC, SCOPE_MAX_CGROUPS, SCOPE_MAX_LEVELS, ScopeLevels, StashedArgs, TASK_FILES,
    TASK_GROUP_LEADER, TASK_OFFSET_COUNT, TASK_START_BOOTTIME, TRACKED_MAX, counters, flags,
};

/// Offsets of the syscall's number, the arguments and the return value in syscall
/// tracepoint records (events/syscalls/sys_{enter,exit}_*/format: `int __syscall_nr` at 8,
/// each argument 8 bytes from offset 16).
pub const NR: usize = 8;
pub const ARG0: usize = 16;
pub const ARG1: usize = 24;
pub const ARG2: usize = 32;
pub const ARG4: usize = 48;
pub const RET: usize = 16;

/// The watched cgroups: a task is in scope when its cgroup or one of its ancestors is a key
/// here (the build's own sub-cgroups are watched with it). Userspace adds and removes entries
/// while the programs run.
#[map]
static SCOPE: HashMap<u64, u8> = HashMap::with_max_entries(SCOPE_MAX_CGROUPS, 0);
/// Entry 0: the levels below the root that watched cgroups sit at, so only those are looked
/// up; or "every task" (host-wide).
#[map]
static SCOPE_LEVELS: Array<ScopeLevels> = Array::with_max_entries(1, 0);
/// Byte offsets of kernel structure members (`task_struct`'s, and those from a task to an open
/// file's inode: indexes `TASK_*`, `FILES_FDT` … `SB_DEV` in monitor-common), read from kernel
/// BTF by userspace while the kernel verifies the programs, and written here before they are
/// attached; 0 = unknown.
#[map]
pub static TASK_OFFSETS: Array<u32> = Array::with_max_entries(TASK_OFFSET_COUNT, 0);
/// Unread bytes in the ring above which a submit wakes the reader; below it the reader's
/// timer collects events (batched wake-ups cost ~1 µs less per event than one wake-up each).
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 64 * 1024;

/// Size set at load time by userspace (`EbpfLoader::map_max_entries`); this is the default.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::COUNT, 0);

/// Syscall arguments kept from sys_enter to sys_exit, keyed by thread id. A thread is in one
/// syscall at a time, so every sensor shares this map. Each watched thread's entry lives until
/// the thread exits (see [`StashedArgs::live`]); 16384 bounds the threads a run has at once.
#[map]
static STASH: HashMap<u32, StashedArgs> = HashMap::with_max_entries(16384, 0);

/// Room for the largest variable-length record (exec: body + PATH_MAX + argv) with the slack
/// the verifier needs for masked offsets.
pub const SCRATCH_SIZE: usize = 32768;

#[map]
static SCRATCH: PerCpuArray<[u8; SCRATCH_SIZE]> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn global<T: Copy>(v: &T) -> T {
    // Globals live in .rodata patched by the loader; a volatile read keeps the compiler from
    // folding in the compile-time default.
    unsafe { read_volatile(v) }
}

/// Map flags for a hash map sized for the worst case and nearly empty in a run: elements are
/// allocated on insert instead of all at creation. Preallocating 65,536 entries took 1.7-1.9 ms
/// per map of buildwatch's start-up (the build waits for it). A full map, or an allocation
/// that fails, fails the insert as before: every caller handles that.
pub const SPARSE: u32 = BPF_F_NO_PREALLOC;

/// Processes of the run, by tgid: added when a watched process creates one (task_newtask) and
/// by userspace for the command itself, removed when they exit. Value 1: tracked; 2: found
/// outside every watched cgroup (reported and killed once).
#[map]
pub static TRACKED: HashMap<u32, u8> = HashMap::with_max_entries(TRACKED_MAX, SPARSE);

/// Entry 0 nonzero once a process of the run may be outside its cgroups (it was created with
/// CLONE_INTO_CGROUP, or moved by someone): only then does [`in_scope`] look tasks outside
/// the watched cgroups up in `TRACKED`. Every traced syscall of every other process on the
/// host goes through that check: a hash lookup each would cost them all.
#[map]
static ESCAPE_RISK: Array<u32> = Array::with_max_entries(1, 0);

/// Something a process of the run did may have taken it out of the run's cgroups.
#[inline(always)]
pub fn escape_possible() {
    if let Some(p) = ESCAPE_RISK.get_ptr_mut(0) {
        unsafe { *p = 1 };
    }
}

#[inline(always)]
fn escape_risk() -> bool {
    ESCAPE_RISK.get(0).is_some_and(|v| *v != 0)
}

/// Whether `pid` is a process of the run.
#[inline(always)]
pub fn tracked(pid: u32) -> bool {
    unsafe { TRACKED.get(&pid) }.is_some()
}

/// Is the current task part of the run? In a watched cgroup (or a descendant), or a process
/// of the run that left them: that one is reported once (an `Escape` record) and sent
/// SIGKILL, and stays watched until it is gone. For tracepoint programs (bpf_send_signal);
/// cgroup hooks use [`in_scope_hook`].
#[inline(always)]
pub fn in_scope() -> bool {
    if in_watched_cgroup() {
        return true;
    }
    if !escape_risk() {
        return false;
    }
    let tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    let Some(state) = TRACKED.get_ptr_mut(&tgid) else {
        return false;
    };
    if unsafe { *state } == 1 {
        unsafe { *state = 2 };
        let killed = unsafe { bpf_send_signal(9) } == 0;
        emit(
            monitor_common::sensors::TAMPER,
            Escape {
                header: header(EventKind::Escape, if killed { flags::KILLED } else { 0 }),
                cgroup_id: unsafe { bpf_get_current_cgroup_id() },
            },
        );
    }
    true
}

/// [`in_scope`] for cgroup hooks: the same answer, without the report (they cannot signal).
#[inline(always)]
pub fn in_scope_hook() -> bool {
    if in_watched_cgroup() {
        return true;
    }
    escape_risk() && tracked((unsafe { bpf_get_current_pid_tgid() } >> 32) as u32)
}

/// Follow `child`, a new process of the run. A full map is counted as a loss: the run then
/// cannot vouch for where its processes went.
#[inline(always)]
pub fn track(sensor: u32, child: u32) {
    if agent_mode() {
        return;
    }
    if TRACKED.insert(&child, &1, BPF_ANY as u64).is_err() {
        count(sensor, counters::STASH_FULL);
    }
}

/// Stop following the current process (it exits).
#[inline(always)]
pub fn untrack() {
    let tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    let _ = TRACKED.remove(&tgid);
}

/// The host agent (see [`ScopeLevels::agent`]): no lineage, no kills for leaving.
#[inline(always)]
pub fn agent_mode() -> bool {
    SCOPE_LEVELS.get(0).is_some_and(|s| s.agent != 0)
}

/// Is the current task inside a watched cgroup (or one of its descendants)?
#[inline(always)]
fn in_watched_cgroup() -> bool {
    let Some(scope) = SCOPE_LEVELS.get(0) else {
        return false;
    };
    if scope.ignore_tgid != 0
        && (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32 == scope.ignore_tgid
    {
        return false;
    }
    if scope.all != 0 {
        return true;
    }
    let count = scope.count as usize;
    for i in 0..SCOPE_MAX_LEVELS {
        if i >= count {
            break;
        }
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(scope.levels[i] as i32) };
        if id != 0 && unsafe { SCOPE.get(&id) }.is_some() {
            return true;
        }
    }
    false
}

/// The end of every program: a failed helper call the program returned early on (reading its
/// tracepoint arguments, a packet's headers) is counted against the sensor and logged through
/// aya-log (rare; userspace routes it into tracing, silent unless asked for). Never per event.
#[inline(always)]
pub fn check<C: EbpfContext, T>(ctx: &C, sensor: u32, result: Result<T, i64>) {
    if let Err(err) = result {
        count(sensor, counters::PROGRAM_ERROR);
        aya_log_ebpf::error!(ctx, "sensor {} returned early: error {}", sensor, err);
    }
}

/// Count one `reason` (a [`counters`] column) against `sensor`.
#[inline(always)]
pub fn count(sensor: u32, reason: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(counters::index(sensor, reason)) {
        unsafe { *p += 1 };
    }
}

#[inline(always)]
pub fn tid() -> u32 {
    unsafe { bpf_get_current_pid_tgid() as u32 }
}

/// The header of a record made in a task's context (tracepoints): with the process's start
/// time, read from the kernel's task.
#[inline(always)]
pub fn header(kind: EventKind, flags: u16) -> EventHeader {
    EventHeader {
        start_ns: process_start(),
        ..cgroup_header(kind, flags)
    }
}

/// The header of a record made by a cgroup program (where the task is not at hand): no start
/// time.
#[inline(always)]
pub fn cgroup_header(kind: EventKind, flags: u16) -> EventHeader {
    let id = unsafe { bpf_get_current_pid_tgid() };
    EventHeader {
        kind: kind as u16,
        flags,
        tid: id as u32,
        pid: (id >> 32) as u32,
        cgroup: unsafe { bpf_get_current_cgroup_id() } as u32,
        ts_ns: unsafe { bpf_ktime_get_boot_ns() },
        start_ns: 0,
    }
}

/// `current->group_leader->start_boottime`, or 0 when the offsets are unknown or a read fails.
#[inline(always)]
fn process_start() -> u64 {
    let (Some(leader_off), Some(start_off)) = (
        TASK_OFFSETS.get(TASK_GROUP_LEADER),
        TASK_OFFSETS.get(TASK_START_BOOTTIME),
    ) else {
        return 0;
    };
    let (leader_off, start_off) = (*leader_off as usize, *start_off as usize);
    if leader_off == 0 || start_off == 0 {
        return 0;
    }
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let mut leader: u64 = 0;
    let mut start: u64 = 0;
    unsafe {
        if bpf_probe_read_kernel(
            (&raw mut leader).cast(),
            8,
            task.wrapping_add(leader_off).cast(),
        ) < 0
        {
            return 0;
        }
        if bpf_probe_read_kernel(
            (&raw mut start).cast(),
            8,
            (leader as *const u8).wrapping_add(start_off).cast(),
        ) < 0
        {
            return 0;
        }
    }
    start
}

#[inline(always)]
pub fn offset(index: u32) -> Option<usize> {
    match TASK_OFFSETS.get(index) {
        Some(&o) if o != 0 => Some(o as usize),
        _ => None,
    }
}

#[inline(always)]
pub fn read_kernel<T: Default>(at: *const u8) -> Option<T> {
    let mut v = T::default();
    let r = unsafe { bpf_probe_read_kernel((&raw mut v).cast(), size_of::<T>() as u32, at.cast()) };
    (r >= 0).then_some(v)
}

/// The open file behind the current task's descriptor `fd`, from the kernel's fd table: the
/// file the kernel opened, whatever the path said. None when the offsets are unknown or a
/// read fails.
#[inline(always)]
pub fn fd_file(fd: i64) -> Option<*const u8> {
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let files: u64 = read_kernel(task.wrapping_add(offset(TASK_FILES)?))?;
    let fdt: u64 = read_kernel((files as *const u8).wrapping_add(offset(FILES_FDT)?))?;
    // `fd` was just installed by this syscall (tables never shrink), so it is inside the
    // table; a read that went wrong anyway fails or yields an identity no file has.
    if !(0..=i32::MAX as i64).contains(&fd) {
        return None;
    }
    let table: u64 = read_kernel((fdt as *const u8).wrapping_add(offset(FDTABLE_FD)?))?;
    let file: u64 = read_kernel((table as *const u8).wrapping_add(fd as usize * 8))?;
    Some(file as *const u8)
}

/// What the open sensor learns from the kernel about the file behind a new descriptor.
pub struct Opened {
    pub dev: u32,
    pub ino: u64,
    /// A cgroup v2 file outside every watched cgroup.
    pub cgroup_outside: bool,
}

/// (device, inode) of the file behind `fd` and, for a cgroup v2 file, whether it lies
/// outside the watched cgroups: its directory and each directory above it are cgroups, whose
/// ids are their kernfs inode numbers; none of them in `SCOPE` means outside.
#[inline(always)]
pub fn opened(fd: i64) -> Option<Opened> {
    let file = fd_file(fd)?;
    let inode: u64 = read_kernel(file.wrapping_add(offset(FILE_INODE)?))?;
    let inode = inode as *const u8;
    let ino: u64 = read_kernel(inode.wrapping_add(offset(INODE_INO)?))?;
    let sb: u64 = read_kernel(inode.wrapping_add(offset(INODE_SB)?))?;
    let sb = sb as *const u8;
    let dev: u32 = read_kernel(sb.wrapping_add(offset(SB_DEV)?))?;
    let mut out = Opened {
        dev,
        ino,
        cgroup_outside: false,
    };
    let magic: u64 = offset(SB_MAGIC)
        .and_then(|o| read_kernel::<u64>(sb.wrapping_add(o)))
        .unwrap_or(0);
    if magic & 0xffff_ffff == CGROUP2_SUPER_MAGIC && !watches_all() {
        out.cgroup_outside = !cgroup_file_in_scope(file).unwrap_or(false);
    }
    Some(out)
}

#[inline(always)]
fn watches_all() -> bool {
    SCOPE_LEVELS.get(0).is_some_and(|l| l.all != 0)
}

/// Whether the cgroup v2 `file`'s directory, or one above it, is a watched cgroup. None: it
/// could not be told (a read failed), which the caller treats as outside.
#[inline(always)]
fn cgroup_file_in_scope(file: *const u8) -> Option<bool> {
    let (parent_off, inode_off, ino_off) = (
        offset(DENTRY_PARENT)?,
        offset(DENTRY_INODE)?,
        offset(INODE_INO)?,
    );
    let dentry: u64 = read_kernel(file.wrapping_add(offset(FILE_DENTRY)?))?;
    let mut dir: u64 = read_kernel((dentry as *const u8).wrapping_add(parent_off))?;
    for _ in 0..CGROUP_MAX_DEPTH {
        let d = dir as *const u8;
        let inode: u64 = read_kernel(d.wrapping_add(inode_off))?;
        let id: u64 = read_kernel((inode as *const u8).wrapping_add(ino_off))?;
        if unsafe { SCOPE.get(&id) }.is_some() {
            return Some(true);
        }
        let up: u64 = read_kernel(d.wrapping_add(parent_off))?;
        if up == dir {
            return Some(false);
        }
        dir = up;
    }
    // Deeper than any watched cgroup can be looked for: not known to be inside.
    Some(false)
}

/// Submit flags for a record of `len` bytes: wake the reader only when this record takes the
/// unread data across the threshold. Waking on every record above it (the reader is busy and
/// the level stays high) costs an irq_work per record: ~1.5 µs each on this kind of VM. The
/// reader drains everything before it sleeps, and poll reports data already waiting, so a
/// crossing is never missed; its timer collects what stays below the threshold.
#[inline(always)]
pub fn wakeup_flags(len: usize) -> u64 {
    // BPF_RB_AVAIL_DATA == 0
    let unread = EVENTS.query(0);
    let threshold = global(&WAKEUP_BYTES);
    // Each record also takes an 8-byte header in the ring.
    if unread < threshold && unread + len as u64 + 8 >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Write a fixed-size event in place into a ring-buffer reservation.
#[inline(always)]
pub fn emit<T: 'static>(sensor: u32, event: T) {
    match EVENTS.reserve::<T>(0) {
        Some(mut entry) => {
            entry.write(event);
            entry.submit(wakeup_flags(size_of::<T>()));
        }
        None => count(sensor, counters::RINGBUF_FULL),
    }
}

/// The first five arguments of the current task's syscall, read at its sys_exit from the
/// registers the kernel saved at its entry: the values the syscall ran with (user space
/// cannot change them while it runs; a ptrace stop that could comes after this program).
/// x86-64's `struct pt_regs` (r10 at 56, r8 at 72, dx at 96, si at 104, di at 112; a 64-bit
/// syscall's arguments are di, si, dx, r10, r8), like the syscall numbers the programs
/// compare. Saves the syscall its sys_enter program and the stash's round trip, and every
/// process on the host the sys_enter tracepoint.
///
/// `bpf_task_pt_regs` gives a pointer the verifier knows as the kernel's `struct pt_regs`,
/// so these are plain loads (checked against its BTF for bounds, not for which member they
/// read), without a helper call each. What makes the offsets right is that x86-64's
/// `pt_regs` layout is fixed ABI; `monitor` builds for x86-64 only.
#[inline(always)]
pub fn syscall_args() -> [u64; 5] {
    unsafe {
        let regs = bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u64;
        [
            read_volatile(regs.wrapping_add(14)),
            read_volatile(regs.wrapping_add(13)),
            read_volatile(regs.wrapping_add(12)),
            read_volatile(regs.wrapping_add(7)),
            read_volatile(regs.wrapping_add(9)),
        ]
    }
}

/// Keep `args` for this thread's sys_exit. The thread's entry is rewritten in place when it
/// exists (a lookup, no insert): only its own thread touches it, so no lock is needed.
pub fn stash(sensor: u32, args: &StashedArgs) {
    let key = tid();
    let live = StashedArgs { live: 1, ..*args };
    if let Some(slot) = STASH.get_ptr_mut(&key) {
        unsafe { *slot = live };
        return;
    }
    if STASH.insert(&key, &live, BPF_ANY as u64).is_err() {
        count(sensor, counters::STASH_FULL);
    }
}

/// Take the current thread's stashed arguments.
pub fn unstash(sensor: u32) -> Option<StashedArgs> {
    let args = take_stash();
    if args.is_none() {
        count(sensor, counters::STASH_MISSING);
    }
    args
}

/// [`unstash`] for sensors that stash only some calls of a syscall: a missing entry is the
/// normal case there, not a loss.
pub fn take_stash() -> Option<StashedArgs> {
    let slot = STASH.get_ptr_mut(&tid())?;
    let args = unsafe { *slot };
    if args.live == 0 {
        return None;
    }
    unsafe { (*slot).live = 0 };
    Some(args)
}

/// The current thread's stashed arguments while a syscall is in flight (sys_enter stashed
/// them, sys_exit has not taken them), for a hook that runs inside the syscall to amend.
#[inline(always)]
pub fn live_stash() -> Option<*mut StashedArgs> {
    let slot = STASH.get_ptr_mut(&tid())?;
    (unsafe { (*slot).live } != 0).then_some(slot)
}

/// Drop an exiting thread's entry (entries live as long as their thread). A thread that never
/// stashed has none: nothing to count.
pub fn forget_stash() {
    let _ = STASH.remove(&tid());
}

/// Per-CPU scratch buffer for records with a string tail.
#[inline(always)]
pub fn scratch() -> Option<*mut u8> {
    SCRATCH.get_ptr_mut(0).map(|p| p.cast::<u8>())
}

/// Copy a NUL-terminated user string to `dst` (at most PATH_MAX bytes). Returns its length
/// without the NUL and the flags describing truncation or a failed read.
#[inline(always)]
pub fn read_user_path(sensor: u32, dst: *mut u8, src: u64) -> (usize, u16) {
    let n = unsafe { bpf_probe_read_user_str(dst.cast(), PATH_MAX as u32, src as *const _) };
    if n <= 0 {
        count(sensor, counters::READ_ERROR);
        return (0, flags::READ_FAILED);
    }
    // n counts the NUL; a full buffer means the string may have been cut.
    let len = (n as usize - 1) & (PATH_MAX - 1);
    let fl = if n as usize >= PATH_MAX {
        flags::PATH_TRUNCATED
    } else {
        0
    };
    (len, fl)
}

/// Send the first `len` bytes of the scratch buffer as one record.
#[inline(always)]
pub fn output_scratch(sensor: u32, buf: *mut u8, len: usize) {
    if len > SCRATCH_SIZE {
        return;
    }
    let data = unsafe { core::slice::from_raw_parts(buf, len) };
    if EVENTS.output(data, wakeup_flags(len)).is_err() {
        count(sensor, counters::RINGBUF_FULL);
    }
}

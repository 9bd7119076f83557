//! Per-thread state: the shadow stack(s), the per-probe statistics and the
//! calling-context tree of one thread. Created on the thread's first probed
//! call from mmap'd memory (signal-safe), registered so snapshots can read
//! it, merged into the probes and freed when the thread ends.

use crate::engine::arena::Arena;
use crate::engine::probe::Probe;
use crate::engine::shadow::Shadow;
use crate::engine::slab::Slab;
use crate::engine::table::{Index, MAX_INDEX};
use crate::meter::contexts::Tree;
use crate::meter::stats::ThreadProbeStats;
use crate::spin_lock::SpinLock;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Contexts (makecontext/swapcontext) a thread can keep shadows for.
pub const MAX_CONTEXT_SHADOWS: usize = 64;

/// TLS sentinels: the state is being built, or the thread has ended.
pub const BUILDING: usize = 1;
pub const ENDED: usize = 2;

#[repr(C)]
pub struct ThreadState {
    /// The shadow stack of the context running now.
    pub shadow: *mut Shadow,
    pub own_shadow: Shadow,
    /// Shadows of other user contexts (swapcontext), allocated on demand.
    pub context_shadows: [*mut Shadow; MAX_CONTEXT_SHADOWS],
    /// Probe id → this thread's statistics block for it.
    pub stats: Index,
    /// The statistics blocks (snapshots read them from other threads).
    pub stats_blocks: Slab<ThreadProbeStats, 3>,
    pub tree: Tree,
    pub arena: Arena,
    pub tid: i32,
    /// Calls this thread could not meter.
    pub unmetered: u64,
    /// Stack-switch situations the shadow stack could not follow exactly.
    pub switches: u64,
    /// The thread's pthread handle (to find it from pthread_cancel).
    pub pthread: libc::pthread_t,
    /// Set when the thread was cancelled: from then on its calls are only
    /// counted, never hooked, so the forced unwind sees real return addresses.
    pub count_only: core::sync::atomic::AtomicBool,
    /// Context hints for the entry stub: at `hint_slot(parent, probe)`, the
    /// address of a context node of this thread (0: none; nodes live as
    /// long as the thread). A hint may name another key; the stub checks the
    /// node's key before it trusts one.
    pub hints: [usize; HINTS],
}

/// Context hints per thread (2 KiB).
pub const HINTS: usize = 256;
pub const HINT_MUL: u32 = 0x9E37_79B1;

/// Where the hint for the context of `probe` called under `parent` lives
/// (the entry stub computes the same in assembly).
#[inline(always)]
pub fn hint_slot(parent: u32, probe: u32) -> usize {
    (parent.wrapping_mul(HINT_MUL) ^ probe) as usize & (HINTS - 1)
}

/// Threads seen since the image started.
pub static THREADS_SEEN: AtomicU64 = AtomicU64::new(0);

struct Registry(Vec<*mut ThreadState>);
// SAFETY: the pointers are only dereferenced under the registry lock or by their own thread.
unsafe impl Send for Registry {}

static REGISTRY: SpinLock<Registry> = SpinLock::new(Registry(Vec::new()));
static KEY: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Bounds of the main thread's stack, found at start.
static MAIN_STACK: Mutex<(usize, usize)> = Mutex::new((0, 0));

fn registry() -> crate::spin_lock::Guard<'static, Registry> {
    REGISTRY.lock()
}

/// Creates the pthread key whose destructor merges a thread at its end.
pub fn init() {
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: key is a valid out-pointer; the destructor is an extern "C" fn.
    if unsafe { libc::pthread_key_create(&mut key, Some(thread_ended)) } == 0 {
        KEY.store(key as usize, Ordering::Relaxed);
    }
    *crate::state::lock(&MAIN_STACK) = main_stack_bounds();
}

/// The `[stack]` mapping of the main thread, from /proc/self/maps.
fn main_stack_bounds() -> (usize, usize) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    for line in maps.lines().filter(|l| l.ends_with("[stack]")) {
        if let Some((lo, hi)) = line
            .split_whitespace()
            .next()
            .and_then(|r| r.split_once('-'))
        {
            let (lo, hi) = (
                usize::from_str_radix(lo, 16).unwrap_or(0),
                usize::from_str_radix(hi, 16).unwrap_or(0),
            );
            // The mapping grows down to the rlimit; leave room for that.
            return (lo.saturating_sub(64 << 20), hi);
        }
    }
    (0, 0)
}

/// The calling thread's state, creating it on first use. Null when it
/// cannot be had (being built, ended, out of memory).
#[inline(always)]
pub fn current_or_create(tls: *mut ThreadState) -> *mut ThreadState {
    if (tls as usize) > ENDED {
        return tls;
    }
    if !tls.is_null() {
        return core::ptr::null_mut();
    }
    create()
}

#[cold]
fn create() -> *mut ThreadState {
    use crate::arch::x86_64::stubs::set_current_thread;
    set_current_thread(BUILDING as *mut ThreadState);
    let state = allocate(crate::sys::gettid());
    if state.is_null() {
        set_current_thread(core::ptr::null_mut());
        return state;
    }
    // SAFETY: pthread_self has no preconditions; the state is fresh and ours.
    unsafe { (*state).pthread = libc::pthread_self() };
    if crate::sys::gettid() as u32 == crate::sys::getpid() {
        let (lo, hi) = *crate::state::lock(&MAIN_STACK);
        // SAFETY: fresh state of ours.
        unsafe { (*state).set_stack(lo, hi) };
    }
    let key = KEY.load(Ordering::Relaxed);
    if key != usize::MAX {
        // SAFETY: the key was created by `init`; the value is our state.
        unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, state.cast()) };
    }
    set_current_thread(state);
    state
}

/// A new, registered thread state for thread `tid` (null when out of memory).
/// Signal-safe: mmap only.
pub fn allocate(tid: i32) -> *mut ThreadState {
    let mut arena = Arena::new();
    let state = arena.alloc(core::mem::size_of::<ThreadState>(), 64) as *mut ThreadState;
    if state.is_null() {
        return state;
    }
    // SAFETY: `state` is fresh zeroed memory big enough for a ThreadState.
    unsafe {
        state.write(ThreadState {
            shadow: core::ptr::null_mut(),
            own_shadow: Shadow::empty(),
            context_shadows: [core::ptr::null_mut(); MAX_CONTEXT_SHADOWS],
            stats: Index::new(),
            stats_blocks: Slab::new(),
            tree: Tree::new(),
            arena,
            tid,
            unmetered: 0,
            switches: 0,
            pthread: 0,
            count_only: core::sync::atomic::AtomicBool::new(false),
            hints: [0; HINTS],
        });
        let s = &mut *state;
        if !s.own_shadow.init(0) {
            s.arena.release();
            return core::ptr::null_mut();
        }
        s.shadow = &mut s.own_shadow;
    }
    registry().0.push(state);
    THREADS_SEEN.fetch_add(1, Ordering::Relaxed);
    state
}

impl ThreadState {
    /// Switches the shadow stack calls are pushed on; the stubs follow when
    /// this is the calling thread's state (as it is for the inline engine).
    /// Two stores, so signals are blocked around them: a handler whose
    /// probed call switched shadows in between would leave the stubs and
    /// the Rust paths on different ones.
    pub fn set_shadow(&mut self, shadow: *mut Shadow) {
        let _blocked = crate::sys::SignalsBlocked::new();
        self.shadow = shadow;
        if crate::arch::x86_64::stubs::current_thread() == self as *mut ThreadState {
            crate::arch::x86_64::stubs::set_current_shadow(shadow);
        }
    }

    /// This thread's statistics block for `probe`, created on first use.
    #[inline(always)]
    pub fn stats_for(&mut self, probe: &Probe) -> *mut ThreadProbeStats {
        match self.find_stats(probe.id) {
            Some(i) => self.stats_blocks.get(i),
            None => self.new_stats(probe),
        }
    }

    #[inline(always)]
    fn find_stats(&self, id: u32) -> Option<u32> {
        let blocks = &self.stats_blocks;
        // SAFETY: published blocks point at leaked probes.
        self.stats.find(id as u64, |i| {
            blocks
                .checked(i)
                .map(|b| unsafe { (*(*b).probe).id as u64 })
        })
    }

    #[cold]
    fn new_stats(&mut self, probe: &Probe) -> *mut ThreadProbeStats {
        let _blocked = crate::sys::SignalsBlocked::new();
        // A signal handler may have made it since the caller looked.
        if let Some(i) = self.find_stats(probe.id) {
            return self.stats_blocks.get(i);
        }
        let blocks = &self.stats_blocks;
        // SAFETY: published blocks point at leaked probes.
        let key_of = |i: u32| {
            blocks
                .checked(i)
                .map(|b| unsafe { (*(*b).probe).id as u64 })
        };
        if !self.stats.reserve(&mut self.arena, key_of) {
            return core::ptr::null_mut();
        }
        let Some(i) =
            self.stats_blocks
                .push(&mut self.arena, ThreadProbeStats::new(probe), MAX_INDEX + 1)
        else {
            return core::ptr::null_mut();
        };
        let blocks = &self.stats_blocks;
        // SAFETY: as above; room was reserved, so this cannot fail.
        self.stats.insert(&mut self.arena, probe.id as u64, i, |i| {
            blocks
                .checked(i)
                .map(|b| unsafe { (*(*b).probe).id as u64 })
        });
        self.stats_blocks.get(i)
    }

    /// Every statistics block of this thread.
    pub fn all_stats(&self) -> impl Iterator<Item = &ThreadProbeStats> + '_ {
        // SAFETY: published blocks of this thread's slab.
        self.stats_blocks.iter().map(|p| unsafe { &*p })
    }

    /// Every statistics block of this thread, to write (its own thread, or
    /// one that has ended or is the only one left).
    pub fn all_stats_mut(&mut self) -> impl Iterator<Item = &mut ThreadProbeStats> + '_ {
        // SAFETY: as above; the caller has the right to write them.
        self.stats_blocks.iter().map(|p| unsafe { &mut *p })
    }

    /// Bytes this thread's metering holds: its arena, and the pages its
    /// shadow stacks have touched.
    pub fn memory_bytes(&self) -> u64 {
        self.arena.allocated as u64 + self.shadows().map(|s| s.resident_bytes()).sum::<u64>()
    }

    /// Every shadow stack of this thread (its own and its contexts').
    pub fn shadows(&self) -> impl Iterator<Item = &Shadow> + '_ {
        let own = core::iter::once(&self.own_shadow);
        // SAFETY: non-null entries point at shadows in this thread's arena.
        own.chain(
            self.context_shadows
                .iter()
                .filter(|p| !p.is_null())
                .map(|p| unsafe { &**p }),
        )
    }

    /// Sets the bounds of the thread's own stack (known for threads we start).
    pub fn set_stack(&mut self, lo: usize, hi: usize) {
        self.own_shadow.stack_lo = lo;
        self.own_shadow.stack_hi = hi;
    }
}

/// Runs `f` with every registered thread state, under the registry lock
/// (so no thread retires, and merges into its probes, meanwhile).
pub fn with_threads<R>(f: impl FnOnce(&[&ThreadState]) -> R) -> R {
    let reg = registry();
    // SAFETY: registered states stay alive until removed under this lock.
    let states: Vec<&ThreadState> = reg.0.iter().map(|&t| unsafe { &*t }).collect();
    f(&states)
}

/// Like `with_threads`, with raw pointers for callers that may write (a fork child).
pub fn with_thread_ptrs<R>(f: impl FnOnce(&[*mut ThreadState]) -> R) -> R {
    let reg = registry();
    f(&reg.0)
}

/// Runs `f` on every registered thread state under the registry lock.
pub fn for_each(mut f: impl FnMut(&ThreadState)) {
    let reg = registry();
    for &t in reg.0.iter() {
        // SAFETY: registered states stay alive until removed under this lock.
        f(unsafe { &*t });
    }
}

/// The pthread key destructor: the thread is ending.
extern "C" fn thread_ended(value: *mut libc::c_void) {
    crate::guard::fail_open("thread end", (), || {
        let state = value as *mut ThreadState;
        if state.is_null() || (state as usize) <= ENDED {
            return;
        }
        crate::arch::x86_64::stubs::set_current_thread(ENDED as *mut ThreadState);
        retire(state);
    })
}

/// Merges a thread's counts into its probes, unregisters and frees it.
pub fn retire(state: *mut ThreadState) {
    let mut reg = registry();
    let Some(pos) = reg.0.iter().position(|&t| t == state) else {
        return;
    };
    reg.0.swap_remove(pos);
    // SAFETY: the state was registered, and is now removed: nobody else reads it.
    let s = unsafe { &mut *state };
    crate::meter::merge::retire_thread(s);
    drop(reg);
    free(state);
}

fn free(state: *mut ThreadState) {
    // SAFETY: the state is unregistered and its thread will not touch it again.
    let s = unsafe { &mut *state };
    s.tree.release_count();
    for &c in s.context_shadows.iter().filter(|p| !p.is_null()) {
        // SAFETY: context shadows live in the arena; their frame arrays are separate mappings.
        unsafe { (*c).release() };
    }
    s.own_shadow.release();
    let mut arena = core::mem::take(&mut s.arena);
    arena.release(); // the state itself lives in this arena
}

/// In a fork child only the forking thread exists: drop the others' states
/// (their memory is a copy nobody will use) and zero the survivor's counts.
pub fn after_fork_in_child(survivor: *mut ThreadState) {
    let mut reg = registry();
    let others: Vec<*mut ThreadState> = reg.0.iter().copied().filter(|&t| t != survivor).collect();
    reg.0.retain(|&t| t == survivor);
    drop(reg);
    for t in others {
        free(t);
    }
    THREADS_SEEN.store(
        if survivor as usize > ENDED { 1 } else { 0 },
        Ordering::Relaxed,
    );
}

/// Lock/unlock around fork, so the child never inherits a held lock.
pub fn lock_for_fork() {
    REGISTRY.lock_raw();
}

pub fn unlock_after_fork() {
    REGISTRY.unlock_raw();
}

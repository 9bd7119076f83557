//! Threads metered from outside: the kernel backend's reader rebuilds each
//! thread's calls from the kernel's entry and return records and feeds them
//! here, into the same shadow stacks, statistics, calling contexts and score
//! card as the inline engine. A frame's key is the stack pointer at entry,
//! which points at the return-address slot (as at the `ret` that ends it).

use crate::engine::enter_exit::{pop_and_meter, push};
use crate::engine::probe::Probe;
use crate::engine::thread::{self, ThreadState};

pub struct External {
    state: *mut ThreadState,
}

// SAFETY: an External is used by one reader thread at a time; its state is
// registered and read by snapshots under the registry lock, like any other.
unsafe impl Send for External {}

impl External {
    /// State for thread `tid`, or None when out of memory.
    pub fn new(tid: i32) -> Option<External> {
        let state = thread::allocate(tid);
        if state.is_null() {
            return None;
        }
        // Any stack: frames below a new entry on the same thread are dead.
        // SAFETY: fresh state of ours.
        unsafe { (*state).set_stack(0, usize::MAX) };
        Some(External { state })
    }

    fn state(&mut self) -> &mut ThreadState {
        // SAFETY: the state lives until `retire`, and only this External uses it.
        unsafe { &mut *self.state }
    }

    /// A call of `probe` entered at `time` with the stack pointer at `sp`.
    pub fn enter(&mut self, probe: &Probe, sp: usize, time: u64) -> bool {
        push(self.state(), probe, sp, 0, 0, Some(time))
    }

    /// The call whose entry stack pointer was `sp` returned at `time`.
    /// False when no open call has that stack pointer.
    pub fn exit(&mut self, sp: usize, time: u64) -> bool {
        pop_and_meter(self.state(), sp, time).is_some()
    }

    /// Calls open on this thread.
    pub fn depth(&mut self) -> usize {
        // SAFETY: `shadow` points at this state's own shadow.
        unsafe { (*self.state().shadow).depth() }
    }

    /// Records a call that could not be metered (e.g. records lost).
    pub fn count_unmetered(&mut self) {
        self.state().unmetered += 1;
    }

    /// The thread ended: its open calls are closed as abandoned and its
    /// counts merged into the probes.
    pub fn retire(self) {
        thread::retire(self.state);
    }
}

//! Per-probe trampolines, placed within ±2 GiB of the code they serve:
//!
//! ```text
//! +0   push [rip + 42]           FF 35 2A000000   (the probe's address)
//! +6   call [rip + 44]           FF 15 2C000000   (the entry stub)
//! +12  dispatch: cmp qword ptr [rsp], 0   48 83 3C 24 00
//! +17  je plain                  74 10            (the stub zeroed the
//!                                                  probe word: not hooked)
//! +19  lea rsp, [rsp + 16]       48 8D 64 24 10
//! +24  call +72                  E8 2B000000      (the body: its return
//!                                                  address, the landing, goes
//!                                                  into the return slot)
//! +29  landing: jmp [rip + 29]   FF 25 1D000000   (the exit stub)
//! +35  plain: lea rsp, [rsp + 8] 48 8D 64 24 08   (the slot keeps its
//! +40  jmp +72                   E9 1B000000       return address)
//! +45  padding
//! +48  <probe address>           imm64
//! +56  <entry stub address>      imm64
//! +64  <exit stub address>       imm64
//! +72  relocated prologue, ending in a jump back to the body
//! ```
//!
//! No register is changed on the way in: the probe travels on the stack.
//! Every transfer that depends on the probe is made from the probe's own
//! trampoline: the entry stub returns into the dispatch that called it,
//! the dispatch calls the body directly, and the body returns to the
//! landing, so the return stack buffer predicts all three and no shared
//! indirect branch picks among probes. A hooked call's return slot holds
//! its trampoline's landing (the frame keeps it as `hook`).
//!
//! A batch of trampolines is written into fresh read-write pages that then
//! become read-execute and are never written, moved or freed again: a
//! thread may be inside one at any time, and exits of calls entered before a
//! probe was disabled still come back through it.

use hotprobe_x86::MAX_RELOCATED_LEN;

pub const HEADER_LEN: usize = 72;
/// From the dispatch (the entry stub's return address) to the landing.
pub const LANDING_FROM_DISPATCH: usize = 17;
/// One trampoline's room, code and padding (data lives in the probe).
pub const SLOT_LEN: usize = (HEADER_LEN + MAX_RELOCATED_LEN + 15) & !15;
/// ±2 GiB less a margin for the relocated code's own displacements.
const REACH: usize = (1usize << 31) - (64 << 20);

/// A region of trampolines being filled.
pub struct Batch {
    base: *mut u8,
    len: usize,
    used: usize,
}

impl Batch {
    /// Room for `count` trampolines reachable from the code in [lo, hi).
    pub fn near(lo: usize, hi: usize, count: usize) -> Result<Batch, String> {
        let len = (count.max(1) * SLOT_LEN + 4095) & !4095;
        let start = crate::maps::free_range_near(lo, hi, len, REACH).ok_or_else(|| {
            format!("no free memory within ±2 GiB of {lo:#x}–{hi:#x} for trampolines")
        })?;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
        let p = unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED || p as usize != start {
            if p != libc::MAP_FAILED {
                // SAFETY: we just mapped it.
                unsafe { libc::munmap(p, len) };
            }
            return Err(format!(
                "cannot map trampolines at {start:#x}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Batch {
            base: p.cast(),
            len,
            used: 0,
        })
    }

    /// Writes one trampoline for `probe`; returns (trampoline, resume) addresses.
    /// `code` is the function's body (for relocating its prologue).
    pub fn add(
        &mut self,
        probe: usize,
        site: usize,
        code: &[u8],
    ) -> Result<(usize, usize), hotprobe_x86::Rejection> {
        if self.used + SLOT_LEN > self.len {
            return Err(hotprobe_x86::Rejection::Unrelocatable {
                at: 0,
                why: "trampoline region full".into(),
            });
        }
        let tramp = self.base as usize + self.used;
        let resume = tramp + HEADER_LEN;
        let relocated = hotprobe_x86::relocate_prologue(code, site as u64, resume as u64)?;
        if relocated.len() > MAX_RELOCATED_LEN {
            return Err(hotprobe_x86::Rejection::Unrelocatable {
                at: 0,
                why: "relocated prologue too long".into(),
            });
        }
        let mut bytes = [0xCCu8; SLOT_LEN];
        bytes[0..6].copy_from_slice(&[0xFF, 0x35, 0x2A, 0, 0, 0]);
        bytes[6..12].copy_from_slice(&[0xFF, 0x15, 0x2C, 0, 0, 0]);
        bytes[12..17].copy_from_slice(&[0x48, 0x83, 0x3C, 0x24, 0x00]);
        bytes[17..19].copy_from_slice(&[0x74, 0x10]);
        bytes[19..24].copy_from_slice(&[0x48, 0x8D, 0x64, 0x24, 0x10]);
        bytes[24..29].copy_from_slice(&[0xE8, 0x2B, 0, 0, 0]);
        bytes[29..35].copy_from_slice(&[0xFF, 0x25, 0x1D, 0, 0, 0]);
        bytes[35..40].copy_from_slice(&[0x48, 0x8D, 0x64, 0x24, 0x08]);
        bytes[40..45].copy_from_slice(&[0xE9, 0x1B, 0, 0, 0]);
        bytes[48..56].copy_from_slice(&(probe as u64).to_le_bytes());
        bytes[56..64].copy_from_slice(&(super::stubs::entry_stub_address() as u64).to_le_bytes());
        bytes[64..72].copy_from_slice(&(super::stubs::exit_stub_address() as u64).to_le_bytes());
        bytes[HEADER_LEN..HEADER_LEN + relocated.len()].copy_from_slice(&relocated);
        // SAFETY: [tramp, tramp + SLOT_LEN) lies inside our read-write batch.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), tramp as *mut u8, SLOT_LEN) };
        self.used += SLOT_LEN;
        Ok((tramp, resume))
    }

    /// Makes the batch executable. After this it is never written again.
    pub fn seal(self) -> Result<(), String> {
        // SAFETY: base/len describe our own mapping; nothing executes it yet.
        if unsafe {
            libc::mprotect(
                self.base.cast(),
                self.len,
                libc::PROT_READ | libc::PROT_EXEC,
            )
        } != 0
        {
            return Err(format!(
                "cannot make trampolines executable: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    pub fn bytes_used(&self) -> usize {
        self.used
    }
}

//! Reading the BPF ring buffer: one ring for the whole process, written by
//! every CPU in reservation order, so each thread's records come out in
//! the order it made them.

use core::sync::atomic::{AtomicU64, Ordering};

const PAGE: usize = 4096;
const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
const HEADER: u64 = 8;

pub struct Ring {
    consumer: *mut u8,
    producer: *mut u8,
    size: usize,
}

// SAFETY: the mappings belong to this Ring and are only touched by whoever holds the backend's lock.
unsafe impl Send for Ring {}

impl Ring {
    /// Maps the ring of the map `fd` whose data area is `size` bytes.
    pub fn map(fd: i32, size: usize) -> Result<Ring, String> {
        // SAFETY: a fresh shared mapping of the ring's consumer page (read-write, by the kernel's rules).
        let consumer = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if consumer == libc::MAP_FAILED {
            return Err(format!(
                "cannot map the BPF ring buffer: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: the producer page and the data area mapped twice (read-only), as the kernel lays them out.
        let producer = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                PAGE + 2 * size,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                PAGE as i64,
            )
        };
        if producer == libc::MAP_FAILED {
            let err = std::io::Error::last_os_error();
            // SAFETY: our own mapping above.
            unsafe { libc::munmap(consumer, PAGE) };
            return Err(format!("cannot map the BPF ring buffer: {err}"));
        }
        Ok(Ring {
            consumer: consumer.cast(),
            producer: producer.cast(),
            size,
        })
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: consumer_pos is the first u64 of the mapped consumer page.
        unsafe { &*(self.consumer as *const AtomicU64) }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: producer_pos is the first u64 of the mapped producer page.
        unsafe { &*(self.producer as *const AtomicU64) }
    }

    /// Bytes written and not yet read.
    pub fn pending(&self) -> u64 {
        self.producer_pos()
            .load(Ordering::Acquire)
            .saturating_sub(self.consumer_pos().load(Ordering::Relaxed))
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Calls `each` with every committed record, in ring order, and frees
    /// their space. Stops at a record still being written.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) -> usize {
        let mut pos = self.consumer_pos().load(Ordering::Relaxed);
        let end = self.producer_pos().load(Ordering::Acquire);
        let mask = self.size as u64 - 1;
        // SAFETY: the data area is mapped twice in a row, so a record that wraps reads on contiguously.
        let data = unsafe { core::slice::from_raw_parts(self.producer.add(PAGE), 2 * self.size) };
        let mut n = 0;
        while pos < end {
            let at = (pos & mask) as usize;
            // SAFETY: the header is an aligned u32 inside the data area; the kernel
            // publishes it with a release store once the record is committed.
            let word = unsafe {
                (*(data.as_ptr().add(at) as *const core::sync::atomic::AtomicU32))
                    .load(Ordering::Acquire)
            };
            if word & BUSY != 0 {
                break;
            }
            let len = (word & !(BUSY | DISCARD)) as usize;
            if word & DISCARD == 0 {
                let start = at + HEADER as usize;
                if let Some(rec) = data.get(start..start + len) {
                    each(rec);
                    n += 1;
                }
            }
            pos += (len as u64 + HEADER + 7) & !7;
        }
        self.consumer_pos().store(pos, Ordering::Release);
        n
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: our own mappings, unmapped once.
        unsafe {
            libc::munmap(self.consumer.cast(), PAGE);
            libc::munmap(self.producer.cast(), PAGE + 2 * self.size);
        }
    }
}

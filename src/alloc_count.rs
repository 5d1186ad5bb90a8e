//! The process's global allocator: mimalloc, wrapped to count heap
//! allocations (`alloc`, `alloc_zeroed` and `realloc` calls; frees are not
//! counted) for INFO's `total_allocations`.
//!
//! The count is spread over [`SLOTS`] slots, each on a cache line of its
//! own. A thread takes a slot the first time it allocates and keeps it, so
//! the hot path is a thread-local read and a relaxed add on a line that
//! thread (mostly) has to itself: no single atomic shared by every thread.
//! More threads than slots share slots, which stays correct (the adds are
//! atomic), only less private. [`total`] sums the slots: exact when the
//! process is quiet, otherwise off by the allocations in flight.
//!
//! This is the only `unsafe` in shoal: implementing `GlobalAlloc` requires
//! it. The library forbids unsafe code outright (`src/lib.rs`).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Slots the count is spread over: more than the threads a node runs at
/// once on the machines it targets.
const SLOTS: usize = 64;

/// One slot, alone on 128 bytes: Intel's prefetcher fetches cache lines in
/// pairs, so two slots 64 bytes apart would still contend.
#[repr(align(128))]
struct Slot(AtomicU64);

static COUNTS: [Slot; SLOTS] = [const { Slot(AtomicU64::new(0)) }; SLOTS];

/// The slot the next thread to allocate takes (modulo [`SLOTS`]).
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's slot, or [`SLOTS`] before it first allocates. A `const`
    /// initializer and no destructor: reading it never allocates and works
    /// even while the thread is being torn down.
    static SLOT: Cell<usize> = const { Cell::new(SLOTS) };
}

/// Counts one allocation in the calling thread's slot.
#[inline]
fn count() {
    let slot = SLOT
        .try_with(|slot| {
            let mut i = slot.get();
            if i == SLOTS {
                i = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
                slot.set(i);
            }
            i
        })
        .unwrap_or(0);
    COUNTS[slot].0.fetch_add(1, Ordering::Relaxed);
}

/// Allocations (and reallocations) the process has made so far.
pub fn total() -> u64 {
    COUNTS.iter().map(|slot| slot.0.load(Ordering::Relaxed)).sum()
}

/// An allocator that counts the allocations it passes on to `A`.
pub struct Counting<A>(pub A);

// SAFETY: every method forwards its arguments unchanged to `A`, which
// upholds `GlobalAlloc`'s contract; counting touches no allocated memory
// and never allocates (the thread-local has a const initializer and no
// destructor).
#[allow(unsafe_code)]
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's guarantees on `layout`, passed on.
        unsafe { self.0.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `self.0` (every allocation goes through
        // it) with this `layout`, as the caller guarantees.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as for `dealloc`; `new_size` is the caller's, valid for
        // `layout`'s alignment.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::total;

    // These run under the binary's global allocator, so they count for real.

    #[test]
    fn allocations_and_reallocations_count() {
        let before = total();
        let mut v: Vec<u8> = std::hint::black_box(Vec::with_capacity(16));
        v.reserve_exact(4096);
        std::hint::black_box(&v);
        drop(v);
        // Other tests may run at the same time and allocate too.
        assert!(total() >= before + 2, "an allocation and a reallocation counted");
    }

    #[test]
    fn every_thread_counts_and_the_slots_add_up() {
        let before = total();
        let threads: Vec<_> = (0..(super::SLOTS + 8))
            .map(|_| {
                std::thread::spawn(|| {
                    for i in 0..100u64 {
                        drop(std::hint::black_box(Box::new(i)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let allocated = total() - before;
        assert!(allocated >= 100 * (super::SLOTS as u64 + 8), "{allocated} allocations counted");
    }
}

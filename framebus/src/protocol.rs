//! The slot hand-off protocol between the one writer and many readers.
//!
//! # Words
//!
//! Every slot has a **state word** (`u64`):
//!
//! ```text
//!   63                                   1   0
//!  +--------------------------------------+---+
//!  |        sequence number (63 bits)     | W |
//!  +--------------------------------------+---+
//! ```
//!
//! `W` (the *writing bit*) is set while the writer fills the slot. The
//! sequence is that of the frame the slot holds; `0` means "no valid frame"
//! (never written, or a loan that was abandoned half-written).
//!
//! Every reader owns one entry in the reader table; its **held mask** (`u64`)
//! has bit `i` set while the reader holds (or is about to hold) slot `i`.
//! Slot counts are therefore limited to 64.
//!
//! # Hand-off (a Dekker-style handshake)
//!
//! * Reader, to hold slot `i` holding sequence `s`: set bit `i` in its held
//!   mask, `fence(SeqCst)`, load the slot's state; if it is not exactly
//!   `s << 1` (the writer is in it, or it holds another frame by now), clear
//!   the bit again and retry with the newest frame.
//! * Writer, to claim slot `i`: set `W`, `fence(SeqCst)`, load every reader's
//!   held mask; if any has bit `i`, restore the state word and try another
//!   slot.
//!
//! Both sides store, fence, then load. By the rules of SeqCst fences, of the
//! two fences the later one in the single total order `S` sees the other
//! side's store: either the writer sees the reader's bit and backs off, or
//! the reader sees `W` (or a newer sequence) and backs off; possibly both.
//! They can never both proceed, so a reader never looks at a slot the writer
//! is writing. Loom does not model SeqCst *accesses*, only SeqCst fences,
//! which is one more reason to write the handshake with explicit fences.
//!
//! Releasing is a `fetch_and` with `Release`, paired with the writer's
//! `Acquire` loads of the masks: everything the reader did with the slot's
//! bytes happens-before the writer's next write into them.
//!
//! Publishing stores the new state word with `Release`, paired with the
//! reader's `Acquire` load in [`try_hold`]: the frame's bytes and metadata are
//! visible to any reader that sees the new sequence.
//!
//! # Dead readers
//!
//! A reader's entry is owned through an exclusive lock the kernel drops when
//! the owner dies (an OFD byte-range lock, see `sys.rs`). Whoever takes that
//! lock owns the entry, so the writer reclaims a dead reader's entry by taking
//! its lock and clearing the mask while holding it ([`reclaim`]); a new reader
//! cannot be claiming the same entry at that moment.

use crate::sync::{fence, AtomicU64, Ordering};

/// The writing bit of a slot state word.
pub(crate) const WRITING: u64 = 1;

/// The state word of a slot that holds frame `seq`, not being written.
#[inline]
pub(crate) const fn published(seq: u64) -> u64 {
    seq << 1
}

/// Reader side: try to hold `slot_bit` for the frame with sequence `seq`.
///
/// Returns `true` if the slot is now held and still holds `seq`; the caller
/// may read the slot until it calls [`release`]. Returns `false` (with the bit
/// cleared again) if the writer is in the slot or has moved on.
///
/// The caller must not already hold `slot_bit` (it keeps its own count of
/// frames per slot and only calls this for the first).
#[inline]
pub(crate) fn try_hold(held: &AtomicU64, state: &AtomicU64, slot_bit: u64, seq: u64) -> bool {
    // Only this reader writes bits into its own mask, so the RMW needs no
    // ordering of its own: the fence below orders it.
    held.fetch_or(slot_bit, Ordering::Relaxed);
    // SYNC POINT with the fence in `claim`: of the two fences, the later one
    // sees the other side's store (our bit, or the writer's W).
    fence(Ordering::SeqCst);
    // Acquire pairs with the Release store in `publish`: if we see `seq`, we
    // see the bytes and metadata written before it was published.
    let now = state.load(Ordering::Acquire);
    if now == published(seq) {
        true
    } else {
        release(held, slot_bit);
        false
    }
}

/// Reader side: stop holding `slot_bit`.
#[inline]
pub(crate) fn release(held: &AtomicU64, slot_bit: u64) {
    // Release pairs with the Acquire loads of the masks in `claim`: our reads
    // of the slot happen-before the writer's next write into it.
    held.fetch_and(!slot_bit, Ordering::Release);
}

/// Writer side: try to claim a slot for writing.
///
/// `masks` are the held masks of every reader entry. On success the slot's
/// `W` bit is set and the previous state word is returned; the writer owns
/// the slot's bytes until [`publish`] or [`abandon`]. On failure (a reader
/// holds the slot) the state word is restored and `None` is returned.
#[inline]
pub(crate) fn claim<'a>(
    state: &AtomicU64,
    masks: impl IntoIterator<Item = &'a AtomicU64>,
    slot_bit: u64,
) -> Option<u64> {
    // Only the writer stores to state words, so this load sees its own last
    // store.
    let old = state.load(Ordering::Relaxed);
    debug_assert_eq!(old & WRITING, 0, "slot claimed twice");
    state.store(old | WRITING, Ordering::Relaxed);
    // SYNC POINT with the fence in `try_hold` (see the module docs).
    fence(Ordering::SeqCst);
    for mask in masks {
        // Acquire pairs with the Release in `release`: a reader's last reads
        // of this slot happen-before our writes into it.
        if mask.load(Ordering::Acquire) & slot_bit != 0 {
            // Nothing was written: the slot still holds frame `old >> 1`, and
            // a reader may hold it again. Release keeps this store after the
            // loads above.
            state.store(old, Ordering::Release);
            return None;
        }
    }
    Some(old)
}

/// Writer side: make the claimed slot hold frame `seq`.
#[inline]
pub(crate) fn publish(state: &AtomicU64, seq: u64) {
    // Release pairs with the Acquire load in `try_hold`.
    state.store(published(seq), Ordering::Release);
}

/// Writer side: give up a claimed slot whose bytes may be half-written.
#[inline]
pub(crate) fn abandon(state: &AtomicU64) {
    // Sequence 0 is never wanted by a reader, so the slot is simply empty.
    state.store(0, Ordering::Release);
}

/// Anyone holding the entry's ownership lock: clear a dead reader's holds.
#[inline]
pub(crate) fn reclaim(held: &AtomicU64) {
    // Release: the clear is ordered after taking the lock; the writer's
    // Acquire load in `claim` then sees the slots free.
    held.store(0, Ordering::Release);
}

#[cfg(all(test, loom))]
mod loom_models {
    //! Run with: `RUSTFLAGS="--cfg loom" cargo test -p framebus --lib --release loom`
    //! (`make loom`).
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    /// A miniature bus: `N` slots of one "pixel" each, plus the state words
    /// and reader masks the real bus keeps in shared memory. The slot bytes
    /// are loom `UnsafeCell`s, so loom reports any write into a slot while a
    /// reader reads it as a data race.
    struct Bus<const N: usize> {
        states: [AtomicU64; N],
        data: [UnsafeCell<u64>; N],
        masks: Vec<AtomicU64>,
        latest: AtomicU64,
        /// Stands for the kernel's OFD lock on each reader entry.
        entry_locks: Vec<Mutex<()>>,
    }

    impl<const N: usize> Bus<N> {
        fn new(readers: usize) -> Self {
            Bus {
                states: std::array::from_fn(|_| AtomicU64::new(0)),
                data: std::array::from_fn(|_| UnsafeCell::new(0)),
                masks: (0..readers).map(|_| AtomicU64::new(0)).collect(),
                latest: AtomicU64::new(0),
                entry_locks: (0..readers).map(|_| Mutex::new(())).collect(),
            }
        }

        /// The writer: claim any slot but the newest, write, publish.
        /// Returns false if every candidate slot was held.
        fn write(&self, seq: u64) -> bool {
            let latest = self.latest.load(Ordering::Relaxed);
            let latest_slot = (latest & 0xff) as usize;
            for i in 0..N {
                if latest != 0 && i == latest_slot {
                    continue;
                }
                if claim(&self.states[i], &self.masks, 1 << i).is_some() {
                    // SAFETY: the slot is claimed: no reader holds it.
                    self.data[i].with_mut(|p| unsafe { *p = seq });
                    publish(&self.states[i], seq);
                    self.latest.store(seq << 8 | i as u64, Ordering::Release);
                    return true;
                }
            }
            false
        }

        /// A reader: hold the newest frame, check its bytes, release.
        fn read(&self, reader: usize) -> Option<u64> {
            for _ in 0..3 {
                let latest = self.latest.load(Ordering::Acquire);
                if latest == 0 {
                    return None;
                }
                let (seq, slot) = (latest >> 8, (latest & 0xff) as usize);
                if try_hold(&self.masks[reader], &self.states[slot], 1 << slot, seq) {
                    // SAFETY: held: the writer does not write this slot.
                    let got = self.data[slot].with(|p| unsafe { *p });
                    assert_eq!(got, seq, "reader saw a frame other than the one it held");
                    release(&self.masks[reader], 1 << slot);
                    return Some(seq);
                }
                thread::yield_now();
            }
            None
        }
    }

    /// Explore every interleaving with up to three preemptions (the bound
    /// loom's authors recommend; most concurrency bugs need two or fewer).
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(3);
        }
        b.check(f);
    }

    /// One writer publishing three frames into three slots while two readers
    /// each take the newest frame: no torn frame, no write into a held slot.
    #[test]
    fn loom_handoff() {
        model(|| {
            let bus = Arc::new(Bus::<3>::new(2));
            let readers: Vec<_> = (0..2)
                .map(|r| {
                    let bus = bus.clone();
                    thread::spawn(move || {
                        bus.read(r);
                    })
                })
                .collect();
            for seq in 1..=3 {
                // With 3 slots, at most one skipped as newest and two readers
                // holding at most one each, the writer can always be refused;
                // it must then simply not write.
                bus.write(seq);
            }
            for r in readers {
                r.join().unwrap();
            }
        });
    }

    /// A reader holds a slot and dies (its lock is dropped, its mask is not
    /// cleared). The writer reclaims the entry under the entry lock while a
    /// new reader claims the same entry and holds a frame: the writer never
    /// writes the new reader's slot.
    #[test]
    fn loom_dead_reader_reclaimed() {
        model(|| {
            let bus = Arc::new(Bus::<3>::new(1));
            bus.write(1);
            // The dead reader: held slot 0 (frame 1), then died.
            assert!(try_hold(&bus.masks[0], &bus.states[0], 1, 1));

            let newcomer = {
                let bus = bus.clone();
                thread::spawn(move || {
                    let Ok(_owner) = bus.entry_locks[0].try_lock() else {
                        return;
                    };
                    // A new owner starts from a clean mask.
                    reclaim(&bus.masks[0]);
                    bus.read(0);
                })
            };
            // The writer's periodic sweep.
            if let Ok(_guard) = bus.entry_locks[0].try_lock() {
                reclaim(&bus.masks[0]);
            }
            bus.write(2);
            bus.write(3);
            newcomer.join().unwrap();
        });
    }
}

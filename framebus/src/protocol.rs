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
//!
//! # Readers the writer looks at
//!
//! Readers claim the lowest free entry of the reader table and raise the
//! header's **reader high-water mark** (`reader_hwm`, one more than the
//! highest entry ever claimed) before they first hold a slot. The writer
//! loads the mark *after* its fence and scans entries `0..hwm` only, so its
//! cost follows the readers there are, not the table's capacity. The mark's
//! `fetch_max` is sequenced before the reader's fence in [`try_hold`], so the
//! fence argument above covers it: a writer that does not see the mark is
//! one whose fence came first, and then the reader sees `W`.
//!
//! # Wake-ups (the same handshake on two other words)
//!
//! A reader that finds no new frame and wants to sleep sets the **waiting
//! flag** of its own entry, `fence(SeqCst)`, loads the futex word
//! (`wake_seq`), looks for a new frame once more, and only then sleeps with
//! `FUTEX_WAIT` on the value it loaded ([`prepare_wait`]). The writer, after
//! publishing, stores the futex word, `fence(SeqCst)`, and loads the waiting
//! flags of entries `0..hwm` ([`needs_wake`]); it makes the `FUTEX_WAKE`
//! system call only if one is set. By the same fence rule at least one side
//! sees the other: the writer sees the flag and wakes, or the reader sees the
//! new frame (or the new word, so the kernel refuses to sleep: `FUTEX_WAIT`
//! compares the word under its own lock). No wake-up is lost, and no system
//! call is made while nobody waits.
//!
//! The flag is per entry, not a shared count, so a reader killed while
//! blocked leaves nothing behind once its entry is reclaimed: [`reclaim`]
//! clears it with the held mask.
//!
//! This is the classic store-buffering (Dekker) pattern; the fence rule is
//! C++20 [atomics.fences]/4 ("if a SeqCst fence X precedes a SeqCst fence Y
//! in S, a store sequenced before X is visible to a load sequenced after
//! Y"), which Rust inherits. Loom checks both handshakes through explicit
//! fences (it does not model SeqCst accesses), in the models at the end of
//! this file.
//!
//! # Packed words
//!
//! `latest` holds `sequence << 8 | slot` ([`pack_latest`],
//! [`unpack_latest`]); a slot state holds `sequence << 1 | W`
//! ([`published`], [`WRITING`]).

use crate::sync::{fence, AtomicU32, AtomicU64, Ordering};

/// The writing bit of a slot state word.
pub(crate) const WRITING: u64 = 1;

/// The state word of a slot that holds frame `seq`, not being written.
#[inline]
pub(crate) const fn published(seq: u64) -> u64 {
    seq << 1
}

/// The `latest` word for frame `seq` in `slot`.
#[inline]
pub(crate) const fn pack_latest(seq: u64, slot: u32) -> u64 {
    seq << 8 | (slot as u64 & 0xff)
}

/// `(sequence, slot)` of a `latest` word. The slot is not checked against
/// the bus's slot count here: the caller does, the word is untrusted.
#[inline]
pub(crate) const fn unpack_latest(word: u64) -> (u64, u32) {
    (word >> 8, (word & 0xff) as u32)
}

/// The reader table as the writer sees it.
pub(crate) trait ReaderTable {
    /// The high-water mark word.
    fn hwm(&self) -> &AtomicU32;
    /// Entry `i`'s held mask (`i < hwm`, bounded by the table's capacity).
    fn held(&self, i: u32) -> &AtomicU64;
    /// Entry `i`'s waiting flag.
    fn waiting(&self, i: u32) -> &AtomicU32;
    /// Entries in the table (the mark is untrusted and clamped to this).
    fn capacity(&self) -> u32;

    /// The mark, clamped. Relaxed: callers load it after their fence.
    #[inline]
    fn scan_len(&self) -> u32 {
        self.hwm().load(Ordering::Relaxed).min(self.capacity())
    }
}

/// Reader side, once after claiming entry `index`: make the writer look at
/// it. Must be sequenced before the entry's first [`try_hold`] or
/// [`prepare_wait`] (whose fences publish it).
#[inline]
pub(crate) fn register(hwm: &AtomicU32, index: u32) {
    hwm.fetch_max(index + 1, Ordering::Relaxed);
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
/// On success the slot's `W` bit is set and the previous state word is
/// returned; the writer owns the slot's bytes until [`publish`] or
/// [`abandon`]. On failure (a reader holds the slot) the state word is
/// restored and `None` is returned.
#[inline]
pub(crate) fn claim(state: &AtomicU64, readers: &impl ReaderTable, slot_bit: u64) -> Option<u64> {
    // Only the writer stores to state words, so this load sees its own last
    // store.
    let old = state.load(Ordering::Relaxed);
    debug_assert_eq!(old & WRITING, 0, "slot claimed twice");
    state.store(old | WRITING, Ordering::Relaxed);
    // SYNC POINT with the fence in `try_hold` (see the module docs).
    fence(Ordering::SeqCst);
    // After the fence: a reader registered before its own fence is seen.
    for i in 0..readers.scan_len() {
        // Acquire pairs with the Release in `release`: a reader's last reads
        // of this slot happen-before our writes into it.
        if readers.held(i).load(Ordering::Acquire) & slot_bit != 0 {
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

/// Reader side, before sleeping: set our waiting flag and load the futex
/// word to sleep on. The caller must look for a new frame once more after
/// this (and not sleep if there is one), then call [`done_waiting`].
#[inline]
pub(crate) fn prepare_wait(waiting: &AtomicU32, word: &AtomicU32) -> u32 {
    waiting.store(1, Ordering::Relaxed);
    // SYNC POINT with the fence in `needs_wake`: the writer sees our flag,
    // or we see its new word and frame.
    fence(Ordering::SeqCst);
    // Acquire pairs with the Release store in `needs_wake`: if we load the
    // new word we also see the frame published before it, so we do not go
    // to sleep on the new word waiting for a frame that is already there
    // (loom found that lost wake-up with both sides Relaxed).
    word.load(Ordering::Acquire)
}

/// Reader side, after sleeping (or deciding not to).
#[inline]
pub(crate) fn done_waiting(waiting: &AtomicU32) {
    waiting.store(0, Ordering::Relaxed);
}

/// Writer side, after publishing frame `seq`: store the futex word and tell
/// whether anyone may be sleeping on it (then the caller makes the
/// `FUTEX_WAKE` call).
#[inline]
pub(crate) fn needs_wake(word: &AtomicU32, readers: &impl ReaderTable, seq: u64) -> bool {
    // Only the low 32 bits: a sleeper only needs the word to differ.
    // Release: see `prepare_wait`.
    word.store(seq as u32, Ordering::Release);
    // SYNC POINT with the fence in `prepare_wait`.
    fence(Ordering::SeqCst);
    (0..readers.scan_len()).any(|i| readers.waiting(i).load(Ordering::Relaxed) != 0)
}

/// Anyone holding the entry's ownership lock: clear a dead reader's holds
/// and its waiting flag.
#[inline]
pub(crate) fn reclaim(held: &AtomicU64, waiting: &AtomicU32) {
    waiting.store(0, Ordering::Relaxed);
    // Release: the clear is ordered after taking the lock; the writer's
    // Acquire load in `claim` then sees the slots free.
    held.store(0, Ordering::Release);
}

/// Writer side of a seqlock (the codec configuration in the header): the
/// word is odd while `write` runs. One writer only.
///
/// Readers ([`seqlock_read`]) load the word, copy the data (atomics, so the
/// race is defined), and retry if the word was odd or changed: a copy is
/// used only when no write overlapped it. This is the seqlock of the Linux
/// kernel and of Boehm, "Can seqlocks get along with programming language
/// memory models?" (MSPC 2012): the data loads are Relaxed atomics, and the
/// reader's Acquire fence orders them before its second load of the word.
#[inline]
pub(crate) fn seqlock_write(seq: &AtomicU64, write: impl FnOnce()) {
    let s = seq.load(Ordering::Relaxed);
    seq.store(s.wrapping_add(1), Ordering::Relaxed);
    // Release fence: the odd word is visible before any data store (a
    // reader that sees new data also sees the word odd or changed).
    fence(Ordering::Release);
    write();
    // Release: the data stores happen-before a reader's Acquire load that
    // sees the even word.
    seq.store(s.wrapping_add(2), Ordering::Release);
}

/// Reader side of a seqlock: `Some(copy)` of a consistent state, `None`
/// if the writer kept writing through `tries` attempts.
#[inline]
pub(crate) fn seqlock_read<T>(seq: &AtomicU64, tries: u32, read: impl Fn() -> T) -> Option<T> {
    for _ in 0..tries {
        // Acquire pairs with the Release store ending a write.
        let s1 = seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            crate::sync::spin_or_yield();
            continue;
        }
        let v = read();
        // Acquire fence: the data loads above come before the reload.
        fence(Ordering::Acquire);
        if seq.load(Ordering::Relaxed) == s1 {
            return Some(v);
        }
    }
    None
}

#[cfg(all(test, loom))]
mod loom_models {
    //! Run with: `RUSTFLAGS="--cfg loom" cargo test -p framebus --lib --release loom`
    //! (`make test-loom`).
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;

    /// A miniature bus: `N` slots of one "pixel" each, plus the state words,
    /// reader entries and futex word the real bus keeps in shared memory.
    /// The slot bytes are loom `UnsafeCell`s, so loom reports any write into
    /// a slot while a reader reads it as a data race.
    struct Bus<const N: usize> {
        states: [AtomicU64; N],
        data: [UnsafeCell<u64>; N],
        masks: Vec<AtomicU64>,
        waiting: Vec<AtomicU32>,
        hwm: AtomicU32,
        latest: AtomicU64,
        wake_seq: AtomicU32,
        futex: Futex,
        /// Stands for the kernel's OFD lock on each reader entry.
        entry_locks: Vec<Mutex<()>>,
    }

    impl<const N: usize> ReaderTable for Bus<N> {
        fn hwm(&self) -> &AtomicU32 {
            &self.hwm
        }
        fn held(&self, i: u32) -> &AtomicU64 {
            &self.masks[i as usize]
        }
        fn waiting(&self, i: u32) -> &AtomicU32 {
            &self.waiting[i as usize]
        }
        fn capacity(&self) -> u32 {
            self.masks.len() as u32
        }
    }

    /// The kernel's futex, as far as the handshake relies on it:
    /// `FUTEX_WAIT` compares the word and queues the caller atomically
    /// (under the bucket lock), `FUTEX_WAKE` wakes everyone queued.
    struct Futex {
        bucket: Mutex<u64>,
        queue: Condvar,
    }

    impl Futex {
        fn new() -> Self {
            Futex {
                bucket: Mutex::new(0),
                queue: Condvar::new(),
            }
        }

        /// Sleep while `word == expected`, with no timeout: a lost wake-up
        /// leaves this thread blocked forever, which loom reports as a
        /// deadlock.
        fn wait(&self, word: &AtomicU32, expected: u32) {
            let mut wakes = self.bucket.lock().unwrap();
            if word.load(Ordering::Relaxed) != expected {
                return;
            }
            let seen = *wakes;
            while *wakes == seen {
                wakes = self.queue.wait(wakes).unwrap();
            }
        }

        fn wake_all(&self) {
            *self.bucket.lock().unwrap() += 1;
            self.queue.notify_all();
        }
    }

    impl<const N: usize> Bus<N> {
        fn new(readers: usize) -> Self {
            Bus {
                states: std::array::from_fn(|_| AtomicU64::new(0)),
                data: std::array::from_fn(|_| UnsafeCell::new(0)),
                masks: (0..readers).map(|_| AtomicU64::new(0)).collect(),
                waiting: (0..readers).map(|_| AtomicU32::new(0)).collect(),
                hwm: AtomicU32::new(0),
                latest: AtomicU64::new(0),
                wake_seq: AtomicU32::new(0),
                futex: Futex::new(),
                entry_locks: (0..readers).map(|_| Mutex::new(())).collect(),
            }
        }

        /// The writer: claim any slot but the newest, write, publish, wake.
        /// Returns false if every candidate slot was held.
        fn write(&self, seq: u64) -> bool {
            let latest = self.latest.load(Ordering::Relaxed);
            let (_, latest_slot) = unpack_latest(latest);
            for i in 0..N as u32 {
                if latest != 0 && i == latest_slot {
                    continue;
                }
                if claim(&self.states[i as usize], self, 1 << i).is_some() {
                    // SAFETY: the slot is claimed: no reader holds it.
                    self.data[i as usize].with_mut(|p| unsafe { *p = seq });
                    publish(&self.states[i as usize], seq);
                    self.latest.store(pack_latest(seq, i), Ordering::Release);
                    if needs_wake(&self.wake_seq, self, seq) {
                        self.futex.wake_all();
                    }
                    return true;
                }
            }
            false
        }

        /// A reader: hold the newest frame newer than `after`, check its
        /// bytes, release.
        fn take(&self, reader: u32, after: u64) -> Option<u64> {
            for _ in 0..3 {
                let latest = self.latest.load(Ordering::Acquire);
                let (seq, slot) = unpack_latest(latest);
                if latest == 0 || seq <= after {
                    return None;
                }
                let held = &self.masks[reader as usize];
                if try_hold(held, &self.states[slot as usize], 1 << slot, seq) {
                    // SAFETY: held: the writer does not write this slot.
                    let got = self.data[slot as usize].with(|p| unsafe { *p });
                    assert_eq!(got, seq, "reader saw a frame other than the one it held");
                    release(held, 1 << slot);
                    return Some(seq);
                }
                thread::yield_now();
            }
            None
        }

        /// `Reader::next` without a timeout: block until a frame newer than
        /// `after` is taken.
        fn next(&self, reader: u32, after: u64) -> u64 {
            loop {
                if let Some(seq) = self.take(reader, after) {
                    return seq;
                }
                let waiting = &self.waiting[reader as usize];
                let word = prepare_wait(waiting, &self.wake_seq);
                let (newest, _) = unpack_latest(self.latest.load(Ordering::Acquire));
                if newest <= after {
                    self.futex.wait(&self.wake_seq, word);
                }
                done_waiting(waiting);
            }
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
    /// (registering as they start) each take the newest frame: no torn
    /// frame, no write into a held slot, even when the writer's scan races
    /// a reader's registration.
    #[test]
    fn loom_handoff() {
        model(|| {
            let bus = Arc::new(Bus::<3>::new(2));
            let readers: Vec<_> = (0..2)
                .map(|r| {
                    let bus = bus.clone();
                    thread::spawn(move || {
                        register(&bus.hwm, r);
                        bus.take(r, 0);
                    })
                })
                .collect();
            for seq in 1..=3 {
                // With 3 slots, one skipped as newest and two readers holding
                // at most one each, the writer can be refused; it must then
                // simply not write.
                bus.write(seq);
            }
            for r in readers {
                r.join().unwrap();
            }
        });
    }

    /// A reader holds a slot and dies (its lock is dropped, its mask and
    /// waiting flag are not cleared). The writer reclaims the entry under
    /// the entry lock while a new reader claims the same entry and holds a
    /// frame: the writer never writes the new reader's slot.
    #[test]
    fn loom_dead_reader_reclaimed() {
        model(|| {
            let bus = Arc::new(Bus::<3>::new(1));
            bus.write(1);
            // The dead reader: held slot 0 (frame 1), was about to sleep,
            // then died.
            register(&bus.hwm, 0);
            assert!(try_hold(&bus.masks[0], &bus.states[0], 1, 1));
            bus.waiting[0].store(1, Ordering::Relaxed);

            let newcomer = {
                let bus = bus.clone();
                thread::spawn(move || {
                    let Ok(_owner) = bus.entry_locks[0].try_lock() else {
                        return;
                    };
                    // A new owner starts from a clean entry.
                    reclaim(&bus.masks[0], &bus.waiting[0]);
                    bus.take(0, 0);
                })
            };
            // The writer's periodic sweep.
            if let Ok(_guard) = bus.entry_locks[0].try_lock() {
                reclaim(&bus.masks[0], &bus.waiting[0]);
            }
            bus.write(2);
            bus.write(3);
            newcomer.join().unwrap();
            // Whoever reclaimed, nobody is left flagged as waiting.
            if bus.entry_locks[0].try_lock().is_ok() {
                reclaim(&bus.masks[0], &bus.waiting[0]);
            }
            assert_eq!(bus.waiting[0].load(Ordering::Relaxed), 0);
        });
    }

    /// The seqlock over the codec configuration: a reader racing the writer
    /// never accepts a half-written configuration.
    #[test]
    fn loom_seqlock_never_torn() {
        model(|| {
            let seq = Arc::new(AtomicU64::new(0));
            let words = Arc::new([AtomicU64::new(1), AtomicU64::new(1)]);
            let reader = {
                let (seq, words) = (seq.clone(), words.clone());
                thread::spawn(move || {
                    let got = seqlock_read(&seq, 3, || {
                        (
                            words[0].load(Ordering::Relaxed),
                            words[1].load(Ordering::Relaxed),
                        )
                    });
                    if let Some((a, b)) = got {
                        assert_eq!(a, b, "torn configuration accepted");
                    }
                })
            };
            seqlock_write(&seq, || {
                words[0].store(2, Ordering::Relaxed);
                words[1].store(2, Ordering::Relaxed);
            });
            reader.join().unwrap();
        });
    }

    /// The wake-up handshake: a reader blocks (no timeout) for a frame the
    /// writer publishes concurrently. A lost wake-up would leave it asleep
    /// forever, which loom reports as a deadlock; a wake-up when nobody
    /// waits is allowed but a system call the writer skips when it can.
    #[test]
    fn loom_wakeup_not_lost() {
        model(|| {
            let bus = Arc::new(Bus::<3>::new(1));
            register(&bus.hwm, 0);
            let reader = {
                let bus = bus.clone();
                thread::spawn(move || {
                    let got = bus.next(0, 0);
                    assert!(got >= 1);
                })
            };
            bus.write(1);
            reader.join().unwrap();
            assert_eq!(bus.waiting[0].load(Ordering::Relaxed), 0);
        });
    }
}

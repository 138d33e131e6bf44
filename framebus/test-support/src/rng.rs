//! A tiny deterministic PRNG (xorshift64*) for picking kill points and
//! hold counts; not for anything that needs real randomness.

/// xorshift64* state.
pub struct Rng(u64);

impl Rng {
    /// Seeded with `seed` (any value: the state is never zero).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Seeded with this process's id.
    pub fn per_process() -> Rng {
        Rng::new(u64::from(std::process::id()))
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

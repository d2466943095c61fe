// A count-min sketch of 4-bit counters that estimates how often a key was seen recently: the
// "TinyLFU" frequency filter (Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache
// Admission Policy", ACM ToS 2017).
//
// Layout: the table is an array of 64-byte blocks of eight `u64` words, each word holding sixteen
// 4-bit counters. A key selects one block, and within it one counter in four different words, so an
// increment or an estimate touches a single cache line.
//
// Aging: after `sample_size` increments every counter is halved, so the sketch tracks recent
// popularity rather than all-time popularity (TinyLFU's "reset" operation).
//
// Size: the table grows with the shard's entry count (`ensure_capacity`), up to its capacity, so a
// cache that never fills never pays for a full-size sketch. At full size it holds
// `COUNTERS_PER_ENTRY` counters per entry (half a byte each). Every shard starts with a table
// for 4 times its capacity or 4,096 entries, whichever is less (`SMALL_TABLE_FACTOR`, 16 KiB at
// most): a small shard's table never grows and has 4 times the counters its capacity would give,
// while its reset period stays that of its entry count; a large shard's grows from there.

/// Counters per entry the sketch is sized for (each key touches four): 4 bytes per entry. Sixteen
/// (Caffeine's size) sharpens the counts until newcomers are rejected too often; four blurs them.
const COUNTERS_PER_ENTRY: usize = 8;

/// A shard's table is sized for at least this many times its capacity, up to
/// `SMALL_TABLE_ENTRIES` entries (16 KiB): a shard of 250 entries then has 8,192 counters instead
/// of 2,048. The reset period does not follow: it stays `SAMPLE_FACTOR` times the entry count, so
/// a small shard's sketch forgets as fast as before, with less collision noise, and keeps its
/// counts while the shard fills (no growth, which discards them).
const SMALL_TABLE_FACTOR: u64 = 4;
/// The largest table `SMALL_TABLE_FACTOR` asks for, in entries.
const SMALL_TABLE_ENTRIES: u64 = 4096;

/// Increments between two halvings, per entry of capacity. TinyLFU's paper uses 10 x the cache
/// size as the sample over which frequencies are compared.
const SAMPLE_FACTOR: u64 = 10;

/// The sketch stops growing at 2^28 entries (1 GiB of counters): past that, admission decisions
/// are already made among far fewer candidates than the sketch distinguishes.
const MAX_SIZED_ENTRIES: usize = 1 << 28;

const COUNTERS_PER_WORD: usize = 16;
const WORDS_PER_BLOCK: usize = 8;
const RESET_MASK: u64 = 0x7777_7777_7777_7777;

/// One cache line of counters. The alignment matters: a `[u64; 8]` in a `Vec` is only 8-byte
/// aligned by the allocator, so most blocks would straddle two lines and an increment or estimate
/// would cost two cache misses instead of one.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u64; WORDS_PER_BLOCK]);

pub(crate) struct FrequencySketch {
    /// 64-byte blocks of eight words; a key's four counters live in one block.
    table: Vec<Block>,
    block_mask: u64,
    /// Entries the table is currently sized for.
    sized_for: usize,
    /// Entries the reset period is currently for: the entry count rounded up as a table without
    /// the small-shard floor would be.
    period_for: usize,
    additions: u64,
    sample_size: u64,
}

#[inline]
fn spread(hash: u32) -> u64 {
    // One multiplication of the 32 hash bits, duplicated into both halves, by an odd constant:
    // the high word (the block) and the low bits (the counters) then depend on all 32 bits, and
    // differ from the bits the index used (rotated bits) and the shard (the other half).
    let x = u64::from(hash) | (u64::from(hash) << 32);
    let z = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z ^ (z >> 29)
}

impl FrequencySketch {
    /// A sketch for a shard of `capacity` that holds `entries` entries now (or soon).
    pub(crate) fn new(entries: usize, capacity: u64) -> Self {
        let floor = capacity
            .saturating_mul(SMALL_TABLE_FACTOR)
            .min(SMALL_TABLE_ENTRIES) as usize;
        let mut s = FrequencySketch {
            table: Vec::new(),
            block_mask: 0,
            sized_for: 0,
            period_for: 0,
            additions: 0,
            sample_size: 0,
        };
        s.resize(entries.max(floor));
        s.set_period(entries);
        s
    }

    /// Adapts the sketch to `entries` entries: the reset period follows the entry count, and the
    /// table grows once the count outgrows it. Counts are discarded when the table grows; that
    /// happens at most log2(capacity) times.
    #[inline]
    pub(crate) fn ensure_capacity(&mut self, entries: usize) {
        if entries > self.period_for {
            self.grow(entries);
        }
    }

    #[cold]
    fn grow(&mut self, entries: usize) {
        if entries > self.sized_for {
            self.resize(entries);
        }
        self.set_period(entries);
    }

    /// The entries a table sized for `entries` suits (a power of two of counters, at least one
    /// block).
    fn rounded(entries: usize) -> usize {
        let counters = entries
            .clamp(1, MAX_SIZED_ENTRIES)
            .saturating_mul(COUNTERS_PER_ENTRY)
            .next_power_of_two();
        (counters / COUNTERS_PER_WORD).max(WORDS_PER_BLOCK) * COUNTERS_PER_WORD / COUNTERS_PER_ENTRY
    }

    fn set_period(&mut self, entries: usize) {
        self.period_for = Self::rounded(entries);
        self.sample_size = (self.period_for as u64).saturating_mul(SAMPLE_FACTOR);
    }

    fn resize(&mut self, entries: usize) {
        self.sized_for = Self::rounded(entries);
        let blocks = self.sized_for * COUNTERS_PER_ENTRY / COUNTERS_PER_WORD / WORDS_PER_BLOCK;
        self.table = vec![Block([0; WORDS_PER_BLOCK]); blocks];
        self.block_mask = (blocks - 1) as u64;
        self.additions = 0;
    }

    /// The block of a spread hash.
    #[inline]
    fn block(&self, x: u64) -> usize {
        ((x >> 32) & self.block_mask) as usize
    }

    /// The word (within the block) and bit offset of the `i`-th counter (0..4) of a spread hash.
    /// Counter `i` is in word `2i` or `2i + 1`, so the four counters are in four different words.
    #[inline]
    fn slot(x: u64, i: usize) -> (usize, u64) {
        let word = i * 2 + ((x >> i) & 1) as usize;
        let shift = ((x >> (8 + 4 * i)) & 15) * 4;
        (word, shift)
    }

    /// Estimated recent frequency of `hash` (0..=15).
    #[inline]
    pub(crate) fn frequency(&self, hash: u32) -> u8 {
        let x = spread(hash);
        let block = &self.table[self.block(x)].0;
        let mut min = 15u64;
        for i in 0..4 {
            let (w, shift) = Self::slot(x, i);
            min = min.min((block[w] >> shift) & 15);
        }
        min as u8
    }

    /// Records `n` occurrences of `hash`, and returns its estimate after them (before a halving
    /// they may set off).
    #[inline]
    pub(crate) fn increment(&mut self, hash: u32, n: u8) -> u8 {
        let x = spread(hash);
        let b = self.block(x);
        let block = &mut self.table[b].0;
        let n = u64::from(n);
        // Each counter goes up by `n`, or to 15 if that is nearer: by the smaller of `n` and
        // its room below 15. Counters only go up, so the least of them after is the least
        // before plus `n` (capped), and some counter moved if the least had room.
        let mut room = 0;
        for i in 0..4 {
            let (w, shift) = Self::slot(x, i);
            let r = (!block[w] >> shift) & 15;
            block[w] += r.min(n) << shift;
            room = room.max(r);
        }
        if room > 0 && n > 0 {
            self.additions += n;
            if self.additions >= self.sample_size {
                self.halve();
            }
        }
        (15 - room + n).min(15) as u8
    }

    fn halve(&mut self) {
        for w in self.table.iter_mut().flat_map(|b| b.0.iter_mut()) {
            *w = (*w >> 1) & RESET_MASK;
        }
        self.additions /= 2;
    }

    /// Heap bytes held by the table.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.table.len() * 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_saturate_at_fifteen_and_estimate_is_a_lower_bound() {
        let mut s = FrequencySketch::new(1024, 1 << 20);
        for _ in 0..5 {
            s.increment(42, 1);
        }
        assert_eq!(s.frequency(42), 5);
        s.increment(42, 15);
        assert_eq!(s.frequency(42), 15);
        assert_eq!(s.frequency(7), 0);
    }

    #[test]
    fn increments_agree_with_counting_each_counter() {
        let mut s = FrequencySketch::new(64, 1 << 20);
        s.sample_size = u64::MAX; // no halving: only the increments change the table
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            x = super::super::xorshift64(x);
            // Few keys and large steps, so that many counters saturate.
            let (hash, n) = ((x as u32) % 97, (x >> 40) as u8 % 18);
            let y = spread(hash);
            let mut want = s.table[s.block(y)].0;
            let (mut least, mut moved) = (15, false);
            for i in 0..4 {
                let (w, shift) = FrequencySketch::slot(y, i);
                let c = (want[w] >> shift) & 15;
                let new = (c + u64::from(n)).min(15);
                want[w] = want[w] - (c << shift) + (new << shift);
                least = least.min(new);
                moved |= new != c;
            }
            let additions = s.additions + if moved { u64::from(n) } else { 0 };
            assert_eq!(s.increment(hash, n), least as u8);
            assert_eq!(s.table[s.block(y)].0, want);
            assert_eq!(s.additions, additions);
        }
    }

    #[test]
    fn halving_ages_counts() {
        let mut s = FrequencySketch::new(8, 1 << 20);
        s.increment(1, 15);
        assert_eq!(s.frequency(1), 15);
        // One sample's worth of other keys must trigger exactly one halving.
        let sample = s.sample_size;
        for k in 1000..1000 + sample as u32 {
            s.increment(k, 1);
        }
        assert!(s.frequency(1) <= 7, "halving did not age the hot key");
        assert!(s.additions < sample);
    }

    #[test]
    fn distinguishes_hot_from_cold_keys() {
        let mut s = FrequencySketch::new(4096, 1 << 20);
        for k in 0..4096u32 {
            s.increment(k, 1);
        }
        for _ in 0..8 {
            for k in 0..64u32 {
                s.increment(k, 1);
            }
        }
        let hot: u32 = (0..64u32).map(|k| u32::from(s.frequency(k))).sum();
        let cold: u32 = (1000..1064u32).map(|k| u32::from(s.frequency(k))).sum();
        assert!(hot > 4 * cold, "hot {hot} cold {cold}");
    }

    #[test]
    fn grows_with_entries_up_to_request() {
        let mut s = FrequencySketch::new(16, 1 << 20);
        let small = s.heap_bytes();
        s.ensure_capacity(100_000);
        assert!(s.heap_bytes() > small);
        assert!(s.heap_bytes() <= 100_000usize.next_power_of_two() * COUNTERS_PER_ENTRY / 2);
    }

    #[test]
    fn a_small_shard_gets_a_larger_table_but_keeps_its_reset_period() {
        // 250 entries: a table for 1,000 (rounded to 1,024), a period for 256.
        let mut s = FrequencySketch::new(0, 250);
        assert_eq!(s.heap_bytes(), 1024 * COUNTERS_PER_ENTRY / 2);
        assert_eq!(
            s.sample_size,
            FrequencySketch::rounded(1) as u64 * SAMPLE_FACTOR
        );
        s.ensure_capacity(250);
        assert_eq!(
            s.heap_bytes(),
            1024 * COUNTERS_PER_ENTRY / 2,
            "no growth, counts kept"
        );
        assert_eq!(s.sample_size, 256 * SAMPLE_FACTOR);
        // The floor is capped: a large shard's table starts small and grows with its entries.
        let mut big = FrequencySketch::new(0, 1 << 20);
        assert_eq!(
            big.heap_bytes(),
            SMALL_TABLE_ENTRIES as usize * COUNTERS_PER_ENTRY / 2
        );
        big.ensure_capacity(100_000);
        assert_eq!(big.heap_bytes(), 131_072 * COUNTERS_PER_ENTRY / 2);
        assert_eq!(big.sample_size, 131_072 * SAMPLE_FACTOR);
        // Capacity 0 still has a table (a key is counted before the bound turns it away).
        let mut zero = FrequencySketch::new(0, 0);
        zero.increment(9, 3);
        assert_eq!(zero.frequency(9), 3);
    }
}

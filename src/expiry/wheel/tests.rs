//! Tests of the timer wheel: expiry at every level, budgets, refiling, caps and shrinking.

use super::*;
use crate::slab::{NO_DEADLINE, deadline_word};

/// A wheel with the deadline words its entries would hold.
struct Fixture {
    w: Wheel,
    words: Vec<u32>,
}

impl Fixture {
    fn deadline(&self, t: Token) -> Option<u32> {
        let d = self.words[t as usize];
        (d != NO_DEADLINE).then_some(d)
    }

    fn validate(&self) {
        let words = &self.words;
        self.w
            .validate(words.len(), |t| words[t as usize] != NO_DEADLINE)
            .unwrap();
    }

    fn swap_remove(&mut self, t: Token) {
        self.w.swap_remove(t);
        self.words.swap_remove(t as usize);
    }

    fn unschedule(&mut self, t: Token) {
        self.w.unschedule(t);
        self.words[t as usize] = NO_DEADLINE;
    }

    fn pop(&mut self, now: u64, budget: &mut u32) -> Option<Token> {
        let words = &self.words;
        self.w.pop_expired(now, budget, |t| words[t as usize])
    }
}

/// Files every other entry through `push_filed` and the rest through `push` + `schedule`,
/// so every test covers both ways in; odd entries get a cap in the capped variant.
fn wheel_with(deadlines: &[u64], now: u64) -> Fixture {
    wheel_capped(deadlines, now, false)
}

fn wheel_capped(deadlines: &[u64], now: u64, capped: bool) -> Fixture {
    let mut w = Wheel::new(now, capped);
    for (t, &d) in deadlines.iter().enumerate() {
        let cap = (t % 2 == 1).then_some(d + 5);
        if t % 2 == 0 {
            w.push_filed(deadlines.len(), t as Token, d, cap);
        } else {
            w.push(deadlines.len());
            w.schedule(t as Token, d, cap);
        }
    }
    let f = Fixture {
        w,
        words: deadlines.iter().map(|&d| deadline_word(d)).collect(),
    };
    f.validate();
    f
}

fn drain(f: &mut Fixture, now: u64) -> Vec<Token> {
    let mut out = Vec::new();
    let mut budget = u32::MAX;
    while let Some(t) = f.pop(now, &mut budget) {
        out.push(t);
    }
    out.sort_unstable();
    out
}

#[test]
fn expires_exactly_at_each_level() {
    // Deadlines on every level, including slot and span boundaries.
    let ds: Vec<u64> = [
        1,
        63,
        64,
        65,
        4095,
        4096,
        262_143,
        262_144,
        1 << 24,
        (1 << 30) - 1,
    ]
    .iter()
    .map(|d| d + 1000)
    .collect();
    let mut w = wheel_with(&ds, 1000);
    for (i, &d) in ds.iter().enumerate() {
        assert_eq!(
            drain(&mut w, d - 1),
            Vec::<Token>::new(),
            "early at {}",
            d - 1
        );
        let got = drain(&mut w, d);
        assert_eq!(got, vec![i as Token], "deadline {d}");
    }
    assert_eq!(w.w.filed, 0);
    assert_eq!(w.w.next_due(), u64::MAX);
}

#[test]
fn jumping_far_ahead_expires_everything_due() {
    let ds: Vec<u64> = (0..2000u64).map(|i| 5 + i * 7919 % 100_000).collect();
    let mut w = wheel_with(&ds, 0);
    let got = drain(&mut w, 50_000);
    let want: Vec<Token> = (0..ds.len())
        .filter(|&i| ds[i] <= 50_000)
        .map(|i| i as Token)
        .collect();
    assert_eq!(got, want);
    // Popped entries are unfiled (the shard would remove them and their words).
    for &t in &got {
        assert!(!w.w.is_filed(t));
        w.words[t as usize] = NO_DEADLINE;
    }
    w.validate();
}

#[test]
fn budget_bounds_the_work_and_resumes() {
    let ds = vec![10u64; 100];
    let mut w = wheel_with(&ds, 0);
    let mut budget = 30;
    let mut n = 0;
    while w.pop(10, &mut budget).is_some() {
        n += 1;
    }
    assert_eq!((n, budget), (30, 0));
    assert_eq!(drain(&mut w, 10).len(), 70);
}

#[test]
fn touched_deadlines_are_refiled_not_expired() {
    let mut w = wheel_with(&[100, 100], 0);
    w.words[0] = deadline_word(5000); // a read under the read lock
    assert_eq!(drain(&mut w, 100), vec![1]);
    assert_eq!(w.deadline(0), Some(5000));
    assert_eq!(drain(&mut w, 4999), Vec::<Token>::new());
    assert_eq!(drain(&mut w, 5000), vec![0]);
}

#[test]
fn swap_remove_repoints_the_moved_timer() {
    let mut w = wheel_with(&[50, 60, 50, 70], 0);
    w.swap_remove(0); // token 3 (deadline 70) moves to 0
    w.validate();
    assert_eq!(w.deadline(0), Some(70));
    w.unschedule(1);
    w.validate();
    assert_eq!(drain(&mut w, 100), vec![0, 2]);
}

#[test]
fn caps_follow_their_timers_through_both_ways_in_and_swap_remove() {
    let mut w = wheel_capped(&[50, 60, 70, 80, 90], 0, true);
    // Even tokens came in through `push_filed` without a cap, odd ones with `d + 5`.
    let caps: Vec<u32> = (0..5).map(|t| w.w.cap(t)).collect();
    assert_eq!(caps, vec![NO_CAP, 65, NO_CAP, 85, NO_CAP]);
    w.swap_remove(1); // token 4 (deadline 90, no cap) moves to 1
    w.validate();
    assert_eq!((w.deadline(1), w.w.cap(1)), (Some(90), NO_CAP));
    w.swap_remove(3); // token 3 is the last: nothing moves
    w.validate();
    assert_eq!(drain(&mut w, 100), vec![0, 1, 2]);
    // A cap whose low bits read as "no cap" is kept a tick earlier, never lost.
    let mut w = Wheel::new(0, true);
    w.push_filed(1, 0, 10, Some(u64::from(NO_CAP)));
    assert_eq!(w.cap(0), NO_CAP - 1);
}

#[test]
fn wrapping_deadlines_far_from_zero() {
    let base = (1u64 << 32) - 10;
    let mut w = wheel_with(&[base + 5, base + 20, base + (1 << 30)], base);
    assert!(!is_due(w.deadline(1).unwrap(), base + 19));
    assert!(is_due(w.deadline(1).unwrap(), base + 20));
    assert_eq!(drain(&mut w, base + 20), vec![0, 1]);
    assert_eq!(drain(&mut w, base + (1 << 30)), vec![2]);
}

#[test]
fn next_due_is_never_after_the_work() {
    let mut w = wheel_with(&[100_000, 300_000], 0);
    assert_eq!(w.w.next_due(), 100_000);
    // After a look, it is the start of the slot holding the earliest entry.
    assert_eq!(drain(&mut w, 50_000), Vec::<Token>::new());
    let due = w.w.next_due();
    assert!(due > 50_000 && due <= 100_000, "{due}");
    assert_eq!(drain(&mut w, 100_000), vec![0]);
    assert!(w.w.next_due() <= 300_000);
    assert_eq!(drain(&mut w, 300_000), vec![1]);
    assert_eq!(w.w.next_due(), u64::MAX);
}

#[test]
fn shrinking_keeps_links() {
    let mut w = wheel_with(&(0..100).map(|i| 10 + i).collect::<Vec<_>>(), 0);
    for t in (10..100).rev() {
        w.swap_remove(t);
    }
    w.w.shrink_to(20);
    assert!(w.w.timers.capacity() < 100);
    w.validate();
    assert_eq!(drain(&mut w, 1000).len(), 10);
}

//! Idle timeouts for loops that serve many connections: an ordered set of
//! deadlines that tells the loop how long it may wait, without a scan of
//! every connection on every wakeup.
//!
//! A connection's deadline moves forward each time it receives bytes —
//! thousands of times a second on a busy connection. Moving its entry each
//! time would cost O(log n) per request. Instead each connection has one
//! entry, made when it opens; when the entry comes due, the loop looks at
//! the connection's *current* deadline and, if it has moved (the connection
//! was busy), files a new entry for it. A busy connection costs one timer
//! operation per idle-timeout period, not per request; an idle one, one in
//! all. A closed connection removes its entry, so the set never holds more
//! entries than there are open connections.

use std::collections::BTreeSet;
use std::time::Instant;

/// Deadlines for keys of type `K` (a connection's token).
#[derive(Debug)]
pub struct Timers<K: Ord> {
    set: BTreeSet<(Instant, K)>,
}

impl<K: Ord + Copy> Timers<K> {
    /// No deadlines.
    pub fn new() -> Self {
        Timers {
            set: BTreeSet::new(),
        }
    }

    /// Files a deadline for `key`.
    pub fn insert(&mut self, at: Instant, key: K) {
        self.set.insert((at, key));
    }

    /// Withdraws the deadline filed for `key` at `at`.
    pub fn remove(&mut self, at: Instant, key: K) {
        self.set.remove(&(at, key));
    }

    /// The earliest deadline, if any.
    pub fn next(&self) -> Option<Instant> {
        self.set.first().map(|(at, _)| *at)
    }

    /// Removes and returns a key whose deadline is at or before `now`.
    /// The caller decides whether it really expired (see the module doc).
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        match self.set.first() {
            Some((at, _)) if *at <= now => self.set.pop_first().map(|(_, key)| key),
            _ => None,
        }
    }

    /// The idle-timeout rule, the same for every loop, for a `key` whose
    /// timer [`pop_due`](Self::pop_due) just returned: `deadline` is the
    /// connection's deadline *now* — counted from the last byte that
    /// arrived, after the loop has taken in what is queued (a process
    /// stopped for a while wakes to its timers and its sockets' news at
    /// once). If it has moved past `now`, it is filed again and returned;
    /// `None` means the connection really was silent: time it out.
    pub fn refile_or_expire(
        &mut self,
        key: K,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Option<Instant> {
        let at = deadline.filter(|at| *at > now)?;
        self.insert(at, key);
        Some(at)
    }

    /// How many deadlines are filed.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether no deadline is filed.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

impl<K: Ord + Copy> Default for Timers<K> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_due_keys_in_deadline_order_and_nothing_early() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        timers.insert(t0 + Duration::from_secs(3), 3);
        timers.insert(t0 + Duration::from_secs(1), 1);
        timers.insert(t0 + Duration::from_secs(2), 2);
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(timers.pop_due(now), Some(1));
        assert_eq!(timers.pop_due(now), Some(2));
        assert_eq!(timers.pop_due(now), None);
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn a_deadline_that_moved_is_filed_again_and_a_passed_one_expires() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let later = t0 + Duration::from_secs(5);
        assert_eq!(timers.refile_or_expire(1, Some(later), t0), Some(later));
        assert_eq!(timers.next(), Some(later));
        assert_eq!(timers.refile_or_expire(2, Some(t0), t0), None);
        assert_eq!(timers.refile_or_expire(3, None, t0), None);
        assert_eq!(timers.len(), 1);
    }

    #[test]
    fn a_removed_deadline_never_fires() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        timers.insert(t0, 7);
        timers.remove(t0, 7);
        assert!(timers.is_empty());
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(1)), None);
    }
}

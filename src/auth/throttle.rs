//! Slows password guessing. Every sign-in first reserves an attempt, in the same step that checks
//! the limits, so parallel guesses cannot slip past the count: at most `FAILURES_PER_PAIR`
//! passwords are ever verified for one account from one address in a window. The lock is per
//! (account, address) pair, so a guesser's failures never lock the account's owner out from
//! elsewhere; a second limit per address (all accounts together) only slows that address.
//! Kept in memory and bounded; a restart forgetting it only gives a guesser a few more tries.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(15 * 60);
const FAILURES_PER_PAIR: usize = 5;
const FAILURES_PER_ADDRESS: usize = 20;
/// Keys kept at most; past it, expired keys go, then the longest-quiet ones.
const MAX_KEYS: usize = 50_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Pair { email: String, address: String },
    Address(String),
}

/// Attempts counted per key (each deque holds at most its key's limit).
type Attempts = HashMap<Key, VecDeque<Instant>>;

pub struct LoginThrottle {
    attempts: Mutex<Attempts>,
    max_keys: usize,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            attempts: Mutex::default(),
            max_keys: MAX_KEYS,
        }
    }
}

/// One reserved sign-in attempt. It counts as a failure unless `succeeded` is called.
pub struct Reservation<'a> {
    throttle: &'a LoginThrottle,
    pair: Key,
    address: Key,
    at: Instant,
}

impl Reservation<'_> {
    /// The right password: the pair's failures are forgotten, and this attempt does not count
    /// against the address (other failures from it do: one office's NAT may hide a guesser next
    /// to the person who just signed in).
    pub fn succeeded(self) {
        let mut attempts = self.throttle.lock();
        attempts.remove(&self.pair);
        if let Some(times) = attempts.get_mut(&self.address) {
            if let Some(index) = times.iter().position(|t| *t == self.at) {
                times.remove(index);
            }
            if times.is_empty() {
                attempts.remove(&self.address);
            }
        }
    }
}

/// The address an attempt is counted under: an IPv6 client holds a whole /64, so that is one
/// address here.
fn address_key(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let mask = u128::MAX << 64;
            format!("{}/64", Ipv6Addr::from(u128::from(v6) & mask))
        }
        Ok(IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map_or(v6.to_string(), |v4| v4.to_string()),
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => address.to_owned(),
    }
}

fn expire(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) > WINDOW)
    {
        times.pop_front();
    }
}

impl LoginThrottle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Attempts> {
        self.attempts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks the limits and, within them, reserves an attempt — one step under one lock.
    /// `Err(wait)` while the pair or the address is locked out.
    pub fn reserve(&self, email: &str, address: &str) -> Result<Reservation<'_>, Duration> {
        let now = Instant::now();
        let pair = Key::Pair {
            email: email.trim().to_lowercase(),
            address: address_key(address),
        };
        let address = Key::Address(address_key(address));
        let mut attempts = self.lock();
        let mut wait = Duration::ZERO;
        for (key, limit) in [(&pair, FAILURES_PER_PAIR), (&address, FAILURES_PER_ADDRESS)] {
            if let Some(times) = attempts.get_mut(key) {
                expire(times, now);
                if times.len() >= limit
                    && let Some(oldest) = times.front()
                {
                    wait = wait.max(WINDOW.saturating_sub(now.duration_since(*oldest)));
                }
            }
        }
        if !wait.is_zero() {
            return Err(wait.max(Duration::from_secs(1)));
        }
        self.make_room(&mut attempts, now, [&pair, &address]);
        for key in [&pair, &address] {
            attempts.entry(key.clone()).or_default().push_back(now);
        }
        Ok(Reservation {
            throttle: self,
            pair,
            address,
            at: now,
        })
    }

    /// Keeps the map within `max_keys` before up to two keys are added.
    fn make_room(&self, attempts: &mut Attempts, now: Instant, adding: [&Key; 2]) {
        let new = adding.iter().filter(|k| !attempts.contains_key(k)).count();
        if attempts.len() + new <= self.max_keys {
            return;
        }
        attempts.retain(|_, times| {
            expire(times, now);
            !times.is_empty()
        });
        while attempts.len() + new > self.max_keys {
            let quietest = attempts
                .iter()
                .filter(|(key, _)| !adding.contains(key))
                .min_by_key(|(_, times)| times.back().copied())
                .map(|(key, _)| key.clone());
            match quietest {
                Some(key) => attempts.remove(&key),
                None => break,
            };
        }
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_locks_after_five_failures_but_not_from_elsewhere() {
        let throttle = LoginThrottle::default();
        for _ in 0..FAILURES_PER_PAIR {
            let attempt = throttle.reserve("A@x.io", "10.0.0.1").expect("allowed");
            drop(attempt);
        }
        let wait = throttle
            .reserve("a@X.io", "10.0.0.1")
            .err()
            .expect("locked");
        assert!(wait > Duration::from_secs(14 * 60), "{wait:?}");
        // The owner, from another address, still gets in.
        throttle
            .reserve("a@x.io", "10.0.0.2")
            .expect("another address is not locked")
            .succeeded();
        assert!(throttle.reserve("b@x.io", "10.0.0.1").is_ok());
    }

    #[test]
    fn a_success_clears_the_pair() {
        let throttle = LoginThrottle::default();
        for _ in 0..FAILURES_PER_PAIR - 1 {
            drop(throttle.reserve("a@x.io", "10.0.0.1"));
        }
        throttle
            .reserve("a@x.io", "10.0.0.1")
            .expect("allowed")
            .succeeded();
        for _ in 0..FAILURES_PER_PAIR {
            assert!(throttle.reserve("a@x.io", "10.0.0.1").is_ok());
        }
        assert!(throttle.reserve("a@x.io", "10.0.0.1").is_err());
    }

    #[test]
    fn reservations_count_before_their_outcome() {
        let throttle = LoginThrottle::default();
        let held: Vec<_> = (0..FAILURES_PER_PAIR)
            .map(|_| throttle.reserve("a@x.io", "10.0.0.1").expect("allowed"))
            .collect();
        assert!(
            throttle.reserve("a@x.io", "10.0.0.1").is_err(),
            "attempts still being verified count"
        );
        drop(held);
    }

    #[test]
    fn an_address_slows_after_twenty_failures_only_itself() {
        let throttle = LoginThrottle::default();
        for n in 0..FAILURES_PER_ADDRESS {
            drop(throttle.reserve(&format!("user{n}@x.io"), "10.0.0.9"));
        }
        assert!(throttle.reserve("new@x.io", "10.0.0.9").is_err());
        assert!(throttle.reserve("new@x.io", "10.0.0.8").is_ok());
    }

    #[test]
    fn successes_do_not_count_against_an_address() {
        let throttle = LoginThrottle::default();
        for _ in 0..FAILURES_PER_ADDRESS * 2 {
            throttle
                .reserve("a@x.io", "10.0.0.1")
                .expect("allowed")
                .succeeded();
        }
        assert_eq!(throttle.keys(), 0);
    }

    #[test]
    fn one_ipv6_64_is_one_address() {
        assert_eq!(
            address_key("2001:db8:1:2:aaaa::1"),
            address_key("2001:db8:1:2:bbbb::7")
        );
        assert_ne!(
            address_key("2001:db8:1:2::1"),
            address_key("2001:db8:1:3::1")
        );
        assert_eq!(address_key("::ffff:10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn memory_stays_bounded() {
        let throttle = LoginThrottle {
            attempts: Mutex::default(),
            max_keys: 10,
        };
        for n in 0..100 {
            drop(throttle.reserve(&format!("u{n}@x.io"), &format!("10.0.1.{n}")));
            assert!(throttle.keys() <= 10, "{}", throttle.keys());
        }
        // The newest attempt is still counted.
        for _ in 1..FAILURES_PER_PAIR {
            drop(throttle.reserve("u99@x.io", "10.0.1.99"));
        }
        assert!(throttle.reserve("u99@x.io", "10.0.1.99").is_err());
    }
}

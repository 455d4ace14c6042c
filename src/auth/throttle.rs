//! Slows password guessing: too many failed sign-ins for one email or from one address lock that
//! key out for a while. Kept in memory; a restart forgetting it only gives a guesser a few more
//! tries.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(15 * 60);
const FAILURES_PER_EMAIL: usize = 5;
const FAILURES_PER_ADDRESS: usize = 20;

#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginThrottle {
    fn keys(email: &str, address: &str) -> [(String, usize); 2] {
        [
            (
                format!("email:{}", email.to_lowercase()),
                FAILURES_PER_EMAIL,
            ),
            (format!("address:{address}"), FAILURES_PER_ADDRESS),
        ]
    }

    /// `Err(wait)` while either key is locked out.
    pub fn check(&self, email: &str, address: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = Duration::ZERO;
        for (key, limit) in Self::keys(email, address) {
            if let Some(times) = failures.get_mut(&key) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > WINDOW)
                {
                    times.pop_front();
                }
                if times.len() >= limit
                    && let Some(oldest) = times.front()
                {
                    wait = wait.max(WINDOW.saturating_sub(now.duration_since(*oldest)));
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    pub fn failed(&self, email: &str, address: &str) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Old keys go, so guessing with ever-new emails cannot grow the map without bound.
        failures.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.duration_since(*t) <= WINDOW)
        });
        for (key, _) in Self::keys(email, address) {
            failures.entry(key).or_default().push_back(now);
        }
    }

    /// A successful sign-in clears the email's failures (not the address's: one office's NAT
    /// may hide a guesser next to the person who just signed in).
    pub fn succeeded(&self, email: &str) {
        let key = format!("email:{}", email.to_lowercase());
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_locks_after_five_failures() {
        let throttle = LoginThrottle::default();
        for _ in 0..FAILURES_PER_EMAIL {
            assert!(throttle.check("A@x.io", "10.0.0.1").is_ok());
            throttle.failed("a@x.io", "10.0.0.1");
        }
        let wait = throttle.check("a@X.io", "10.0.0.2").expect_err("locked");
        assert!(wait > Duration::from_secs(14 * 60), "{wait:?}");
        assert!(throttle.check("b@x.io", "10.0.0.2").is_ok());
        throttle.succeeded("a@x.io");
        assert!(throttle.check("a@x.io", "10.0.0.2").is_ok());
    }

    #[test]
    fn an_address_locks_after_twenty_failures() {
        let throttle = LoginThrottle::default();
        for n in 0..FAILURES_PER_ADDRESS {
            throttle.failed(&format!("user{n}@x.io"), "10.0.0.9");
        }
        assert!(throttle.check("new@x.io", "10.0.0.9").is_err());
        assert!(throttle.check("new@x.io", "10.0.0.8").is_ok());
    }
}

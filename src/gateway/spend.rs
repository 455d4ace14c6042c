//! A proxy's live spend on the current UTC day, for its daily spend cap: what answers from the
//! upstream or the emulator cost (cache hits cost nothing). Kept in one atomic word, the day in
//! its top bits and the amount below, so the request path neither locks nor asks the database,
//! and the count starts again by itself when the UTC day changes.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

/// Bits of the amount; the 16 above hold the day (its number modulo 2^16, which repeats only
/// every 179 years).
const AMOUNT_BITS: u32 = 48;
const AMOUNT_MASK: u64 = (1 << AMOUNT_BITS) - 1;
/// The amount counts hundredths of a micro-dollar: a one-token answer of the cheapest model
/// (about a tenth of a micro-dollar) still counts, and 48 bits hold 2.8 million dollars, more
/// than the largest cap.
const UNITS_PER_USD: f64 = 1e8;
const SECONDS_PER_DAY: i64 = 86_400;

pub struct DailySpend(AtomicU64);

impl DailySpend {
    /// Starts the count of the day of `now` at `spent_usd` (what was spent earlier today).
    pub fn new(spent_usd: f64, now: DateTime<Utc>) -> Self {
        DailySpend(AtomicU64::new(pack(day_of(now), units(spent_usd))))
    }

    /// Adds what an answer cost; the first cost of a new day starts that day from zero.
    pub fn add(&self, usd: f64, now: DateTime<Utc>) {
        let added = units(usd);
        if added == 0 {
            return;
        }
        let day = day_of(now);
        // The closure always answers, so the update cannot fail.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
                let amount = if word >> AMOUNT_BITS == day {
                    word & AMOUNT_MASK
                } else {
                    0
                };
                Some(pack(day, amount.saturating_add(added)))
            });
    }

    /// What was spent on the day of `now`, in USD.
    pub fn on(&self, now: DateTime<Utc>) -> f64 {
        let word = self.0.load(Ordering::Relaxed);
        if word >> AMOUNT_BITS == day_of(now) {
            (word & AMOUNT_MASK) as f64 / UNITS_PER_USD
        } else {
            0.0
        }
    }
}

/// The UTC day of `now`, modulo 2^16.
fn day_of(now: DateTime<Utc>) -> u64 {
    now.timestamp()
        .div_euclid(SECONDS_PER_DAY)
        .rem_euclid(1 << 16) as u64
}

fn pack(day: u64, amount: u64) -> u64 {
    (day << AMOUNT_BITS) | amount.min(AMOUNT_MASK)
}

/// `usd` in the counter's units, rounded; nothing for no cost (or a nonsensical one).
fn units(usd: f64) -> u64 {
    if usd.is_nan() || usd <= 0.0 {
        return 0;
    }
    (usd * UNITS_PER_USD).round().min(AMOUNT_MASK as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, day, hour, 59, 59)
            .single()
            .expect("a time")
    }

    #[test]
    fn costs_add_up_within_a_day() {
        let spend = DailySpend::new(0.25, at(3, 8));
        spend.add(0.000_000_1, at(3, 9));
        spend.add(1.5, at(3, 23));
        assert!((spend.on(at(3, 23)) - 1.750_000_1).abs() < 1e-12);
        spend.add(0.0, at(3, 23));
        spend.add(-1.0, at(3, 23));
        spend.add(f64::NAN, at(3, 23));
        assert!((spend.on(at(3, 23)) - 1.750_000_1).abs() < 1e-12);
    }

    #[test]
    fn a_new_utc_day_starts_from_nothing() {
        let spend = DailySpend::new(3.0, at(3, 23));
        assert_eq!(spend.on(at(4, 0)), 0.0, "yesterday's spend is not today's");
        spend.add(0.5, at(4, 0));
        assert_eq!(spend.on(at(4, 1)), 0.5);
        assert_eq!(spend.on(at(3, 23)), 0.0, "the day before was left behind");
    }

    #[test]
    fn the_amount_saturates_instead_of_spilling_into_the_day() {
        let spend = DailySpend::new(2_000_000.0, at(3, 1));
        spend.add(2_000_000.0, at(3, 2));
        let spent = spend.on(at(3, 3));
        assert!(spent > 2_800_000.0 && spent < 2_900_000.0, "{spent}");
    }
}

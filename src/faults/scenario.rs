//! Per-test state of a proxy's failures: each scenario (the `X-Rubberduck-Scenario` header's
//! test id) has its own dice, script position and rate-limit window; requests without the
//! header share the proxy's own. Scenarios idle for [`SCENARIO_IDLE`] are forgotten, and at
//! most [`MAX_SCENARIOS`] are kept, so memory stays bounded however many test ids come.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use serde::Serialize;

/// A scenario nobody used for this long starts afresh.
pub const SCENARIO_IDLE: Duration = Duration::from_secs(10 * 60);
const MAX_SCENARIOS: usize = 10_000;

/// The state one scenario's decisions need.
pub struct Dice {
    pub rng: StdRng,
    /// How many requests the script has decided.
    pub position: u64,
    /// When the requests in the rate-limit window were admitted.
    pub admitted: VecDeque<Instant>,
    last_used: Instant,
}

/// A scenario as cards and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveScenario {
    pub id: String,
    /// Requests it has sent through the script.
    pub requests: u64,
    pub idle_seconds: u64,
}

pub struct Scenarios {
    new_rng: Box<dyn Fn() -> StdRng + Send + Sync>,
    shared: Mutex<Dice>,
    by_id: Mutex<HashMap<String, Arc<Mutex<Dice>>>>,
}

impl Scenarios {
    pub fn new(new_rng: impl Fn() -> StdRng + Send + Sync + 'static) -> Self {
        let shared = Mutex::new(fresh(new_rng()));
        Scenarios {
            new_rng: Box::new(new_rng),
            shared,
            by_id: Mutex::default(),
        }
    }

    /// Runs `decide` on the scenario's state (the shared one without an id).
    pub fn with<R>(&self, scenario: Option<&str>, decide: impl FnOnce(&mut Dice) -> R) -> R {
        let Some(id) = scenario else {
            return decide(&mut lock(&self.shared));
        };
        let dice = {
            let mut by_id = lock(&self.by_id);
            match by_id.get(id) {
                Some(dice) => Arc::clone(dice),
                None => {
                    if by_id.len() >= MAX_SCENARIOS {
                        forget_idle(&mut by_id);
                    }
                    let dice = Arc::new(Mutex::new(fresh((self.new_rng)())));
                    by_id.insert(id.to_owned(), Arc::clone(&dice));
                    dice
                }
            }
        };
        let mut dice = lock(&dice);
        dice.last_used = Instant::now();
        decide(&mut dice)
    }

    pub fn reset(&self, id: &str) -> bool {
        lock(&self.by_id).remove(id).is_some()
    }

    /// The scenarios used within [`SCENARIO_IDLE`], most recent first; the idle ones are
    /// forgotten on the way.
    pub fn active(&self) -> Vec<ActiveScenario> {
        let mut by_id = lock(&self.by_id);
        let now = Instant::now();
        by_id.retain(|_, dice| now.duration_since(lock(dice).last_used) < SCENARIO_IDLE);
        let mut active: Vec<ActiveScenario> = by_id
            .iter()
            .map(|(id, dice)| {
                let dice = lock(dice);
                ActiveScenario {
                    id: id.clone(),
                    requests: dice.position,
                    idle_seconds: now.duration_since(dice.last_used).as_secs(),
                }
            })
            .collect();
        active.sort_by(|a, b| a.idle_seconds.cmp(&b.idle_seconds).then(a.id.cmp(&b.id)));
        active
    }
}

fn fresh(rng: StdRng) -> Dice {
    Dice {
        rng,
        position: 0,
        admitted: VecDeque::new(),
        last_used: Instant::now(),
    }
}

/// Makes room: the idle scenarios go, and if none is idle, the least recently used half.
fn forget_idle(by_id: &mut HashMap<String, Arc<Mutex<Dice>>>) {
    let now = Instant::now();
    by_id.retain(|_, dice| now.duration_since(lock(dice).last_used) < SCENARIO_IDLE);
    if by_id.len() < MAX_SCENARIOS {
        return;
    }
    let mut by_age: Vec<(Instant, String)> = by_id
        .iter()
        .map(|(id, dice)| (lock(dice).last_used, id.clone()))
        .collect();
    by_age.sort();
    for (_, id) in by_age.into_iter().take(MAX_SCENARIOS / 2) {
        by_id.remove(&id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn each_scenario_has_its_own_sequence() {
        let scenarios = Scenarios::new(|| StdRng::seed_from_u64(3));
        let draw = |id| scenarios.with(id, |d| d.rng.random::<u64>());
        let a = [draw(Some("a")), draw(Some("a"))];
        let b = [draw(Some("b")), draw(Some("b"))];
        assert_eq!(
            a, b,
            "the same seed gives each its own copy of the sequence"
        );
        let shared = [draw(None), draw(None)];
        assert_eq!(shared, a);
        assert!(scenarios.reset("a"));
        assert_eq!(draw(Some("a")), a[0], "a reset starts it afresh");
        assert!(!scenarios.reset("nobody"));
        assert_eq!(scenarios.active().len(), 2);
    }

    #[test]
    fn the_number_of_scenarios_is_bounded() {
        let scenarios = Scenarios::new(|| StdRng::seed_from_u64(1));
        for n in 0..MAX_SCENARIOS + 10 {
            scenarios.with(Some(&format!("test-{n}")), |d| d.position += 1);
        }
        let kept = lock(&scenarios.by_id).len();
        assert!(kept <= MAX_SCENARIOS, "{kept}");
        assert!(
            lock(&scenarios.by_id).contains_key(&format!("test-{}", MAX_SCENARIOS + 9)),
            "the newest is kept"
        );
    }
}

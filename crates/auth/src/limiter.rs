//! Failed-login throttling, per source address and per (user, source address). A user is never
//! throttled globally: that would let anyone lock a real user out by failing on purpose.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LoginLimiter {
    window: Duration,
    per_source: usize,
    per_user_source: usize,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    pub fn new(window: Duration, per_source: usize, per_user_source: usize) -> LoginLimiter {
        LoginLimiter {
            window,
            per_source,
            per_user_source,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(user: &str, source: IpAddr) -> (String, String) {
        (format!("ip:{source}"), format!("user:{source}:{user}"))
    }

    /// `Err(retry_after)` if this user at this source must wait before trying again.
    pub fn check(&self, user: &str, source: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let (a, b) = Self::keys(user, source);
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = Duration::ZERO;
        for (key, limit) in [(a, self.per_source), (b, self.per_user_source)] {
            if let Some(q) = map.get_mut(&key) {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > self.window)
                {
                    q.pop_front();
                }
                if q.len() >= limit
                    && let Some(oldest) = q.front()
                {
                    wait = wait.max(self.window.saturating_sub(now.duration_since(*oldest)));
                }
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait.max(Duration::from_secs(1)))
        }
    }

    pub fn failed(&self, user: &str, source: IpAddr) {
        let now = Instant::now();
        let (a, b) = Self::keys(user, source);
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Bound memory under a flood of distinct keys: forget entries whose window has passed.
        if map.len() > 100_000 {
            map.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) <= self.window)
            });
        }
        for key in [a, b] {
            let q = map.entry(key).or_default();
            q.push_back(now);
            if q.len() > 1000 {
                q.pop_front();
            }
        }
    }

    pub fn succeeded(&self, user: &str, source: IpAddr) {
        let (_, b) = Self::keys(user, source);
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_user_and_source_without_locking_others_out() {
        let l = LoginLimiter::new(Duration::from_secs(60), 10, 3);
        let attacker: IpAddr = "10.0.0.1".parse().unwrap();
        let real: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check("alice", attacker).is_ok());
            l.failed("alice", attacker);
        }
        assert!(l.check("alice", attacker).is_err());
        assert!(
            l.check("alice", real).is_ok(),
            "the real user elsewhere is not locked out"
        );
        for u in ["b", "c", "d", "e", "f", "g", "h"] {
            l.failed(u, attacker);
        }
        assert!(
            l.check("zed", attacker).is_err(),
            "the source is throttled after 10 failures"
        );
        assert!(l.check("zed", real).is_ok());
    }
}

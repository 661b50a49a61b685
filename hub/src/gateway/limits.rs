//! Per-session limits: the frame-rate token bucket and the abuse counter that closes a
//! session breaking the protocol repeatedly (docs/protocol.md §12.3, §13).

use std::time::{Duration, Instant};

/// Errors (`bad_frame`, `rate_limited`) within [`ABUSE_WINDOW`] that close the session.
pub const ABUSE_LIMIT: u32 = 20;
pub const ABUSE_WINDOW: Duration = Duration::from_secs(10);

/// A token bucket of capacity 2 × rate, refilled at `rate` tokens per second.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    capacity: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl RateLimit {
    pub fn new(frames_per_s: u32, now: Instant) -> Self {
        let rate = f64::from(frames_per_s.max(1));
        RateLimit {
            rate,
            capacity: 2.0 * rate,
            tokens: 2.0 * rate,
            refilled_at: now,
        }
    }

    /// Takes one token; false when the bucket is empty (the frame is dropped).
    pub fn admit(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counts protocol errors in a fixed window.
#[derive(Debug)]
pub struct Abuse {
    window_start: Instant,
    n_errors: u32,
}

impl Abuse {
    pub fn new(now: Instant) -> Self {
        Abuse {
            window_start: now,
            n_errors: 0,
        }
    }

    /// Records one error; true when the session should now be closed.
    pub fn record(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) > ABUSE_WINDOW {
            self.window_start = now;
            self.n_errors = 0;
        }
        self.n_errors += 1;
        self.n_errors >= ABUSE_LIMIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_of_twice_the_rate_then_the_rate() {
        let start = Instant::now();
        let mut limit = RateLimit::new(10, start);
        let admitted = (0..25).filter(|_| limit.admit(start)).count();
        assert_eq!(admitted, 20, "a burst of 2 × rate");
        let later = start + Duration::from_millis(500);
        let admitted = (0..25).filter(|_| limit.admit(later)).count();
        assert_eq!(admitted, 5, "half a second refills half the rate");
    }

    #[test]
    fn twenty_errors_within_ten_seconds_close_the_session() {
        let start = Instant::now();
        let mut abuse = Abuse::new(start);
        for n in 1..ABUSE_LIMIT {
            assert!(!abuse.record(start), "error {n} is tolerated");
        }
        assert!(abuse.record(start));
        let mut abuse = Abuse::new(start);
        for n in 0..100u64 {
            // One error every second never adds up to 20 in one window of 10 s.
            assert!(!abuse.record(start + Duration::from_secs(n)));
        }
    }
}

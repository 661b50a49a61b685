//! Unit tests of `connection`.

use std::time::Duration;

use super::*;

#[test]
fn backoff_doubles_up_to_the_cap_and_resets() {
    let mut backoff = Backoff::default();
    let mut bounds = Vec::new();
    for _ in 0..9 {
        let bound = backoff.bound();
        let delay = backoff.next_delay();
        assert!(delay <= bound, "{delay:?} > {bound:?}");
        bounds.push(bound.as_secs());
    }
    assert_eq!(bounds, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    backoff.reset();
    assert_eq!(backoff.bound(), Duration::from_secs(1));
}

#[test]
fn delays_are_spread_over_the_whole_window() {
    let delays: Vec<Duration> = (0..200)
        .map(|_| random_up_to(Duration::from_secs(10)))
        .collect();
    assert!(delays.iter().all(|delay| *delay <= Duration::from_secs(10)));
    assert!(delays.iter().any(|delay| *delay < Duration::from_secs(3)));
    assert!(delays.iter().any(|delay| *delay > Duration::from_secs(7)));
}

#[test]
fn unknown_events_still_yield_their_seq() {
    let bytes = Codec::MsgPack
        .encode(&serde_json::json!({"type": "future.event", "seq": 9, "x": 1}))
        .unwrap();
    assert_eq!(
        decode(Codec::MsgPack, &bytes),
        Err(Undecodable::Unknown { seq: Some(9) })
    );
    let ping = Codec::MsgPack
        .encode(&serde_json::json!({"type": "ping", "nonce": 3}))
        .unwrap();
    assert!(matches!(
        decode(Codec::MsgPack, &ping),
        Ok(ServerFrame::Ping(_))
    ));
}

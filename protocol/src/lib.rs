//! The AgentHub agent protocol: every frame exchanged on `/v1/agent/connect`, the two
//! codecs (MessagePack and JSON), error and close codes, and limits.
//!
//! This crate does no I/O. `docs/protocol.md` is the normative text; the golden vectors
//! in `protocol/tests/vectors/` are examples of every frame in both codecs.

mod codec;
mod frames;
mod msgpack_check;
mod shape;
mod strict;

pub use codec::{Codec, DecodeError, EncodeError, Limits, negotiate};
pub use frames::*;

/// Sub-protocol name of the MessagePack codec (binary WebSocket frames).
pub const SUBPROTOCOL_MSGPACK: &str = "agenthub.v1.msgpack";
/// Sub-protocol name of the JSON codec (text WebSocket frames).
pub const SUBPROTOCOL_JSON: &str = "agenthub.v1.json";
/// Every sub-protocol the hub speaks, in order of preference.
pub const SUBPROTOCOLS: &[&str] = &[SUBPROTOCOL_MSGPACK, SUBPROTOCOL_JSON];

/// Stable error codes carried by `error` frames (and by the REST error envelope).
pub mod error_code {
    /// The frame could not be decoded or is not valid for its type.
    pub const BAD_FRAME: &str = "bad_frame";
    /// The frame decoded, but the request breaks a rule (e.g. a rejection without a
    /// comment, an empty answer).
    pub const INVALID: &str = "invalid";
    /// The frame is larger than the negotiated maximum frame size.
    pub const TOO_LARGE: &str = "too_large";
    /// The credentials are missing, invalid or revoked.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// The caller is authenticated but may not do this.
    pub const FORBIDDEN: &str = "forbidden";
    /// The named object does not exist (or is not visible to the caller).
    pub const NOT_FOUND: &str = "not_found";
    /// The object is not in a state that allows this (for example a step already claimed).
    pub const CONFLICT: &str = "conflict";
    /// The caller sends faster than its rate limit allows.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// The frame type is unknown to this hub.
    pub const UNSUPPORTED: &str = "unsupported";
    /// Something failed inside the hub; retrying later may succeed.
    pub const INTERNAL: &str = "internal";

    /// All codes, for documentation checks.
    pub const ALL: &[&str] = &[
        BAD_FRAME,
        INVALID,
        TOO_LARGE,
        UNAUTHORIZED,
        FORBIDDEN,
        NOT_FOUND,
        CONFLICT,
        RATE_LIMITED,
        UNSUPPORTED,
        INTERNAL,
    ];
}

/// WebSocket close codes the hub uses. 1000-1011 are RFC 6455 codes; 4000-4999 are ours.
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The hub is shutting down: reconnect (to any hub) at once, with jitter.
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol repeatedly (malformed frames, rate limit abuse).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame exceeded the maximum frame size.
    pub const TOO_LARGE: u16 = 1009;
    /// An internal error ended the session; reconnect with backoff.
    pub const INTERNAL: u16 = 1011;
    /// The agent token was revoked while connected: do not reconnect with it.
    pub const TOKEN_REVOKED: u16 = 4001;
    /// The session's send queue overflowed because the agent read too slowly.
    /// Reconnect and resume from the last processed seq: nothing is lost.
    pub const TOO_SLOW: u16 = 4002;
    /// No frame (not even `pong`) arrived within the heartbeat timeout.
    pub const HEARTBEAT_TIMEOUT: u16 = 4003;
    /// The first frame was not `hello`, or it did not arrive in time.
    pub const HANDSHAKE_FAILED: u16 = 4004;
    /// A newer session of the same agent replaced this one: do not reconnect.
    pub const SUPERSEDED: u16 = 4005;

    /// All codes, for documentation checks.
    pub const ALL: &[u16] = &[
        NORMAL,
        GOING_AWAY,
        POLICY_VIOLATION,
        TOO_LARGE,
        INTERNAL,
        TOKEN_REVOKED,
        TOO_SLOW,
        HEARTBEAT_TIMEOUT,
        HANDSHAKE_FAILED,
        SUPERSEDED,
    ];
}

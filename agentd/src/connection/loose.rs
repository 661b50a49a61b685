//! A loose look at a hub frame that does not decode (nested deeper than the limits, a
//! field of the wrong type, …): its `type`, `seq`, and the step it is about, read by
//! skipping over values without recursing, whatever they hold. With these agentd can
//! acknowledge the event and fail its step instead of asking for it again for ever.

use agenthub_protocol::{Codec, Limits};
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// What could be read of an undecodable frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loose {
    pub type_name: Option<String>,
    pub seq: Option<u64>,
    /// `step.step_id` (of a `step.ready`) or the top-level `step_id`.
    pub step_id: Option<Uuid>,
    /// `step.attempt` or the top-level `attempt`.
    pub attempt: Option<u32>,
}

impl Loose {
    /// Reads what it can of `bytes`.
    pub fn read(codec: Codec, bytes: &[u8]) -> Loose {
        let top = |key: &str| codec.peek_field(bytes, key).map(|range| &bytes[range]);
        let step = top("step");
        let in_step = |key: &str| {
            let step = step?;
            codec.peek_field(step, key).map(|range| &step[range])
        };
        Loose {
            type_name: top("type").and_then(|value| scalar(codec, value)),
            seq: top("seq").and_then(|value| scalar(codec, value)),
            step_id: in_step("step_id")
                .or_else(|| top("step_id"))
                .and_then(|value| scalar(codec, value)),
            attempt: in_step("attempt")
                .or_else(|| top("attempt"))
                .and_then(|value| scalar(codec, value)),
        }
    }
}

/// Decodes a scalar value (a number, a string).
fn scalar<T: DeserializeOwned>(codec: Codec, bytes: &[u8]) -> Option<T> {
    let limits = Limits {
        max_frame_bytes: bytes.len(),
        max_depth: 2,
    };
    codec.decode(bytes, &limits).ok()
}

#[cfg(test)]
mod tests;

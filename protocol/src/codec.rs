//! The two codecs behind one API, sub-protocol negotiation, and decoding limits.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::frames::{ClientFrame, RequestId, ServerFrame};
use crate::{SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, error_code};
use crate::{msgpack_check, shape};

/// A wire encoding, named by its WebSocket sub-protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// `agenthub.v1.msgpack`: binary frames, MessagePack maps with named fields.
    MsgPack,
    /// `agenthub.v1.json`: text frames, UTF-8 JSON objects.
    Json,
}

/// Limits enforced by decoding, before any allocation that depends on the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted frame, in bytes.
    pub max_frame_bytes: usize,
    /// Deepest accepted nesting of maps and arrays.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// Why a frame could not be decoded. Every variant maps to a stable error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("unknown frame type `{type_name}`")]
    UnknownType {
        type_name: String,
        id: Option<RequestId>,
    },
    #[error("malformed frame: {0}")]
    Malformed(String),
}

impl DecodeError {
    /// The stable error code to answer with.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => error_code::TOO_LARGE,
            DecodeError::UnknownType { .. } => error_code::UNSUPPORTED,
            DecodeError::Malformed(_) => error_code::BAD_FRAME,
        }
    }

    /// The request id of the frame, when it could still be read.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            DecodeError::UnknownType { id, .. } => *id,
            DecodeError::TooLarge { .. } | DecodeError::Malformed(_) => None,
        }
    }
}

/// Encoding failed (only possible for values a codec cannot represent).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode frame: {0}")]
pub struct EncodeError(String);

impl Codec {
    /// The WebSocket sub-protocol name.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Codec::MsgPack => SUBPROTOCOL_MSGPACK,
            Codec::Json => SUBPROTOCOL_JSON,
        }
    }

    /// The codec for a sub-protocol name, if known.
    pub fn from_subprotocol(name: &str) -> Option<Codec> {
        match name.trim() {
            SUBPROTOCOL_MSGPACK => Some(Codec::MsgPack),
            SUBPROTOCOL_JSON => Some(Codec::Json),
            _ => None,
        }
    }

    /// Whether frames travel as binary (true) or text (false) WebSocket messages.
    pub fn is_binary(self) -> bool {
        matches!(self, Codec::MsgPack)
    }

    /// Encodes any frame (or frame part).
    pub fn encode<T: Serialize>(self, frame: &T) -> Result<Vec<u8>, EncodeError> {
        match self {
            Codec::MsgPack => {
                let mut buf = Vec::with_capacity(128);
                let mut serializer = rmp_serde::Serializer::new(&mut buf)
                    .with_struct_map()
                    .with_human_readable();
                frame
                    .serialize(&mut serializer)
                    .map_err(|err| EncodeError(err.to_string()))?;
                Ok(buf)
            }
            Codec::Json => serde_json::to_vec(frame).map_err(|err| EncodeError(err.to_string())),
        }
    }

    /// Decodes a frame sent by an agent. Only a map with a string `type` is a frame.
    pub fn decode_client(self, bytes: &[u8], limits: &Limits) -> Result<ClientFrame, DecodeError> {
        self.check(bytes, limits)?;
        self.check_shape(bytes)?;
        match self.deserialize::<ClientFrame>(bytes, limits)? {
            ClientFrame::Unknown => Err(self.unknown_type(bytes)),
            frame => Ok(frame),
        }
    }

    /// Decodes a frame sent by the hub. Unknown types decode to [`ServerFrame::Unknown`].
    pub fn decode_server(self, bytes: &[u8], limits: &Limits) -> Result<ServerFrame, DecodeError> {
        self.check(bytes, limits)?;
        self.check_shape(bytes)?;
        self.deserialize::<ServerFrame>(bytes, limits)
    }

    /// Reads only the `seq` of a frame (e.g. of an event type this version does not know).
    pub fn peek_seq(self, bytes: &[u8], limits: &Limits) -> Option<u64> {
        #[derive(Deserialize)]
        struct SeqProbe {
            seq: Option<u64>,
        }
        self.check_shape(bytes).ok()?;
        self.decode::<SeqProbe>(bytes, limits).ok()?.seq
    }

    /// Reads only the request `id` of a frame that failed to decode, so the `bad_frame`
    /// answer can name the request: the top-level `id` of a map, when it is an unsigned
    /// integer, whatever the rest of the frame holds (too deep, wrong types, …).
    pub fn peek_id(self, bytes: &[u8], limits: &Limits) -> Option<RequestId> {
        if bytes.len() > limits.max_frame_bytes {
            return None;
        }
        shape::request_id(self, bytes)
    }

    /// The bytes of the value of `key` in the top-level map of `bytes`, found by skipping
    /// over the other values without recursing, however deep they are nested: a way to
    /// read a few fields of a frame that does not decode. Decode the returned bytes with
    /// this codec.
    pub fn peek_field(self, bytes: &[u8], key: &str) -> Option<std::ops::Range<usize>> {
        shape::field(self, bytes, key)
    }

    /// Decodes any frame type with the limits applied first.
    pub fn decode<T: DeserializeOwned>(
        self,
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<T, DecodeError> {
        self.check(bytes, limits)?;
        self.deserialize(bytes, limits)
    }

    /// Size, structure and nesting limits, before any allocation that depends on the input.
    fn check(self, bytes: &[u8], limits: &Limits) -> Result<(), DecodeError> {
        if bytes.len() > limits.max_frame_bytes {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                max: limits.max_frame_bytes,
            });
        }
        match self {
            Codec::MsgPack => msgpack_check::check(bytes, limits.max_depth),
            Codec::Json => msgpack_check::check_json_depth(bytes, limits.max_depth),
        }
        .map_err(DecodeError::Malformed)
    }

    /// A map with a string `type`: a positional array, or an integer `type` naming a
    /// frame by its index, is not a frame.
    fn check_shape(self, bytes: &[u8]) -> Result<(), DecodeError> {
        shape::check(self, bytes).map_err(|err| DecodeError::Malformed(err.message()))
    }

    /// Deserializes input that passed [`Codec::check`].
    fn deserialize<T: DeserializeOwned>(
        self,
        bytes: &[u8],
        limits: &Limits,
    ) -> Result<T, DecodeError> {
        match self {
            Codec::MsgPack => {
                let mut deserializer =
                    rmp_serde::Deserializer::from_read_ref(bytes).with_human_readable();
                // The structure check bounded the nesting already; serde's own guard stays
                // as a second line.
                deserializer.set_max_depth(limits.max_depth.saturating_mul(2).max(16));
                T::deserialize(&mut deserializer)
                    .map_err(|err| DecodeError::Malformed(err.to_string()))
            }
            Codec::Json => {
                serde_json::from_slice(bytes).map_err(|err| DecodeError::Malformed(err.to_string()))
            }
        }
    }

    fn unknown_type(self, bytes: &[u8]) -> DecodeError {
        match shape::type_name(self, bytes) {
            Some(type_name) => DecodeError::UnknownType {
                type_name,
                id: shape::request_id(self, bytes),
            },
            None => DecodeError::Malformed("the `type` field is missing or not a string".into()),
        }
    }
}

/// Picks the codec for a client's offered sub-protocols (in the client's order of
/// preference); `None` when it offers none the hub knows.
pub fn negotiate<'a, I>(offers: I) -> Option<Codec>
where
    I: IntoIterator<Item = &'a str>,
{
    offers
        .into_iter()
        .flat_map(|offer| offer.split(','))
        .find_map(Codec::from_subprotocol)
}

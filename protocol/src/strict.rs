//! Deserializers that hold field values to the forms docs/protocol.md §5.3 gives them,
//! naming the field in the error: UUIDs only in canonical lowercase hyphenated form
//! (`uuid` alone would also take upper case, no hyphens, braces and `urn:uuid:`), and
//! `percent` only from 0 to 100, a nested object (`usage`) only as a map with named
//! fields (a derived `Deserialize` would also take an array of positional values), and
//! free JSON (`result`) without a key twice in one map (`serde_json::Value` would keep
//! the last).

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Number, Value};
use uuid::Uuid;

use crate::frames::Usage;

/// How much of a refused value an error message quotes.
const QUOTE_CHARS: usize = 48;

fn quote(text: &str) -> String {
    if text.chars().count() <= QUOTE_CHARS {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(QUOTE_CHARS).collect();
        format!("{head:?}…")
    }
}

struct CanonicalUuid(&'static str);

impl Visitor<'_> for CanonicalUuid {
    type Value = Uuid;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "`{}` as a UUID string", self.0)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Uuid, E> {
        let mut canonical = Uuid::encode_buffer();
        match Uuid::try_parse(text) {
            Ok(uuid) if uuid.hyphenated().encode_lower(&mut canonical) == text => Ok(uuid),
            _ => Err(E::custom(format!(
                "`{}` must be a UUID in canonical form (lowercase, hyphenated, e.g. \
                 01935a7e-0000-7000-8000-000000000051), not {}",
                self.0,
                quote(text)
            ))),
        }
    }
}

struct OptionalCanonicalUuid(&'static str);

impl<'de> Visitor<'de> for OptionalCanonicalUuid {
    type Value = Option<Uuid>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "`{}` as a UUID string or null", self.0)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<Uuid>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<Uuid>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<Uuid>, D::Error> {
        deserializer
            .deserialize_str(CanonicalUuid(self.0))
            .map(Some)
    }
}

/// A deserializer per UUID field, so the error names it.
macro_rules! uuid_fields {
    ($($field:ident),* $(,)?) => {$(
        pub(crate) fn $field<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Uuid, D::Error> {
            deserializer.deserialize_str(CanonicalUuid(stringify!($field)))
        }
    )*};
}

macro_rules! optional_uuid_fields {
    ($($name:ident => $field:ident),* $(,)?) => {$(
        pub(crate) fn $name<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Uuid>, D::Error> {
            deserializer.deserialize_option(OptionalCanonicalUuid(stringify!($field)))
        }
    )*};
}

uuid_fields!(
    step_id,
    task_id,
    approval_id,
    input_request_id,
    request_id,
    agent_id,
    session_id,
    change_id,
    plan_id,
);

optional_uuid_fields!(
    optional_step_id => step_id,
    optional_task_id => task_id,
    optional_created_id => created_id,
    optional_id => id,
    optional_member_id => member_id,
    optional_creator_member_id => creator_member_id,
);

struct Percent;

impl<'de> Visitor<'de> for Percent {
    type Value = Option<u8>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("`percent` as an integer from 0 to 100")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<u8>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<u8>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<u8>, D::Error> {
        deserializer.deserialize_u64(self)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Option<u8>, E> {
        match u8::try_from(value) {
            Ok(percent) if percent <= 100 => Ok(Some(percent)),
            _ => Err(E::custom(format!(
                "`percent` must be from 0 to 100, not {value}"
            ))),
        }
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Option<u8>, E> {
        match u64::try_from(value) {
            Ok(value) => self.visit_u64(value),
            Err(_) => Err(E::custom(format!(
                "`percent` must be from 0 to 100, not {value}"
            ))),
        }
    }
}

/// `step.progress.percent`: absent, null, or 0 to 100.
pub(crate) fn percent<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u8>, D::Error> {
    deserializer.deserialize_option(Percent)
}

/// `step.submit.usage`: absent, null, or a map with named fields.
pub(crate) fn usage<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Usage>, D::Error> {
    // Small and bounded by the frame's limits: read it as a value, then by name.
    match StrictValue("usage").deserialize(deserializer)? {
        Value::Null => Ok(None),
        value @ Value::Object(_) => Usage::deserialize(value)
            .map(Some)
            .map_err(|err| de::Error::custom(format!("`usage`: {err}"))),
        _ => Err(de::Error::custom(
            "`usage` must be a map with named fields (`model`, `input_tokens`, `output_tokens`)",
        )),
    }
}

/// A JSON value in which no map has a key twice; `field` names where it sits.
#[derive(Clone, Copy)]
struct StrictValue(&'static str);

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "`{}` as a JSON value", self.0)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value).map(Value::Number).ok_or_else(|| {
            E::custom(format!(
                "`{}` holds {value}, which JSON cannot carry",
                self.0
            ))
        })
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_string()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "the key `{key}` appears twice in a map of `{}`",
                    self.0
                )));
            }
            let value = access.next_value_seed(self)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// `step.submit.result`: free JSON (null allowed), no key twice in one map.
pub(crate) fn result<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    StrictValue("result").deserialize(deserializer)
}

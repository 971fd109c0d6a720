//! Reading a client's raw JSON without building a `serde_json::Value` tree: an object's members
//! as borrowed slices of the input ([`Object`]), a Messages body with its turns' members read
//! in the same walk ([`Body`]), a value's kind from its first byte ([`Kind`]), and strings,
//! numbers and arrays decoded only where a caller asks for them.
//!
//! It reads a document as `serde_json::from_str::<Value>` would: a repeated key's last value
//! counts, escapes in keys and strings are decoded, and a document that parse refuses (a number
//! beyond `f64`, a lone surrogate, arrays or objects nested 128 deep) is refused by [`parses`],
//! which scans it once without allocating.

mod check;

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;
use serde_json::value::RawValue;

/// The visits of a scalar for a visitor that keeps at most its kind: `$wrap` makes the
/// visitor's value from it.
macro_rules! scalar_visits {
    ($wrap:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($wrap(Kind::Bool))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($wrap(Kind::Number))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($wrap(Kind::Number))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($wrap(Kind::Number))
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($wrap(Kind::String))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($wrap(Kind::Null))
        }
    };
}

/// A JSON value's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl Kind {
    /// The kind of a value that parsed: its first byte tells (a raw value starts at its first
    /// non-whitespace byte).
    pub fn of(raw: &RawValue) -> Self {
        match raw.get().as_bytes().first() {
            Some(b'n') => Kind::Null,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'"') => Kind::String,
            Some(b'[') => Kind::Array,
            Some(b'{') => Kind::Object,
            _ => Kind::Number,
        }
    }
}

/// Whether `raw` is `null`.
pub fn is_null(raw: &RawValue) -> bool {
    Kind::of(raw) == Kind::Null
}

/// Whether `from_str::<Value>` would take `raw`: one scan of its bytes, building nothing (the
/// `check` module).
pub fn parses(raw: &str) -> bool {
    check::parses(raw)
}

/// A JSON string, borrowed from the input unless it holds escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The string `raw` holds, decoded; `None` when it is not a string.
pub fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    if Kind::of(raw) != Kind::String {
        return None;
    }
    serde_json::from_str::<Str<'_>>(raw.get()).ok().map(|s| s.0)
}

/// The number `raw` holds, as `Value` would hold it; `None` when it is not a number.
pub fn number(raw: &RawValue) -> Option<Number> {
    if Kind::of(raw) != Kind::Number {
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

/// The items of the array `raw` holds, unparsed; `None` when it is not an array.
pub fn array(raw: &RawValue) -> Option<Vec<&RawValue>> {
    if Kind::of(raw) != Kind::Array {
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

/// A JSON object's members, values unparsed; each key once, with its last value.
#[derive(Debug, Default)]
pub struct Object<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Object<'a> {
    /// The object `raw` holds; `None` when it is not one.
    pub fn of(raw: &'a RawValue) -> Option<Self> {
        if Kind::of(raw) != Kind::Object {
            return None;
        }
        Self::parse(raw.get())
    }

    /// The object a whole document holds; `None` when it is not one (or not JSON).
    pub fn parse(text: &'a str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|&(_, v)| v)
    }

    /// The key that `Value`'s (sorted) map would list first among those for which `pick`
    /// holds.
    pub fn first_key(&self, mut pick: impl FnMut(&str, &'a RawValue) -> bool) -> Option<&str> {
        self.0
            .iter()
            .filter(|(k, v)| pick(k, v))
            .map(|(k, _)| k.as_ref())
            .min()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> de::Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Object<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<'de>, A::Error> {
                members(map, |_, _| Ok(false))
            }
        }
        d.deserialize_map(V)
    }
}

/// An object's members, each key once with its last value. `take` may read a member's value
/// itself (it is handed the key and the map) instead of leaving it unparsed: it answers `true`
/// for a member it read, which is then not listed.
fn members<'de, A: MapAccess<'de>>(
    mut map: A,
    mut take: impl FnMut(&str, &mut A) -> Result<bool, A::Error>,
) -> Result<Object<'de>, A::Error> {
    let mut members: Vec<(Cow<'de, str>, &'de RawValue)> =
        Vec::with_capacity(map.size_hint().unwrap_or(8));
    while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
        if take(&key, &mut map)? {
            continue;
        }
        let value: &'de RawValue = map.next_value()?;
        match members.iter_mut().find(|(k, _)| *k == key) {
            Some(member) => member.1 = value,
            None => members.push((key, value)),
        }
    }
    Ok(Object(members))
}

/// A Messages create body read in one walk: its members as an [`Object`], except `messages`,
/// whose turns are read as they are met, each as an object's members.
///
/// Read as `Object::parse` and then each turn with `Object::of`, the turns' text (most of a
/// request) was walked three times: as the raw `messages`, as the array's items, as each
/// turn's members. Here it is walked once.
#[derive(Debug)]
pub struct Body<'a> {
    /// Every member but `messages`.
    pub members: Object<'a>,
    /// `messages` (its last value when repeated): `None` when absent; `Err` with its kind when
    /// it is not an array; else each turn, `Err` with its kind when it is not an object.
    pub messages: Option<Result<Vec<Result<Object<'a>, Kind>>, Kind>>,
}

impl<'a> Body<'a> {
    /// The body a whole document holds; `None` when it is not an object (or not JSON).
    pub fn parse(text: &'a str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

impl<'de> de::Deserialize<'de> for Body<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Body<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Body<'de>, A::Error> {
                let mut messages = None;
                let members = members(map, |key, map| {
                    if key != "messages" {
                        return Ok(false);
                    }
                    let Turns(turns) = map.next_value()?;
                    messages = Some(turns);
                    Ok(true)
                })?;
                Ok(Body { members, messages })
            }
        }
        d.deserialize_map(V)
    }
}

/// A value read as an array of objects' members: `Err` with its kind when it is not an array,
/// and each item `Err` with its kind when it is not an object.
struct Turns<'a>(Result<Vec<Result<Object<'a>, Kind>>, Kind>);

impl<'de> de::Deserialize<'de> for Turns<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Turns<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Turns<'de>, A::Error> {
                let mut turns = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(MaybeObject(turn)) = seq.next_element()? {
                    turns.push(turn);
                }
                Ok(Turns(Ok(turns)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Turns<'de>, A::Error> {
                while map
                    .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Turns(Err(Kind::Object)))
            }
            scalar_visits!(|kind| Turns(Err(kind)));
        }
        d.deserialize_any(V)
    }
}

/// A value read as an object's members: `Err` with its kind when it is not an object.
struct MaybeObject<'a>(Result<Object<'a>, Kind>);

impl<'de> de::Deserialize<'de> for MaybeObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MaybeObject<'de>, A::Error> {
                Ok(MaybeObject(Ok(members(map, |_, _| Ok(false))?)))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<MaybeObject<'de>, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(MaybeObject(Err(Kind::Array)))
            }
            scalar_visits!(|kind| MaybeObject(Err(kind)));
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_first_byte() {
        let obj = Object::parse(
            r#" { "a" : null , "b":true, "c":-1.5e3, "d":"x", "e":[1], "f":{}, "a":false } "#,
        )
        .unwrap();
        let kind = |k: &str| Kind::of(obj.get(k).unwrap());
        assert_eq!(
            kind("a"),
            Kind::Bool,
            "the last value of a repeated key counts"
        );
        assert_eq!(kind("c"), Kind::Number);
        assert_eq!(kind("d"), Kind::String);
        assert_eq!(kind("e"), Kind::Array);
        assert_eq!(kind("f"), Kind::Object);
        assert_eq!(obj.len(), 6);
        assert_eq!(obj.first_key(|k, _| k != "a"), Some("b"));
    }

    #[test]
    fn strings_numbers_and_arrays_decode_on_demand() {
        let obj = Object::parse(r#"{"s\u0021":"\u00e9t\u00e9","n":16.0,"l":[1,"x",{}]}"#).unwrap();
        assert_eq!(string(obj.get("s!").unwrap()).as_deref(), Some("été"));
        assert_eq!(number(obj.get("n").unwrap()).unwrap().as_f64(), Some(16.0));
        assert_eq!(array(obj.get("l").unwrap()).unwrap().len(), 3);
        assert_eq!(string(obj.get("n").unwrap()), None);
        assert!(Object::parse("[1]").is_none());
    }

    #[test]
    fn a_body_reads_its_turns_in_the_same_walk() {
        let body = Body::parse(
            r#"{"messages":[{"role":"user","content":"a","role":"assistant"},7,[1,{}],"x",null],"model":"m"}"#,
        )
        .unwrap();
        assert_eq!(body.members.len(), 1, "`messages` is not among the members");
        assert!(body.members.get("messages").is_none());
        let turns = body.messages.unwrap().unwrap();
        let first = turns[0].as_ref().unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(
            string(first.get("role").unwrap()).as_deref(),
            Some("assistant")
        );
        let kinds: Vec<_> = turns[1..]
            .iter()
            .map(|t| t.as_ref().err().copied())
            .collect();
        let not_objects = [Kind::Number, Kind::Array, Kind::String, Kind::Null].map(Some);
        assert_eq!(kinds, not_objects);

        // The last of a repeated `messages` counts, whatever the others were.
        let last = |text: &str| {
            Body::parse(text)
                .unwrap()
                .messages
                .map(|m| m.map(|t| t.len()))
        };
        assert_eq!(
            last(r#"{"messages":[{}],"messages":{"a":[2]}}"#),
            Some(Err(Kind::Object))
        );
        assert_eq!(
            last(r#"{"messages":{"a":1},"messages":[{},3]}"#),
            Some(Ok(2))
        );
        assert_eq!(
            last(r#"{"messages":true,"messages":-1.5}"#),
            Some(Err(Kind::Number))
        );
        assert_eq!(last(r#"{"model":"m"}"#), None);
        assert!(Body::parse("[1]").is_none());
    }

    #[test]
    fn parses_agrees_with_value() {
        for (text, ok) in [
            (r#"{"a":[1,2,{"b":"c"}]}"#, true),
            (r#"{"a":1e400}"#, false),
            (r#"{"a":"\ud800"}"#, false),
            (r#"{"\udc00":1}"#, false),
            ("{} x", false),
        ] {
            assert_eq!(parses(text), ok, "{text}");
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(text).is_ok(),
                ok,
                "{text}"
            );
        }
    }
}

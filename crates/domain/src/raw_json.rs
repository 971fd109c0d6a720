//! Reading a client's raw JSON without building a `serde_json::Value` tree: an object's members
//! as borrowed slices of the input ([`Object`]), a value's kind from its first byte ([`Kind`]),
//! and strings, numbers and arrays decoded only where a caller asks for them.
//!
//! It reads a document as `serde_json::from_str::<Value>` would: a repeated key's last value
//! counts, escapes in keys and strings are decoded, and a document that parse refuses (a number
//! beyond `f64`, a lone surrogate, nesting deeper than 128) is refused by [`parses`], which walks
//! it once without allocating.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;
use serde_json::value::RawValue;

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

/// Whether `from_str::<Value>` would take `raw`. Borrowed strings and numbers are read but not
/// kept, so nothing is allocated unless a string holds escapes.
pub fn parses(raw: &str) -> bool {
    serde_json::from_str::<Parses>(raw).is_ok()
}

/// Walks a value the way `Value` would read it, keeping nothing.
struct Parses;

impl<'de> de::Deserialize<'de> for Parses {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParsesVisitor)
    }
}

struct ParsesVisitor;

impl<'de> Visitor<'de> for ParsesVisitor {
    type Value = Parses;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Parses, E> {
        Ok(Parses)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Parses, E> {
        Ok(Parses)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Parses, E> {
        Ok(Parses)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Parses, E> {
        Ok(Parses)
    }
    fn visit_str<E>(self, _: &str) -> Result<Parses, E> {
        Ok(Parses)
    }
    fn visit_unit<E>(self) -> Result<Parses, E> {
        Ok(Parses)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parses, A::Error> {
        while seq.next_element::<Parses>()?.is_some() {}
        Ok(Parses)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parses, A::Error> {
        // Keys are decoded (and checked) as strings, as `Value` does.
        while map.next_entry::<Parses, Parses>()?.is_some() {}
        Ok(Parses)
    }
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
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'de>, A::Error> {
                let mut members: Vec<(Cow<'de, str>, &'de RawValue)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    match members.iter_mut().find(|(k, _)| *k == key) {
                        Some(member) => member.1 = value,
                        None => members.push((key, value)),
                    }
                }
                Ok(Object(members))
            }
        }
        d.deserialize_map(V)
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

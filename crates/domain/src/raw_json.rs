//! Reading a client's raw JSON without building a `serde_json::Value` tree: an object's members
//! as slices of the input ([`Object`]), a Messages body with its turns' members read in the
//! same scan ([`Body`]), a value's kind from its first byte ([`Kind`]), and strings, numbers and
//! arrays decoded only where a caller asks for them.
//!
//! It reads a client's document as `serde_json::from_str::<Value>` would: a repeated key's last
//! value counts, escapes in keys and strings are decoded, and a document that parse refuses is
//! refused. Three kinds of document are checked for JSON's grammar only, as serde_json checks
//! a value it skips: an upstream's answer, which batchd passes on as written ([`skips`],
//! [`members_as_written`]), the elements of a create's `requests`, whose `params` are stored as
//! written ([`members_as_written`]), and an OpenAI batch's input line and body, of which the
//! create reads a few members as serde's derive of them did ([`fields`]: a repeated one
//! refused). One scan (the `scan` module, which states the rules) both checks a document and
//! finds its members, so a value handed out as [`Raw`] is always valid JSON.

mod scan;

use std::borrow::Cow;

use serde_json::Number;

use scan::Scan;

/// A JSON value as it stands in a document this module read: a slice of the input, without the
/// whitespace around it, and valid JSON (only this module makes one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a>(&'a str);

impl<'a> Raw<'a> {
    /// The value's text.
    pub fn get(self) -> &'a str {
        self.0
    }
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
    /// The kind of a value: its first byte tells.
    pub fn of(raw: Raw<'_>) -> Self {
        match raw.0.as_bytes().first() {
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
pub fn is_null(raw: Raw<'_>) -> bool {
    Kind::of(raw) == Kind::Null
}

/// Whether `from_str::<Value>` would take `raw`: one scan of its bytes, building nothing.
pub fn parses(raw: &str) -> bool {
    scan::parses(raw)
}

/// Whether serde_json would skip `raw` as one value it does not keep (`IgnoredAny`): JSON's
/// grammar only, the check for what batchd passes on as an upstream wrote it (any `\u` escape,
/// any number, any depth).
pub fn skips(raw: &str) -> bool {
    scan::skips(raw)
}

/// The members of the object `raw` holds, in document order, a repeated key each time: values
/// checked for the grammar only and left as written, keys decoded (so checked as any decoded
/// string is); `None` when it is not one such object. For an upstream's answer, which batchd
/// passes on with its members in the order they came, and for an element of a create's
/// `requests`, whose `params` are stored as written.
pub fn members_as_written(raw: &str) -> Option<Vec<(Cow<'_, str>, &str)>> {
    scan::members_as_written(raw)
}

/// The members named by `names` of the object `raw` holds, each left as written and checked
/// for the grammar only, as serde reads a derived struct of `Option<&RawValue>` fields: other
/// members skipped, keys decoded, a member whose value is `null` absent. `None` when `raw` is
/// not an object (a derive would also read an array) or holds one of the named members twice.
/// For the envelope of an OpenAI batch's input line and the members batchd reads of its body,
/// which a derive read before: the figures are beside `LINE_FIELDS` in batchd-http.
pub fn fields<'a, const N: usize>(raw: &'a str, names: [&str; N]) -> Option<[Option<&'a str>; N]> {
    scan::fields(raw, names)
}

/// The string `raw` holds, decoded (borrowed unless it holds escapes); `None` when it is not a
/// string.
pub fn string(raw: Raw<'_>) -> Option<Cow<'_, str>> {
    if Kind::of(raw) != Kind::String {
        return None;
    }
    scan::decode(raw.0, memchr::memchr(b'\\', raw.0.as_bytes()).is_some())
}

/// The number `raw` holds, as `Value` would hold it; `None` when it is not a number.
pub fn number(raw: Raw<'_>) -> Option<Number> {
    if Kind::of(raw) != Kind::Number {
        return None;
    }
    serde_json::from_str(raw.0).ok()
}

/// The items of the array `raw` holds, unparsed; `None` when it is not an array.
pub fn array(raw: Raw<'_>) -> Option<Vec<Raw<'_>>> {
    Scan::document(raw.0, false, |scan| {
        let mut items = Vec::new();
        scan.array(0, |scan, depth| match scan.raw(depth) {
            Some(item) => {
                items.push(item);
                true
            }
            None => false,
        })
        .then_some(items)
    })
}

/// A JSON object's members, values unparsed; each key once, with its last value.
#[derive(Debug, Default)]
pub struct Object<'a>(Vec<(Cow<'a, str>, Raw<'a>)>);

impl<'a> Object<'a> {
    /// The object `raw` holds; `None` when it is not one.
    pub fn of(raw: Raw<'a>) -> Option<Self> {
        Self::parse(raw.0)
    }

    /// The object a whole document holds; `None` when it is not one (or not JSON).
    pub fn parse(text: &'a str) -> Option<Self> {
        Scan::document(text, false, |scan| members(scan, 0, |_, _, _| Some(false)))
    }

    pub fn get(&self, key: &str) -> Option<Raw<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|&(_, v)| v)
    }

    /// The key that `Value`'s (sorted) map would list first among those for which `pick`
    /// holds.
    pub fn first_key(&self, mut pick: impl FnMut(&str, Raw<'a>) -> bool) -> Option<&str> {
        self.0
            .iter()
            .filter(|(k, v)| pick(k, *v))
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

/// The members of the object at the cursor, each key once with its last value. `take` may read
/// a member's value itself (it is handed the key, the cursor and the value's depth) instead of
/// leaving it unparsed: it answers `Some(true)` for a member it read, which is then not listed,
/// and `None` to refuse the document.
fn members<'a>(
    scan: &mut Scan<'a>,
    depth: u32,
    mut take: impl FnMut(&str, &mut Scan<'a>, u32) -> Option<bool>,
) -> Option<Object<'a>> {
    let mut members: Vec<(Cow<'a, str>, Raw<'a>)> = Vec::with_capacity(8);
    scan.object(depth, |key, scan, depth| {
        match take(&key, scan, depth) {
            None => return false,
            Some(true) => return true,
            Some(false) => {}
        }
        let Some(value) = scan.raw(depth) else {
            return false;
        };
        match members.iter_mut().find(|(k, _)| *k == key) {
            Some(member) => member.1 = value,
            None => members.push((key, value)),
        }
        true
    })
    .then_some(Object(members))
}

/// A Messages create body read in one scan, which also checks the whole document: its members
/// as an [`Object`], except `messages`, whose turns are read as they are met, each as an
/// object's members.
///
/// Read as `Object::parse` and then each turn with `Object::of`, the turns' text (most of a
/// request) was walked three times: as the raw `messages`, as the array's items, as each
/// turn's members. Here it is scanned once.
#[derive(Debug)]
pub struct Body<'a> {
    /// Every member but `messages`.
    pub members: Object<'a>,
    /// `messages` (its last value when repeated): `None` when absent; `Err` with its kind when
    /// it is not an array; else each turn, `Err` with its kind when it is not an object.
    pub messages: Option<Turns<'a>>,
}

/// A value read as an array of objects' members: `Err` with its kind when it is not an array,
/// and each item `Err` with its kind when it is not an object.
pub type Turns<'a> = Result<Vec<Result<Object<'a>, Kind>>, Kind>;

impl<'a> Body<'a> {
    /// The body a whole document holds; `None` when it is not an object (or not JSON).
    pub fn parse(text: &'a str) -> Option<Self> {
        Scan::document(text, false, |scan| {
            let mut messages = None;
            let members = members(scan, 0, |key, scan, depth| {
                if key != "messages" {
                    return Some(false);
                }
                messages = Some(turns(scan, depth)?);
                Some(true)
            })?;
            Some(Body { members, messages })
        })
    }
}

/// The value at the cursor read as [`Turns`].
fn turns<'a>(scan: &mut Scan<'a>, depth: u32) -> Option<Turns<'a>> {
    if scan.peek() != Some(b'[') {
        return scan.raw(depth).map(|raw| Err(Kind::of(raw)));
    }
    let mut turns = Vec::with_capacity(4);
    let read = scan.array(depth, |scan, depth| {
        let turn = if scan.peek() == Some(b'{') {
            members(scan, depth, |_, _, _| Some(false)).map(Ok)
        } else {
            scan.raw(depth).map(|raw| Err(Kind::of(raw)))
        };
        turn.map(|turn| turns.push(turn)).is_some()
    });
    read.then_some(Ok(turns))
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

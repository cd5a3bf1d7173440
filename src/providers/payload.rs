//! How normalization reads a payload: into typed structs that borrow from the body, holding
//! only the members a mapping reads ([`members!`]), each read with a permissive type that takes
//! any JSON value ([`Text`], [`Stamp`], [`Raw`], [`Items`], [`Object`]).
//!
//! A payload reads exactly as a parsed `serde_json::Value` would: [`parse`] succeeds on exactly
//! the bodies that parse as a `Value` (every member the mapping skips is still checked, numbers
//! in range, escapes valid, nesting within serde_json's limit), the last of repeated keys counts,
//! and a member of an unexpected type is absent without making its neighbours unreadable.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Number;

/// How deep serde_json lets containers nest: a `Value` parse fails on the 128th level.
const MAX_NESTING: usize = 127;

/// Parses a body as a JSON payload; `None` when the body would not parse as a
/// `serde_json::Value` (not JSON, not UTF-8, a number out of range, nested too deep…). A body
/// that is JSON but not an object reads as an empty payload.
pub fn parse<'b, T: Members<'b>>(body: &'b [u8]) -> Option<Object<T>> {
    // serde_json validates UTF-8 in every string of a `Value` parse, and only there; reading
    // from `str` skips the per-string check.
    let text = std::str::from_utf8(body).ok()?;
    serde_json::from_str(text).ok()
}

/// A struct whose members are read from a JSON object, one key at a time.
pub trait Members<'de>: Default {
    /// Reads the value of member `key` into its field, or checks and drops it.
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
}

/// Declares a payload struct whose fields are read from the members of the same names; the
/// last of repeated keys counts, other members are checked and dropped ([`Skip`]).
macro_rules! members {
    (
        $(#[$meta:meta])*
        struct $name:ident<$a:lifetime $(, const $depth:ident: usize)?> { $($field:ident: $ty:ty,)* }
    ) => {
        $(#[$meta])*
        #[derive(Default)]
        struct $name<$a $(, const $depth: usize)?> {
            $($field: $ty,)*
        }

        impl<'de $(, const $depth: usize)?> $crate::providers::payload::Members<'de>
            for $name<'de $(, $depth)?>
        {
            fn member<A: serde::de::MapAccess<'de>>(
                &mut self,
                key: &str,
                map: &mut A,
            ) -> Result<(), A::Error> {
                match key {
                    $(stringify!($field) => self.$field = map.next_value()?,)*
                    _ => {
                        map.next_value::<$crate::providers::payload::Skip>()?;
                    }
                }
                Ok(())
            }
        }
    };
}
pub(crate) use members;

/// Declares a payload read into `top` (a [`Members`] struct), except the members named after
/// it, each read into a field of its own — the same schema nested under one key, say, or a
/// member only the envelope has.
macro_rules! envelope {
    (
        $(#[$meta:meta])*
        struct $name:ident<$a:lifetime> { top: $top:ty, $($field:ident: $ty:ty,)* }
    ) => {
        $(#[$meta])*
        #[derive(Default)]
        struct $name<$a> {
            top: $top,
            $($field: $ty,)*
        }

        impl<'de> $crate::providers::payload::Members<'de> for $name<'de> {
            fn member<A: serde::de::MapAccess<'de>>(
                &mut self,
                key: &str,
                map: &mut A,
            ) -> Result<(), A::Error> {
                match key {
                    $(stringify!($field) => self.$field = map.next_value()?,)*
                    _ => self.top.member(key, map)?,
                }
                Ok(())
            }
        }
    };
}
pub(crate) use envelope;

/// A JSON object read into `T`; any other value reads as `T::default()` with `is_object`
/// false, as a path through a non-object finds nothing.
#[derive(Default)]
pub struct Object<T> {
    pub is_object: bool,
    value: T,
}

impl<T> std::ops::Deref for Object<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<'de, T: Members<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Members<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = Object<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut value = T::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    value.member(&key.0, &mut map)?;
                }
                Ok(Object {
                    is_object: true,
                    value,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                skip_seq(seq).map(|()| Object::default())
            }
            scalars_read_as!(Object::default());
        }
        deserializer.deserialize_any(ObjectVisitor(PhantomData))
    }
}

/// The `visit_*` methods of every JSON scalar, each returning `$value`: serde_json has parsed
/// and checked the scalar by then, as a `Value` parse would.
macro_rules! scalars_read_as {
    ($value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}
use scalars_read_as;

/// An object key, borrowed from the body unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Any JSON value, checked as a `Value` parse checks it (serde's [`IgnoredAny`](serde::de::IgnoredAny) only checks
/// the syntax: it takes numbers out of range and lone surrogates, which a `Value` refuses), and
/// dropped.
pub struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SkipVisitor;
        impl<'de> Visitor<'de> for SkipVisitor {
            type Value = Skip;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
                while map.next_key::<Key<'de>>()?.is_some() {
                    map.next_value::<Skip>()?;
                }
                Ok(Skip)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Skip, A::Error> {
                skip_seq(seq).map(|()| Skip)
            }
            scalars_read_as!(Skip);
        }
        deserializer.deserialize_any(SkipVisitor)
    }
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<Skip>()?.is_some() {}
    Ok(())
}

/// A string or number read as text, as `normalize::text` reads it: strings trimmed, blank
/// ones absent; numbers as serde_json writes them; anything else absent.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct Text<'a>(pub Option<Cow<'a, str>>);

impl<'a> Text<'a> {
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }

    pub fn owned(&self) -> Option<String> {
        self.0.as_deref().map(str::to_string)
    }
}

/// The first of several texts that is there, as `normalize::first_text` picks it.
pub fn first(texts: &[&Text<'_>]) -> Option<String> {
    texts.iter().find_map(|text| text.owned())
}

fn number_text<E>(number: Number) -> Result<Text<'static>, E> {
    Ok(Text(Some(Cow::Owned(number.to_string()))))
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                let s = s.trim();
                Ok(Text((!s.is_empty()).then_some(Cow::Borrowed(s))))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                let s = s.trim();
                Ok(Text((!s.is_empty()).then(|| Cow::Owned(s.to_string()))))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Text<'de>, E> {
                number_text(n.into())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Text<'de>, E> {
                number_text(n.into())
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Text<'de>, E> {
                // serde_json hands only finite numbers to visitors.
                Number::from_f64(n).map_or(Ok(Text(None)), number_text)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Text<'de>, E> {
                Ok(Text(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Text<'de>, A::Error> {
                Skip::deserialize(de::value::MapAccessDeserializer::new(map)).map(|_| Text(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Text<'de>, A::Error> {
                skip_seq(seq).map(|()| Text(None))
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

/// A timestamp as sent: Unix seconds (a number that fits `i64`) or text; anything else absent.
#[derive(Default, Debug)]
pub enum Stamp<'a> {
    #[default]
    Absent,
    Seconds(i64),
    Text(Cow<'a, str>),
}

impl<'de> Deserialize<'de> for Stamp<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StampVisitor;
        impl<'de> Visitor<'de> for StampVisitor {
            type Value = Stamp<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Stamp<'de>, E> {
                Ok(Stamp::Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Stamp<'de>, E> {
                Ok(Stamp::Text(Cow::Owned(s.to_string())))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Stamp<'de>, E> {
                Ok(i64::try_from(n).map_or(Stamp::Absent, Stamp::Seconds))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Stamp<'de>, E> {
                Ok(Stamp::Seconds(n))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Stamp<'de>, E> {
                Ok(Stamp::Absent)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Stamp<'de>, E> {
                Ok(Stamp::Absent)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Stamp<'de>, E> {
                Ok(Stamp::Absent)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Stamp<'de>, A::Error> {
                Skip::deserialize(de::value::MapAccessDeserializer::new(map)).map(|_| Stamp::Absent)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Stamp<'de>, A::Error> {
                skip_seq(seq).map(|()| Stamp::Absent)
            }
        }
        deserializer.deserialize_any(StampVisitor)
    }
}

/// A value kept as the body wrote it (a money amount, which never passes through `f64`), of a
/// member nested in `DEPTH` containers (the top-level object counts). Its text is checked as a
/// `Value` parse of the body would check it there.
#[derive(Default, Debug)]
pub struct Raw<'a, const DEPTH: usize>(pub Option<&'a RawValue>);

impl<'de, const DEPTH: usize> Deserialize<'de> for Raw<'de, DEPTH> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(deserializer)?;
        check(raw.get(), DEPTH)?;
        Ok(Raw(Some(raw)))
    }
}

impl<const DEPTH: usize> Raw<'_, DEPTH> {
    /// The value as a money amount ([`normalize::amount`](super::normalize::amount)).
    pub fn amount(&self) -> Option<String> {
        super::normalize::amount(self.0?)
    }
}

/// Checks raw JSON text found nested in `depth` containers as a `Value` parse of the whole body
/// would check it there.
pub fn check<E: de::Error>(raw: &str, depth: usize) -> Result<(), E> {
    if raw.starts_with(['{', '[']) && depth + nesting(raw) > MAX_NESTING {
        return Err(E::custom("recursion limit exceeded"));
    }
    match serde_json::from_str::<Skip>(raw) {
        Ok(Skip) => Ok(()),
        Err(error) => Err(E::custom(error)),
    }
}

/// How deeply the containers of valid JSON text nest (`{}` is 1).
fn nesting(json: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in json.bytes() {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'{' | b'[') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (false, _, b'}' | b']') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The sum of the `quantity` members of an array's entries, as `normalize::item_count` counts
/// them: an entry without a quantity that fits `u64` counts as 1; not an array, `None`.
#[derive(Default, Debug)]
pub struct Items(pub Option<u64>);

impl<'de> Deserialize<'de> for Items {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemsVisitor;
        impl<'de> Visitor<'de> for ItemsVisitor {
            type Value = Items;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Items, A::Error> {
                let mut total = 0u64;
                while let Some(item) = seq.next_element::<Object<Item>>()? {
                    total = total.saturating_add(item.quantity.0.unwrap_or(1));
                }
                Ok(Items(Some(total)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Items, A::Error> {
                Skip::deserialize(de::value::MapAccessDeserializer::new(map)).map(|_| Items(None))
            }
            scalars_read_as!(Items(None));
        }
        deserializer.deserialize_any(ItemsVisitor)
    }
}

/// One entry of an [`Items`] array.
#[derive(Default)]
struct Item {
    quantity: Quantity,
}

impl<'de> Members<'de> for Item {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "quantity" => self.quantity = map.next_value()?,
            _ => {
                map.next_value::<Skip>()?;
            }
        }
        Ok(())
    }
}

/// A quantity: a number that fits `u64`, as `Value::as_u64` reads it.
#[derive(Default)]
struct Quantity(Option<u64>);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QuantityVisitor;
        impl<'de> Visitor<'de> for QuantityVisitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Quantity, E> {
                Ok(Quantity(Some(n)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Quantity, E> {
                Ok(Quantity(u64::try_from(n).ok()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Quantity, E> {
                Ok(Quantity(None))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Quantity, E> {
                Ok(Quantity(None))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Quantity, E> {
                Ok(Quantity(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Quantity, E> {
                Ok(Quantity(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Quantity, A::Error> {
                Skip::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|_| Quantity(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Quantity, A::Error> {
                skip_seq(seq).map(|()| Quantity(None))
            }
        }
        deserializer.deserialize_any(QuantityVisitor)
    }
}

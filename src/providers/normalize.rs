//! The rules by which every provider maps its payload into the normalized event (SPEC §4.2),
//! whose shape, [`Event`](crate::topics::event::Event), `topics::event` owns: decimal strings
//! for money (never floats), E.164 phones when the country is known, RFC 3339 UTC timestamps,
//! and `null` for anything the payload does not say (never a guess).
//!
//! The providers read their payloads with [`super::payload`] and apply these rules to what they
//! read. The functions that read a path of a parsed `serde_json::Value` ([`parse`], [`text`],
//! …) state these rules for this module's tests; they are built for tests and fuzzing only. The
//! reference the providers' readings are tested against (`super::reference`) has its own.

use std::borrow::Cow;
use std::cell::RefCell;
use std::hash::BuildHasher;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::value::RawValue;
#[cfg(any(test, feature = "fuzzing"))]
use serde_json::Value;

use super::payload::Stamp;

/// Parses a body as JSON; `Value::Null` when it is not JSON (normalization then finds nothing).
#[cfg(any(test, feature = "fuzzing"))]
pub fn parse(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// The value at `path` (object keys; array indexes as decimal strings).
#[cfg(any(test, feature = "fuzzing"))]
pub fn at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, key| match v {
        Value::Object(map) => map.get(*key),
        Value::Array(items) => items.get(key.parse::<usize>().ok()?),
        _ => None,
    })
}

/// A string or number at `path` as text; empty strings count as absent.
#[cfg(any(test, feature = "fuzzing"))]
pub fn text(value: &Value, path: &[&str]) -> Option<String> {
    match at(value, path)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first of several paths that has text.
#[cfg(any(test, feature = "fuzzing"))]
pub fn first_text(value: &Value, paths: &[&[&str]]) -> Option<String> {
    paths.iter().find_map(|path| text(value, path))
}

/// A money amount at `path` of the JSON `body` as a decimal string, read from the body's text
/// ([`amount`]). Of repeated keys the last counts.
pub fn decimal(body: &[u8], path: &[&str]) -> Option<String> {
    amount(raw_at(body, path)?)
}

/// A money amount as a decimal string. Strings must already be decimals (`"12.50"`); numbers
/// are taken as the body wrote them (`12.50` stays `12.50`) and refused unless they are
/// decimals. Read from the body's text, not from a parsed number, which is `f64`: an amount
/// never passes through binary floating point.
pub fn amount(raw: &RawValue) -> Option<String> {
    let raw = raw.get();
    let candidate = match raw.starts_with('"') {
        true => serde_json::from_str::<Cow<'_, str>>(raw)
            .ok()?
            .trim()
            .to_string(),
        false => raw.to_string(),
    };
    is_decimal(&candidate).then_some(candidate)
}
/// The JSON text at `path` (object keys; array indexes as decimal strings), as the body wrote
/// it. Of repeated keys the last counts, as in a parsed [`Value`].
pub fn raw_at<'b>(body: &'b [u8], path: &[&str]) -> Option<&'b RawValue> {
    let text = std::str::from_utf8(body).ok()?;
    let mut current: &'b RawValue = serde_json::from_str(text).ok()?;
    for key in path {
        let json = current.get();
        current = match json.as_bytes().first()? {
            b'{' => {
                let members: Vec<(Cow<'b, str>, &'b RawValue)> =
                    serde_json::from_str::<Members<'b>>(json).ok()?.0;
                members.into_iter().rev().find(|(k, _)| k == key)?.1
            }
            b'[' => {
                let items: Vec<&'b RawValue> = serde_json::from_str(json).ok()?;
                items.get(key.parse::<usize>().ok()?).copied()?
            }
            _ => return None,
        };
    }
    Some(current)
}

/// A JSON object's members in order, values unparsed.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> serde::de::Visitor<'de> for InOrder {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

/// The members of a JSON object body in body order, values unparsed (repeated keys kept);
/// `None` when the body is not a JSON object.
pub fn members(body: &[u8]) -> Option<Vec<(Cow<'_, str>, &RawValue)>> {
    serde_json::from_slice::<Members<'_>>(body)
        .ok()
        .map(|m| m.0)
}

fn is_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    !whole.is_empty()
        && !fraction.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

/// A three-letter currency code at `path`, upper-cased.
#[cfg(any(test, feature = "fuzzing"))]
pub fn currency(value: &Value, path: &[&str]) -> Option<String> {
    currency_code(text(value, path).as_deref())
}

/// A three-letter currency code, upper-cased.
pub fn currency_code(code: Option<&str>) -> Option<String> {
    let code = code?;
    (code.len() == 3 && code.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| code.to_ascii_uppercase())
}

/// An e-mail address at `path`, lower-cased ([`email_address`]).
#[cfg(any(test, feature = "fuzzing"))]
pub fn email(value: &Value, path: &[&str]) -> Option<String> {
    email_address(text(value, path).as_deref())
}

/// An e-mail address, lower-cased: one `@`, no spaces, a dotted domain.
pub fn email_address(address: Option<&str>) -> Option<String> {
    let address = address?;
    let (local, domain) = address.split_once('@')?;
    let plausible = !local.is_empty()
        && !address.chars().any(char::is_whitespace)
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty());
    plausible.then(|| address.to_ascii_lowercase())
}

/// A phone number in E.164 when it carries its country code (`+…`) or `country` (ISO 3166
/// alpha-2) is known and the number is valid there; otherwise the number as sent.
///
/// Parsing a number costs microseconds and the same customer's number comes back with every
/// update of their cart, so each thread keeps the answers for the last few distinct inputs.
pub fn phone(raw: Option<String>, country: Option<&str>) -> Option<String> {
    let raw = raw?;
    Some(PHONES.with_borrow_mut(|cache| cache.e164(raw, country)))
}

thread_local! {
    static PHONES: RefCell<PhoneCache> = RefCell::new(PhoneCache::default());
}

/// How many distinct (number, country) inputs a thread's phone cache holds.
const PHONE_CACHE_SLOTS: usize = 64;

/// A direct-mapped cache of [`e164`]'s answers: an input goes to one slot, chosen by its hash,
/// and replaces whatever was there.
#[derive(Default)]
struct PhoneCache {
    slots: Vec<Option<PhoneAnswer>>,
    hasher: std::collections::hash_map::RandomState,
}

struct PhoneAnswer {
    raw: String,
    country: Option<String>,
    answer: String,
}

impl PhoneCache {
    fn e164(&mut self, raw: String, country: Option<&str>) -> String {
        if self.slots.is_empty() {
            self.slots.resize_with(PHONE_CACHE_SLOTS, || None);
        }
        let hash = self.hasher.hash_one((raw.as_str(), country));
        let slot = &mut self.slots[hash as usize % PHONE_CACHE_SLOTS];
        if let Some(hit) = slot
            .as_ref()
            .filter(|hit| hit.raw == raw && hit.country.as_deref() == country)
        {
            return hit.answer.clone();
        }
        let answer = e164(&raw, country).unwrap_or_else(|| raw.clone());
        *slot = Some(PhoneAnswer {
            raw,
            country: country.map(str::to_string),
            answer: answer.clone(),
        });
        answer
    }
}

/// The number in E.164, when [`phone`] can give it.
fn e164(raw: &str, country: Option<&str>) -> Option<String> {
    let region =
        country.and_then(|c| phonenumber::country::Id::from_str(&c.to_ascii_uppercase()).ok());
    let international = raw.trim_start().starts_with('+');
    if !international && region.is_none() {
        return None;
    }
    let number = phonenumber::parse(if international { None } else { region }, raw).ok()?;
    phonenumber::is_valid(&number)
        .then(|| number.format().mode(phonenumber::Mode::E164).to_string())
}

/// "First Last" from two optional parts.
pub fn full_name(first: Option<String>, last: Option<String>) -> Option<String> {
    match (first, last) {
        (Some(first), Some(last)) => Some(format!("{first} {last}")),
        (one, other) => one.or(other),
    }
}

/// The sum of `quantity` over the array at `path`; each entry without one counts as 1.
#[cfg(any(test, feature = "fuzzing"))]
pub fn item_count(value: &Value, path: &[&str], quantity: &str) -> Option<u64> {
    let items = at(value, path)?.as_array()?;
    Some(items.iter().fold(0u64, |total, item| {
        total.saturating_add(item.get(quantity).and_then(Value::as_u64).unwrap_or(1))
    }))
}

/// An `https?://` URL at `path`.
#[cfg(any(test, feature = "fuzzing"))]
pub fn url(value: &Value, path: &[&str]) -> Option<String> {
    web_url(text(value, path).as_deref())
}

/// An `https?://` URL.
pub fn web_url(url: Option<&str>) -> Option<String> {
    let url = url?;
    (url.starts_with("https://") || url.starts_with("http://")).then(|| url.to_string())
}

/// A timestamp at `path` in RFC 3339 UTC ([`utc`]).
#[cfg(any(test, feature = "fuzzing"))]
pub fn timestamp(value: &Value, path: &[&str]) -> Option<String> {
    utc(&match at(value, path)? {
        Value::Number(n) => n.as_i64().map_or(Stamp::Absent, Stamp::Seconds),
        Value::String(s) => Stamp::Text(Cow::Borrowed(s)),
        _ => Stamp::Absent,
    })
}

/// A timestamp in RFC 3339 UTC. Understands RFC 3339 with an offset, the JavaScript `Date`
/// string (`Tue Jan 21 2025 18:00:32 GMT+0300`), and Unix seconds. A time without a zone is
/// not converted (its zone would be a guess): it yields `None`.
pub fn utc(stamp: &Stamp<'_>) -> Option<String> {
    let parsed = match stamp {
        Stamp::Seconds(seconds) => DateTime::<Utc>::from_timestamp(*seconds, 0)?,
        Stamp::Text(s) => parse_time(s.trim())?,
        Stamp::Absent => return None,
    };
    Some(parsed.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.to_utc());
    }
    // JavaScript's Date#toString(), possibly followed by " (Zone Name)".
    let js = s.split(" (").next().unwrap_or(s);
    if let Ok(t) = DateTime::parse_from_str(js, "%a %b %d %Y %H:%M:%S GMT%z") {
        return Some(t.to_utc());
    }
    // Zoned variants some platforms send ("2025-01-21 17:09:39+03:00"). Times without a zone
    // ("2025-01-21 17:09:39") match none of these and yield `None`.
    ["%Y-%m-%d %H:%M:%S%:z", "%Y-%m-%d %H:%M:%S%.f%:z"]
        .iter()
        .find_map(|format| DateTime::parse_from_str(s, format).ok())
        .map(|t| t.to_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn money_stays_decimal_text() {
        let v = br#"{"a": "379.69", "b": 100, "c": 34.99, "d": "12,50", "e": 1e21, "f": "-3.5"}"#;
        assert_eq!(decimal(v, &["a"]).as_deref(), Some("379.69"));
        assert_eq!(decimal(v, &["b"]).as_deref(), Some("100"));
        assert_eq!(decimal(v, &["c"]).as_deref(), Some("34.99"));
        assert_eq!(decimal(v, &["d"]), None);
        assert_eq!(
            decimal(v, &["e"]),
            None,
            "exponent notation is not a decimal string"
        );
        assert_eq!(decimal(v, &["f"]).as_deref(), Some("-3.5"));
        assert_eq!(decimal(v, &["missing"]), None);
    }

    #[test]
    fn amounts_written_as_numbers_keep_every_digit_the_body_wrote() {
        // As f64 these would come out as 10.1, 100.0 and 1234567890123456.8.
        let body =
            br#"{"a": 10.10, "b": 100.00, "c": 1234567890123456.78, "d": {"e": [1, "0.30"]}}"#;
        assert_eq!(decimal(body, &["a"]).as_deref(), Some("10.10"));
        assert_eq!(decimal(body, &["b"]).as_deref(), Some("100.00"));
        assert_eq!(
            decimal(body, &["c"]).as_deref(),
            Some("1234567890123456.78")
        );
        assert_eq!(decimal(body, &["d", "e", "1"]).as_deref(), Some("0.30"));
        assert_eq!(decimal(body, &["d", "e", "2"]), None);
        assert_eq!(decimal(b"not json", &["a"]), None);
        assert_eq!(
            decimal(br#"{"a": 1, "a": 2.50}"#, &["a"]).as_deref(),
            Some("2.50"),
            "the last of repeated keys, as a parsed Value has it"
        );
    }

    #[test]
    fn phones_become_e164_when_the_country_is_known() {
        assert_eq!(
            phone(Some("+1(502)-459-2181".into()), None).as_deref(),
            Some("+15024592181")
        );
        assert_eq!(
            phone(Some("(502) 459-2181".into()), Some("us")).as_deref(),
            Some("+15024592181")
        );
        assert_eq!(
            phone(Some("0501234567".into()), Some("SA")).as_deref(),
            Some("+966501234567")
        );
        assert_eq!(
            phone(Some("0501234567".into()), None).as_deref(),
            Some("0501234567"),
            "no country: as sent"
        );
        assert_eq!(
            phone(Some("12".into()), Some("US")).as_deref(),
            Some("12"),
            "invalid: as sent"
        );
        assert_eq!(phone(None, Some("US")), None);
    }

    #[test]
    fn timestamps_become_utc() {
        let v = json!({
            "rfc": "2012-10-12T07:05:27-04:00",
            "js": "Tue Jan 21 2025 18:00:32 GMT+0300",
            "unix": 1700000000,
            "naive": "2025-01-21 17:09:39",
            "junk": "yesterday"
        });
        assert_eq!(
            timestamp(&v, &["rfc"]).as_deref(),
            Some("2012-10-12T11:05:27Z")
        );
        assert_eq!(
            timestamp(&v, &["js"]).as_deref(),
            Some("2025-01-21T15:00:32Z")
        );
        assert_eq!(
            timestamp(&v, &["unix"]).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(timestamp(&v, &["naive"]), None);
        assert_eq!(timestamp(&v, &["junk"]), None);
    }

    #[test]
    fn paths_reach_into_objects_and_arrays() {
        let v = json!({"a": [{"b": "x"}, {"b": 7}], "s": "  "});
        assert_eq!(text(&v, &["a", "1", "b"]).as_deref(), Some("7"));
        assert_eq!(text(&v, &["a", "2", "b"]), None);
        assert_eq!(text(&v, &["s"]), None, "blank is absent");
        assert_eq!(
            first_text(&v, &[&["nope"], &["a", "0", "b"]]).as_deref(),
            Some("x")
        );
    }

    #[test]
    fn emails_need_one_at_and_a_dotted_domain() {
        let v = json!({"a": "Bob@Example.com", "b": "a b@x.y", "c": "a@x.", "d": "a@@x.y", "e": "@x.y"});
        assert_eq!(email(&v, &["a"]).as_deref(), Some("bob@example.com"));
        for bad in ["b", "c", "d", "e"] {
            assert_eq!(email(&v, &[bad]), None, "{bad}");
        }
    }

    #[test]
    fn item_count_sums_quantities() {
        let v = json!({"items": [{"quantity": 2}, {"quantity": 3}, {}]});
        assert_eq!(item_count(&v, &["items"], "quantity"), Some(6));
        assert_eq!(item_count(&v, &["none"], "quantity"), None);
    }
}

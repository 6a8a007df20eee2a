//! What the published document says a value may be, next to the checks that enforce it,
//! so that the two cannot drift: a request the document calls valid is not refused for
//! its shape, and one it calls invalid is refused.
//!
//! Patterns are written in the common subset of ECMA-262, Python and Rust regular
//! expressions, and each one has its check here, written by hand to match it exactly.

use crate::money::MAX_AMOUNT;
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{KnownFormat, SchemaFormat};

/// A positive id written as a string: digits only, at most 15 significant ones (below
/// 2^53, what every client language reads exactly).
pub const DIGITS: &str = "^0*[1-9][0-9]{0,14}$";
/// A user id written as a string: the digits, or `user_` and the digits.
pub const USER_DIGITS: &str = "^(user_)?0*[1-9][0-9]{0,14}$";
/// Text that is not only white space (ECMA-262 `\s`, see [`ecma_space`]).
pub const NOT_BLANK: &str = "\\S";

/// A positive integer up to 2^53 - 1: ids, amounts, quantities.
pub fn positive() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .maximum(Some(MAX_AMOUNT as f64))
}

/// A positive integer, as a JSON number or a string of digits (see [`json_id`]).
pub fn id_or_digits() -> Schema {
    Schema::AnyOf(
        AnyOfBuilder::new()
            .item(positive())
            .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(DIGITS)))
            .build(),
    )
}

/// A contract T listing's quantity: 1 to 10,000, as a JSON number or its digits.
pub fn quantity() -> Schema {
    Schema::AnyOf(
        AnyOfBuilder::new()
            .item(positive().maximum(Some(10_000)))
            .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some("^0*([1-9][0-9]{0,3}|10000)$")))
            .build(),
    )
}

/// A user id: a positive integer, its digits, or `user_` and its digits.
pub fn user_id() -> Schema {
    Schema::AnyOf(
        AnyOfBuilder::new()
            .item(positive())
            .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(USER_DIGITS)))
            .build(),
    )
}

/// The value of a string matching [`DIGITS`], or `None`.
pub fn digits_id(s: &str) -> Option<u64> {
    let significant = s.trim_start_matches('0');
    let ok = s.bytes().all(|b| b.is_ascii_digit()) && (1..=15).contains(&significant.len());
    ok.then(|| significant.parse().ok()).flatten()
}

/// A positive integer sent as a JSON number (1 to 2^53 - 1) or as a string matching
/// [`DIGITS`]: the checks behind [`id_or_digits`].
pub fn json_id(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(_) => json_positive(v),
        serde_json::Value::String(s) => digits_id(s),
        _ => None,
    }
}

/// A whole number at most 2^53 - 1, written as JSON writes numbers: what an integer query
/// or path parameter of the document may be. Digits only, or, since JSON Schema counts a
/// number with no fraction as an integer, `7.0` or `7e0` too (no sign, no spaces).
pub fn uint(s: &str) -> Option<u64> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().ok().filter(|n| *n <= MAX_AMOUNT);
    }
    let number = s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !number || s.starts_with(['-', '+']) {
        return None;
    }
    json_integer(&serde_json::from_str::<serde_json::Value>(s).ok()?)
}

/// A positive id in a path or query: [`uint`], and not 0.
pub fn path_id(s: &str) -> Option<u64> {
    uint(s).filter(|n| *n > 0)
}

/// A positive JSON number up to 2^53 - 1: the check behind [`positive`].
/// A JSON number with no fraction counts as an integer, as JSON Schema says (`35.0` is 35).
pub fn json_positive(v: &serde_json::Value) -> Option<u64> {
    json_integer(v).filter(|n| (1..=MAX_AMOUNT).contains(n))
}

/// A non-negative JSON number with no fraction, up to 2^53 - 1 if written with one.
pub fn json_integer(v: &serde_json::Value) -> Option<u64> {
    let n = v.as_number()?;
    n.as_u64()
        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && (0.0..=MAX_AMOUNT as f64).contains(f)).map(|f| f as u64))
}

/// Refuses a JSON text in which an object repeats a name: RFC 7493 (I-JSON) says names
/// must be unique, and a parser that keeps one of them silently would read another request
/// than the one a proxy or a log shows. The error names the key.
pub fn unique_keys(json: &[u8]) -> Result<(), String> {
    use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};
    struct Unique;
    impl<'de> Deserialize<'de> for Unique {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Unique)
        }
    }
    impl<'de> Visitor<'de> for Unique {
        type Value = Unique;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_unit<E>(self) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
            while seq.next_element::<Unique>()?.is_some() {}
            Ok(Unique)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if seen.contains(&key) {
                    return Err(A::Error::custom(format!("the name `{key}` appears twice in one object")));
                }
                map.next_value::<Unique>()?;
                seen.insert(key);
            }
            Ok(Unique)
        }
    }
    serde_json::from_slice::<Unique>(json).map(|_| ()).map_err(|e| e.to_string())
}

/// Rewrites every number with no fraction (`35.0`, `1e3`) as the integer it is, so that a
/// typed body reads it as JSON Schema does.
pub fn integral_numbers(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(i) = json_integer(v) {
                *v = serde_json::Value::from(i);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(o) => o.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// White space as ECMA-262's `\s` reads it, the regular expressions of JSON Schema's
/// `pattern`: tab, line feed, vertical tab, form feed, carriage return, space, U+00A0,
/// U+FEFF, the other space separators (Zs), U+2028 and U+2029. (Not Rust's
/// `char::is_whitespace`, which adds U+0085 and lacks U+FEFF.)
pub fn ecma_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{feff}'
    )
}

/// Whether `s` has a character other than white space: what [`NOT_BLANK`] (`\S`) matches.
pub fn has_text(s: &str) -> bool {
    s.chars().any(|c| !ecma_space(c))
}

/// `s` without leading and trailing white space in [`ecma_space`]'s sense.
pub fn trimmed(s: &str) -> &str {
    s.trim_matches(ecma_space)
}

/// Whether `s` has `min..=max` characters (Unicode scalar values, as JSON Schema's
/// `minLength`/`maxLength` count).
pub fn length_within(s: &str, min: usize, max: usize) -> bool {
    let n = s.chars().take(max + 1).count();
    (min..=max).contains(&n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_in_paths_are_read_as_json_schema_reads_them() {
        for (s, want) in [
            ("7", Some(7)),
            ("007", Some(7)),
            ("7.0", Some(7)),
            ("7.000", Some(7)),
            ("7e0", Some(7)),
            ("1E3", Some(1000)),
            ("7.5", None),
            ("-7", None),
            ("+7", None),
            ("", None),
            (" 7", None),
            ("7.", None),
            (".7", None),
            ("1e400", None),
            ("9007199254740992", None),
            ("abc", None),
        ] {
            assert_eq!(uint(s), want, "{s:?}");
        }
        assert_eq!(path_id("0.0"), None);
    }

    #[test]
    fn a_name_repeated_in_one_object_is_refused_at_any_depth() {
        assert!(unique_keys(br#"{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}"#).is_ok());
        for bad in [&br#"{"a":1,"a":1}"#[..], br#"{"x":{"y":1,"y":2}}"#, br#"[{"k":1,"z":0,"k":2}]"#] {
            let e = unique_keys(bad).expect_err("a duplicate");
            assert!(e.contains("appears twice"), "{e}");
        }
    }

    #[test]
    fn digits_match_their_pattern() {
        for (s, want) in [
            ("1", Some(1)),
            ("007", Some(7)),
            ("999999999999999", Some(999_999_999_999_999)),
            ("0999999999999999", Some(999_999_999_999_999)),
            ("1000000000000000", None),
            ("0", None),
            ("", None),
            ("+1", None),
            (" 1", None),
            ("1 ", None),
            ("-1", None),
            ("１", None),
        ] {
            assert_eq!(digits_id(s), want, "{s:?}");
        }
    }

    #[test]
    fn numbers_stop_at_two_to_the_53() {
        assert_eq!(json_id(&serde_json::json!(MAX_AMOUNT)), Some(MAX_AMOUNT));
        assert_eq!(json_id(&serde_json::json!(MAX_AMOUNT + 1)), None);
        assert_eq!(json_id(&serde_json::json!(0)), None);
        assert_eq!(json_id(&serde_json::json!(1.5)), None);
        assert_eq!(json_id(&serde_json::json!(null)), None);
    }

    #[test]
    fn blank_is_what_the_pattern_calls_blank() {
        assert!(!has_text(""));
        assert!(!has_text(" \t\n\u{b}\u{a0}\u{3000}\u{feff}\u{2028}"));
        assert!(has_text(" a "));
        assert!(has_text("\u{1c}"), "an information separator is not white space to ECMA-262");
        assert!(has_text("\u{85}"), "nor is NEL");
        assert_eq!(trimmed("\u{feff} a b \u{a0}"), "a b");
    }

    #[test]
    fn lengths_count_characters() {
        assert!(length_within("가나다", 1, 3));
        assert!(!length_within("가나다라", 1, 3));
        assert!(!length_within("", 1, 3));
    }
}

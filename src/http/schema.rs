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

/// A whole number written in digits only (no sign, no spaces), at most 2^53 - 1: what an
/// integer query or path parameter of the document may be.
pub fn uint(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().filter(|n| *n <= MAX_AMOUNT)
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

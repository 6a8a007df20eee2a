//! Amounts of money: whole units (won), never more than [`MAX_AMOUNT`], computed with
//! checked arithmetic. 2^53 - 1 is the largest integer every client language reads
//! exactly (a JavaScript or Dart `double`), so no price, total, charge or balance the
//! server states may pass it: a request that would make one pass it is refused before
//! anything changes.

/// The largest amount the server accepts or states: 9,007,199,254,740,991.
pub const MAX_AMOUNT: u64 = (1 << 53) - 1;

/// `a + b`, if it stays within [`MAX_AMOUNT`].
pub fn add(a: u64, b: u64) -> Option<u64> {
    a.checked_add(b).filter(|s| *s <= MAX_AMOUNT)
}

/// `a * n`, if it stays within [`MAX_AMOUNT`].
pub fn times(a: u64, n: u64) -> Option<u64> {
    a.checked_mul(n).filter(|s| *s <= MAX_AMOUNT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_stop_at_two_to_the_53_minus_one() {
        assert_eq!(add(MAX_AMOUNT - 1, 1), Some(MAX_AMOUNT));
        assert_eq!(add(MAX_AMOUNT, 1), None);
        assert_eq!(add(u64::MAX, 1), None);
        assert_eq!(times(1 << 52, 1), Some(1 << 52));
        assert_eq!(times(1 << 52, 2), None);
        assert_eq!(times(1 << 62, 4), None);
        assert_eq!(times(0, u64::MAX), Some(0));
    }
}

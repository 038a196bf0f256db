//! Numeric command-line values, parsed here rather than by clap so that every
//! refusal states the accepted range and quotes the value as the user typed
//! it: `--watch 1e308` must not come back as a 309-digit number, nor `inf`
//! as "not above 0".

use std::time::Duration;

/// Longest part of a refused value quoted back; the rest is elided, so an
/// absurd argument cannot flood the terminal.
const QUOTE_MAX: usize = 40;

/// A number of seconds from `min` to `max` (inclusive), for option `option`
/// (e.g. `--watch`). Decimal and exponent forms are accepted (`2`, `0.5`,
/// `1e3`); `nan`, infinities, and values outside the range are refused.
pub fn seconds(option: &str, text: &str, min: f64, max: f64) -> Result<Duration, String> {
    debug_assert!(0.0 < min && min <= max && max.is_finite());
    let expected = format!("expected a number of seconds from {min} to {max}");
    let problem = match text.parse::<f64>() {
        Ok(s) if (min..=max).contains(&s) => return Ok(Duration::from_secs_f64(s)),
        Ok(s) if s.is_nan() => "is not a number",
        Ok(_) => "is out of range",
        Err(_) => "is not a number",
    };
    Err(format!("{option} {} {problem}: {expected}", as_typed(text)))
}

/// `text` quoted and escaped (control characters shown as `\n`, `\u{1b}`...),
/// cut to [`QUOTE_MAX`] characters.
pub fn as_typed(text: &str) -> String {
    match text.char_indices().nth(QUOTE_MAX) {
        Some((cut, _)) => format!("{:?}...", &text[..cut]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANGE: &str = "expected a number of seconds from 0.1 to 86400";

    fn watch(text: &str) -> Result<Duration, String> {
        seconds("--watch", text, 0.1, 86_400.0)
    }

    #[test]
    fn accepts_the_range_in_any_float_syntax() {
        assert_eq!(watch("2"), Ok(Duration::from_secs(2)));
        assert_eq!(watch("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(watch("1e3"), Ok(Duration::from_secs(1000)));
        assert_eq!(watch("0.1"), Ok(Duration::from_millis(100)));
        assert_eq!(watch("86400"), Ok(Duration::from_secs(86_400)));
        assert_eq!(watch("+3"), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn refusals_state_the_range_and_quote_the_input() {
        for out in [
            "1e308", "inf", "-inf", "+inf", "infinity", "0", "-0", "-1", "0.05", "1e-400", "86401",
            "86400.5",
        ] {
            assert_eq!(
                watch(out),
                Err(format!("--watch {out:?} is out of range: {RANGE}")),
                "{out}"
            );
        }
        for junk in ["nan", "NaN", "abc", "", " 1", "1s", "0x10", "1,5"] {
            assert_eq!(
                watch(junk),
                Err(format!("--watch {junk:?} is not a number: {RANGE}")),
                "{junk}"
            );
        }
    }

    #[test]
    fn huge_input_is_never_rendered_in_full() {
        let digits = "9".repeat(400);
        let err = watch(&digits).unwrap_err();
        assert!(err.starts_with(&format!("--watch \"{}\"...", "9".repeat(40))));
        assert!(err.ends_with(&format!("is out of range: {RANGE}")));
        assert!(err.len() < 150, "{err}");
        assert_eq!(as_typed("a\nb"), r#""a\nb""#);
    }
}

//! What plain Redis writes do to a key, as data: a [`Mutation`] applied to
//! the key's current live value yields an [`Effect`] on the object and an
//! [`Outcome`] for the client. Pure: the time is an argument.
//!
//! Mutations are values rather than closures so that a node outside a key's
//! preference list can forward one to a coordinator that is in it.

use bytes::Bytes;

use crate::error::{Error, Result};

/// What a write does to the key's time to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Keep the current expiry (KEEPTTL, APPEND, INCR).
    Keep,
    /// No expiry (plain SET, PERSIST).
    Clear,
    /// Expire at this absolute time, in ms since the epoch.
    At(u64),
    /// Expire this many ms after the write is applied.
    In(u64),
}

impl Expiry {
    fn resolve(self, current: Option<u64>, now: u64) -> Option<u64> {
        match self {
            Self::Keep => current,
            Self::Clear => None,
            Self::At(at) => Some(at),
            Self::In(ms) => Some(now.saturating_add(ms)),
        }
    }
}

/// SET's NX / XX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    Always,
    IfAbsent,
    IfPresent,
}

/// EXPIRE's NX / XX / GT / LT. XX combines with GT or LT; NX combines with
/// nothing, nor GT with LT (the parser refuses those).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpireCondition {
    /// Only if the key has no expiry.
    pub nx: bool,
    /// Only if the key has an expiry.
    pub xx: bool,
    /// Only if the new expiry is later (a key without expiry never is).
    pub gt: bool,
    /// Only if the new expiry is sooner (a key without expiry always is).
    pub lt: bool,
}

impl ExpireCondition {
    fn allows(self, old: Option<u64>, new: u64) -> bool {
        // A key without expiry counts as expiring never: later than anything.
        !(self.nx && old.is_some()
            || self.xx && old.is_none()
            || self.gt && old.is_none_or(|o| new <= o)
            || self.lt && old.is_some_and(|o| new >= o))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Mutation {
    /// SET and its relatives; `get` returns the old value.
    Set {
        value: Bytes,
        expiry: Expiry,
        condition: Condition,
        get: bool,
    },
    Append(Bytes),
    IncrBy(i64),
    IncrByFloat(f64),
    /// DEL, UNLINK: 1 if the key existed.
    Delete,
    /// GETDEL: the value, then delete.
    GetDel,
    /// GETEX: the value, with a new expiry.
    GetEx(Expiry),
    /// EXPIRE family; an expiry in the past deletes the key.
    Expire {
        expiry: Expiry,
        condition: ExpireCondition,
    },
    /// PERSIST: 1 if an expiry was removed.
    Persist,
}

/// The key's current live value, as a mutation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    pub value: Bytes,
    pub expires_at: Option<u64>,
}

/// What the mutation does to the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    Put { value: Bytes, expires_at: Option<u64> },
    Delete,
}

/// What the client is told.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Ok,
    /// A null reply (SET NX not applied).
    Nil,
    /// A value or null (GET-like replies).
    Value(Option<Bytes>),
    Int(i64),
    /// INCRBYFLOAT's result, formatted.
    Float(Bytes),
}

/// Parses an integer exactly as Redis does: optional `-`, no leading zeros,
/// no `+`, no spaces, within i64.
#[must_use]
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    let (neg, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    match digits {
        [b'0'] if !neg => return Some(0),
        [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        n = if neg { n.checked_mul(10)?.checked_sub(d)? } else { n.checked_mul(10)?.checked_add(d)? };
    }
    Some(n)
}

/// Parses a float as Redis does (C's `strtold`): no surrounding spaces, not
/// NaN, decimal or hexadecimal (`0x1.8p3`). Infinity (`inf`, or a number
/// too large for a double) parses, so that INCRBYFLOAT can refuse it as
/// Redis does: "would produce NaN or Infinity".
#[must_use]
pub fn parse_f64(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?;
    if text.is_empty() || text.starts_with(|c: char| c.is_whitespace()) || text.ends_with(|c: char| c.is_whitespace()) {
        return None;
    }
    text.parse::<f64>().ok().or_else(|| parse_hex_f64(text)).filter(|f| !f.is_nan())
}

/// A C hexadecimal float: `[sign]0x` hex digits, an optional fraction and
/// an optional binary exponent (`p` and a decimal power of two).
fn parse_hex_f64(text: &str) -> Option<f64> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let rest = rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X"))?;
    let (mantissa, exponent) = match rest.split_once(['p', 'P']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut value = 0f64;
    for c in int.chars() {
        value = value * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in frac.chars() {
        value += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    let value = value * 2f64.powi(exponent);
    Some(if negative { -value } else { value })
}

/// Formats a float the way Redis replies with one: in plain decimal, at
/// most 17 digits after the point (Redis's `%.17Lf`, trailing zeros
/// trimmed), otherwise the shortest form that reads back the same;
/// integral values without a fraction.
#[must_use]
pub fn format_f64(f: f64) -> String {
    let shortest = format!("{f}");
    if shortest.split_once('.').is_none_or(|(_, frac)| frac.len() <= 17) {
        return if f == 0.0 { "0".into() } else { shortest };
    }
    let fixed = format!("{f:.17}");
    match fixed.trim_end_matches('0').trim_end_matches('.') {
        "" | "-0" => "0".into(),
        trimmed => trimmed.into(),
    }
}

impl Mutation {
    /// True if the result depends on the key's current value: everything
    /// but a plain SET, which only replaces.
    #[must_use]
    pub fn reads_current(&self) -> bool {
        !matches!(self, Self::Set { condition: Condition::Always, get: false, expiry, .. } if *expiry != Expiry::Keep)
    }

    /// Applies the mutation to the key's live value at `now`.
    ///
    /// # Errors
    /// Type errors of the value (not an integer, a float, overflow).
    pub fn apply(&self, current: Option<&Current>, now: u64) -> Result<(Effect, Outcome)> {
        let old_expiry = current.and_then(|c| c.expires_at);
        let old_value = || current.map(|c| c.value.clone());
        Ok(match self {
            Self::Set { value, expiry, condition, get } => {
                let skip = match condition {
                    Condition::Always => false,
                    Condition::IfAbsent => current.is_some(),
                    Condition::IfPresent => current.is_none(),
                };
                let outcome = match (get, skip) {
                    (true, _) => Outcome::Value(old_value()),
                    (false, true) => Outcome::Nil,
                    (false, false) => Outcome::Ok,
                };
                if skip {
                    (Effect::None, outcome)
                } else {
                    let expires_at = expiry.resolve(old_expiry, now);
                    (Effect::Put { value: value.clone(), expires_at }, outcome)
                }
            }
            Self::Append(suffix) => {
                let mut value = current.map(|c| c.value.to_vec()).unwrap_or_default();
                value.extend_from_slice(suffix);
                let len = i64::try_from(value.len()).map_err(|_| Error::Overflow)?;
                (Effect::Put { value: value.into(), expires_at: old_expiry }, Outcome::Int(len))
            }
            Self::IncrBy(by) => {
                let n = match current {
                    Some(c) => parse_i64(&c.value).ok_or(Error::NotInteger)?,
                    None => 0,
                };
                let n = n.checked_add(*by).ok_or(Error::Overflow)?;
                (Effect::Put { value: n.to_string().into(), expires_at: old_expiry }, Outcome::Int(n))
            }
            Self::IncrByFloat(by) => {
                let f = match current {
                    Some(c) => parse_f64(&c.value).ok_or(Error::NotFloat)?,
                    None => 0.0,
                };
                let f = f + by;
                if !f.is_finite() {
                    return Err(Error::NotFinite);
                }
                let text = Bytes::from(format_f64(f));
                (Effect::Put { value: text.clone(), expires_at: old_expiry }, Outcome::Float(text))
            }
            Self::Delete => match current {
                Some(_) => (Effect::Delete, Outcome::Int(1)),
                None => (Effect::None, Outcome::Int(0)),
            },
            Self::GetDel => match current {
                Some(c) => (Effect::Delete, Outcome::Value(Some(c.value.clone()))),
                None => (Effect::None, Outcome::Value(None)),
            },
            Self::GetEx(expiry) => match current {
                Some(c) if *expiry != Expiry::Keep => {
                    let expires_at = expiry.resolve(old_expiry, now);
                    let effect = if expires_at.is_some_and(|at| at <= now) {
                        Effect::Delete
                    } else {
                        Effect::Put { value: c.value.clone(), expires_at }
                    };
                    (effect, Outcome::Value(Some(c.value.clone())))
                }
                _ => (Effect::None, Outcome::Value(old_value())),
            },
            Self::Expire { expiry, condition } => {
                let Some(c) = current else { return Ok((Effect::None, Outcome::Int(0))) };
                let Some(at) = expiry.resolve(old_expiry, now) else { return Ok((Effect::None, Outcome::Int(0))) };
                if !condition.allows(old_expiry, at) {
                    (Effect::None, Outcome::Int(0))
                } else if at <= now {
                    (Effect::Delete, Outcome::Int(1))
                } else {
                    (Effect::Put { value: c.value.clone(), expires_at: Some(at) }, Outcome::Int(1))
                }
            }
            Self::Persist => match current {
                Some(c) if c.expires_at.is_some() => {
                    (Effect::Put { value: c.value.clone(), expires_at: None }, Outcome::Int(1))
                }
                _ => (Effect::None, Outcome::Int(0)),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(v: &'static str, expires_at: Option<u64>) -> Current {
        Current { value: Bytes::from_static(v.as_bytes()), expires_at }
    }

    #[test]
    fn integers_parse_like_redis() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [&b""[..], b"-", b"-0", b"01", b"+1", b" 1", b"1 ", b"1.0", b"9223372036854775808", b"abc"] {
            assert_eq!(parse_i64(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn floats_parse_and_format_like_redis() {
        assert_eq!(parse_f64(b"10.5"), Some(10.5));
        assert_eq!(parse_f64(b"5.0e3"), Some(5000.0));
        for bad in [&b""[..], b" 1", b"1 ", b"nan", b"NaN", b"-nan", b"1x"] {
            assert_eq!(parse_f64(bad), None);
        }
        assert_eq!(parse_f64(b"inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"1e400"), Some(f64::INFINITY), "too large for a double");
        assert_eq!(format_f64(10.5 + 0.1), "10.6");
        assert_eq!(format_f64(3.0), "3");
        assert_eq!(format_f64(-0.0), "0");
        assert_eq!(format_f64(1e20), "100000000000000000000");
        assert_eq!(format_f64(1.5e-300), "0", "below 17 decimals, as Redis's %.17Lf");
        assert_eq!(format_f64(-1.5e-300), "0");
        assert_eq!(format_f64(1.2345678901234568e-10), "0.00000000012345679");
        assert_eq!(format_f64(-0.005), "-0.005");
        assert_eq!(parse_f64(b"0x10"), Some(16.0), "hexadecimal, as strtold reads it");
        assert_eq!(parse_f64(b"-0x1.8p3"), Some(-12.0));
        assert_eq!(parse_f64(b"0X.8"), Some(0.5));
        for bad in [&b"0x"[..], b"0xg", b"0x1p", b"0x1.8q3"] {
            assert_eq!(parse_f64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn set_conditions_and_get() {
        let set = |condition, get| Mutation::Set { value: Bytes::from("n"), expiry: Expiry::Clear, condition, get };
        let old = cur("o", Some(9));
        assert_eq!(set(Condition::IfAbsent, false).apply(Some(&old), 0).expect("ok"), (Effect::None, Outcome::Nil));
        assert_eq!(
            set(Condition::IfAbsent, true).apply(Some(&old), 0).expect("ok"),
            (Effect::None, Outcome::Value(Some(Bytes::from("o"))))
        );
        assert_eq!(set(Condition::IfPresent, false).apply(None, 0).expect("ok"), (Effect::None, Outcome::Nil));
        let (effect, outcome) = set(Condition::Always, true).apply(Some(&old), 0).expect("ok");
        assert_eq!(effect, Effect::Put { value: Bytes::from("n"), expires_at: None });
        assert_eq!(outcome, Outcome::Value(Some(Bytes::from("o"))));
    }

    #[test]
    fn incr_keeps_ttl_and_checks_type_and_overflow() {
        let (effect, outcome) = Mutation::IncrBy(5).apply(Some(&cur("10", Some(99))), 0).expect("ok");
        assert_eq!(effect, Effect::Put { value: Bytes::from("15"), expires_at: Some(99) });
        assert_eq!(outcome, Outcome::Int(15));
        assert!(matches!(Mutation::IncrBy(1).apply(Some(&cur("x", None)), 0), Err(Error::NotInteger)));
        assert!(matches!(Mutation::IncrBy(1).apply(Some(&cur("9223372036854775807", None)), 0), Err(Error::Overflow)));
        assert!(matches!(
            Mutation::IncrByFloat(f64::MAX).apply(Some(&cur("1.7976931348623157e308", None)), 0),
            Err(Error::NotFinite)
        ));
    }

    #[test]
    fn expire_conditions_follow_redis() {
        let e = |condition, at| Mutation::Expire { expiry: Expiry::At(at), condition };
        let (gt, lt) =
            (ExpireCondition { gt: true, ..Default::default() }, ExpireCondition { lt: true, ..Default::default() });
        let (nx, always) = (ExpireCondition { nx: true, ..Default::default() }, ExpireCondition::default());
        let xx_lt = ExpireCondition { xx: true, lt: true, ..Default::default() };
        let persistent = cur("v", None);
        let volatile = cur("v", Some(500));
        assert_eq!(e(gt, 900).apply(Some(&persistent), 0).expect("ok").1, Outcome::Int(0));
        assert_eq!(e(lt, 900).apply(Some(&persistent), 0).expect("ok").1, Outcome::Int(1));
        assert_eq!(e(xx_lt, 100).apply(Some(&persistent), 0).expect("ok").1, Outcome::Int(0));
        assert_eq!(e(xx_lt, 100).apply(Some(&volatile), 0).expect("ok").1, Outcome::Int(1));
        assert_eq!(e(gt, 900).apply(Some(&volatile), 0).expect("ok").1, Outcome::Int(1));
        assert_eq!(e(nx, 900).apply(Some(&volatile), 0).expect("ok").1, Outcome::Int(0));
        assert_eq!(e(always, 10).apply(Some(&volatile), 10).expect("ok").0, Effect::Delete);
        assert_eq!(e(always, 10).apply(None, 0).expect("ok"), (Effect::None, Outcome::Int(0)));
    }
}

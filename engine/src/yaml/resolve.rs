//! Scalars as go-yaml v2 resolves them (`resolve.go`), which is what Kubernetes clients use:
//! sigs.k8s.io/yaml decodes with go-yaml v2 and converts the result to JSON. These are YAML 1.1's
//! rules as that library implements them, not the YAML 1.2 core schema: `0644` is octal (420),
//! `yes`/`on`/`y` are `true`, `1_000` is 1000, `08` is the float 8, `.5` is 0.5, and a timestamp
//! stays a string.

use serde_json::{Number, Value};

use super::YamlError;

/// The tag a scalar carries, as go-yaml v2 sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScalarTag {
    /// No tag on a plain scalar: resolved by its text.
    Implicit,
    /// No tag on a quoted or block scalar: a string.
    Quoted,
    /// `!!str`, `!!int`, ... (the suffix after `tag:yaml.org,2002:`).
    Core(String),
    /// Any other tag (`!foo`, `!`, `!<tag:example.com,2000:x>`): go-yaml keeps the text.
    Other,
}

/// A resolved scalar, before it is turned into JSON.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    /// `<<` on a plain scalar (or tagged `!!merge`): a merge key.
    Merge,
}

/// Resolves `text` (after YAML escape processing) as go-yaml v2 does for the given tag.
pub(crate) fn resolve(tag: &ScalarTag, text: &str) -> Result<Scalar, YamlError> {
    let core = match tag {
        ScalarTag::Quoted | ScalarTag::Other => return Ok(Scalar::Str(text.to_owned())),
        ScalarTag::Implicit => None,
        ScalarTag::Core(suffix) => Some(suffix.as_str()),
    };
    match core {
        None => Ok(resolve_plain(text)),
        Some("str") => Ok(Scalar::Str(text.to_owned())),
        Some("binary") => decode_binary(text),
        Some(suffix @ ("bool" | "int" | "float" | "null" | "timestamp")) => {
            let resolved = resolve_plain(text);
            let fits = match (&resolved, suffix) {
                (Scalar::Bool(_), "bool") | (Scalar::Null, "null") => true,
                (Scalar::Int(_) | Scalar::Uint(_), "int") => true,
                (Scalar::Float(_), "float") => true,
                (Scalar::Str(_), "timestamp") => looks_like_timestamp(text),
                _ => false,
            };
            if fits {
                return Ok(resolved);
            }
            // An integer asked to be a float becomes one; anything else is an error.
            match (resolved, suffix) {
                (Scalar::Int(i), "float") => Ok(Scalar::Float(i as f64)),
                (Scalar::Uint(u), "float") => Ok(Scalar::Float(u as f64)),
                _ => Err(YamlError::new(format!(
                    "cannot decode {text:?} as a !!{suffix}"
                ))),
            }
        }
        Some("merge") if text == "<<" => Ok(Scalar::Merge),
        // Tags go-yaml does not resolve (`!!map` on a scalar, `!!set`, ...) keep the text.
        Some(_) => Ok(Scalar::Str(text.to_owned())),
    }
}

fn decode_binary(text: &str) -> Result<Scalar, YamlError> {
    use base64::Engine as _;
    // Go's decoder skips line breaks inside base64 text.
    let compact: String = text.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| YamlError::new("!!binary value contains invalid base64 data"))?;
    // Go's JSON encoder replaces invalid UTF-8 with U+FFFD.
    Ok(Scalar::Str(String::from_utf8_lossy(&bytes).into_owned()))
}

/// `resolve("", text)` of go-yaml v2 for a plain scalar.
fn resolve_plain(text: &str) -> Scalar {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Scalar::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Scalar::Bool(false);
        }
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        "<<" => return Scalar::Merge,
        _ => {}
    }
    let first = text.as_bytes()[0];
    match first {
        b'.' => {
            if let Some(f) = go_parse_float(text) {
                return Scalar::Float(f);
            }
        }
        b'0'..=b'9' | b'+' | b'-' => {
            // A timestamp (YYYY-...) stays the text it is: go-yaml v2 hands it to an
            // interface{} as a string. None of them parses as a number, so nothing to do.
            let plain: String = text.chars().filter(|c| *c != '_').collect();
            if let Some(i) = go_parse_int(&plain) {
                return i;
            }
            if is_yaml_style_float(&plain)
                && let Some(f) = go_parse_float(&plain)
            {
                return Scalar::Float(f);
            }
            if let Some(digits) = plain.strip_prefix("0b") {
                if let Ok(i) = i64::from_str_radix(digits, 2)
                    && !digits.starts_with(['+', '-'])
                {
                    return Scalar::Int(i);
                }
                if let Ok(u) = u64::from_str_radix(digits, 2)
                    && !digits.starts_with(['+', '-'])
                {
                    return Scalar::Uint(u);
                }
            } else if let Some(digits) = plain.strip_prefix("-0b")
                && !digits.starts_with(['+', '-'])
                && let Ok(i) = i64::from_str_radix(&format!("-{digits}"), 2)
            {
                return Scalar::Int(i);
            }
        }
        _ => {}
    }
    Scalar::Str(text.to_owned())
}

/// A date as go-yaml v2 recognises one: four digits, then `-`.
fn looks_like_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

/// Go's `strconv.ParseInt(s, 0, 64)`, falling back to `ParseUint(s, 0, 64)`: an optional sign,
/// then `0x`/`0X` hex, `0o`/`0O` or a leading `0` octal, `0b`/`0B` binary, or decimal. Go allows
/// underscores only between digits with a base prefix; they were removed before this is called.
fn go_parse_int(s: &str) -> Option<Scalar> {
    let (negative, unsigned) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(d) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        (16, d)
    } else if let Some(d) = unsigned
        .strip_prefix("0o")
        .or_else(|| unsigned.strip_prefix("0O"))
    {
        (8, d)
    } else if let Some(d) = unsigned
        .strip_prefix("0b")
        .or_else(|| unsigned.strip_prefix("0B"))
    {
        (2, d)
    } else if unsigned.len() > 1 && unsigned.starts_with('0') {
        (8, &unsigned[1..])
    } else {
        (10, unsigned)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        // ParseInt: down to i64::MIN; ParseUint refuses a sign.
        if magnitude <= i64::MAX as u64 + 1 {
            return Some(Scalar::Int((magnitude as i128).wrapping_neg() as i64));
        }
        return None;
    }
    if magnitude <= i64::MAX as u64 {
        Some(Scalar::Int(magnitude as i64))
    } else if s.starts_with('+') {
        // ParseUint refuses a sign, and ParseInt overflows.
        None
    } else {
        Some(Scalar::Uint(magnitude))
    }
}

/// go-yaml v2's `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseFloat(s, 64)` for the decimal forms YAML reaches it with (an optional
/// sign, digits with at most one `.`, an optional exponent). Go also reads `inf`, `nan` and hex
/// floats, but go-yaml v2 only calls it on text that starts with `.` or matched
/// [`is_yaml_style_float`]; `.inf` and `.nan` are found in its table before.
fn go_parse_float(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let body = match b.first()? {
        b'+' | b'-' => &s[1..],
        _ => s,
    };
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
        && body.bytes().any(|c| c.is_ascii_digit());
    if !ok {
        return None;
    }
    // Rust accepts the same decimal syntax; out-of-range values become ±inf in both (Go also
    // reports ErrRange then, which go-yaml treats as "not a float": the text stays a string).
    let f: f64 = s.parse().ok()?;
    if f.is_infinite() { None } else { Some(f) }
}

/// The JSON value Kubernetes ends up with: sigs.k8s.io/yaml marshals go-yaml's value with Go's
/// `encoding/json`, and the API server reads that text back.
pub(crate) fn to_json(scalar: Scalar) -> Result<Value, YamlError> {
    Ok(match scalar {
        Scalar::Null => Value::Null,
        Scalar::Bool(b) => Value::Bool(b),
        Scalar::Int(i) => Value::from(i),
        Scalar::Uint(u) => Value::from(u),
        Scalar::Float(f) => float_to_json(f)?,
        Scalar::Str(s) => Value::String(s),
        // A merge key where a value is expected is the string "<<" to go-yaml.
        Scalar::Merge => Value::String("<<".to_owned()),
    })
}

/// A float as Go's `encoding/json` writes it, read back as JSON: `8.0` is the integer 8,
/// `1e21` stays a float; NaN and infinities cannot be written at all.
fn float_to_json(f: f64) -> Result<Value, YamlError> {
    if !f.is_finite() {
        return Err(YamlError::new(format!(
            "error converting YAML to JSON: json: unsupported value: {}",
            go_float_name(f)
        )));
    }
    let abs = f.abs();
    let text = if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        format!("{f}")
    } else {
        format!("{f:e}")
    };
    serde_json::from_str::<Value>(&text)
        .ok()
        .filter(Value::is_number)
        .or_else(|| Number::from_f64(f).map(Value::Number))
        .ok_or_else(|| YamlError::new(format!("cannot represent {f} in JSON")))
}

fn go_float_name(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    }
}

/// A mapping key as sigs.k8s.io/yaml turns it into a JSON member name: strings as they are,
/// integers in decimal, floats with Go's `FormatFloat(k, 'g', -1, 32)`, booleans as
/// `true`/`false`. Null keys and integers beyond `int64` are errors there, and here.
pub(crate) fn key_to_string(key: Scalar) -> Result<String, YamlError> {
    match key {
        Scalar::Str(s) => Ok(s),
        Scalar::Merge => Ok("<<".to_owned()),
        Scalar::Int(i) => Ok(i.to_string()),
        Scalar::Bool(b) => Ok(b.to_string()),
        Scalar::Float(f) => Ok(go_format_float32_g(f)),
        Scalar::Null => Err(YamlError::new(
            "error converting YAML to JSON: unsupported map key: null",
        )),
        Scalar::Uint(u) => Err(YamlError::new(format!(
            "error converting YAML to JSON: unsupported map key of type uint64: {u}"
        ))),
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)` with go-yaml's names for the special values.
fn go_format_float32_g(f: f64) -> String {
    if f.is_nan() {
        return ".nan".to_owned();
    }
    let single = f as f32;
    if single.is_infinite() {
        return if single > 0.0 { ".inf" } else { "-.inf" }.to_owned();
    }
    if single == 0.0 {
        return if single.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    // Shortest digits that read back as the same f32, as `d.ddddde±x`.
    let sci = format!("{:e}", single.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if single < 0.0 { "-" } else { "" };
    // Shortest %g decides with a precision of 6: exponent form below 1e-4 and from 1e6.
    if !(-4..6).contains(&exponent) {
        let (head, tail) = digits.split_at(1);
        let tail = if tail.is_empty() {
            String::new()
        } else {
            format!(".{tail}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{head}{tail}e{exp_sign}{:02}", exponent.abs());
    }
    // Fixed notation.
    let point = exponent + 1;
    let text = if point <= 0 {
        format!("0.{}{}", "0".repeat((-point) as usize), digits)
    } else if point as usize >= digits.len() {
        format!("{}{}", digits, "0".repeat(point as usize - digits.len()))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(text: &str) -> Scalar {
        resolve(&ScalarTag::Implicit, text).expect("resolves")
    }

    #[test]
    fn go_yaml_v2_reads_plain_scalars_as_yaml_1_1() {
        assert_eq!(plain("0644"), Scalar::Int(420));
        assert_eq!(plain("0o644"), Scalar::Int(420));
        assert_eq!(plain("0x1F"), Scalar::Int(31));
        assert_eq!(plain("0b101"), Scalar::Int(5));
        assert_eq!(plain("-0b101"), Scalar::Int(-5));
        assert_eq!(plain("+12"), Scalar::Int(12));
        assert_eq!(plain("1_000"), Scalar::Int(1000));
        assert_eq!(plain("08"), Scalar::Float(8.0));
        assert_eq!(plain("1e3"), Scalar::Float(1000.0));
        assert_eq!(plain(".5"), Scalar::Float(0.5));
        assert_eq!(plain("-.5"), Scalar::Float(-0.5));
        assert_eq!(plain("yes"), Scalar::Bool(true));
        assert_eq!(plain("Off"), Scalar::Bool(false));
        assert_eq!(plain("y"), Scalar::Bool(true));
        assert_eq!(plain("~"), Scalar::Null);
        assert_eq!(plain("2001-12-14"), Scalar::Str("2001-12-14".into()));
        assert_eq!(plain("0.1.2"), Scalar::Str("0.1.2".into()));
        assert_eq!(plain("18446744073709551615"), Scalar::Uint(u64::MAX));
        assert_eq!(plain("99999999999999999999"), Scalar::Float(1e20));
        assert_eq!(plain("-9223372036854775808"), Scalar::Int(i64::MIN));
        assert_eq!(plain("yES"), Scalar::Str("yES".into()));
    }

    #[test]
    fn floats_become_json_as_go_writes_them() {
        assert_eq!(to_json(Scalar::Float(8.0)).unwrap(), serde_json::json!(8));
        assert_eq!(to_json(Scalar::Float(0.5)).unwrap(), serde_json::json!(0.5));
        assert!(to_json(Scalar::Float(f64::INFINITY)).is_err());
        assert!(to_json(Scalar::Float(1e21)).unwrap().is_f64());
    }

    #[test]
    fn float_keys_are_formatted_like_go_formatfloat_g_32() {
        assert_eq!(go_format_float32_g(1.5), "1.5");
        assert_eq!(go_format_float32_g(1e7), "1e+07");
        assert_eq!(go_format_float32_g(8.0), "8");
        assert_eq!(go_format_float32_g(123456.0), "123456");
        assert_eq!(go_format_float32_g(1234567.0), "1.234567e+06");
        assert_eq!(go_format_float32_g(0.0001), "0.0001");
        assert_eq!(go_format_float32_g(0.00001), "1e-05");
        assert_eq!(go_format_float32_g(0.1), "0.1");
        assert_eq!(go_format_float32_g(-2.5), "-2.5");
    }
}

//! Deterministic output: a small JSON tree whose objects always print with sorted keys and whose
//! floats print at a fixed number of decimals, so equal results are equal bytes.

pub mod hdr;
pub mod summary;

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A JSON value with deterministic printing.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i128),
    /// A float printed with exactly `decimals` digits after the point; NaN and ±∞ print as null.
    Num {
        value: f64,
        decimals: u8,
    },
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    /// A float at fixed precision.
    pub fn num(value: f64, decimals: u8) -> Json {
        Json::Num { value, decimals }
    }
    /// A float at fixed precision, or null.
    pub fn opt_num(value: Option<f64>, decimals: u8) -> Json {
        value.map_or(Json::Null, |v| Json::num(v, decimals))
    }
    pub fn int(v: impl Into<i128>) -> Json {
        Json::Int(v.into())
    }
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }
    /// An object from (key, value) pairs; keys print sorted whatever the order given.
    pub fn obj<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Obj(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Looks up a key of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.get(key),
            _ => None,
        }
    }

    /// Sets a key of an object (nothing for other values).
    pub fn insert(&mut self, key: &str, value: Json) {
        if let Json::Obj(m) = self {
            m.insert(key.to_string(), value);
        }
    }

    /// Removes a key of an object (e.g. wall-clock fields before comparing two runs).
    pub fn remove(&mut self, key: &str) -> Option<Json> {
        match self {
            Json::Obj(m) => m.remove(key),
            _ => None,
        }
    }

    /// Compact, one line.
    pub fn to_compact(&self) -> String {
        let mut s = String::new();
        self.write(&mut s, None, 0);
        s
    }

    /// Indented by two spaces, ending without a newline.
    pub fn to_pretty(&self) -> String {
        let mut s = String::new();
        self.write(&mut s, Some(2), 0);
        s
    }

    fn write(&self, out: &mut String, indent: Option<usize>, depth: usize) {
        let newline = |out: &mut String, depth: usize| {
            if let Some(w) = indent {
                out.push('\n');
                out.extend(std::iter::repeat_n(' ', w * depth));
            }
        };
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => write!(out, "{i}").expect("writing to a String"),
            Json::Num { value, decimals } => {
                if value.is_finite() {
                    // -0.000 prints as 0.000: the same result must be the same bytes.
                    let text = format!("{:.*}", usize::from(*decimals), value);
                    if text.starts_with('-') && text[1..].chars().all(|c| c == '0' || c == '.') {
                        out.push_str(&text[1..]);
                    } else {
                        out.push_str(&text);
                    }
                } else {
                    out.push_str("null");
                }
            }
            Json::Str(s) => write_escaped(out, s),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, depth + 1);
                    item.write(out, indent, depth + 1);
                }
                if !items.is_empty() {
                    newline(out, depth);
                }
                out.push(']');
            }
            Json::Obj(map) => {
                out.push('{');
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, depth + 1);
                    write_escaped(out, k);
                    out.push(':');
                    if indent.is_some() {
                        out.push(' ');
                    }
                    v.write(out, indent, depth + 1);
                }
                if !map.is_empty() {
                    newline(out, depth);
                }
                out.push('}');
            }
        }
    }
}

fn write_escaped(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                write!(out, "\\u{:04x}", c as u32).expect("writing to a String")
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_sorted_keys_and_fixed_precision() {
        let j = Json::obj([
            ("zeta", Json::num(1.0 / 3.0, 4)),
            ("alpha", Json::int(7)),
            (
                "mid",
                Json::Arr(vec![Json::Null, Json::Bool(true), Json::str("a\"b\n")]),
            ),
            ("neg_zero", Json::num(-0.00001, 3)),
            ("nan", Json::num(f64::NAN, 3)),
        ]);
        assert_eq!(
            j.to_compact(),
            r#"{"alpha":7,"mid":[null,true,"a\"b\n"],"nan":null,"neg_zero":0.000,"zeta":0.3333}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&j.to_pretty()).unwrap();
        assert_eq!(parsed["alpha"], 7);
        assert_eq!(parsed["zeta"], 0.3333);
    }
}

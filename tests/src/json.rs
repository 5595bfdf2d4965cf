//! Just enough JSON for the event lines of `tests/roomkit/backend.py`
//! (objects, arrays, strings, numbers kept as text, booleans, null).

use std::collections::BTreeMap;

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`
    Null,
    /// `true`, `false`
    Bool(bool),
    /// A number, as written.
    Num(String),
    /// A string, unescaped.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object.
    Obj(BTreeMap<String, Json>),
}

impl Json {
    /// Parses one whole JSON text; `None` when it is not JSON.
    pub fn parse(text: &str) -> Option<Json> {
        let chars: Vec<char> = text.chars().collect();
        let mut pos = 0;
        let value = parse_value(&chars, &mut pos)?;
        skip_ws(&chars, &mut pos);
        (pos == chars.len()).then_some(value)
    }

    /// The value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(map) => map.get(key),
            _ => None,
        }
    }

    /// The value of `key` in an object, when it is a non-negative integer.
    pub fn u64(&self, key: &str) -> Option<u64> {
        match self.get(key) {
            Some(Json::Num(n)) => n.parse().ok(),
            _ => None,
        }
    }

    /// The string value of `key` in an object.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Json::Str(s)) => Some(s),
            _ => None,
        }
    }
}

fn skip_ws(c: &[char], pos: &mut usize) {
    while c.get(*pos).is_some_and(|ch| ch.is_whitespace()) {
        *pos += 1;
    }
}

fn parse_value(c: &[char], pos: &mut usize) -> Option<Json> {
    skip_ws(c, pos);
    let word = |pos: &mut usize, w: &str, v: Json| {
        let end = *pos + w.len();
        (c.get(*pos..end)?.iter().collect::<String>() == w).then(|| {
            *pos = end;
            v
        })
    };
    match *c.get(*pos)? {
        '"' => parse_string(c, pos).map(Json::Str),
        'n' => word(pos, "null", Json::Null),
        't' => word(pos, "true", Json::Bool(true)),
        'f' => word(pos, "false", Json::Bool(false)),
        '[' => {
            *pos += 1;
            let mut items = Vec::new();
            loop {
                skip_ws(c, pos);
                match c.get(*pos)? {
                    ']' => {
                        *pos += 1;
                        return Some(Json::Arr(items));
                    }
                    ',' => *pos += 1,
                    _ => items.push(parse_value(c, pos)?),
                }
            }
        }
        '{' => {
            *pos += 1;
            let mut map = BTreeMap::new();
            loop {
                skip_ws(c, pos);
                match c.get(*pos)? {
                    '}' => {
                        *pos += 1;
                        return Some(Json::Obj(map));
                    }
                    ',' => *pos += 1,
                    '"' => {
                        let key = parse_string(c, pos)?;
                        skip_ws(c, pos);
                        (*c.get(*pos)? == ':').then_some(())?;
                        *pos += 1;
                        map.insert(key, parse_value(c, pos)?);
                    }
                    _ => return None,
                }
            }
        }
        _ => {
            let start = *pos;
            while c
                .get(*pos)
                .is_some_and(|ch| ch.is_ascii_digit() || "+-.eE".contains(*ch))
            {
                *pos += 1;
            }
            (*pos > start).then(|| Json::Num(c[start..*pos].iter().collect()))
        }
    }
}

fn parse_string(c: &[char], pos: &mut usize) -> Option<String> {
    *pos += 1; // the opening quote
    let mut out = String::new();
    loop {
        let ch = *c.get(*pos)?;
        *pos += 1;
        match ch {
            '"' => return Some(out),
            '\\' => {
                let esc = *c.get(*pos)?;
                *pos += 1;
                match esc {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let hex: String = c.get(*pos..*pos + 4)?.iter().collect();
                        *pos += 4;
                        // Surrogate pairs come out as U+FFFD: never in our values.
                        let code = u32::from_str_radix(&hex, 16).ok()?;
                        out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    }
                    other => out.push(other),
                }
            }
            other => out.push(other),
        }
    }
}

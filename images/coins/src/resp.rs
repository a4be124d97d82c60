//! The redis protocol (RESP2), by hand: a command is an array of bulk strings, a reply one
//! of five types. Written here rather than taken from the `redis` crate: the app sends a
//! dozen plain commands, and the crate brings connection managers, a parser combinator
//! library and runtime glue that would double this binary's dependencies for it. This
//! file is the whole protocol, and its tests are data.

use std::fmt;

/// The longest bulk string accepted.
pub const MAX_BULK: usize = 16 << 20;
/// The most elements an array may announce.
pub const MAX_ARRAY: usize = 1 << 20;
/// How deep arrays may nest.
pub const MAX_DEPTH: usize = 16;
/// The longest line (a simple string, an error, a length) accepted.
pub const MAX_LINE: usize = 64 << 10;

/// One reply (or, for a server, one request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR unknown command`
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// The null bulk string or array (`$-1`, `*-1`): GET of a missing key.
    Nil,
    Array(Vec<Value>),
}

impl Value {
    /// An integer reply, or a bulk string that holds one (GET of a counter); a missing key
    /// (`Nil`) is 0.
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Bulk(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            Value::Nil => Some(0),
            _ => None,
        }
    }

    /// The elements of an array reply (nil: none).
    pub fn items(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            Value::Nil => Some(&[]),
            _ => None,
        }
    }

    /// A bulk or simple string as text.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::Simple(s) => Some(s.clone()),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    #[error("unknown reply type {0:?}")]
    BadType(char),
    #[error("bad length or integer {0:?}")]
    BadNumber(String),
    #[error("a bulk string of {0} bytes, more than {MAX_BULK}")]
    BulkTooLarge(i64),
    #[error("an array of {0} elements, more than {MAX_ARRAY}")]
    ArrayTooLarge(i64),
    #[error("arrays nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("a line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("a bulk string not followed by CRLF")]
    MissingCrlf,
}

/// A command as redis reads it: an array of bulk strings.
pub fn command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.as_ref().len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        bulk(arg.as_ref(), &mut out);
    }
    out
}

fn bulk(data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("${}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends `value` as redis writes it (for a server, such as the tests' fake redis).
/// Newlines in simple strings and errors become spaces: they cannot hold one.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    let line = |prefix: u8, s: &str, out: &mut Vec<u8>| {
        out.push(prefix);
        out.extend(s.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
        out.extend_from_slice(b"\r\n");
    };
    match value {
        Value::Simple(s) => line(b'+', s, out),
        Value::Error(s) => line(b'-', s, out),
        Value::Int(n) => line(b':', &n.to_string(), out),
        Value::Bulk(b) => bulk(b, out),
        Value::Nil => out.extend_from_slice(b"$-1\r\n"),
        Value::Array(items) => {
            line(b'*', &items.len().to_string(), out);
            for item in items {
                encode(item, out);
            }
        }
    }
}

/// The first value in `buf` and how many bytes it took, or `None` when `buf` holds only
/// part of one (read more and ask again).
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, RespError> {
    value(buf, 0, 0)
}

fn value(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Value, usize)>, RespError> {
    let Some(&kind) = buf.get(pos) else { return Ok(None) };
    let Some((line, mut next)) = line(buf, pos + 1)? else { return Ok(None) };
    let text = || String::from_utf8_lossy(line).into_owned();
    let value = match kind {
        b'+' => Value::Simple(text()),
        b'-' => Value::Error(text()),
        b':' => Value::Int(number(line)?),
        b'$' => match number(line)? {
            -1 => Value::Nil,
            n if n < 0 => return Err(RespError::BadNumber(text())),
            n if n as u64 > MAX_BULK as u64 => return Err(RespError::BulkTooLarge(n)),
            n => {
                let end = next + n as usize;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(RespError::MissingCrlf);
                }
                let data = buf[next..end].to_vec();
                next = end + 2;
                Value::Bulk(data)
            }
        },
        b'*' => match number(line)? {
            -1 => Value::Nil,
            n if n < 0 => return Err(RespError::BadNumber(text())),
            n if n as u64 > MAX_ARRAY as u64 => return Err(RespError::ArrayTooLarge(n)),
            _ if depth >= MAX_DEPTH => return Err(RespError::TooDeep),
            n => {
                let mut items = Vec::with_capacity((n as usize).min(1024));
                for _ in 0..n {
                    let Some((item, after)) = value(buf, next, depth + 1)? else { return Ok(None) };
                    items.push(item);
                    next = after;
                }
                Value::Array(items)
            }
        },
        other => return Err(RespError::BadType(other as char)),
    };
    Ok(Some((value, next)))
}

/// The line starting at `pos` (without its CRLF) and where the next one starts.
fn line(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, RespError> {
    let rest = buf.get(pos..).unwrap_or_default();
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i > MAX_LINE => Err(RespError::LineTooLong),
        Some(i) => Ok(Some((&rest[..i], pos + i + 2))),
        None if rest.len() > MAX_LINE => Err(RespError::LineTooLong),
        None => Ok(None),
    }
}

fn number(line: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| RespError::BadNumber(String::from_utf8_lossy(line).into_owned()))
}

impl fmt::Display for Value {
    /// As redis-cli shows a reply, on one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Simple(s) => write!(f, "{s}"),
            Value::Error(s) => write!(f, "(error) {s}"),
            Value::Int(n) => write!(f, "(integer) {n}"),
            Value::Bulk(b) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Value::Nil => write!(f, "(nil)"),
            Value::Array(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    write!(f, "{}{item}", if i == 0 { "" } else { ", " })?;
                }
                write!(f, "]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(command(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(command(&["SET", "k", ""]), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        assert_eq!(
            command::<&[u8]>(&[b"LPUSH", b"l", b"a\r\nb"]),
            b"*3\r\n$5\r\nLPUSH\r\n$1\r\nl\r\n$4\r\na\r\nb\r\n"
        );
    }

    /// (wire, value) pairs that parse into each other both ways.
    fn pairs() -> Vec<(&'static [u8], Value)> {
        vec![
            (b"+OK\r\n", Value::Simple("OK".into())),
            (b"-ERR unknown command 'X'\r\n", Value::Error("ERR unknown command 'X'".into())),
            (b":0\r\n", Value::Int(0)),
            (b":-42\r\n", Value::Int(-42)),
            (b"$5\r\nhello\r\n", bulk("hello")),
            (b"$0\r\n\r\n", bulk("")),
            (b"$4\r\na\r\nb\r\n", bulk("a\r\nb")),
            (b"$-1\r\n", Value::Nil),
            (b"*0\r\n", Value::Array(vec![])),
            (
                b"*3\r\n:1\r\n$1\r\nx\r\n*2\r\n+a\r\n$-1\r\n",
                Value::Array(vec![
                    Value::Int(1),
                    bulk("x"),
                    Value::Array(vec![Value::Simple("a".into()), Value::Nil]),
                ]),
            ),
        ]
    }

    #[test]
    fn replies_parse_and_encode() {
        for (wire, want) in pairs() {
            assert_eq!(
                parse(wire),
                Ok(Some((want.clone(), wire.len()))),
                "{}",
                String::from_utf8_lossy(wire)
            );
            let mut out = Vec::new();
            encode(&want, &mut out);
            assert_eq!(out, wire, "{want}");
        }
        // a null array reads as nil too
        assert_eq!(parse(b"*-1\r\n"), Ok(Some((Value::Nil, 5))));
    }

    #[test]
    fn a_part_of_a_reply_asks_for_more() {
        for (wire, _) in pairs() {
            for cut in 0..wire.len() {
                assert_eq!(parse(&wire[..cut]), Ok(None), "{:?}", String::from_utf8_lossy(&wire[..cut]));
            }
        }
    }

    #[test]
    fn replies_in_a_row_parse_one_at_a_time() {
        let wire = b":1\r\n$2\r\nab\r\n+OK\r\n";
        let (first, used) = parse(wire).unwrap().unwrap();
        assert_eq!((first, used), (Value::Int(1), 4));
        let (second, used2) = parse(&wire[used..]).unwrap().unwrap();
        assert_eq!((second, used2), (bulk("ab"), 8));
        assert_eq!(parse(&wire[used + used2..]), Ok(Some((Value::Simple("OK".into()), 5))));
    }

    #[test]
    fn broken_replies_are_errors() {
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        let cases: Vec<(Vec<u8>, RespError)> = vec![
            (b"?x\r\n".to_vec(), RespError::BadType('?')),
            (b":12a\r\n".to_vec(), RespError::BadNumber("12a".into())),
            (b"$-2\r\n".to_vec(), RespError::BadNumber("-2".into())),
            (b"$3\r\nabcd\r\n".to_vec(), RespError::MissingCrlf),
            (format!("${}\r\n", MAX_BULK + 1).into_bytes(), RespError::BulkTooLarge(MAX_BULK as i64 + 1)),
            (format!("*{}\r\n", MAX_ARRAY + 1).into_bytes(), RespError::ArrayTooLarge(MAX_ARRAY as i64 + 1)),
            (deep.into_bytes(), RespError::TooDeep),
            (vec![b'+'; MAX_LINE + 2], RespError::LineTooLong),
        ];
        for (wire, want) in cases {
            assert_eq!(parse(&wire), Err(want), "{:?}", String::from_utf8_lossy(&wire[..wire.len().min(40)]));
        }
    }

    #[test]
    fn values_read_as_numbers_lists_and_text() {
        assert_eq!(Value::Int(3).int(), Some(3));
        assert_eq!(bulk("17").int(), Some(17));
        assert_eq!(Value::Nil.int(), Some(0));
        assert_eq!(bulk("x").int(), None);
        assert_eq!(Value::Nil.items(), Some(&[][..]));
        assert_eq!(bulk("a").text().as_deref(), Some("a"));
        assert_eq!(Value::Int(1).text(), None);
    }

    #[test]
    fn newlines_cannot_break_a_simple_string() {
        let mut out = Vec::new();
        encode(&Value::Error("ERR a\r\nb".into()), &mut out);
        assert_eq!(out, b"-ERR a  b\r\n");
    }
}

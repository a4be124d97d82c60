//! Output formats: how returns, keys and jobs print.
//!
//! `json` and `yaml` print structures (for returns: minion id → its `ret`, Salt's `--static`
//! shape); `text` prints for people, Salt-like; `highstate` prints state results the way
//! Salt's highstate outputter does ([`highstate`]), and anything else as text.

pub mod highstate;
pub mod progress;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context as _;
use api::MinionReturn;
use clap::ValueEnum;
use serde::Serialize;
use serde_json::Value;

pub use self::highstate::StateOutput;

/// `--out`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Out {
    /// Salt-like text for people (Salt's names for it, `nested` and `txt`, also work)
    #[default]
    #[value(alias = "nested", alias = "txt")]
    Text,
    /// One pretty-printed JSON document (events: one JSON object per line; `raw` also works)
    #[value(alias = "raw")]
    Json,
    /// One YAML document
    Yaml,
    /// State results per minion, then a summary (other returns: as text)
    Highstate,
}

/// One pretty-printed JSON document, ending with a newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    let mut s = serde_json::to_string_pretty(value).context("cannot print as json")?;
    s.push('\n');
    Ok(s)
}

/// One YAML document, ending with a newline.
pub fn yaml<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    serde_yaml::to_string(value).context("cannot print as yaml")
}

/// Minion id → its return value: what `--out json|yaml` prints for returns.
pub fn static_returns(returns: &BTreeMap<String, MinionReturn>) -> BTreeMap<&str, &Value> {
    returns.iter().map(|(id, r)| (id.as_str(), &r.ret)).collect()
}

/// Returns in `out`'s format (`state_output` for highstate).
pub fn returns(
    out: Out,
    returns: &BTreeMap<String, MinionReturn>,
    color: bool,
    state_output: StateOutput,
) -> anyhow::Result<String> {
    match out {
        Out::Text => Ok(returns_text(returns, color)),
        Out::Highstate => Ok(highstate::returns(returns, color, state_output)),
        Out::Json => json(&static_returns(returns)),
        Out::Yaml => yaml(&static_returns(returns)),
    }
}

/// Each minion's `id:` (green, or red if it failed) and its return indented below.
pub fn returns_text(returns: &BTreeMap<String, MinionReturn>, color: bool) -> String {
    let mut out = String::new();
    for (id, ret) in returns {
        let paint = if ret.success { Paint::Green } else { Paint::Red };
        out.push_str(&paint.apply(&format!("{id}:"), color));
        out.push('\n');
        block(&ret.ret, 4, &mut out);
    }
    out
}

/// A value as an indented YAML-ish block: scalars on one line, maps as `key: value`
/// lines, lists as `- item` lines, multi-line strings one line per line.
pub fn value_text(value: &Value, indent: usize) -> String {
    let mut out = String::new();
    block(value, indent, &mut out);
    out
}

fn block(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                match inline(v) {
                    Some(s) => {
                        let _ = writeln!(out, "{pad}{key}: {s}");
                    }
                    None => {
                        let _ = writeln!(out, "{pad}{key}:");
                        block(v, indent + 4, out);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                match inline(item) {
                    Some(s) => {
                        let _ = writeln!(out, "{pad}- {s}");
                    }
                    None => {
                        // The item's block, two columns in, its first line marked `- `.
                        let sub = value_text(item, indent + 2);
                        out.push_str(&pad);
                        match sub.strip_prefix(&format!("{pad}  ")) {
                            Some(rest) => {
                                out.push_str("- ");
                                out.push_str(rest);
                            }
                            None => {
                                out.push('-');
                                out.push_str(&sub);
                            }
                        }
                    }
                }
            }
        }
        Value::String(s) if inline(value).is_none() => {
            for line in s.trim_end_matches('\n').lines() {
                if line.is_empty() {
                    out.push('\n');
                } else {
                    let _ = writeln!(out, "{pad}{line}");
                }
            }
        }
        _ => {
            let _ = writeln!(out, "{pad}{}", inline(value).unwrap_or_default());
        }
    }
}

/// A value that prints on one line, or `None` for a block.
fn inline(value: &Value) -> Option<String> {
    match value {
        Value::Null => Some("null".to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => {
            let s = s.trim_end_matches('\n');
            if s.is_empty() {
                Some("\"\"".to_string())
            } else if s.contains('\n') {
                None
            } else {
                Some(s.to_string())
            }
        }
        Value::Array(items) if items.is_empty() => Some("[]".to_string()),
        Value::Object(map) if map.is_empty() => Some("{}".to_string()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Terminal colors, used only when stdout is a terminal and `NO_COLOR` is unset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paint {
    Green,
    Red,
    Yellow,
    Blue,
}

impl Paint {
    pub fn apply(self, s: &str, color: bool) -> String {
        if !color {
            return s.to_string();
        }
        let code = match self {
            Paint::Green => 32,
            Paint::Red => 31,
            Paint::Yellow => 33,
            Paint::Blue => 34,
        };
        format!("\x1b[{code}m{s}\x1b[0m")
    }
}

/// Left-aligned columns two spaces apart, a header row first.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ret(success: bool, ret: Value) -> MinionReturn {
        MinionReturn { success, retcode: if success { 0 } else { 1 }, ret, started_ms: 1, finished_ms: 2 }
    }

    fn sample() -> BTreeMap<String, MinionReturn> {
        BTreeMap::from([
            ("web-1".to_string(), ret(true, json!(true))),
            ("web-2".to_string(), ret(false, json!("command not found: upt"))),
            ("db-1".to_string(), ret(true, json!({"os": "debian", "num_cpus": 4}))),
        ])
    }

    #[test]
    fn values_render_as_text() {
        let table: &[(Value, &str)] = &[
            (json!(true), "    true\n"),
            (json!(null), "    null\n"),
            (json!(4.5), "    4.5\n"),
            (json!("hi"), "    hi\n"),
            (json!(""), "    \"\"\n"),
            (json!("one line\n"), "    one line\n"),
            (json!("a\n\nb\n"), "    a\n\n    b\n"),
            (json!({}), "    {}\n"),
            (json!([]), "    []\n"),
            (json!([1, "x"]), "    - 1\n    - x\n"),
            (json!({"b": 1, "a": "x"}), "    a: x\n    b: 1\n"),
            (
                json!({"ipv4": ["10.0.0.1", "127.0.0.1"], "empty": {}}),
                "    empty: {}\n    ipv4:\n        - 10.0.0.1\n        - 127.0.0.1\n",
            ),
            (json!({"out": "l1\nl2"}), "    out:\n        l1\n        l2\n"),
            (json!([{"id": "a", "ok": true}, {"id": "b"}]), "    - id: a\n      ok: true\n    - id: b\n"),
            (json!([[1, 2], 3]), "    - - 1\n      - 2\n    - 3\n"),
            (json!(["l1\nl2", "x"]), "    - l1\n      l2\n    - x\n"),
            (json!(["\nl2"]), "    -\n      l2\n"),
            (json!({"a": {"b": {"c": [1]}}}), "    a:\n        b:\n            c:\n                - 1\n"),
        ];
        for (value, want) in table {
            assert_eq!(value_text(value, 4), *want, "{value}");
        }
    }

    #[test]
    fn returns_render_in_every_format() {
        let table: &[(Out, &str)] = &[
            (
                Out::Text,
                "db-1:\n    num_cpus: 4\n    os: debian\nweb-1:\n    true\nweb-2:\n    command not found: upt\n",
            ),
            (
                Out::Highstate,
                "db-1:\n    num_cpus: 4\n    os: debian\nweb-1:\n    true\nweb-2:\n    command not found: upt\n",
            ),
            (
                Out::Json,
                r#"{
  "db-1": {
    "num_cpus": 4,
    "os": "debian"
  },
  "web-1": true,
  "web-2": "command not found: upt"
}
"#,
            ),
            (Out::Yaml, "db-1:\n  num_cpus: 4\n  os: debian\nweb-1: true\nweb-2: 'command not found: upt'\n"),
        ];
        for (out, want) in table {
            assert_eq!(returns(*out, &sample(), false, StateOutput::Full).unwrap(), *want, "{out:?}");
        }
        assert_eq!(returns(Out::Json, &BTreeMap::new(), false, StateOutput::Full).unwrap(), "{}\n");
    }

    #[test]
    fn text_colors_ids_by_success() {
        let text = returns_text(&sample(), true);
        assert!(text.contains("\x1b[32mweb-1:\x1b[0m\n"), "{text}");
        assert!(text.contains("\x1b[31mweb-2:\x1b[0m\n"), "{text}");
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["1".to_string(), "test.ping".to_string(), "*".to_string()],
            vec!["22".to_string(), "x".to_string(), "web-*".to_string()],
        ];
        assert_eq!(
            table(&["JID", "FUNCTION", "TARGET"], &rows),
            "JID  FUNCTION   TARGET\n1    test.ping  *\n22   x          web-*\n"
        );
        assert_eq!(table(&["A", "B"], &[]), "A  B\n");
    }
}

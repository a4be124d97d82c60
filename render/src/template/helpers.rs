//! What templates get besides Tera's built-ins, for state files ported from Salt: the `json`
//! and `yaml` filters and the `pillar_get` and `grains_get` functions.
//!
//! Tera's functions take named arguments only, so Salt's `salt['pillar.get']('db:host',
//! 'localhost')` is `pillar_get(key="db:host", default="localhost")`. Unlike Salt, a key that
//! is not there without a `default` is an error naming the keys that are, as Tera does for a
//! missing field: a typo in a key should not quietly render an empty string.

use serde_json::{Map, Value};
use tera::{Error, Kwargs, State, Tera};

/// The most keys an error lists when a key is not found.
const LISTED: usize = 20;

/// Registers the filters and functions on `tera`; the functions read `pillar` and `grains`.
pub(super) fn register(tera: &mut Tera, pillar: &Map<String, Value>, grains: &Map<String, Value>) {
    tera.register_filter("json", |value: &tera::Value, kwargs: Kwargs, _: &State| {
        no_other_arguments("json", &kwargs, &[])?;
        serde_json::to_string(value).map_err(|e| Error::message(format!("cannot write as JSON: {e}")))
    });
    tera.register_filter("yaml", |value: &tera::Value, kwargs: Kwargs, _: &State| {
        no_other_arguments("yaml", &kwargs, &["flow_style"])?;
        let flow_style = kwargs.get::<bool>("flow_style")?.unwrap_or(true);
        let value =
            serde_json::to_value(value).map_err(|e| Error::message(format!("cannot write as YAML: {e}")))?;
        yaml(&value, flow_style)
    });
    for (name, what, data) in [("pillar_get", "the pillar", pillar), ("grains_get", "the grains", grains)] {
        let data = Value::Object(data.clone());
        tera.register_function(name, move |kwargs: Kwargs, _: &State| {
            no_other_arguments(name, &kwargs, &["key", "default"])?;
            let Some(key) = kwargs.get::<&str>("key")? else {
                return Err(Error::message(format!("{name} needs a key: {name}(key=\"a:b\", default=…)")));
            };
            match (lookup(&data, key), kwargs.get::<tera::Value>("default")?) {
                (Ok(found), _) => Ok(tera::Value::from_serializable(found)),
                (Err(_), Some(default)) => Ok(default),
                (Err(missing), None) => Err(Error::message(format!(
                    "{name}: {}; give default=… for a key that may be missing",
                    missing.message(what, key)
                ))),
            }
        });
    }
}

/// Refuses arguments other than `allowed`: a misspelled `defualt=` would otherwise be ignored.
fn no_other_arguments(name: &str, kwargs: &Kwargs, allowed: &[&str]) -> Result<(), Error> {
    for (key, _) in kwargs.iter() {
        let key = key.to_string();
        if !allowed.contains(&key.as_str()) {
            let expected = match allowed {
                [] => "no arguments".to_string(),
                _ => allowed.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(" or "),
            };
            return Err(Error::message(format!("{name}: unknown argument `{key}`; expected {expected}")));
        }
    }
    Ok(())
}

/// Why a key was not found.
#[derive(Debug, PartialEq)]
enum Missing {
    /// `at` (the path up to it, empty at the top) has no `part`; these are its keys.
    NoKey {
        at: String,
        part: String,
        keys: Vec<String>,
    },
    /// `at` is a list of `len` items, and `part` is no index of it.
    NoIndex {
        at: String,
        part: String,
        len: usize,
    },
    /// `at` is a scalar: nothing is under it.
    Scalar {
        at: String,
        kind: &'static str,
    },
    Empty,
}

impl Missing {
    fn message(&self, what: &str, key: &str) -> String {
        let place = |at: &str| if at.is_empty() { what.to_string() } else { format!("`{at}`") };
        match self {
            Missing::NoKey { at, part, keys } => {
                let mut listed: Vec<String> = keys.iter().take(LISTED).cloned().collect();
                if keys.len() > LISTED {
                    listed.push(format!("and {} more", keys.len() - LISTED));
                }
                let has = if keys.is_empty() { "no keys".to_string() } else { listed.join(", ") };
                format!("`{key}` is not found: {} has no key `{part}` (it has: {has})", place(at))
            }
            Missing::NoIndex { at, part, len } => {
                format!(
                    "`{key}` is not found: {} is a list of {len} items, `{part}` is no index of it",
                    place(at)
                )
            }
            Missing::Scalar { at, kind } => format!("`{key}` is not found: `{at}` is {kind}, not a map"),
            Missing::Empty => "expected a key such as `db:host`, got an empty key".to_string(),
        }
    }
}

/// The value at `key` under `root`: parts separated by `:` as in Salt (`db:host`), or by `.`
/// when the key has no `:` (`db.host`), so a key holding a dot is reached with colons
/// (`sites:example.com`). A part that is a number indexes a list.
fn lookup<'a>(root: &'a Value, key: &str) -> Result<&'a Value, Missing> {
    if key.is_empty() {
        return Err(Missing::Empty);
    }
    let sep = if key.contains(':') { ':' } else { '.' };
    let mut here = root;
    let mut at = String::new();
    for part in key.split(sep) {
        here = match here {
            Value::Object(map) => map.get(part).ok_or_else(|| Missing::NoKey {
                at: at.clone(),
                part: part.to_string(),
                keys: map.keys().cloned().collect(),
            })?,
            Value::Array(items) => {
                part.parse::<usize>().ok().and_then(|i| items.get(i)).ok_or_else(|| Missing::NoIndex {
                    at: at.clone(),
                    part: part.to_string(),
                    len: items.len(),
                })?
            }
            other => return Err(Missing::Scalar { at, kind: kind(other) }),
        };
        if !at.is_empty() {
            at.push(sep);
        }
        at.push_str(part);
    }
    Ok(here)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// `value` as YAML: in flow style on one line (`{a: 1, b: [x, y]}`, Salt's default, fit for
/// a value inside a state file), or in block style (what `serde_yaml` writes), without the
/// final newline either way. Keys come sorted, as Salt writes them.
fn yaml(value: &Value, flow_style: bool) -> Result<String, Error> {
    if flow_style {
        let mut out = String::new();
        flow(value, &mut out);
        return Ok(out);
    }
    let text =
        serde_yaml::to_string(value).map_err(|e| Error::message(format!("cannot write as YAML: {e}")))?;
    Ok(text.trim_end_matches('\n').to_string())
}

fn flow(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&scalar(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&scalar(key));
                out.push_str(": ");
                flow(item, out);
            }
            out.push('}');
        }
    }
}

/// A string as a YAML scalar: plain when it is unmistakably a string to any YAML reader
/// (letters first, then letters, digits and `_-./@`, and no word YAML 1.1 reads as a boolean
/// or null), else double-quoted (a JSON string is a valid YAML double-quoted scalar).
fn scalar(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./@".contains(c))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain { s.to_string() } else { serde_json::to_string(s).expect("a string serializes") }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lookup_follows_colon_and_dot_paths_into_maps_and_lists() {
        let root = json!({"db": {"host": "h", "ports": [5432, 5433]}, "example.com": {"root": "/srv"}});
        assert_eq!(lookup(&root, "db:host"), Ok(&json!("h")));
        assert_eq!(lookup(&root, "db.host"), Ok(&json!("h")));
        assert_eq!(lookup(&root, "db:ports:1"), Ok(&json!(5433)));
        assert_eq!(lookup(&root, "db.ports.0"), Ok(&json!(5432)));
        assert_eq!(lookup(&root, "example.com:root"), Ok(&json!("/srv")));
        assert_eq!(lookup(&root, "db"), Ok(&root["db"]));
        let cases = [
            ("db:hots", "`db:hots` is not found: `db` has no key `hots` (it has: host, ports)"),
            ("nope", "`nope` is not found: the pillar has no key `nope` (it has: db, example.com)"),
            (
                "db:ports:2",
                "`db:ports:2` is not found: `db:ports` is a list of 2 items, `2` is no index of it",
            ),
            ("db.host.x", "`db.host.x` is not found: `db.host` is a string, not a map"),
            ("", "expected a key such as `db:host`, got an empty key"),
        ];
        for (key, want) in cases {
            assert_eq!(lookup(&root, key).unwrap_err().message("the pillar", key), want, "{key}");
        }
    }

    #[test]
    fn yaml_writes_flow_style_or_block_style() {
        let value = json!({"name": "web", "ports": [80, 443], "on": true, "note": "a: b, c", "none": null,
                           "ver": "1.10", "word": "yes", "path": "/etc/x.conf", "empty": ""});
        assert_eq!(
            yaml(&value, true).unwrap(),
            r#"{empty: "", name: web, none: null, note: "a: b, c", "on": true, path: /etc/x.conf, ports: [80, 443], ver: "1.10", word: "yes"}"#
        );
        assert_eq!(yaml(&json!({"a": [1, 2], "b": "x"}), false).unwrap(), "a:\n- 1\n- 2\nb: x");
        assert_eq!(yaml(&json!("plain"), true).unwrap(), "plain");
        // what it writes reads back as the same value
        let back: Value = serde_yaml::from_str(&yaml(&value, true).unwrap()).unwrap();
        assert_eq!(back, value);
    }
}

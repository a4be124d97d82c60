//! Reading the compose file's YAML with positions: each key and item at its line and column
//! (found in the text with `render::locate`, as fleet.yaml's problems are), its values
//! interpolated as they are read, and what is found along the way: errors (Compose would
//! refuse the file: nothing is written) and findings (left out, or worth a note).

use std::collections::BTreeSet;
use std::fmt;

use render::Diagnostic;
use render::locate::{At, Text};
use serde_yaml::Value;

use crate::interpolate::interpolate;
use crate::report::{Finding, Level};

/// A key as read: its name, its path for messages (`services.web.ports`), its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) at: At,
}

pub(crate) struct Reader<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: Text<'a>,
    pub(crate) errors: Vec<Diagnostic>,
    pub(crate) findings: Vec<Finding>,
    vars: &'a dyn Fn(&str) -> Option<String>,
    unset: BTreeSet<String>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(file: &'a str, text: &'a str, vars: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Reader {
            file,
            text: Text::plain(file, text),
            errors: Vec::new(),
            findings: Vec::new(),
            vars,
            unset: BTreeSet::new(),
        }
    }

    fn message(path: &str, message: impl fmt::Display) -> String {
        if path.is_empty() { message.to_string() } else { format!("{path}: {message}") }
    }

    /// Compose would refuse this: the import stops and writes nothing.
    pub(crate) fn error(&mut self, at: At, path: &str, message: impl fmt::Display) {
        self.errors.push(self.text.at(at.0, at.1).diag(Self::message(path, message)));
    }

    pub(crate) fn finding(&mut self, level: Level, at: At, key: &str, message: impl fmt::Display) {
        let d = self.text.at(at.0, at.1).diag("");
        self.findings.push(Finding {
            file: self.file.to_string(),
            line: d.line,
            col: d.col,
            key: key.to_string(),
            level,
            message: message.to_string(),
        });
    }

    /// A finding in another file (a Dockerfile), at its 1-based `line`.
    pub(crate) fn finding_in(
        &mut self,
        file: &str,
        line: usize,
        level: Level,
        key: &str,
        message: impl fmt::Display,
    ) {
        self.findings.push(Finding {
            file: file.to_string(),
            line,
            col: 0,
            key: key.to_string(),
            level,
            message: message.to_string(),
        });
    }

    pub(crate) fn left_out(&mut self, at: At, key: &str, message: impl fmt::Display) {
        self.finding(Level::LeftOut, at, key, message);
    }

    pub(crate) fn note(&mut self, at: At, key: &str, message: impl fmt::Display) {
        self.finding(Level::Note, at, key, message);
    }

    /// Where the value of `key` starts.
    pub(crate) fn value_at(&self, key: &Key) -> At {
        self.text.value_at(key.at)
    }

    /// The entries of the map `value` (the value of `parent`; `None`: the file), each with
    /// its key. A value that is not a map is an error; nothing (`key:` alone) is empty.
    pub(crate) fn map<'v>(&mut self, value: &'v Value, parent: Option<&Key>) -> Vec<(Key, &'v Value)> {
        let (path, parent_at) = parent.map_or(("", None), |k| (k.path.as_str(), Some(k.at)));
        let here = parent_at.map_or((0, 0), |at| self.text.value_at(at));
        let map = match value {
            Value::Null => return Vec::new(),
            Value::Mapping(map) => map,
            other => {
                self.error(here, path, format!("expected a map, got {}", describe(other)));
                return Vec::new();
            }
        };
        let mut entries = Vec::new();
        for (key, value) in map {
            let name = match key {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    self.error(here, path, format!("expected names as keys, got {}", describe(other)));
                    continue;
                }
            };
            let at = self.text.child_key(parent_at, &name).unwrap_or(here);
            let path = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
            entries.push((Key { name, path, at }, value));
        }
        entries
    }

    /// The entries of a map that is an item of a list (`- {target: 80}` or a block of keys
    /// after `- `), at `item`.
    pub(crate) fn item_map<'v>(&mut self, item: At, path: &str, value: &'v Value) -> Vec<(Key, &'v Value)> {
        let Value::Mapping(map) = value else {
            self.error(item, path, format!("expected a map, got {}", describe(value)));
            return Vec::new();
        };
        let end = self.text.extent(item);
        map.iter()
            .filter_map(|(k, v)| {
                let name = k.as_str()?.to_string();
                let at = self.text.find_key(item.0, end.max(item.0 + 1), &name).unwrap_or(item);
                Some((Key { path: format!("{path}.{name}"), name, at }, v))
            })
            .collect()
    }

    /// The items of the list `value` (the value of `key`), each at its position (the
    /// value's when the items cannot be told apart in the text).
    pub(crate) fn list<'v>(&mut self, key: &Key, value: &'v Value) -> Option<Vec<(At, &'v Value)>> {
        let items = match value {
            Value::Null => return Some(Vec::new()),
            Value::Sequence(items) => items,
            other => {
                let at = self.value_at(key);
                self.error(at, &key.path, format!("expected a list, got {}", describe(other)));
                return None;
            }
        };
        let found = self.text.items(key.at);
        let here = self.value_at(key);
        Some(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| (if found.len() == items.len() { found[i] } else { here }, item))
                .collect(),
        )
    }

    /// Interpolates `text`, written at `at`: an error stops the import; a variable that is
    /// not set reads as empty, with a note the first time.
    pub(crate) fn interpolate(&mut self, at: At, path: &str, text: &str) -> Option<String> {
        match interpolate(text, self.vars) {
            Ok(done) => {
                for name in done.unset {
                    if self.unset.insert(name.clone()) {
                        self.note(
                            at,
                            path,
                            format!(
                                "the variable {name} is not set (in the environment or .env): it reads as an \
                                 empty string, as Compose reads it"
                            ),
                        );
                    }
                }
                Some(done.text)
            }
            Err(e) => {
                self.error(at, path, e);
                None
            }
        }
    }

    /// A string value, interpolated; a number or a boolean as written. Anything else is an
    /// error.
    pub(crate) fn string(&mut self, at: At, path: &str, value: &Value) -> Option<String> {
        match value {
            Value::String(s) => self.interpolate(at, path, s),
            Value::Number(n) => Some(self.written_number(at, n)),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.error(at, path, format!("expected a string, got {}", describe(other)));
                None
            }
        }
    }

    /// The string value of `key`.
    pub(crate) fn key_string(&mut self, key: &Key, value: &Value) -> Option<String> {
        let at = self.value_at(key);
        self.string(at, &key.path, value)
    }

    /// A number as the text has it (`1.10` stays `1.10`).
    fn written_number(&self, at: At, n: &serde_yaml::Number) -> String {
        let raw = self.text.scalar_at(at);
        if serde_yaml::from_str::<Value>(raw).ok().is_some_and(|v| v == Value::Number(n.clone())) {
            raw.to_string()
        } else {
            n.to_string()
        }
    }

    /// A list of strings, or one string (`"a"` is `["a"]`).
    pub(crate) fn strings(&mut self, key: &Key, value: &Value) -> Vec<(At, String)> {
        if let Value::String(_) | Value::Number(_) = value {
            let at = self.value_at(key);
            return self.string(at, &key.path, value).map(|s| vec![(at, s)]).unwrap_or_default();
        }
        let items = self.list(key, value).unwrap_or_default();
        items.into_iter().filter_map(|(at, item)| self.string(at, &key.path, item).map(|s| (at, s))).collect()
    }

    /// A command: a list of words, or a string split into words as Compose splits it (no
    /// shell runs it).
    pub(crate) fn command(&mut self, key: &Key, value: &Value) -> Option<Vec<String>> {
        match value {
            Value::Null => None,
            Value::String(s) => {
                let at = self.value_at(key);
                let line = self.interpolate(at, &key.path, s)?;
                match shlex::split(&line) {
                    Some(words) => Some(words),
                    None => {
                        self.error(
                            at,
                            &key.path,
                            format!("cannot split `{line}` into words: unbalanced quotes"),
                        );
                        None
                    }
                }
            }
            _ => Some(self.strings(key, value).into_iter().map(|(_, s)| s).collect()),
        }
    }

    /// A whole number (also written as a string, as interpolation leaves it).
    pub(crate) fn whole(&mut self, key: &Key, value: &Value) -> Option<u64> {
        let text = self.key_string(key, value)?;
        match text.trim().parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                let at = self.value_at(key);
                self.error(at, &key.path, format!("expected a whole number, got `{text}`"));
                None
            }
        }
    }

    /// `true` or `false` (also as strings).
    pub(crate) fn boolean(&mut self, key: &Key, value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            _ => {
                let text = self.key_string(key, value)?;
                match text.as_str() {
                    "true" | "True" | "TRUE" | "yes" => Some(true),
                    "false" | "False" | "FALSE" | "no" => Some(false),
                    _ => {
                        let at = self.value_at(key);
                        self.error(at, &key.path, format!("expected true or false, got `{text}`"));
                        None
                    }
                }
            }
        }
    }

    /// A Go duration (`1m30s`), in milliseconds.
    pub(crate) fn duration(&mut self, key: &Key, value: &Value) -> Option<u64> {
        let text = self.key_string(key, value)?;
        match crate::units::duration_ms(&text) {
            Some(ms) => Some(ms),
            None => {
                let at = self.value_at(key);
                self.error(at, &key.path, format!("expected a duration such as 30s or 1m30s, got `{text}`"));
                None
            }
        }
    }
}

/// What a YAML value is, for "got …".
pub(crate) fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

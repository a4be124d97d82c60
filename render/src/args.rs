//! Reading the arguments of one state function (`- name: /etc/x`), each with its position,
//! into typed values. A wrong type is a diagnostic at the argument's line.

use std::collections::BTreeMap;

use serde_yaml::Value;

use crate::diag::Diagnostic;
use crate::locate::Loc;
use crate::state::describe;

pub(crate) struct Arg {
    pub(crate) key: String,
    pub(crate) value: Value,
    pub(crate) loc: Loc,
}

impl Arg {
    pub(crate) fn new(key: String, value: Value, loc: Loc) -> Arg {
        Arg { key, value, loc }
    }
}

/// The arguments of one state function, as (key, value, position), in file order.
pub(crate) struct Args<'d> {
    /// `file.managed`
    pub(crate) function: String,
    /// The state id, the default `name` where Salt has one.
    pub(crate) id: String,
    /// Where the function key is, for "missing argument".
    pub(crate) at: Loc,
    items: Vec<Arg>,
    diags: &'d mut Vec<Diagnostic>,
}

impl<'d> Args<'d> {
    pub(crate) fn new(
        function: String,
        id: String,
        at: Loc,
        items: Vec<Arg>,
        diags: &'d mut Vec<Diagnostic>,
    ) -> Self {
        Args { function, id, at, items, diags }
    }

    /// Argument `key`, with where it was written.
    pub(crate) fn take(&mut self, key: &str) -> Option<(Value, Loc)> {
        let arg = self.items.iter().find(|a| a.key == key)?;
        Some((arg.value.clone(), arg.loc.clone()))
    }

    pub(crate) fn error(&mut self, at: &Loc, message: impl Into<String>) {
        self.diags.push(at.diag(message));
    }

    /// Take `key` and convert it; a conversion error (`expected …`) is reported at `key`.
    pub(crate) fn typed<T>(
        &mut self,
        key: &str,
        convert: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        let (value, at) = self.take(key)?;
        match convert(&value) {
            Ok(v) => Some(v),
            Err(expected) => {
                let message = format!("{}: argument `{key}`: {expected}", self.function);
                self.error(&at, message);
                None
            }
        }
    }

    pub(crate) fn string(&mut self, key: &str) -> Option<String> {
        self.typed(key, string)
    }

    /// `name`, defaulting to the state id.
    pub(crate) fn name(&mut self) -> String {
        self.string("name").unwrap_or_else(|| self.id.clone())
    }

    /// `name` that must be an absolute path (file states).
    pub(crate) fn path_name(&mut self) -> String {
        let at = self.take("name").map(|(_, at)| at).unwrap_or_else(|| self.at.clone());
        let name = self.name();
        if !name.starts_with('/') {
            let message =
                format!("{}: `{name}` is not an absolute path; expected `name: /path`", self.function);
            self.error(&at, message);
        }
        name
    }

    pub(crate) fn required<T>(&mut self, key: &str, value: Option<T>) -> Option<T> {
        if value.is_none() && !self.items.iter().any(|a| a.key == key) {
            let message = format!("{} needs argument `{key}`", self.function);
            let at = self.at.clone();
            self.error(&at, message);
        }
        value
    }

    pub(crate) fn bool(&mut self, key: &str) -> Option<bool> {
        self.typed(key, |v| match v {
            Value::Bool(b) => Ok(*b),
            other => Err(format!("expected true or false, got {}", describe(other))),
        })
    }

    /// A string or a list of strings.
    pub(crate) fn strings(&mut self, key: &str) -> Vec<String> {
        self.typed(key, |v| match v {
            Value::Sequence(items) => items.iter().map(string).collect(),
            other => string(other).map(|s| vec![s]),
        })
        .unwrap_or_default()
    }

    /// `VAR: value` pairs: a map, or Salt's list of one-pair maps.
    pub(crate) fn env(&mut self, key: &str) -> BTreeMap<String, String> {
        self.typed(key, |v| {
            let mut env = BTreeMap::new();
            let mut add = |map: &serde_yaml::Mapping| -> Result<(), String> {
                for (k, v) in map {
                    let name = string(k)?;
                    if name.is_empty() || name.contains(['=', '\0']) {
                        return Err(format!("`{name}` cannot be an environment variable name"));
                    }
                    env.insert(name, string(v)?);
                }
                Ok(())
            };
            match v {
                Value::Mapping(map) => add(map)?,
                Value::Sequence(items) => {
                    for item in items {
                        match item {
                            Value::Mapping(map) => add(map)?,
                            other => {
                                return Err(format!("expected `VAR: value` pairs, got {}", describe(other)));
                            }
                        }
                    }
                }
                Value::Null => {}
                other => return Err(format!("expected a map of `VAR: value`, got {}", describe(other))),
            }
            Ok(env)
        })
        .unwrap_or_default()
    }

    /// Report every argument that is not allowed, naming the allowed ones.
    pub(crate) fn finish(self, allowed: &[&str]) {
        for arg in self.items.iter().filter(|a| !allowed.contains(&a.key.as_str())) {
            self.diags.push(arg.loc.diag(format!(
                "unknown argument `{}` for {}; expected one of: {}",
                arg.key,
                self.function,
                allowed.join(", ")
            )));
        }
    }
}

/// A string; numbers are taken as written (`user: 1000`, `PORT: 8003`).
pub(crate) fn string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("expected a string, got {}", describe(other))),
    }
}

/// An argv: a list of strings, or one string split like a shell would (no shell runs it).
pub(crate) fn argv(v: &Value) -> Result<Vec<String>, String> {
    let argv = match v {
        Value::Sequence(items) => items.iter().map(string).collect::<Result<Vec<_>, _>>()?,
        Value::String(s) => {
            shlex::split(s).ok_or_else(|| format!("cannot split `{s}` into words: unbalanced quotes"))?
        }
        other => return Err(format!("expected a command as a list of words, got {}", describe(other))),
    };
    if argv.first().is_none_or(|a| a.is_empty()) {
        return Err("expected a command, got an empty one".into());
    }
    Ok(argv)
}

/// A duration in milliseconds: seconds as a number, or a string `500ms`, `10s`, `2m`, `1h`.
pub(crate) fn duration_ms(v: &Value) -> Result<u64, String> {
    const EXPECTED: &str = "expected a duration such as 10, \"10s\", \"500ms\", \"2m\"";
    let (number, unit_ms) = match v {
        Value::Number(n) => (n.as_f64().ok_or(EXPECTED)?, 1000.0),
        Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
            let unit = match &s[split..] {
                "ms" => 1.0,
                "" | "s" => 1000.0,
                "m" => 60_000.0,
                "h" => 3_600_000.0,
                _ => return Err(format!("{EXPECTED}, got `{s}`")),
            };
            (s[..split].parse::<f64>().map_err(|_| format!("{EXPECTED}, got `{s}`"))?, unit)
        }
        other => return Err(format!("{EXPECTED}, got {}", describe(other))),
    };
    let ms = number * unit_ms;
    if !(0.0..=1e12).contains(&ms) {
        return Err(format!("{EXPECTED}, not negative and under 30 years"));
    }
    Ok(ms.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms(&yaml("10")), Ok(10_000));
        assert_eq!(duration_ms(&yaml("0.5")), Ok(500));
        assert_eq!(duration_ms(&yaml("'250ms'")), Ok(250));
        assert_eq!(duration_ms(&yaml("2m")), Ok(120_000));
        assert!(duration_ms(&yaml("-1")).is_err());
        assert!(duration_ms(&yaml("10 parsecs")).is_err());
        assert!(duration_ms(&yaml("[1]")).is_err());
    }

    #[test]
    fn argv_from_list_or_words() {
        assert_eq!(argv(&yaml("[a, 'b c']")).unwrap(), ["a", "b c"]);
        assert_eq!(argv(&yaml("\"a 'b c'\"")).unwrap(), ["a", "b c"]);
        assert!(argv(&yaml("\"a 'b\"")).is_err());
        assert!(argv(&yaml("[]")).is_err());
    }
}

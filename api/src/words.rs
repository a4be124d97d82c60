//! A function's words, as a user types them after the function (`drover '*' cmd.run ...`,
//! the dashboard's command box): positional arguments stay strings, `key=value` words become
//! keyword arguments whose values are read as YAML (`shell=true` is a bool, `timeout=5` an
//! int). The CLI splits its words itself; the master splits [`crate::RunRequest::words`].

use std::collections::BTreeMap;

use serde_json::Value;

/// Splits words into positional arguments and keyword arguments. A word is a keyword
/// argument only if the part before its first `=` is an identifier, so `--opt=x`, `a-b=c`
/// and `=x` stay positional. A repeated key keeps its last value.
pub fn split(words: &[String]) -> (Vec<Value>, BTreeMap<String, Value>) {
    let mut args = Vec::new();
    let mut kwargs = BTreeMap::new();
    for word in words {
        match word.split_once('=') {
            Some((key, value)) if is_identifier(key) => {
                kwargs.insert(key.to_string(), yaml_value(value));
            }
            _ => args.push(Value::String(word.clone())),
        }
    }
    (args, kwargs)
}

/// `[A-Za-z_][A-Za-z0-9_]*`
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads a keyword argument's value as YAML, as Salt does. What YAML cannot read, or reads
/// as something JSON cannot hold, stays the string the user typed; an empty value is "".
pub fn yaml_value(text: &str) -> Value {
    if text.is_empty() {
        return Value::String(String::new());
    }
    match serde_yaml::from_str::<Value>(text) {
        Ok(Value::Null) if !matches!(text.trim(), "null" | "Null" | "NULL" | "~") => {
            Value::String(text.to_string())
        }
        Ok(value) => value,
        Err(_) => Value::String(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn words(ws: &[&str]) -> Vec<String> {
        ws.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn kwarg_values_are_yaml() {
        let table: &[(&str, Value)] = &[
            ("true", json!(true)),
            ("false", json!(false)),
            ("5", json!(5)),
            ("-3", json!(-3)),
            ("2.5", json!(2.5)),
            ("hello", json!("hello")),
            ("hello world", json!("hello world")),
            ("'5'", json!("5")),
            ("\"true\"", json!("true")),
            ("null", json!(null)),
            ("~", json!(null)),
            ("", json!("")),
            ("[1, a]", json!([1, "a"])),
            ("{a: 1}", json!({"a": 1})),
            ("{1: a}", json!({"1": "a"})),
            // YAML 1.2: these are strings
            ("yes", json!("yes")),
            ("off", json!("off")),
            // unreadable YAML, or YAML JSON cannot hold: kept as typed
            ("a: b: c", json!("a: b: c")),
            ("[1, 2", json!("[1, 2")),
            (".inf", json!(".inf")),
            ("b=c", json!("b=c")),
        ];
        for (text, want) in table {
            assert_eq!(&yaml_value(text), want, "{text:?}");
        }
    }

    #[test]
    fn words_split_into_args_and_kwargs() {
        let table: &[(&[&str], Value, Value)] = &[
            (&[], json!([]), json!({})),
            (&["ls", "-la"], json!(["ls", "-la"]), json!({})),
            (&["uptime", "shell=true"], json!(["uptime"]), json!({"shell": true})),
            (&["timeout=5", "x", "_a1=b=c"], json!(["x"]), json!({"timeout": 5, "_a1": "b=c"})),
            (&["--opt=x", "a-b=c", "=x", "1a=2"], json!(["--opt=x", "a-b=c", "=x", "1a=2"]), json!({})),
            (&["5", "true"], json!(["5", "true"]), json!({})),
            (&["k=1", "k=2"], json!([]), json!({"k": 2})),
            (&["test=true"], json!([]), json!({"test": true})),
        ];
        for (input, want_args, want_kwargs) in table {
            let (args, kwargs) = split(&words(input));
            assert_eq!(&Value::from(args), want_args, "{input:?}");
            assert_eq!(&serde_json::to_value(kwargs).unwrap(), want_kwargs, "{input:?}");
        }
    }

    #[test]
    fn identifiers() {
        for good in ["a", "_", "A_1", "shell", "_x9"] {
            assert!(is_identifier(good), "{good}");
        }
        for bad in ["", "1a", "a-b", "a.b", "é", " a", "a b"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}

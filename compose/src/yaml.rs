//! Writing YAML a person reviews: plain scalars where YAML reads them back as the same
//! string, double quotes (JSON's escapes, which YAML shares) everywhere else.

use serde_yaml::Value;

/// `text` as a YAML scalar that reads back as the string `text`, in block or flow context.
pub(crate) fn scalar(text: &str) -> String {
    let plain_chars = text.chars().all(|c| c.is_ascii_alphanumeric() || "_./@+=-".contains(c));
    let starts_well = text.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || "_./".contains(c));
    // YAML 1.1 readers take these for booleans
    let word = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"]
        .contains(&text.to_ascii_lowercase().as_str());
    let reads_back = matches!(serde_yaml::from_str::<Value>(text), Ok(Value::String(s)) if s == text);
    if plain_chars && starts_well && !word && reads_back {
        text.to_string()
    } else {
        serde_json::to_string(text).expect("a string serializes")
    }
}

/// `[a, "b c"]`
pub(crate) fn flow_list<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<String> = items.iter().map(|s| scalar(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// A comment block: each line of `text` after `# ` (long lines are the caller's).
pub(crate) fn comment(text: &str) -> String {
    text.lines().map(|l| if l.is_empty() { "#\n".to_string() } else { format!("# {l}\n") }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_read_back() {
        for (text, written) in [
            ("redis", "redis"),
            ("/usr/local/bin/x", "/usr/local/bin/x"),
            ("1.0", "\"1.0\""),
            ("10", "\"10\""),
            ("yes", "\"yes\""),
            ("Off", "\"Off\""),
            ("", "\"\""),
            ("a b", "\"a b\""),
            ("a: b", "\"a: b\""),
            ("-x", "\"-x\""),
            ("*x", "\"*x\""),
            ("{{ x }}", "\"{{ x }}\""),
            ("line\nbreak", "\"line\\nbreak\""),
            ("x,y", "\"x,y\""),
            ("0x10", "\"0x10\""),
            (".inf", "\".inf\""),
            ("ü", "\"ü\""),
        ] {
            assert_eq!(scalar(text), written, "{text}");
            let back: Value = serde_yaml::from_str(&format!("k: {}", scalar(text))).unwrap();
            assert_eq!(back["k"], Value::String(text.into()), "{text}");
            let back: Value = serde_yaml::from_str(&flow_list(&[text, "z"])).unwrap();
            assert_eq!(back[0], Value::String(text.into()), "{text} in a flow list");
        }
    }
}

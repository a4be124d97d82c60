//! Compose's variables: `${VAR}` interpolation in the compose file's values, and the
//! `.env` / `env_file:` format.
//!
//! Interpolation as Compose does it: `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty),
//! `${VAR-default}` (unset), `${VAR:?message}` / `${VAR?message}` (an error), `${VAR:+other}`
//! / `${VAR+other}`, `$$` for a literal `$`; a default may hold variables itself. Any other
//! `$` is an error, as in Compose.

/// A text with its variables replaced, and the variables it used that were not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interpolated {
    pub(crate) text: String,
    pub(crate) unset: Vec<String>,
}

/// Replaces the variables of `text`, looked up with `lookup`; `Err` says what is wrong.
pub(crate) fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, String> {
    let mut out = Interpolated { text: String::with_capacity(text.len()), unset: Vec::new() };
    let chars: Vec<char> = text.chars().collect();
    let end = expand(&chars, 0, false, lookup, &mut out)?;
    debug_assert_eq!(end, chars.len());
    out.unset.dedup();
    Ok(out)
}

const EXPECTED: &str = "expected $VAR, ${VAR}, ${VAR:-default}, ${VAR:?message} or $$ for a literal $";

/// Expands `chars[from..]` into `out.text` up to the end, or up to the `}` that closes the
/// braces it is inside of (`nested`); returns the index after what it read.
fn expand(
    chars: &[char],
    from: usize,
    nested: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Interpolated,
) -> Result<usize, String> {
    let mut i = from;
    while i < chars.len() {
        let c = chars[i];
        if nested && c == '}' {
            return Ok(i);
        }
        if c != '$' {
            out.text.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.text.push('$');
                i += 2;
            }
            Some('{') => i = braced(chars, i + 2, lookup, out)?,
            Some(&c) if c == '_' || c.is_ascii_alphabetic() => {
                let name: String =
                    chars[i + 1..].iter().take_while(|c| **c == '_' || c.is_ascii_alphanumeric()).collect();
                i += 1 + name.chars().count();
                match lookup(&name) {
                    Some(value) => out.text.push_str(&value),
                    None => out.unset.push(name),
                }
            }
            _ => {
                let shown: String = chars[i..].iter().take(12).collect();
                return Err(format!("`{shown}` is not a variable; {EXPECTED}"));
            }
        }
    }
    if nested {
        return Err(format!("`${{` without its `}}`; {EXPECTED}"));
    }
    Ok(i)
}

/// `${…}` from just after the `{`; returns the index after the closing `}`.
fn braced(
    chars: &[char],
    from: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Interpolated,
) -> Result<usize, String> {
    let name: String = chars[from..].iter().take_while(|c| **c == '_' || c.is_ascii_alphanumeric()).collect();
    let mut i = from + name.chars().count();
    let starts_well = name.chars().next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic());
    if !starts_well {
        let shown: String = chars[from.saturating_sub(2)..].iter().take(16).collect();
        return Err(format!("`{shown}` does not name a variable; {EXPECTED}"));
    }
    let value = lookup(&name);
    let colon = chars.get(i) == Some(&':');
    if colon {
        i += 1;
    }
    let op = chars.get(i).copied();
    if op == Some('}') && !colon {
        match value {
            Some(v) => out.text.push_str(&v),
            None => out.unset.push(name),
        }
        return Ok(i + 1);
    }
    if !matches!(op, Some('-' | '?' | '+')) {
        let shown: String = chars[from.saturating_sub(2)..].iter().take(16).collect();
        return Err(format!("`{shown}` is not a valid interpolation; {EXPECTED}"));
    }
    // the word after the operator, itself expanded
    let mut word = Interpolated { text: String::new(), unset: Vec::new() };
    let close = expand(chars, i + 1, true, lookup, &mut word)?;
    let empty_counts = colon;
    let missing = match &value {
        None => true,
        Some(v) => empty_counts && v.is_empty(),
    };
    match op {
        Some('-') => {
            if missing {
                out.text.push_str(&word.text);
                out.unset.extend(word.unset);
            } else {
                out.text.push_str(value.as_deref().unwrap_or_default());
            }
        }
        Some('?') => {
            if missing {
                let why = if word.text.is_empty() { String::new() } else { format!(": {}", word.text) };
                return Err(format!("required variable {name} is missing a value{why}"));
            }
            out.text.push_str(value.as_deref().unwrap_or_default());
        }
        _ => {
            if !missing {
                out.text.push_str(&word.text);
                out.unset.extend(word.unset);
            }
        }
    }
    Ok(close + 1)
}

/// One line of an env file: a variable, and its value (`None`: the name alone, `VAR`,
/// which takes the value from the environment if it has one).
pub(crate) type EnvLine = (String, Option<String>);

/// Reads an env file (`.env`, `env_file:`): `NAME=value` lines, `#` comments, an optional
/// `export `, values unquoted (up to ` #`), in single quotes (as written) or in double quotes
/// (with `\n`, `\t`, `\"`, `\\` escapes; both quotes may span lines). Unquoted and
/// double-quoted values are interpolated, from the names above them first, then `lookup`;
/// `raw` takes every value as written. `Err` holds the 1-based line and what is wrong.
pub(crate) fn env_file(
    text: &str,
    raw: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<EnvLine>, (usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut vars: Vec<EnvLine> = Vec::new();
    let mut n = 0;
    while n < lines.len() {
        let line = lines[n].trim_start();
        let at = n + 1;
        n += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let (name, rest) = match line.split_once('=') {
            Some((name, rest)) => (name.trim_end(), Some(rest)),
            None => (line.trim_end(), None),
        };
        let good_name = name.chars().next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
            && name.chars().all(|c| c == '_' || c == '.' || c == '-' || c.is_ascii_alphanumeric());
        if !good_name {
            return Err((at, format!("`{name}` is not a variable name; expected NAME=value")));
        }
        let Some(rest) = rest else {
            vars.push((name.to_string(), None));
            continue;
        };
        let known = |var: &str| {
            vars.iter().rev().find(|(n, _)| n == var).and_then(|(_, v)| v.clone()).or_else(|| lookup(var))
        };
        let expanded = |value: &str| {
            interpolate(value, &known).map(|i| i.text).map_err(|e| (at, format!("`{name}`: {e}")))
        };
        let value = rest.trim_start();
        let value = if raw {
            rest.to_string()
        } else if let Some(quoted) = value.strip_prefix('\'') {
            let (text, after, used) = closing(quoted, '\'', &lines[n..])
                .ok_or_else(|| (at, format!("`{name}`: the value opens a ' quote that never closes")))?;
            n += used;
            trailing(&after).map_err(|e| (at, format!("`{name}`: {e}")))?;
            text
        } else if let Some(quoted) = value.strip_prefix('"') {
            let (text, after, used) = closing(quoted, '"', &lines[n..])
                .ok_or_else(|| (at, format!("`{name}`: the value opens a \" quote that never closes")))?;
            n += used;
            trailing(&after).map_err(|e| (at, format!("`{name}`: {e}")))?;
            expanded(&unescape(&text))?
        } else {
            let cut = value.find(" #").or_else(|| value.find("\t#")).unwrap_or(value.len());
            expanded(value[..cut].trim_end())?
        };
        vars.push((name.to_string(), Some(value)));
    }
    Ok(vars)
}

/// The text up to the closing `quote` (unescaped, for `"`), which may be on a later line of
/// `more`; with what follows it on its line and how many lines of `more` it took.
fn closing(first: &str, quote: char, more: &[&str]) -> Option<(String, String, usize)> {
    let mut text = String::new();
    let mut line = first.to_string();
    let mut used = 0;
    loop {
        let mut escaped = false;
        for (i, c) in line.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' && quote == '"' {
                escaped = true;
            } else if c == quote {
                text.push_str(&line[..i]);
                return Some((text, line[i + 1..].to_string(), used));
            }
        }
        text.push_str(&line);
        text.push('\n');
        line = (*more.get(used)?).to_string();
        used += 1;
    }
}

/// What may follow a closing quote: nothing, or a comment.
fn trailing(after: &str) -> Result<(), String> {
    let after = after.trim();
    if after.is_empty() || after.starts_with('#') {
        Ok(())
    } else {
        Err(format!("unexpected `{after}` after the closing quote"))
    }
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            // `\$` stays `$$` for interpolation to make a `$` of it
            Some('$') => out.push_str("$$"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/me".into()),
            "EMPTY" => Some(String::new()),
            "TAG" => Some("7.2".into()),
            _ => None,
        }
    }

    fn ok(text: &str) -> (String, Vec<String>) {
        let i = interpolate(text, &env).unwrap_or_else(|e| panic!("{text}: {e}"));
        (i.text, i.unset)
    }

    #[test]
    fn forms() {
        let none: Vec<String> = Vec::new();
        assert_eq!(ok("redis:${TAG}"), ("redis:7.2".into(), none.clone()));
        assert_eq!(ok("$HOME/x"), ("/home/me/x".into(), none.clone()));
        assert_eq!(ok("${NOPE:-6}-${EMPTY:-e}-${EMPTY-f}"), ("6-e-".into(), none.clone()));
        assert_eq!(ok("${NOPE-${TAG}}"), ("7.2".into(), none.clone()));
        assert_eq!(ok("${TAG:+set}${NOPE:+x}${EMPTY+y}${EMPTY:+z}"), ("sety".into(), none.clone()));
        assert_eq!(ok("a $$HOME $${x}"), ("a $HOME ${x}".into(), none.clone()));
        assert_eq!(ok("${NOPE}/$NOPE2"), ("/".into(), vec!["NOPE".to_string(), "NOPE2".to_string()]));
        assert_eq!(ok("${A:-{json}}"), ("{json}".into(), vec![]), "the first brace closes");
        assert_eq!(ok("p: ${A:-x}}"), ("p: x}".into(), vec![]));
    }

    #[test]
    fn errors() {
        for (text, wanted) in [
            ("${NOPE:?set it}", "required variable NOPE is missing a value: set it"),
            ("${EMPTY:?}", "required variable EMPTY is missing a value"),
            ("5$", "`$` is not a variable"),
            ("$1", "`$1` is not a variable"),
            ("${1}", "does not name a variable"),
            ("${TAG", "is not a valid interpolation"),
            ("${TAG:-x", "without its `}`"),
            ("${TAG/x}", "is not a valid interpolation"),
        ] {
            let e = interpolate(text, &env).unwrap_err();
            assert!(e.contains(wanted), "{text}: {e}");
        }
        assert_eq!(interpolate("${EMPTY?x}", &env).unwrap().text, "", "set, if empty");
    }

    #[test]
    fn env_files() {
        let text = "# c\nA=1\nexport B = two words # comment\nC='${A} raw'\nD=\"x${A}\\ty\\\"\"\nE=${B}-${HOME}\n\
                    F=\"multi\nline\"\nG\nH=\nI=a#b\n";
        let vars = env_file(text, false, &env).unwrap();
        let got: Vec<(&str, Option<&str>)> = vars.iter().map(|(n, v)| (n.as_str(), v.as_deref())).collect();
        assert_eq!(
            got,
            [
                ("A", Some("1")),
                ("B", Some("two words")),
                ("C", Some("${A} raw")),
                ("D", Some("x1\ty\"")),
                ("E", Some("two words-/home/me")),
                ("F", Some("multi\nline")),
                ("G", None),
                ("H", Some("")),
                ("I", Some("a#b")),
            ]
        );
        assert_eq!(env_file("A=\"x\n", false, &env).unwrap_err().0, 1);
        assert_eq!(
            env_file("A=1\n2B=x\n", false, &env).unwrap_err(),
            (2, "`2B` is not a variable name; expected NAME=value".into())
        );
        assert_eq!(env_file("A='x' y\n", false, &env).unwrap_err().0, 1);
        assert_eq!(env_file("A=${NOPE:?no}\n", false, &env).unwrap_err().0, 1);
        let raw = env_file("A='${x}' # c\n", true, &env).unwrap();
        assert_eq!(raw[0].1.as_deref(), Some("'${x}' # c"));
    }
}

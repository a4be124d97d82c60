//! Positions in a user's file for problems found after YAML parsing (which keeps none).
//!
//! `Text` scans the text that was parsed for the key at fault. When that text came out of
//! Tera, a line of it is mapped back to the template's line when that is certain enough (the
//! same line at the same index, a line found once in the template, or a template that kept
//! the line count); otherwise the rendered line is reported and the message says so.

use crate::diag::{Diagnostic, lowercase_first};

/// A position ready to carry a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Loc {
    file: String,
    line: usize,
    col: usize,
    /// The line is one of the rendered output, not of the template.
    rendered: bool,
}

impl Loc {
    pub(crate) fn whole_file(file: &str) -> Loc {
        Loc { file: file.to_string(), line: 0, col: 0, rendered: false }
    }

    pub(crate) fn diag(&self, message: impl Into<String>) -> Diagnostic {
        let mut message = message.into();
        if self.rendered {
            message.push_str(" (line of the rendered template)");
        }
        Diagnostic::new(&self.file, self.line, self.col, message)
    }

    /// `states/a.yaml:3` for messages that point at a second place.
    pub(crate) fn short(&self) -> String {
        if self.line == 0 { self.file.clone() } else { format!("{}:{}", self.file, self.line) }
    }
}

pub(crate) struct Text<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
    template: Option<Vec<&'a str>>,
}

impl<'a> Text<'a> {
    /// A file parsed as written (a role file, the top file).
    pub(crate) fn plain(file: &'a str, text: &'a str) -> Text<'a> {
        Text { file, lines: text.lines().collect(), template: None }
    }

    /// The output of a template, positions mapped back to the template where possible.
    pub(crate) fn rendered(file: &'a str, template: &'a str, rendered: &'a str) -> Text<'a> {
        Text { file, lines: rendered.lines().collect(), template: Some(template.lines().collect()) }
    }

    pub(crate) fn len(&self) -> usize {
        self.lines.len()
    }

    /// The position of 0-based `line0`, `col0` (characters) of the parsed text.
    pub(crate) fn at(&self, line0: usize, col0: usize) -> Loc {
        let exact = Loc { file: self.file.to_string(), line: line0 + 1, col: col0 + 1, rendered: false };
        let Some(template) = &self.template else { return exact };
        let line = self.lines.get(line0).copied().unwrap_or("");
        let wanted = line.trim();
        if template.get(line0).is_some_and(|t| t.trim() == wanted) {
            return exact;
        }
        if !wanted.is_empty() {
            let mut found = template.iter().enumerate().filter(|(_, t)| t.trim() == wanted);
            if let (Some((i, t)), None) = (found.next(), found.next()) {
                let col0 = (col0 + indent(t)).saturating_sub(indent(line));
                return Loc { line: i + 1, col: col0 + 1, ..exact };
            }
        }
        if template.len() == self.lines.len() {
            return exact;
        }
        // The one template line whose text before its first tag starts the rendered line.
        let mut found = template.iter().enumerate().filter(|(_, t)| {
            let literal = &t
                [..t.find("{{").into_iter().chain(t.find("{%")).chain(t.find("{#")).min().unwrap_or(t.len())];
            literal.len() < t.len() && !literal.trim().is_empty() && line.starts_with(literal)
        });
        if let (Some((i, _)), None) = (found.next(), found.next()) {
            return Loc { line: i + 1, ..exact };
        }
        Loc { rendered: true, ..exact }
    }

    /// The position of the start of the file.
    pub(crate) fn start(&self) -> Loc {
        self.at(0, 0)
    }

    /// The 0-based line of a top-level key (no indentation), such as a state id.
    pub(crate) fn top_key(&self, key: &str) -> Option<usize> {
        self.lines.iter().position(|line| indent(line) == 0 && key_col(line, key) == Some(0))
    }

    /// The line after the block that starts at `start0`: the next top-level line that is
    /// neither blank, a comment, nor a list item.
    pub(crate) fn block_end(&self, start0: usize) -> usize {
        (start0 + 1..self.lines.len())
            .find(|&i| {
                let line = self.lines[i];
                indent(line) == 0 && !line.is_empty() && !line.starts_with(['#', '-', ' ', '\t'])
            })
            .unwrap_or(self.lines.len())
    }

    /// The first `key:` in lines `from0..end0`, as (line0, col0). Block style (`key:`,
    /// `- key:`, quoted keys) first, then anywhere in a line (flow style `{key: v}`).
    pub(crate) fn find_key(&self, from0: usize, end0: usize, key: &str) -> Option<(usize, usize)> {
        let range = from0.min(self.lines.len())..end0.min(self.lines.len());
        for i in range.clone() {
            if let Some(col) = key_col(self.lines[i], key) {
                return Some((i, col));
            }
        }
        for i in range {
            if let Some(col) = flow_key_col(self.lines[i], key) {
                return Some((i, col));
            }
        }
        None
    }

    /// The first occurrence of `needle` in lines `from0..end0`, as (line0, col0).
    pub(crate) fn find_text(&self, from0: usize, end0: usize, needle: &str) -> Option<(usize, usize)> {
        if needle.is_empty() {
            return None;
        }
        (from0.min(self.lines.len())..end0.min(self.lines.len())).find_map(|i| {
            let line = self.lines[i];
            line.find(needle).map(|byte| (i, line[..byte].chars().count()))
        })
    }

    /// A YAML error, at its location, message without serde_yaml's "at line N column M".
    pub(crate) fn yaml_error(&self, err: &serde_yaml::Error) -> Diagnostic {
        let message = lowercase_first(&without_positions(&err.to_string()));
        let Some(location) = err.location() else {
            return Loc::whole_file(self.file).diag(message);
        };
        let (mut line0, mut col0) = (location.line().saturating_sub(1), location.column().saturating_sub(1));
        // serde_yaml points a duplicate key at the start of its mapping: find the second one.
        if let Some(key) = message.strip_prefix("duplicate entry with key ") {
            let key = key.trim_matches('"');
            let mut found =
                (line0..self.lines.len()).filter_map(|i| key_col(self.lines[i], key).map(|c| (i, c)));
            if let (Some(_), Some((i, c))) = (found.next(), found.next()) {
                (line0, col0) = (i, c);
            }
        }
        self.at(line0, col0).diag(message)
    }
}

/// serde_yaml's message without its " at line N column M" parts (the position goes first).
fn without_positions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + " at line ".len()..];
        let digits = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let line_len = digits(after);
        let tail = &after[line_len..];
        match tail.strip_prefix(" column ") {
            Some(col) if line_len > 0 && digits(col) > 0 => rest = &col[digits(col)..],
            _ => {
                out.push_str(" at line ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn indent(line: &str) -> usize {
    line.chars().take_while(|c| *c == ' ' || *c == '\t').count()
}

/// The column of `key:` in a block-style line (after indentation and `- `), if it is there.
fn key_col(line: &str, key: &str) -> Option<usize> {
    let mut rest = line;
    loop {
        let trimmed = rest.trim_start_matches([' ', '\t']);
        match trimmed.strip_prefix('-') {
            Some(after) if after.is_empty() || after.starts_with([' ', '\t']) => rest = after,
            _ => {
                rest = trimmed;
                break;
            }
        }
    }
    let col = line[..line.len() - rest.len()].chars().count();
    key_at(rest, key).then_some(col)
}

/// The column of `key:` anywhere in a line, after a flow-style `{`, `,` or the line start.
fn flow_key_col(line: &str, key: &str) -> Option<usize> {
    line.char_indices()
        .filter(|(i, _)| {
            let before = line[..*i].trim_end_matches([' ', '\t']);
            before.is_empty() || before.ends_with(['{', ',', '-', '['])
        })
        .find(|(i, _)| key_at(&line[*i..], key))
        .map(|(i, _)| line[..i].chars().count())
}

/// Does `text` start with `key` (plain or quoted), then `:` and a space or the line end?
fn key_at(text: &str, key: &str) -> bool {
    let quoted = [key.to_string(), format!("'{key}'"), format!("\"{key}\"")];
    quoted.iter().any(|k| {
        text.strip_prefix(k.as_str()).is_some_and(|after| {
            let after = after.trim_start_matches([' ', '\t']);
            after
                .strip_prefix(':')
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', ',', '}']))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_block_and_flow_keys() {
        assert_eq!(key_col("  - name: x", "name"), Some(4));
        assert_eq!(key_col("  'name': x", "name"), Some(2));
        assert_eq!(key_col("file.managed:", "file.managed"), Some(0));
        assert_eq!(key_col("  - names: x", "name"), None);
        assert_eq!(key_col("  - name:x", "name"), None);
        assert_eq!(flow_key_col("w: {file.managed: [{name: x}]}", "name"), Some(20));
        assert_eq!(flow_key_col("w: {file.managed: [{rename: x}]}", "name"), None);
    }

    #[test]
    fn maps_rendered_lines_back_to_the_template() {
        let template = "{% for i in [1, 2] %}\nx{{ i }}: 1\n{% endfor %}\nbad: key\n";
        let rendered = "\nx1: 1\n\nx2: 1\n\nbad: key\n";
        let text = Text::rendered("t.yaml", template, rendered);
        let bad = text.top_key("bad").unwrap();
        assert_eq!(text.at(bad, 0).diag("m").to_string(), "t.yaml:4:1: m");
        // made by the one line whose literal text starts it
        let x2 = text.top_key("x2").unwrap();
        assert_eq!(text.at(x2, 0).diag("m").to_string(), "t.yaml:2:1: m");
        // made by an expression alone: only the rendered line is known
        let text = Text::rendered("t.yaml", "{{ body }}\nend: 1\n", "a: 1\nb: 2\nend: 1\n");
        assert_eq!(text.at(1, 0).diag("m").to_string(), "t.yaml:2:1: m (line of the rendered template)");
    }

    #[test]
    fn strips_serde_yaml_positions() {
        assert_eq!(
            without_positions(
                "did not find expected key at line 4 column 4, while parsing at line 1 column 1"
            ),
            "did not find expected key, while parsing"
        );
        assert_eq!(without_positions("key at line one"), "key at line one");
    }

    #[test]
    fn block_ends_at_next_top_level_key() {
        let text = Text::plain("t", "a:\n  b: 1\n# c\n\n- x\nd: 2\n");
        assert_eq!(text.block_end(0), 5);
        assert_eq!(text.block_end(5), 6);
    }
}

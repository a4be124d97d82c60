//! Positions in a user's file for problems found after YAML parsing (which keeps none).
//!
//! `Text` scans the text that was parsed for the key at fault. When that text came out of
//! Tera, a line of it is mapped back to the template's line when that is certain enough (the
//! same line at the same index, a line found once in the template, or a template that kept
//! the line count); otherwise the rendered line is reported and the message says so.

use crate::diag::{Diagnostic, lowercase_first};

/// A position ready to carry a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    file: String,
    line: usize,
    col: usize,
    /// The line is one of the rendered output, not of the template.
    rendered: bool,
}

impl Loc {
    pub fn whole_file(file: &str) -> Loc {
        Loc { file: file.to_string(), line: 0, col: 0, rendered: false }
    }

    pub fn diag(&self, message: impl Into<String>) -> Diagnostic {
        let mut message = message.into();
        if self.rendered {
            message.push_str(" (line of the rendered template)");
        }
        Diagnostic::new(&self.file, self.line, self.col, message)
    }

    /// `states/a.yaml:3` for messages that point at a second place.
    pub fn short(&self) -> String {
        if self.line == 0 { self.file.clone() } else { format!("{}:{}", self.file, self.line) }
    }
}

pub struct Text<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
    template: Option<Vec<&'a str>>,
}

impl<'a> Text<'a> {
    /// A file parsed as written (a role file, the top file).
    pub fn plain(file: &'a str, text: &'a str) -> Text<'a> {
        Text { file, lines: text.lines().collect(), template: None }
    }

    /// The output of a template, positions mapped back to the template where possible.
    pub fn rendered(file: &'a str, template: &'a str, rendered: &'a str) -> Text<'a> {
        Text { file, lines: rendered.lines().collect(), template: Some(template.lines().collect()) }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The position of 0-based `line0`, `col0` (characters) of the parsed text.
    pub fn at(&self, line0: usize, col0: usize) -> Loc {
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
    pub fn start(&self) -> Loc {
        self.at(0, 0)
    }

    /// The 0-based line of a top-level key (no indentation), such as a state id.
    pub fn top_key(&self, key: &str) -> Option<usize> {
        self.lines.iter().position(|line| indent(line) == 0 && key_col(line, key) == Some(0))
    }

    /// The line after the block that starts at `start0`: the next top-level line that is
    /// neither blank, a comment, nor a list item.
    pub fn block_end(&self, start0: usize) -> usize {
        (start0 + 1..self.lines.len())
            .find(|&i| {
                let line = self.lines[i];
                indent(line) == 0 && !line.is_empty() && !line.starts_with(['#', '-', ' ', '\t'])
            })
            .unwrap_or(self.lines.len())
    }

    /// The first `key:` in lines `from0..end0`, as (line0, col0). Block style (`key:`,
    /// `- key:`, quoted keys) first, then anywhere in a line (flow style `{key: v}`).
    pub fn find_key(&self, from0: usize, end0: usize, key: &str) -> Option<(usize, usize)> {
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
    pub fn find_text(&self, from0: usize, end0: usize, needle: &str) -> Option<(usize, usize)> {
        if needle.is_empty() {
            return None;
        }
        (from0.min(self.lines.len())..end0.min(self.lines.len())).find_map(|i| {
            let line = self.lines[i];
            line.find(needle).map(|byte| (i, line[..byte].chars().count()))
        })
    }

    /// A YAML error, at its location, message without serde_yaml's "at line N column M".
    pub fn yaml_error(&self, err: &serde_yaml::Error) -> Diagnostic {
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

    /// The key `key` of the map that is the value of the key at `parent` (`None`: the
    /// top-level map): in a flow map after the parent's colon (`parent: {key: 1}`), else on
    /// the lines of the parent's block indented like its first child. `None` when the key is
    /// not written there (merged in with `<<`, say).
    pub fn child_key(&self, parent: Option<At>, key: &str) -> Option<At> {
        let Some(parent) = parent else { return self.top_key(key).map(|line| (line, 0)) };
        let end = self.extent(parent);
        let value = self.value_at(parent);
        if self.char_at(value) == Some('{') {
            let mut found = None;
            self.flow_entries(value, end, |at, rest| {
                if key_at(rest, key) {
                    found = Some(at);
                }
                found.is_none()
            });
            return found;
        }
        let mut children = None;
        for i in parent.0 + 1..end {
            let line = self.lines[i];
            if blank_or_comment(line) {
                continue;
            }
            let n = indent(line);
            if *children.get_or_insert(n) == n && key_at(&line[n..], key) {
                return Some((i, n));
            }
        }
        None
    }

    /// The line after the block of the key at `at`: the next line that is neither blank nor
    /// a comment and is indented less, or as much without being a list item.
    pub fn extent(&self, (line0, col0): At) -> usize {
        (line0 + 1..self.lines.len())
            .find(|&i| {
                let line = self.lines[i];
                let n = indent(line);
                !blank_or_comment(line) && (n < col0 || (n == col0 && !is_item(&line[n..])))
            })
            .unwrap_or(self.lines.len())
    }

    /// Where the value of the key at `at` starts: after its colon on the same line, else on
    /// the first line of its block; the key itself when it has no value.
    pub fn value_at(&self, at: At) -> At {
        let line = self.lines.get(at.0).copied().unwrap_or("");
        if let Some(byte) = after_colon(line, at.1) {
            let rest = &line[byte..];
            let value = rest.trim_start_matches([' ', '\t']);
            if !value.is_empty() && !value.starts_with('#') {
                return (at.0, line[..line.len() - value.len()].chars().count());
            }
        }
        (at.0 + 1..self.extent(at))
            .find(|&i| !blank_or_comment(self.lines[i]))
            .map_or(at, |i| (i, indent(self.lines[i])))
    }

    /// Where each item of the list that is the value of the key at `at` starts, in order:
    /// of a flow list `[a, b]`, or of block items `- a` indented like the first one.
    pub fn items(&self, at: At) -> Vec<At> {
        let end = self.extent(at);
        let value = self.value_at(at);
        let mut items = Vec::new();
        match self.char_at(value) {
            Some('[') => self.flow_entries(value, end, |at, _| {
                items.push(at);
                true
            }),
            Some('-') if value != at => {
                for i in value.0..end {
                    let line = self.lines[i];
                    let n = indent(line);
                    if n == value.1 && is_item(&line[n..]) {
                        let after = &line[n + 1..];
                        items.push((i, n + 1 + indent(after)));
                    }
                }
            }
            _ => {}
        }
        items
    }

    /// The plain scalar written at `at`, up to a flow `,`, `]` or `}`, a comment, or the
    /// line end (`1.10` as written, where YAML reads the number 1.1).
    pub fn scalar_at(&self, (line0, col0): At) -> &'a str {
        let line = self.lines.get(line0).copied().unwrap_or("");
        let start = line.char_indices().nth(col0).map_or(line.len(), |(b, _)| b);
        let rest = &line[start..];
        let end = rest.find([',', ']', '}']).unwrap_or(rest.len()).min(rest.find(" #").unwrap_or(rest.len()));
        rest[..end].trim_end()
    }

    fn char_at(&self, (line0, col0): At) -> Option<char> {
        self.lines.get(line0).and_then(|line| line.chars().nth(col0))
    }

    /// Calls `visit` with the position and the rest of the line of each entry of the flow
    /// collection (`{...}` or `[...]`) that opens at `open`, in order, while it returns true.
    /// Quoted text and comments are skipped; nested collections are entries, not entered.
    fn flow_entries(&self, open: At, end: usize, mut visit: impl FnMut(At, &str) -> bool) {
        let mut depth = 0usize;
        let mut quote = None;
        let mut escaped = false;
        let mut expecting = false;
        for i in open.0..end.max(open.0 + 1).min(self.lines.len()) {
            let line = self.lines[i];
            let mut after_space = true;
            let skip = if i == open.0 { open.1 } else { 0 };
            for (col, (byte, c)) in line.char_indices().enumerate().skip(skip) {
                if let Some(q) = quote {
                    if escaped {
                        escaped = false;
                    } else if q == '"' && c == '\\' {
                        escaped = true;
                    } else if c == q {
                        quote = None;
                    }
                    continue;
                }
                if c == ' ' || c == '\t' {
                    after_space = true;
                    continue;
                }
                if c == '#' && after_space {
                    break;
                }
                after_space = false;
                if depth == 1 && expecting && !matches!(c, ',' | ']' | '}') {
                    expecting = false;
                    if !visit((i, col), &line[byte..]) {
                        return;
                    }
                }
                match c {
                    '{' | '[' => {
                        depth += 1;
                        expecting = depth == 1;
                    }
                    '}' | ']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return;
                        }
                    }
                    ',' if depth == 1 => expecting = true,
                    '"' | '\'' => quote = Some(c),
                    _ => {}
                }
            }
        }
    }
}

/// A 0-based position in the parsed text: line, and column in characters.
pub type At = (usize, usize);

fn blank_or_comment(line: &str) -> bool {
    let line = line.trim_start();
    line.is_empty() || line.starts_with('#')
}

/// Does `text` (from the indentation on) start a block list item (`- x`, `-`)?
fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ") || text.starts_with("-\t")
}

/// The byte just after the colon of the key that starts at column `col0` of `line`.
fn after_colon(line: &str, col0: usize) -> Option<usize> {
    let start = line.char_indices().nth(col0)?.0;
    let rest = &line[start..];
    let from = match rest.chars().next() {
        Some(q @ ('"' | '\'')) => 1 + rest[1..].find(q)? + 1,
        _ => 0,
    };
    let colon = rest[from..].find(':')?;
    Some(start + from + colon + 1)
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
    fn finds_nested_keys_block_and_flow() {
        let text = Text::plain(
            "t",
            "roles:\n  image: {a: 1}\n  web:\n    # note\n    image: x\n    update: {batch: 1, 'order': \"a,}b\", x: [1, {order: 2}]}\n  db: {image: y,\n       ports: [\"80\", 81]}\nports:\n- 1\n-   \"2\"\n",
        );
        let roles = text.child_key(None, "roles");
        assert_eq!(roles, Some((0, 0)));
        let web = text.child_key(roles, "web");
        assert_eq!(web, Some((2, 2)));
        assert_eq!(text.child_key(web, "image"), Some((4, 4)), "the role's, not the role named image");
        let update = text.child_key(web, "update");
        assert_eq!(text.child_key(update, "order"), Some((5, 23)), "quoted, after a flow value");
        assert_eq!(text.child_key(update, "x"), Some((5, 40)), "after a quoted `,}}`");
        assert_eq!(text.child_key(update, "nope"), None);
        let db = text.child_key(roles, "db");
        assert_eq!(text.child_key(db, "image"), Some((6, 7)));
        let ports = text.child_key(db, "ports");
        assert_eq!(ports, Some((7, 7)), "on the next line of a flow map");
        assert_eq!(text.items(ports.unwrap()), [(7, 15), (7, 21)]);
        assert_eq!(text.value_at(text.child_key(web, "image").unwrap()), (4, 11));
        let top_ports = text.child_key(None, "ports").unwrap();
        assert_eq!(text.items(top_ports), [(9, 2), (10, 4)], "block items at the key's indentation");
        assert_eq!(text.value_at(top_ports), (9, 0));
        assert_eq!(text.scalar_at((5, 20)), "1");
        assert_eq!(text.extent((2, 2)), 6);
        assert_eq!(text.extent((0, 0)), 8);
    }

    #[test]
    fn block_ends_at_next_top_level_key() {
        let text = Text::plain("t", "a:\n  b: 1\n# c\n\n- x\nd: 2\n");
        assert_eq!(text.block_end(0), 5);
        assert_eq!(text.block_end(5), 6);
    }
}

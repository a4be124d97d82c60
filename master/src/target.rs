//! Targets: which minions a job goes to, resolved on the master so the set of expected
//! returns is known before anything is sent.
//!
//! Forms (Salt's): glob on ids (default), `-E` regex on ids (anchored at the start, as
//! Salt's `re.match`), `-L` comma list, `-G grain:glob` (nested keys with `:`, lists match
//! if any element does, case-insensitive), and `-C` compound: terms `G@grain:glob`,
//! `E@regex`, `L@a,b`, `R@role`, or a bare glob, joined with `and`, `or`, `not` and
//! parentheses (`not` binds tightest, then `and`, then `or`).

use api::TargetType;
use globset::{GlobBuilder, GlobMatcher};
use regex::Regex;
use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("empty target")]
    Empty,
    #[error("bad glob {pattern:?}: {reason}")]
    Glob { pattern: String, reason: String },
    #[error("bad regular expression {pattern:?}: {reason}")]
    Regex { pattern: String, reason: String },
    #[error("bad grain target {0:?}: expected grain:glob, like os:debian")]
    Grain(String),
    #[error("bad compound target at token {pos} {token:?}: {reason}")]
    Compound { pos: usize, token: String, reason: String },
}

/// A parsed target, ready to match minions.
#[derive(Debug)]
pub enum Target {
    Glob(GlobMatcher),
    Pcre(Regex),
    List(Vec<String>),
    /// `key:glob`; `whole` is `glob` compiled once (case-insensitive) for scalar and list
    /// grains, the common case; nested grains (`net:eth0:10.*`) compile their tail as met.
    Grain {
        key: String,
        glob: String,
        whole: GlobMatcher,
    },
    Role(String),
    Not(Box<Target>),
    And(Box<Target>, Box<Target>),
    Or(Box<Target>, Box<Target>),
}

/// What a target is matched against: an id and its grains (an object; may be empty for a
/// minion that never connected).
pub struct Candidate<'a> {
    pub id: &'a str,
    pub grains: &'a Value,
}

fn glob(pattern: &str, case_insensitive: bool) -> Result<GlobMatcher, TargetError> {
    GlobBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| TargetError::Glob { pattern: pattern.to_string(), reason: e.kind().to_string() })
}

fn pcre(pattern: &str) -> Result<Regex, TargetError> {
    Regex::new(&format!("^(?:{pattern})"))
        .map_err(|e| TargetError::Regex { pattern: pattern.to_string(), reason: e.to_string() })
}

fn grain(expr: &str) -> Result<Target, TargetError> {
    match expr.split_once(':') {
        Some((key, glob)) if !key.is_empty() => {
            Ok(Target::Grain { key: key.to_string(), glob: glob.to_string(), whole: self::glob(glob, true)? })
        }
        _ => Err(TargetError::Grain(expr.to_string())),
    }
}

fn list(expr: &str) -> Target {
    Target::List(expr.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
}

impl Target {
    pub fn parse(expr: &str, kind: TargetType) -> Result<Self, TargetError> {
        let expr = expr.trim();
        if expr.is_empty() {
            return Err(TargetError::Empty);
        }
        match kind {
            TargetType::Glob => Ok(Target::Glob(glob(expr, false)?)),
            TargetType::Pcre => Ok(Target::Pcre(pcre(expr)?)),
            TargetType::List => Ok(list(expr)),
            TargetType::Grain => grain(expr),
            TargetType::Compound => compound::parse(expr),
        }
    }

    pub fn matches(&self, c: &Candidate) -> bool {
        match self {
            Target::Glob(g) => g.is_match(c.id),
            Target::Pcre(r) => r.is_match(c.id),
            Target::List(ids) => ids.iter().any(|i| i == c.id),
            Target::Grain { key, glob, whole } => match_grain(c.grains.get(key.as_str()), glob, Some(whole)),
            Target::Role(role) => match c.grains.get("roles") {
                Some(Value::Array(roles)) => roles.iter().any(|r| r.as_str() == Some(role)),
                _ => false,
            },
            Target::Not(t) => !t.matches(c),
            Target::And(a, b) => a.matches(c) && b.matches(c),
            Target::Or(a, b) => a.matches(c) || b.matches(c),
        }
    }
}

/// Matches `glob` against a grain value: objects descend on `key:rest`, lists match when an
/// element does, scalars compare by their text, case-insensitively.
fn match_grain(value: Option<&Value>, pattern: &str, compiled: Option<&GlobMatcher>) -> bool {
    let leaf = |text: &str| match compiled {
        Some(g) => g.is_match(text),
        None => glob(pattern, true).map(|g| g.is_match(text)).unwrap_or(false),
    };
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Object(map)) => match pattern.split_once(':') {
            Some((k, rest)) => match_grain(map.get(k), rest, None),
            None => false,
        },
        Some(Value::Array(items)) => items.iter().any(|v| match_grain(Some(v), pattern, compiled)),
        Some(Value::String(s)) => leaf(s),
        Some(other) => leaf(&other.to_string()),
    }
}

mod compound {
    use super::*;

    struct Parser<'a> {
        tokens: Vec<&'a str>,
        pos: usize,
    }

    /// Splits on white space, and parentheses off the words they touch.
    fn tokenize(expr: &str) -> Vec<&str> {
        let mut out = Vec::new();
        for word in expr.split_whitespace() {
            let mut w = word;
            while let Some(rest) = w.strip_prefix('(') {
                out.push("(");
                w = rest;
            }
            let mut closing = 0;
            while let Some(rest) = w.strip_suffix(')') {
                closing += 1;
                w = rest;
            }
            if !w.is_empty() {
                out.push(w);
            }
            out.extend(std::iter::repeat_n(")", closing));
        }
        out
    }

    pub fn parse(expr: &str) -> Result<Target, TargetError> {
        let mut p = Parser { tokens: tokenize(expr), pos: 0 };
        let t = p.or()?;
        if let Some(tok) = p.peek() {
            return Err(p.error(tok, "expected 'and', 'or' or the end of the target"));
        }
        Ok(t)
    }

    impl<'a> Parser<'a> {
        fn peek(&self) -> Option<&'a str> {
            self.tokens.get(self.pos).copied()
        }

        fn error(&self, token: &str, reason: &str) -> TargetError {
            TargetError::Compound { pos: self.pos + 1, token: token.to_string(), reason: reason.to_string() }
        }

        fn or(&mut self) -> Result<Target, TargetError> {
            let mut left = self.and()?;
            while self.peek() == Some("or") {
                self.pos += 1;
                left = Target::Or(Box::new(left), Box::new(self.and()?));
            }
            Ok(left)
        }

        fn and(&mut self) -> Result<Target, TargetError> {
            let mut left = self.not()?;
            while self.peek() == Some("and") {
                self.pos += 1;
                left = Target::And(Box::new(left), Box::new(self.not()?));
            }
            Ok(left)
        }

        fn not(&mut self) -> Result<Target, TargetError> {
            if self.peek() == Some("not") {
                self.pos += 1;
                return Ok(Target::Not(Box::new(self.not()?)));
            }
            self.primary()
        }

        fn primary(&mut self) -> Result<Target, TargetError> {
            let Some(tok) = self.peek() else {
                let last = self.tokens.last().copied().unwrap_or("");
                return Err(TargetError::Compound {
                    pos: self.tokens.len(),
                    token: last.to_string(),
                    reason: "expected a target after it".into(),
                });
            };
            match tok {
                "(" => {
                    self.pos += 1;
                    let inner = self.or()?;
                    match self.peek() {
                        Some(")") => {
                            self.pos += 1;
                            Ok(inner)
                        }
                        Some(other) => Err(self.error(other, "expected ')'")),
                        None => Err(self.error("(", "unclosed '('")),
                    }
                }
                ")" | "and" | "or" => Err(self.error(tok, "expected a target here")),
                _ => {
                    let t = self.term(tok)?;
                    self.pos += 1;
                    Ok(t)
                }
            }
        }

        fn term(&self, tok: &str) -> Result<Target, TargetError> {
            let Some((prefix, rest)) = tok.split_once('@') else {
                return Ok(Target::Glob(glob(tok, false).map_err(|e| self.error(tok, &e.to_string()))?));
            };
            let empty = || self.error(tok, &format!("nothing after '{prefix}@'"));
            if rest.is_empty() {
                return Err(empty());
            }
            let wrap = |e: TargetError| self.error(tok, &e.to_string());
            match prefix {
                "G" => grain(rest).map_err(wrap),
                "E" => Ok(Target::Pcre(pcre(rest).map_err(wrap)?)),
                "L" => Ok(list(rest)),
                "R" => Ok(Target::Role(rest.to_string())),
                _ => {
                    Err(self
                        .error(tok, &format!("unknown target type '{prefix}@' (expected G@, E@, L@ or R@)")))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fleet() -> Vec<(&'static str, Value)> {
        vec![
            ("web-1", json!({"os": "Debian", "os_family": "Debian", "roles": ["webui"], "num_cpus": 2})),
            ("web-2", json!({"os": "Debian", "os_family": "Debian", "roles": ["webui"], "num_cpus": 4})),
            (
                "db-1",
                json!({"os": "Debian", "os_family": "Debian", "roles": ["datastore"], "ipv4": ["10.0.0.5"]}),
            ),
            ("worker-1", json!({"os": "Ubuntu", "os_family": "Debian", "net": {"eth0": "10.1.0.1"}})),
            ("key", json!({})),
        ]
    }

    fn select(expr: &str, kind: TargetType) -> Result<Vec<&'static str>, TargetError> {
        let t = Target::parse(expr, kind)?;
        Ok(fleet()
            .iter()
            .filter(|(id, g)| t.matches(&Candidate { id, grains: g }))
            .map(|(id, _)| *id)
            .collect())
    }

    #[test]
    fn every_form_selects_exactly_its_subset() {
        use TargetType::*;
        let cases: &[(&str, TargetType, &[&str])] = &[
            ("*", Glob, &["web-1", "web-2", "db-1", "worker-1", "key"]),
            ("web-*", Glob, &["web-1", "web-2"]),
            ("web-[2-9]", Glob, &["web-2"]),
            ("?b-1", Glob, &["db-1"]),
            ("nothing*", Glob, &[]),
            ("web-\\d", Pcre, &["web-1", "web-2"]),
            ("w", Pcre, &["web-1", "web-2", "worker-1"]),
            ("db-1,key", List, &["db-1", "key"]),
            (" db-1 , ", List, &["db-1"]),
            ("os:debian", Grain, &["web-1", "web-2", "db-1"]),
            ("os_family:Deb*", Grain, &["web-1", "web-2", "db-1", "worker-1"]),
            ("num_cpus:4", Grain, &["web-2"]),
            ("ipv4:10.0.*", Grain, &["db-1"]),
            ("net:eth0:10.1.*", Grain, &["worker-1"]),
            ("G@os:debian and web-*", Compound, &["web-1", "web-2"]),
            ("G@os:debian and not web-*", Compound, &["db-1"]),
            ("L@db-1,key or E@worker", Compound, &["db-1", "worker-1", "key"]),
            ("web-* and (G@num_cpus:4 or L@web-1)", Compound, &["web-1", "web-2"]),
            ("(web-* or db-*) and not G@num_cpus:4", Compound, &["web-1", "db-1"]),
            ("R@webui", Compound, &["web-1", "web-2"]),
            ("not not key", Compound, &["key"]),
            ("G@os:debian and R@datastore or worker-*", Compound, &["db-1", "worker-1"]),
        ];
        for (expr, kind, want) in cases {
            assert_eq!(select(expr, *kind).as_deref(), Ok(*want), "{expr} ({kind:?})");
        }
    }

    #[test]
    fn bad_targets_name_the_token() {
        use TargetType::*;
        let cases: &[(&str, TargetType, &str)] = &[
            ("G@os:debian and", Compound, "token 2 \"and\""),
            ("web-* db-*", Compound, "token 2 \"db-*\""),
            ("X@foo", Compound, "unknown target type 'X@'"),
            ("(web-*", Compound, "unclosed '('"),
            ("web-*)", Compound, "token 2 \")\""),
            ("G@nocolon", Compound, "expected grain:glob"),
            ("and web-*", Compound, "token 1 \"and\""),
            ("E@(", Compound, "bad regular expression"),
            ("nocolon", Grain, "expected grain:glob"),
            ("(", Pcre, "bad regular expression"),
            ("[", Glob, "bad glob"),
            ("   ", Glob, "empty target"),
        ];
        for (expr, kind, want) in cases {
            let err = select(expr, *kind).unwrap_err().to_string();
            assert!(err.contains(want), "{expr}: {err:?} should contain {want:?}");
        }
    }
}

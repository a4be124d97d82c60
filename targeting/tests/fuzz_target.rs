//! Property tests of the target parser (`targeting`): any text, as any kind of target,
//! parses or is an error, never a panic; what parses matches without a panic and stays
//! shallow; and compound targets mean what a plain recursive-descent reading says.
//!
//! 256 cases each in `cargo test`; `scripts/fuzz.sh` runs many more (`PROPTEST_CASES`).

use api::TargetType;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Value, json};
use targeting::{Candidate, MAX_DEPTH, MAX_TERMS, Target, TargetError};

const KINDS: [TargetType; 7] = [
    TargetType::Glob,
    TargetType::Pcre,
    TargetType::List,
    TargetType::Grain,
    TargetType::Compound,
    TargetType::GrainPcre,
    TargetType::Ipcidr,
];

fn fleet() -> Vec<(&'static str, Value)> {
    vec![
        ("web-1", json!({"os": "Debian", "roles": ["webui"], "net": {"eth0": "10.0.0.1"}})),
        ("db-1", json!({"os": "Debian", "roles": ["datastore"], "num": 4})),
        ("worker-1", json!({"os": "Ubuntu", "ipv4": ["10.1.0.1", "127.0.0.1"]})),
        ("x", json!({})),
    ]
}

/// Every id `t` selects; panics only if matching does.
fn select_ids(t: &Target) -> Vec<&'static str> {
    fleet()
        .iter()
        .filter(|(id, grains)| t.matches(&Candidate { id, grains, pillar: None }))
        .map(|(id, _)| *id)
        .collect()
}

/// How many nodes deep a parsed target is (recursive: parsed targets are shallow).
fn depth(t: &Target) -> usize {
    match t {
        Target::Not(inner) => 1 + depth(inner),
        Target::And(all) | Target::Or(all) => 1 + all.iter().map(depth).max().unwrap_or(0),
        _ => 1,
    }
}

/// Words of the compound syntax, good and bad.
const WORDS: &[&str] = &[
    "(",
    ")",
    "and",
    "or",
    "not",
    "web-*",
    "web-1",
    "*",
    "?b-1",
    "[",
    "[a-",
    "{a,b}",
    "\\",
    "G@os:debian",
    "G@os",
    "G@:x",
    "G@net:eth0:10.*",
    "G@ipv4:127.*",
    "E@^w",
    "E@(",
    "E@a{99999}",
    "E@\\",
    "L@web-1,db-1",
    "L@bad id",
    "L@,",
    "L@../x",
    "R@webui",
    "R@",
    "X@y",
    "@",
    "@@",
    "é",
    "(web-1",
    "x)",
    "((",
    "))",
    "not(",
    "and)",
    "0",
    "",
];

/// What sits between words: sometimes nothing, so parentheses and words run together.
const GAPS: &[&str] = &[" ", " ", " ", "", "  ", "\t", "\n", " ( ", " ) "];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec((select(WORDS), select(GAPS)), 0..40)
        .prop_map(|words| words.into_iter().flat_map(|(w, g)| [w, g]).collect())
}

proptest! {
    #[test]
    fn fuzz_any_text_is_a_target_or_an_error(text in "\\PC{0,80}|[ -~]{0,200}") {
        for kind in KINDS {
            if let Ok(t) = Target::parse(&text, kind) {
                select_ids(&t);
            }
        }
    }

    #[test]
    fn fuzz_compound_soup_parses_shallow_or_is_an_error(text in soup()) {
        match Target::parse(&text, TargetType::Compound) {
            Ok(t) => {
                prop_assert!(depth(&t) <= 2 * MAX_DEPTH + 2, "{} deep", depth(&t));
                select_ids(&t);
            }
            Err(TargetError::Compound { pos, .. }) => prop_assert!(pos >= 1, "token positions count from 1"),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// Repeated openers and chains around the limits: refused by size, or parsed and shallow.
    /// (List terms: a glob costs microseconds to build, and these have hundreds of terms.)
    #[test]
    fn fuzz_nesting_and_chains_near_the_limits(
        parts in prop::collection::vec(
            (select(&["(", "not ", "not (", "L@x or ", "L@x and ", "L@web-1)"][..]), 0..80usize),
            1..6,
        ),
    ) {
        let text: String = parts.iter().map(|(p, n)| p.repeat(*n)).collect::<String>() + "L@web-1";
        match Target::parse(&text, TargetType::Compound) {
            Ok(t) => prop_assert!(depth(&t) <= 2 * MAX_DEPTH + 2),
            Err(TargetError::TooDeep(n)) => prop_assert!(n > MAX_DEPTH),
            Err(TargetError::TooManyTerms(n)) => prop_assert!(n > MAX_TERMS),
            Err(TargetError::TooLong(_) | TargetError::Compound { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected {other}"),
        }
    }

    #[test]
    fn fuzz_compound_means_what_recursive_descent_says(words in reference_words()) {
        let text = words.join(" ");
        let parsed = Target::parse(&text, TargetType::Compound);
        for (id, grains) in fleet() {
            let want = Reference { words: &words, at: 0, id }.target();
            let got = parsed.as_ref().ok().map(|t| t.matches(&Candidate { id, grains: &grains, pillar: None }));
            prop_assert_eq!(got, want, "{} for {}: {:?}", text, id, parsed.as_ref().err());
        }
    }
}

/// The terms the reference knows, and the operators.
const REFERENCE_WORDS: &[&str] =
    &["(", ")", "and", "or", "not", "web-1", "web-*", "*-1", "L@db-1,x", "G@os:debian", "R@webui"];

/// Well-formed compound targets over [`REFERENCE_WORDS`], some with a word put in or taken
/// out, and any sequence of those words.
fn reference_words() -> impl Strategy<Value = Vec<&'static str>> {
    let term = select(&REFERENCE_WORDS[5..]).prop_map(|t| vec![t]);
    let well_formed = term.prop_recursive(8, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| [vec!["not"], e].concat()),
            inner.clone().prop_map(|e| [vec!["("], e, vec![")"]].concat()),
            (inner.clone(), select(&["and", "or"][..]), inner)
                .prop_map(|(a, op, b)| [a, vec![op], b].concat()),
        ]
    });
    let edited = (well_formed.clone(), any::<Index>(), prop::option::of(select(REFERENCE_WORDS))).prop_map(
        |(mut words, at, word)| {
            match word {
                Some(word) => words.insert(at.index(words.len() + 1), word),
                None => drop(words.remove(at.index(words.len()))),
            }
            words
        },
    );
    prop_oneof![3 => well_formed, 1 => edited, 1 => prop::collection::vec(select(REFERENCE_WORDS), 1..24)]
}

/// Which fleet ids each term of [`REFERENCE_WORDS`] selects.
fn reference_term(word: &str, id: &str) -> Option<bool> {
    let ids: &[&str] = match word {
        "web-1" | "web-*" | "R@webui" => &["web-1"],
        "*-1" => &["web-1", "db-1", "worker-1"],
        "L@db-1,x" => &["db-1", "x"],
        "G@os:debian" => &["web-1", "db-1"],
        _ => return None,
    };
    Some(ids.contains(&id))
}

/// `or := and ('or' and)*`, `and := not ('and' not)*`, `not := 'not' not | '(' or ')' | term`,
/// evaluated for one id as it is read; `None` for a syntax error. Both sides of an operator
/// are always read, so an error anywhere is found.
struct Reference<'a> {
    words: &'a [&'a str],
    at: usize,
    id: &'a str,
}

impl<'a> Reference<'a> {
    fn target(mut self) -> Option<bool> {
        let value = self.or()?;
        (self.at == self.words.len()).then_some(value)
    }

    fn peek(&self) -> Option<&'a str> {
        self.words.get(self.at).copied()
    }

    fn or(&mut self) -> Option<bool> {
        let mut value = self.and()?;
        while self.peek() == Some("or") {
            self.at += 1;
            value |= self.and()?;
        }
        Some(value)
    }

    fn and(&mut self) -> Option<bool> {
        let mut value = self.not()?;
        while self.peek() == Some("and") {
            self.at += 1;
            value &= self.not()?;
        }
        Some(value)
    }

    fn not(&mut self) -> Option<bool> {
        let word = self.peek()?;
        self.at += 1;
        match word {
            "not" => self.not().map(|v| !v),
            "(" => {
                let value = self.or()?;
                (self.peek() == Some(")")).then(|| self.at += 1)?;
                Some(value)
            }
            _ => reference_term(word, self.id),
        }
    }
}

//! The render budget: a template may loop at most [`MAX_ITERATIONS`] times in all and render
//! for at most [`MAX_TIME`], so that a commit with runaway loops (`range` in `range`) is
//! refused in seconds instead of burning a CPU for minutes on the master and every minion.
//!
//! Tera has no such limit and no hook in its loops, so the template is instrumented before
//! Tera parses it: every `{% for %}` and `{% component %}` body starts with a call of
//! [`TICK`], and every list comprehension's condition with a call of [`EACH`]. Both count
//! one iteration against a [`Meter`] and check its clock; over budget, they fail, which stops
//! the render at once. The inserted text never holds a newline, so lines stay as written;
//! [`Instrumented::position`] maps a column of the instrumented text back to the user's.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::diag::Diagnostic;

/// The most loop iterations (comprehension elements and component calls included) one
/// render may run.
pub const MAX_ITERATIONS: u64 = 1_000_000;
/// The longest one render may take.
pub const MAX_TIME: Duration = Duration::from_secs(2);

/// What a render may spend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Budget {
    pub iterations: u64,
    pub time: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { iterations: MAX_ITERATIONS, time: MAX_TIME }
    }
}

/// The function called at the start of every loop or component body; renders as nothing.
pub(crate) const TICK: &str = "__drover_tick";
/// The function called in every list comprehension's condition; is `true`.
pub(crate) const EACH: &str = "__drover_each";

/// Why a render was stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Exceeded {
    Iterations(u64),
    Time(Duration),
}

/// How the message of a render stopped by its budget begins.
const STOPPED: &str = "rendering stopped in this loop after ";

impl Exceeded {
    pub fn message(self) -> String {
        const HINT: &str = "expected loops that end sooner (is a `range` or a list too large?)";
        match self {
            Exceeded::Iterations(n) => format!("{STOPPED}{n} iterations in all; {HINT}"),
            Exceeded::Time(t) => format!("{STOPPED}taking longer than {}; {HINT}", seconds(t)),
        }
    }
}

impl Diagnostic {
    /// A render stopped by its budget: rendering the same files again (for another minion)
    /// would most likely spend the budget again.
    pub fn over_budget(&self) -> bool {
        self.message.starts_with(STOPPED)
    }
}

fn seconds(t: Duration) -> String {
    let secs = t.as_secs_f64();
    if secs.fract() == 0.0 { format!("{secs:.0} s") } else { format!("{secs} s") }
}

/// What one render has spent; shared by the tick functions of its Tera instance.
pub(crate) struct Meter {
    budget: Budget,
    deadline: Instant,
    iterations: AtomicU64,
    exceeded: Mutex<Option<Exceeded>>,
}

impl Meter {
    pub fn start(budget: Budget) -> Self {
        let now = Instant::now();
        Meter {
            budget,
            deadline: now.checked_add(budget.time).unwrap_or(now),
            iterations: AtomicU64::new(0),
            exceeded: Mutex::new(None),
        }
    }

    /// Counts one iteration; `Err` once the budget is spent.
    pub fn tick(&self) -> Result<(), Exceeded> {
        let n = self.iterations.fetch_add(1, Ordering::Relaxed) + 1;
        let over = if n > self.budget.iterations {
            Some(Exceeded::Iterations(self.budget.iterations))
        } else if Instant::now() >= self.deadline {
            Some(Exceeded::Time(self.budget.time))
        } else {
            None
        };
        match over {
            None => Ok(()),
            Some(why) => {
                *self.exceeded.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                Err(why)
            }
        }
    }

    /// Why the render was stopped, if it was.
    pub fn exceeded(&self) -> Option<Exceeded> {
        *self.exceeded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Text inserted into the template at one place.
#[derive(Debug, Clone, PartialEq)]
struct Insertion {
    /// 1-based line and 0-based character column of the user's text where it goes.
    line: usize,
    col: usize,
    /// Its length in characters (it is ASCII).
    len: usize,
    /// 1-based line and column of the `for` or `component` keyword of its loop.
    keyword: (usize, usize),
}

/// A template with its loops instrumented.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Instrumented {
    pub text: String,
    insertions: Vec<Insertion>,
}

impl Instrumented {
    /// The user's position of 1-based `line` and 0-based character column `col` of the
    /// instrumented text, as 1-based (line, col). A position inside inserted text is the
    /// keyword of the loop it was inserted for.
    pub fn position(&self, line: usize, col: usize) -> (usize, usize) {
        let mut shift = 0;
        for ins in self.insertions.iter().filter(|i| i.line == line) {
            let start = ins.col + shift;
            if col < start {
                break;
            }
            if col < start + ins.len {
                return ins.keyword;
            }
            shift += ins.len;
        }
        (line, col - shift + 1)
    }
}

/// Inserts the tick calls (see the module docs). A template Tera would refuse is
/// instrumented up to where it goes wrong, and Tera reports the problem.
pub(crate) fn instrument(template: &str) -> Instrumented {
    let mut scan = Scan { text: template, bytes: template.as_bytes(), pos: 0, found: Vec::new() };
    scan.template();
    let mut found = scan.found;
    found.sort_by_key(|f| f.at);

    let lines = Lines::of(template);
    let mut text = String::with_capacity(template.len() + found.len() * 24);
    let mut insertions = Vec::with_capacity(found.len());
    let mut copied = 0;
    for f in found {
        let (line, col) = lines.position(f.at);
        let keyword = lines.position(f.keyword);
        text.push_str(&template[copied..f.at]);
        text.push_str(&f.insert);
        copied = f.at;
        insertions.push(Insertion { line, col, len: f.insert.len(), keyword: (keyword.0, keyword.1 + 1) });
    }
    text.push_str(&template[copied..]);
    Instrumented { text, insertions }
}

/// Where each line of a text starts, to turn byte offsets into lines and columns.
struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn of(text: &'a str) -> Self {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Lines { text, starts }
    }

    /// The 1-based line and 0-based character column of byte `offset`.
    fn position(&self, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        (line, self.text[start..offset].chars().count())
    }
}

/// One insertion found: `insert` goes at byte `at`, for the loop whose keyword is at byte
/// `keyword`.
struct Found {
    at: usize,
    insert: String,
    keyword: usize,
}

/// A list comprehension whose `for` was seen and whose `]` was not.
struct Comprehension {
    /// Open brackets when its `for` came (its own `[` included).
    depth: usize,
    keyword: usize,
    /// Its `in` was seen: an `if` or `]` at `depth` ends the iterable.
    in_iterable: bool,
}

/// A scanner that follows Tera's lexer (`tera::parsing::lexer`) just far enough to find
/// tags, comments, raw blocks, strings, identifiers and brackets.
struct Scan<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    found: Vec<Found>,
}

impl Scan<'_> {
    fn at(&self, s: &str) -> bool {
        self.bytes[self.pos..].starts_with(s.as_bytes())
    }

    /// Text between tags, until the end.
    fn template(&mut self) {
        while let Some(next) = find(self.bytes, self.pos, |w| w == b"{{" || w == b"{%" || w == b"{#") {
            self.pos = next;
            let done = if self.at("{#") {
                self.comment()
            } else if self.at("{%") {
                self.block()
            } else {
                self.pos += 2;
                if self.at("-") {
                    self.pos += 1;
                }
                self.code(false)
            };
            if !done {
                return;
            }
        }
    }

    fn comment(&mut self) -> bool {
        match find(self.bytes, self.pos + 2, |w| w == b"#}") {
            Some(end) => {
                self.pos = end + 2;
                true
            }
            None => false,
        }
    }

    /// `{% raw %}…{% endraw %}` as a whole, or any other tag.
    fn block(&mut self) -> bool {
        self.pos += 2;
        if self.at("-") {
            self.pos += 1;
        }
        let Some(after) = skip_tag(&self.text[self.pos..], "raw") else { return self.code(true) };
        let mut from = self.pos + after;
        while let Some(start) = find(self.bytes, from, |w| w == b"{%") {
            if let Some(end) = skip_tag(&self.text[start + 2..], "endraw") {
                self.pos = start + 2 + end;
                return true;
            }
            from = start + 2;
        }
        false
    }

    /// The inside of a tag (`{% … %}`) or a variable (`{{ … }}`), through its end; records
    /// the insertions it needs. `false` when it has no end (Tera will say so).
    fn code(&mut self, tag: bool) -> bool {
        let end = if tag { "%}" } else { "}}" };
        // a `{% for %}` or `{% component %}` tag: where its keyword is
        let mut opens_body: Option<usize> = None;
        let mut first = true;
        let mut after_dot = false;
        let mut depth = 0usize;
        let mut pending: Vec<Comprehension> = Vec::new();
        loop {
            while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            if self.pos >= self.bytes.len() {
                return false;
            }
            let trim = self.at("-") && self.bytes[self.pos + 1..].starts_with(end.as_bytes());
            if trim || self.at(end) {
                self.pos += end.len() + usize::from(trim);
                if let Some(keyword) = opens_body {
                    let close = if trim { "-}}" } else { "}}" };
                    let insert = format!("{{{{ {TICK}() {close}");
                    self.found.push(Found { at: self.pos, insert, keyword });
                }
                return true;
            }
            let start = self.pos;
            let byte = self.bytes[self.pos];
            let mut dot = false;
            match byte {
                b'"' | b'\'' | b'`' => {
                    let mut i = self.pos + 1;
                    while i < self.bytes.len() && self.bytes[i] != byte {
                        i += if self.bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    if i >= self.bytes.len() {
                        return false;
                    }
                    self.pos = i + 1;
                }
                b'0'..=b'9' => {
                    let mut seen_dot = false;
                    while let Some(&b) = self.bytes.get(self.pos) {
                        match b {
                            b'0'..=b'9' => {}
                            b'.' if !seen_dot => seen_dot = true,
                            _ => break,
                        }
                        self.pos += 1;
                    }
                }
                b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                    while self.bytes.get(self.pos).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') {
                        self.pos += 1;
                    }
                    let word = &self.text[start..self.pos];
                    if first && tag && matches!(word, "for" | "component") {
                        opens_body = Some(start);
                    } else if !after_dot {
                        self.comprehension_word(word, start, depth, &mut pending);
                    }
                }
                b'?' if self.at("?.") => {
                    self.pos += 2;
                    dot = true;
                }
                b'?' if self.at("?[") => {
                    self.pos += 2;
                    depth += 1;
                }
                b'.' => {
                    self.pos += if self.at("...") { 3 } else { 1 };
                    dot = true;
                }
                b'(' | b'[' | b'{' => {
                    self.pos += 1;
                    depth += 1;
                }
                b')' | b']' | b'}' => {
                    if byte == b']' && pending.last().is_some_and(|c| c.depth == depth) {
                        let c = pending.pop().expect("checked");
                        if c.in_iterable {
                            let insert = format!(" if {EACH}()");
                            self.found.push(Found { at: start, insert, keyword: c.keyword });
                        }
                    }
                    self.pos += 1;
                    depth = depth.saturating_sub(1);
                }
                _ => {
                    // an operator, or a character Tera will refuse
                    self.pos += self.text[self.pos..].chars().next().map_or(1, char::len_utf8);
                }
            }
            after_dot = dot;
            first = false;
        }
    }

    /// Follows a list comprehension `[x for x in EXPR]` or `[x for x in EXPR if COND]`
    /// through its words: the element expression is counted in its condition.
    fn comprehension_word(
        &mut self,
        word: &str,
        start: usize,
        depth: usize,
        pending: &mut Vec<Comprehension>,
    ) {
        match word {
            "for" if depth > 0 => pending.push(Comprehension { depth, keyword: start, in_iterable: false }),
            "in" => {
                if let Some(c) = pending.last_mut().filter(|c| c.depth == depth && !c.in_iterable) {
                    c.in_iterable = true;
                }
            }
            "if" if pending.last().is_some_and(|c| c.depth == depth && c.in_iterable) => {
                let c = pending.pop().expect("checked");
                let insert = format!(" {EACH}() and");
                self.found.push(Found { at: start + 2, insert, keyword: c.keyword });
            }
            _ => {}
        }
    }
}

/// Find the first window of two bytes at or after `from` that `hit` accepts.
fn find(bytes: &[u8], from: usize, hit: impl Fn(&[u8]) -> bool) -> Option<usize> {
    bytes.get(from..)?.windows(2).position(hit).map(|i| from + i)
}

/// Tera's `skip_tag`: `-? ws* NAME ws* -?%}` at the start of `s`; the length it spans.
fn skip_tag(s: &str, name: &str) -> Option<usize> {
    let rest = s.strip_prefix('-').unwrap_or(s);
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let rest = rest.strip_prefix(name)?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let rest = rest.strip_prefix("%}")?;
    Some(s.len() - rest.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_bodies_and_comprehensions_get_a_tick() {
        let t = |s: &str| instrument(s).text;
        let tick = "{{ __drover_tick() }}";
        let cases: &[(&str, String)] = &[
            ("{% for x in l %}a{% endfor %}", format!("{{% for x in l %}}{tick}a{{% endfor %}}")),
            // whitespace control after the tag still trims what follows the tick
            (
                "{%- for k, v in m -%}\n a{% endfor %}",
                "{%- for k, v in m -%}{{ __drover_tick() -}}\n a{% endfor %}".into(),
            ),
            (
                "{% component c(a) %}{{a}}{% endcomponent c %}",
                format!("{{% component c(a) %}}{tick}{{{{a}}}}{{% endcomponent c %}}"),
            ),
            ("{{ [x for x in l] }}", "{{ [x for x in l if __drover_each()] }}".into()),
            ("{{ [x for x in l if x > 1] }}", "{{ [x for x in l if __drover_each() and x > 1] }}".into()),
            (
                "{% for a in [[b for b in l] for c in m] %}{% endfor %}",
                format!(
                    "{{% for a in [[b for b in l if __drover_each()] for c in m if __drover_each()] %}}{tick}{{% endfor %}}"
                ),
            ),
            ("{{ [x.y for x in l[1:2]] }}", "{{ [x.y for x in l[1:2] if __drover_each()] }}".into()),
            // not loops: strings, comments, raw blocks, attributes named `for`, `in` outside
            (
                "{{ \"{% for x in l %}\" }}{# {% for x in l %} #}",
                "{{ \"{% for x in l %}\" }}{# {% for x in l %} #}".into(),
            ),
            ("{% raw %}{% for x in l %}{% endraw %}", "{% raw %}{% for x in l %}{% endraw %}".into()),
            ("{%- raw -%}{% for %}{%- endraw %}", "{%- raw -%}{% for %}{%- endraw %}".into()),
            (
                "{{ a.for }}{{ 'x' in l }}{% set for_x = 1 %}",
                "{{ a.for }}{{ 'x' in l }}{% set for_x = 1 %}".into(),
            ),
            ("{% if x %}{% endif %}", "{% if x %}{% endif %}".into()),
            // broken templates are left for Tera to report
            ("{% for x in \"l %}", "{% for x in \"l %}".into()),
            ("{{ x ", "{{ x ".into()),
        ];
        for (input, want) in cases {
            assert_eq!(&t(input), want, "{input}");
        }
    }

    #[test]
    fn positions_map_back_to_the_users_text() {
        let i = instrument("{% for x in l %}{{ y }}\n{{ [a for a in l] }} {{ z }}");
        let tick = "{{ __drover_tick() }}".len();
        // before, inside and after the inserted tick on line 1
        assert_eq!(i.position(1, 3), (1, 4));
        assert_eq!(i.position(1, 16 + 2), (1, 4));
        assert_eq!(i.position(1, 16 + tick + 3), (1, 20));
        // line 2: the condition goes before the `]` at column 16; inside it is the `for`
        let each = " if __drover_each()".len();
        assert_eq!(i.position(2, 15), (2, 16));
        assert_eq!(i.position(2, 16 + each), (2, 17));
        assert_eq!(i.position(2, 24 + each), (2, 25));
        assert_eq!(i.position(2, 17), (2, 7));
    }

    #[test]
    fn the_meter_stops_after_its_iterations_or_its_time() {
        let m = Meter::start(Budget { iterations: 2, time: Duration::from_secs(3600) });
        assert_eq!((m.tick(), m.tick()), (Ok(()), Ok(())));
        assert_eq!(m.tick(), Err(Exceeded::Iterations(2)));
        assert_eq!(m.exceeded(), Some(Exceeded::Iterations(2)));
        let m = Meter::start(Budget { iterations: 10, time: Duration::ZERO });
        assert_eq!(m.tick(), Err(Exceeded::Time(Duration::ZERO)));
        assert_eq!(
            Exceeded::Time(MAX_TIME).message(),
            "rendering stopped in this loop after taking longer than 2 s; \
             expected loops that end sooner (is a `range` or a list too large?)"
        );
    }
}

//! Diagnostics for mock files: a [`Problem`] located at `file:line:column` with the TOML path it
//! concerns and a hint, [`MockError`] (every problem of a load, one per line), byte-offset to
//! line:column conversion, and did-you-mean suggestions by edit distance.

use std::fmt;
use std::ops::Range;

/// At most this many problems are kept per load: past it, a last problem says how many more.
pub const MAX_PROBLEMS: usize = 100;

/// One thing wrong with a mock file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// The file as named to the loader (e.g. `mocks/inventory.toml`).
    pub file: String,
    /// 1-based line; 0 when the problem has no place in the text (the file could not be read).
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// Where in the TOML document, e.g. `endpoint[1].errors[0].probability`; empty for the
    /// document as a whole.
    pub path: String,
    pub message: String,
    /// What to write instead, when we can tell: a did-you-mean, the allowed range, the known names.
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}

/// Why mock files could not be loaded: every problem found, in file then text order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.problems))]
pub struct MockError {
    problems: Vec<Problem>,
}

fn render(problems: &[Problem]) -> String {
    let mut s = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str(&p.to_string());
    }
    s
}

impl MockError {
    /// Sorts (file, line, column), drops exact duplicates, keeps at most [`MAX_PROBLEMS`].
    pub(crate) fn new(mut problems: Vec<Problem>) -> MockError {
        debug_assert!(!problems.is_empty(), "an error with no problem");
        problems.sort();
        problems.dedup();
        if problems.len() > MAX_PROBLEMS {
            let more = problems.len() - (MAX_PROBLEMS - 1);
            let file = problems[MAX_PROBLEMS - 1].file.clone();
            problems.truncate(MAX_PROBLEMS - 1);
            problems.push(Problem {
                file,
                line: 0,
                column: 0,
                path: String::new(),
                message: format!("{more} more problems not shown"),
                hint: Some("fix the ones above first".to_string()),
            });
        }
        MockError { problems }
    }

    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

/// Maps byte offsets of one text to 1-based (line, column in characters).
pub(crate) struct Positions<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Positions<'a> {
    pub(crate) fn new(text: &'a str) -> Positions<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Positions { text, line_starts }
    }

    /// The line and column of byte `offset` (clamped to the text; snapped back to a char
    /// boundary).
    pub(crate) fn of(&self, offset: usize) -> (u32, u32) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let column = self.text[start..offset].chars().count() + 1;
        (
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(column).unwrap_or(u32::MAX),
        )
    }
}

/// Collects the problems of one file.
pub(crate) struct Diag<'a> {
    file: &'a str,
    positions: Positions<'a>,
    /// Byte ranges of text that is not the file's own (`--set` overrides appended to it), each
    /// with the label problems there are reported under instead of `file:line:column`.
    foreign: Vec<(Range<usize>, String)>,
    pub(crate) problems: Vec<Problem>,
}

impl<'a> Diag<'a> {
    pub(crate) fn new(file: &'a str, text: &'a str) -> Diag<'a> {
        Diag {
            file,
            positions: Positions::new(text),
            foreign: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Problems whose span starts in `range` are reported under `label` (e.g. `--set
    /// duration=0s`), with no line or column.
    pub(crate) fn add_foreign(&mut self, range: Range<usize>, label: String) {
        self.foreign.push((range, label));
    }

    /// A problem at the start of `span` (`None`: the start of the file).
    pub(crate) fn at(
        &mut self,
        span: Option<Range<usize>>,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let start = span.map_or(0, |s| s.start);
        if let Some((_, label)) = self.foreign.iter().find(|(r, _)| r.contains(&start)) {
            self.problems.push(Problem {
                file: label.clone(),
                line: 0,
                column: 0,
                path: path.to_string(),
                message: message.into(),
                hint,
            });
            return;
        }
        let (line, column) = self.positions.of(start);
        self.problems.push(Problem {
            file: self.file.to_string(),
            line,
            column,
            path: path.to_string(),
            message: message.into(),
            hint,
        });
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The (line, column) of byte `offset`.
    pub(crate) fn position(&self, offset: usize) -> (u32, u32) {
        self.positions.of(offset)
    }

    /// The line of byte `offset`.
    pub(crate) fn line_of(&self, offset: usize) -> u32 {
        self.positions.of(offset).0
    }
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions), ignoring ASCII
/// case.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for (i, row) in d.chunks_exact_mut(w).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[..w].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a likely misspelling (at most 2
/// edits, or a third of the word's length for long words). Ties go to the earlier candidate.
pub(crate) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(2);
    let mut best: Option<(usize, &'c str)> = None;
    for c in candidates {
        let d = edit_distance(word, c);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// A hint for an unknown name: a did-you-mean if one is close, else the known names.
pub(crate) fn name_hint<'c>(
    word: &str,
    what: &str,
    candidates: impl IntoIterator<Item = &'c str> + Clone,
) -> String {
    match closest(word, candidates.clone()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => {
            let known: Vec<String> = candidates.into_iter().map(|c| format!("`{c}`")).collect();
            format!("known {what}: {}", known.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_typos() {
        assert_eq!(edit_distance("latncy", "latency"), 1);
        assert_eq!(edit_distance("InternalErorr", "InternalError"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("POST", "post"), 0);
        assert_eq!(
            closest("latncy", ["name", "latency", "kind"]),
            Some("latency")
        );
        assert_eq!(closest("zzzzzz", ["name", "latency"]), None);
        let ops = ["allocate_host", "release_host"];
        assert_eq!(
            name_hint("alocate_host", "ops", ops),
            "did you mean `allocate_host`?"
        );
        assert_eq!(
            name_hint("frobnicate", "ops", ops),
            "known ops: `allocate_host`, `release_host`"
        );
    }

    #[test]
    fn positions_are_one_based_lines_and_char_columns() {
        let p = Positions::new("ab\nçd = 1\n\nx");
        assert_eq!(p.of(0), (1, 1));
        assert_eq!(p.of(1), (1, 2));
        assert_eq!(p.of(3), (2, 1));
        assert_eq!(p.of(6), (2, 3), "ç is two bytes, one column");
        assert_eq!(p.of(12), (4, 1));
        assert_eq!(p.of(999), (4, 2));
    }

    #[test]
    fn error_lists_every_problem_sorted_one_per_line() {
        let mk = |line, path: &str| Problem {
            file: "f.toml".into(),
            line,
            column: 1,
            path: path.into(),
            message: "bad".into(),
            hint: Some("fix".into()),
        };
        let e = MockError::new(vec![mk(3, "b"), mk(1, "a"), mk(3, "b")]);
        assert_eq!(
            e.to_string(),
            "f.toml:1:1: a: bad; fix\nf.toml:3:1: b: bad; fix"
        );
        let many = MockError::new((1..=150).map(|l| mk(l, "x")).collect());
        assert_eq!(many.problems().len(), MAX_PROBLEMS);
        assert!(
            many.to_string()
                .ends_with("f.toml: 51 more problems not shown; fix the ones above first")
        );
    }
}

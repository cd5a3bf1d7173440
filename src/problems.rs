//! A list of configuration problems, reported together.

use std::fmt;

/// Every problem found in a configuration or tenant file, one sentence each.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn one(problem: impl Into<String>) -> Self {
        Problems(vec![problem.into()])
    }

    pub fn push(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    /// Adds all of `other`'s problems.
    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }

    /// Prefixes every problem with where it was found.
    pub fn prefixed(self, at: &str) -> Self {
        Problems(self.0.into_iter().map(|p| format!("{at}: {p}")).collect())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// `Ok(value)` when there is no problem, else `Err(self)`.
    pub fn into_result<T>(self, value: T) -> Result<T, Problems> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// A TOML parse error as a problem: the line and column where the parser stopped, and its
/// message. Not the error's own `Display`, which quotes the offending line — a line that may
/// hold a secret; for the same reason a string value the message quotes is left out.
pub fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let message = without_quoted_strings(&message);
    match error.span() {
        Some(span) => {
            let (line, column) = position(text, span.start);
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// The line and column, from 1, of byte `offset` of `text`; columns count characters.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// `message` with every string value serde quotes (`invalid type: string "…", expected …`)
/// written `a string` instead.
fn without_quoted_strings(message: &str) -> String {
    const QUOTED: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(QUOTED) {
        out.push_str(&rest[..at]);
        out.push_str("a string");
        let value = &rest[at + QUOTED.len()..];
        // The value is escaped: it ends at the first quote no backslash escapes.
        let mut escaped = false;
        let end = value
            .char_indices()
            .find_map(|(i, c)| {
                let closes = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                closes.then_some(i + 1)
            })
            .unwrap_or(value.len());
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

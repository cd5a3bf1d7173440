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

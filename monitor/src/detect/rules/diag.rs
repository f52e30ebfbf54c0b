//! Errors and warnings about rule and policy files, each with a file:line:column and, when
//! the source is at hand, the offending line with a caret under the column.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pos {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
}

impl Pos {
    pub fn new(file: &str, line: usize, col: usize) -> Self {
        Self {
            file: file.to_owned(),
            line,
            col,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Warning,
    Error,
}

#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub level: Level,
    pub pos: Pos,
    pub message: String,
    /// The source line at `pos`, filled in by [`Diagnostic::with_source`].
    pub snippet: Option<String>,
}

impl Diagnostic {
    pub fn error(pos: Pos, message: impl Into<String>) -> Self {
        Self {
            level: Level::Error,
            pos,
            message: message.into(),
            snippet: None,
        }
    }

    pub fn warning(pos: Pos, message: impl Into<String>) -> Self {
        Self {
            level: Level::Warning,
            ..Self::error(pos, message)
        }
    }

    /// Attach the line of `src` the diagnostic points at.
    pub fn with_source(mut self, src: &str) -> Self {
        if self.snippet.is_none() {
            // Past the last line (an error at end of file): an empty line under the caret.
            self.snippet = Some(
                src.lines()
                    .nth(self.pos.line.saturating_sub(1))
                    .unwrap_or("")
                    .to_owned(),
            );
        }
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        write!(f, "{}: {level}: {}", self.pos, self.message)?;
        if let Some(line) = &self.snippet {
            let gutter = self.pos.line.to_string();
            // Tabs keep their width in the caret line so the caret lands under the column.
            let pad: String = line
                .chars()
                .take(self.pos.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(
                f,
                "\n{:w$} |\n{gutter} | {line}\n{:w$} | {pad}^",
                "",
                "",
                w = gutter.len()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_and_caret() {
        let d = Diagnostic::error(Pos::new("r.yaml", 2, 5), "unknown field `x`")
            .with_source("a: 1\nb:  x\n");
        assert_eq!(
            d.to_string(),
            "r.yaml:2:5: error: unknown field `x`\n  |\n2 | b:  x\n  |     ^"
        );
    }
}

/// A top-level key of a configuration mapping, checked: known (else an error naming the near
/// miss and the known keys, `what` saying whose key it is) and not given before. `None` when
/// the entry is to be skipped.
pub fn top_key<'n>(
    k: &'n crate::detect::rules::yaml::Node,
    known: &[&str],
    what: &str,
    seen: &mut Vec<&'n str>,
    errs: &mut Vec<Diagnostic>,
) -> Option<&'n str> {
    let key = k.as_str().unwrap_or_default();
    if !known.contains(&key) {
        errs.push(Diagnostic::error(
            k.pos.clone(),
            format!(
                "unknown {what} `{key}`{} (expected one of: {})",
                did_you_mean(key, known.iter().copied()),
                known.join(", ")
            ),
        ));
        return None;
    }
    if seen.contains(&key) {
        errs.push(Diagnostic::error(
            k.pos.clone(),
            format!("`{key}` given twice"),
        ));
        return None;
    }
    seen.push(key);
    Some(key)
}

/// ` (did you mean `x`?)` when one of `candidates` is close to `word` (a typo: the edit
/// distance is small next to the word's length), otherwise empty.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map_or_else(String::new, |(_, c)| format!(" (did you mean `{c}`?)"))
}

#[cfg(test)]
mod suggest_tests {
    use super::did_you_mean;

    #[test]
    fn suggests_only_close_names() {
        let names = ["file.path", "file.name", "proc.exe", "fail_on"];
        assert_eq!(
            did_you_mean("file.pth", names),
            " (did you mean `file.path`?)"
        );
        assert_eq!(did_you_mean("fial_on", names), " (did you mean `fail_on`?)");
        assert_eq!(did_you_mean("network.dest", names), "");
        assert_eq!(did_you_mean("x", names), "");
    }
}

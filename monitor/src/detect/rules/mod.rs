//! The rule engine: YAML rule files in the spirit of Falco (`list`, `macro`, `rule`, structured
//! `exceptions`, `override`), loaded in stages — parse ([`yaml`]) → collect definitions and
//! overrides ([`load`]) → compile conditions into matchers ([`compile`]) → index rules by event
//! kind — and evaluated against one event at a time through [`fields::Subject`].
//!
//! The default rules live in the repository's `rules/` directory and are embedded here.

pub mod compile;
pub mod cond;
pub mod diag;
pub mod fields;
pub mod globs;
pub mod load;
pub mod yaml;

use std::fmt;

use compile::{Compiler, Matcher, Piece};
pub use diag::{Diagnostic, Level, Pos};
use fields::{KIND_NAMES, Kinds, Subject};
pub use load::Doc;
use serde::Serialize;

/// The default rule files, in load order (lists first: later files use them).
pub const DEFAULT_FILES: &[(&str, &str)] = &[
    (
        "rules/lists.yaml",
        include_str!("../../../../rules/lists.yaml"),
    ),
    (
        "rules/sensitive-file.yaml",
        include_str!("../../../../rules/sensitive-file.yaml"),
    ),
    (
        "rules/shell-spawn.yaml",
        include_str!("../../../../rules/shell-spawn.yaml"),
    ),
    (
        "rules/process-memory.yaml",
        include_str!("../../../../rules/process-memory.yaml"),
    ),
    (
        "rules/tamper.yaml",
        include_str!("../../../../rules/tamper.yaml"),
    ),
    (
        "rules/persistence.yaml",
        include_str!("../../../../rules/persistence.yaml"),
    ),
    (
        "rules/download-exec.yaml",
        include_str!("../../../../rules/download-exec.yaml"),
    ),
    (
        "rules/egress.yaml",
        include_str!("../../../../rules/egress.yaml"),
    ),
    (
        "rules/dns-exfil.yaml",
        include_str!("../../../../rules/dns-exfil.yaml"),
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            "critical" => Self::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub struct Rule {
    pub name: String,
    pub desc: String,
    pub category: String,
    pub severity: Severity,
    pub tags: Vec<String>,
    pub enabled: bool,
    /// The event kinds this rule can match.
    pub kinds: Kinds,
    /// Where the rule was (last) defined.
    pub pos: Pos,
    condition_text: String,
    matcher: Matcher,
    exceptions: Option<Matcher>,
    output: Vec<Piece>,
    /// [`Facts`] every event it matches has (from the condition's top-level conjuncts): a
    /// rule that needs a call that worked is not tried on a failed one, nor one that needs a
    /// write on a read.
    needs: u8,
}

/// Facts about an event worked out once, before its rules are tried.
pub struct Facts;

impl Facts {
    pub const FAILED: u8 = 1;
    pub const OK: u8 = 2;
    pub const WRITE: u8 = 4;
    pub const NO_WRITE: u8 = 8;

    fn of(s: &dyn Subject) -> u8 {
        use fields::{Field, Val};
        let failed = matches!(s.value(Field::EvtFailed), Val::Bool(true));
        let write = matches!(s.value(Field::FileWrite), Val::Bool(true));
        (if failed { Self::FAILED } else { Self::OK })
            | (if write { Self::WRITE } else { Self::NO_WRITE })
    }

    /// What the conjuncts of `m` (an optimized condition) require of the event.
    fn needed_by(m: &Matcher) -> u8 {
        use compile::Test;
        use fields::Field;
        let one = |m: &Matcher| match m {
            Matcher::Test(Field::EvtFailed, Test::Bool(true)) => Self::FAILED,
            Matcher::Test(Field::EvtFailed, Test::Bool(false)) => Self::OK,
            Matcher::Test(Field::FileWrite, Test::Bool(true)) => Self::WRITE,
            Matcher::Test(Field::FileWrite, Test::Bool(false)) => Self::NO_WRITE,
            Matcher::Not(inner) => match &**inner {
                Matcher::Test(Field::EvtFailed, Test::Bool(true)) => Self::OK,
                Matcher::Test(Field::EvtFailed, Test::Bool(false)) => Self::FAILED,
                Matcher::Test(Field::FileWrite, Test::Bool(true)) => Self::NO_WRITE,
                Matcher::Test(Field::FileWrite, Test::Bool(false)) => Self::WRITE,
                _ => 0,
            },
            _ => 0,
        };
        match m {
            Matcher::And(v) => v.iter().map(one).fold(0, |a, b| a | b),
            m => one(m),
        }
    }
}

impl Rule {
    pub fn condition(&self) -> &str {
        &self.condition_text
    }

    pub fn matches(&self, s: &dyn Subject) -> bool {
        self.matcher.eval(s) && !self.exceptions.as_ref().is_some_and(|e| e.eval(s))
    }

    /// [`Rule::matches`], for an event whose [`Facts`] are `facts`.
    fn matches_with(&self, s: &dyn Subject, facts: u8) -> bool {
        facts & self.needs == self.needs && self.matches(s)
    }

    /// Every string an exception compares a process's name, tool or owning tool with: the
    /// tools the rule makes room for (block mode asks which of them own a credential file).
    pub fn exception_tools(&self) -> Vec<String> {
        fn walk(m: &Matcher, out: &mut Vec<String>) {
            match m {
                Matcher::And(v) | Matcher::Or(v) => v.iter().for_each(|m| walk(m, out)),
                Matcher::Not(m) => walk(m, out),
                Matcher::Test(
                    fields::Field::Proc(
                        _,
                        fields::ProcField::OwnerTool
                        | fields::ProcField::Tool
                        | fields::ProcField::Name,
                    ),
                    compile::Test::StrIn(set),
                ) => {
                    out.extend(set.iter().cloned());
                }
                Matcher::Test(..) => {}
            }
        }
        let mut out = Vec::new();
        if let Some(e) = &self.exceptions {
            walk(e, &mut out);
        }
        out.sort();
        out.dedup();
        out
    }

    pub fn message(&self, s: &dyn Subject) -> String {
        let mut out = String::new();
        for p in &self.output {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) => out.push_str(&s.value(*f).render()),
            }
        }
        out
    }
}

pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// For each event kind, the enabled rules that can match it.
    by_kind: Vec<Vec<usize>>,
}

impl RuleSet {
    /// The enabled rules that match this event, in definition order.
    pub fn matching<'a>(&'a self, s: &'a dyn Subject) -> impl Iterator<Item = &'a Rule> + 'a {
        let rules = self.by_kind.get(s.kind());
        let facts = if rules.is_some_and(|r| !r.is_empty()) {
            Facts::of(s)
        } else {
            0
        };
        rules
            .into_iter()
            .flatten()
            .map(|&i| &self.rules[i])
            .filter(move |r| r.matches_with(s, facts))
    }
}

/// Load documents (defaults first, then the user's, in order). Returns the rule set, or None
/// when there were errors; warnings come either way.
pub fn load(docs: &[Doc]) -> (Option<RuleSet>, Vec<Diagnostic>) {
    let mut defs = load::Defs::default();
    let mut diags = Vec::new();
    load::collect(docs, &mut defs, &mut diags);
    let mut c = Compiler::new(&defs);
    // Every macro is compiled on its own too, so an unused broken macro is still reported.
    let mut names: Vec<&String> = defs.macros.keys().collect();
    names.sort_by_key(|n| (&defs.macros[*n].pos.file, defs.macros[*n].pos.line));
    for name in names {
        c.macro_named(name);
    }
    let mut rules = Vec::new();
    for (name, def) in &defs.rules {
        let cond = c.condition(&def.cond);
        let exceptions = c.exceptions(&def.exceptions);
        let output = c.output(&def.output.0, &def.output.1);
        let (Some((matcher, kinds)), Some(exceptions), Some(output)) = (cond, exceptions, output)
        else {
            continue;
        };
        if kinds == Kinds::NONE {
            c.diags.push(Diagnostic::warning(
                def.pos.clone(),
                format!(
                    "rule `{name}` can never match: its conditions require different event kinds"
                ),
            ));
        } else if kinds == Kinds::ALL {
            c.diags.push(Diagnostic::warning(def.pos.clone(), format!("rule `{name}` does not say which events it applies to (add `evt.type = …`), so it is tested on every event")));
        }
        rules.push(Rule {
            name: name.clone(),
            desc: def.desc.clone(),
            category: def.category.clone(),
            severity: def.severity,
            tags: def.tags.clone(),
            enabled: def.enabled,
            kinds,
            pos: def.pos.clone(),
            condition_text: def.cond.text(),
            needs: 0,
            matcher: matcher.optimized(),
            exceptions: exceptions.map(Matcher::optimized),
            output,
        });
        if let Some(r) = rules.last_mut() {
            r.needs = Facts::needed_by(&r.matcher);
        }
    }
    diags.extend(c.diags);
    let mut seen = std::collections::HashSet::new();
    diags.retain(|d| seen.insert((d.pos.clone(), d.message.clone())));
    let diags: Vec<Diagnostic> = diags
        .into_iter()
        .map(|d| match defs.sources.get(&d.pos.file) {
            Some(src) => d.with_source(src),
            None => d,
        })
        .collect();
    if diags.iter().any(|d| d.level == Level::Error) {
        return (None, diags);
    }
    let mut by_kind = vec![Vec::new(); KIND_NAMES.len()];
    for (i, r) in rules.iter().enumerate() {
        if !r.enabled {
            continue;
        }
        for (k, list) in by_kind.iter_mut().enumerate() {
            if r.kinds.contains(k) {
                list.push(i);
            }
        }
    }
    (Some(RuleSet { rules, by_kind }), diags)
}

/// Parse a rule file's text into a document (its top level must be a list of items).
pub fn parse_doc(file: &str, src: &str) -> Result<Doc, Diagnostic> {
    let items = match yaml::parse(file, src).map_err(|d| d.with_source(src))? {
        None => Vec::new(),
        Some(n) => match n.value {
            yaml::Value::Seq(items) => items,
            _ => {
                return Err(Diagnostic::error(
                    n.pos,
                    "a rule file is a list of `- list:`, `- macro:` and `- rule:` items",
                )
                .with_source(src));
            }
        },
    };
    Ok(Doc {
        file: file.to_owned(),
        src: src.to_owned(),
        items,
    })
}

/// The embedded default rule files as documents.
/// The agent's host defaults (rules/host.yaml), loaded after [`default_docs`].
pub fn host_docs() -> Vec<Doc> {
    vec![
        parse_doc(
            "rules/host.yaml",
            include_str!("../../../../rules/host.yaml"),
        )
        .expect("host defaults parse (checked by tests)"),
    ]
}

pub fn default_docs() -> Vec<Doc> {
    DEFAULT_FILES
        .iter()
        .map(|(name, src)| parse_doc(name, src).expect("default rules parse (checked by tests)"))
        .collect()
}

#[cfg(test)]
mod tests;

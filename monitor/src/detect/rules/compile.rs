//! Loading stage two: definitions → matchers. Names in conditions are resolved (field, macro,
//! list), values are checked against the field's type, string lists become one matcher each
//! (a hash set, a `GlobSet`, a `RegexSet`), and each rule learns which event kinds it can match.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use globset::{GlobBuilder, GlobSetBuilder};
use ipnet::IpNet;
use regex::RegexSet;

use super::{
    cond::{self, Expr, Op, Rhs, Word},
    diag::{Diagnostic, Pos, did_you_mean},
    fields::{self, Field, Kinds, Subject, Type, Val},
    globs::Globs,
    load::{CondText, Defs, ExceptionDef},
    yaml,
};

#[derive(Clone, Debug)]
pub enum Matcher {
    And(Vec<Matcher>),
    Or(Vec<Matcher>),
    Not(Box<Matcher>),
    Test(Field, Test),
}

/// The values of an `=`/`in` test. Most lists are short (`evt.type = open`, a handful of tool
/// names), where comparing a few strings beats hashing the value with SipHash on every event.
#[derive(Clone, Debug)]
pub enum StrSet {
    Few(Vec<String>),
    Many(HashSet<String>),
}

impl StrSet {
    const FEW: usize = 8;

    pub fn contains(&self, v: &str) -> bool {
        match self {
            StrSet::Few(l) => l.iter().any(|x| x == v),
            StrSet::Many(h) => h.contains(v),
        }
    }

    pub fn iter(&self) -> Box<dyn Iterator<Item = &String> + '_> {
        match self {
            StrSet::Few(l) => Box::new(l.iter()),
            StrSet::Many(h) => Box::new(h.iter()),
        }
    }
}

impl FromIterator<String> for StrSet {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        let mut h: HashSet<String> = iter.into_iter().collect();
        if h.len() <= Self::FEW {
            StrSet::Few(h.drain().collect())
        } else {
            StrSet::Many(h)
        }
    }
}

#[derive(Clone, Debug)]
pub enum Test {
    StrIn(StrSet),
    Glob(Globs),
    Prefix(Vec<String>),
    Suffix(Vec<String>),
    Contains(Vec<String>),
    /// Needles are lower-cased.
    IContains(Vec<String>),
    Regex(RegexSet),
    NumIn(Vec<i64>),
    NumCmp(Op, i64),
    IpIn(Vec<IpNet>),
    Bool(bool),
    /// `evt.type = …` / `evt.type in (…)`: the event's kind in a bit set (no string compared).
    Kind(Kinds),
}

impl Matcher {
    pub fn eval(&self, s: &dyn Subject) -> bool {
        match self {
            Matcher::And(v) => v.iter().all(|m| m.eval(s)),
            Matcher::Or(v) => v.iter().any(|m| m.eval(s)),
            Matcher::Not(m) => !m.eval(s),
            Matcher::Test(_, Test::Kind(k)) => k.contains(s.kind()),
            Matcher::Test(f, t) => match s.value(*f) {
                Val::Str(v) => t.str(&v),
                v @ (Val::List(_) | Val::Cows(_) | Val::Strings(_) | Val::Pair(..)) => {
                    v.any_str(|x| t.str(x))
                }
                Val::Num(n) => match t {
                    Test::NumIn(set) => set.contains(&n),
                    Test::NumCmp(op, x) => match op {
                        Op::Lt => n < *x,
                        Op::Le => n <= *x,
                        Op::Gt => n > *x,
                        _ => n >= *x,
                    },
                    _ => false,
                },
                Val::Ip(ip) => {
                    matches!(t, Test::IpIn(nets) if nets.iter().any(|n| n.contains(&ip)))
                }
                Val::Bool(b) => matches!(t, Test::Bool(x) if *x == b),
                Val::Missing => false,
            },
        }
    }
}

impl Matcher {
    /// The same condition, cheaper to evaluate: nested ands and ors flattened, and each one's
    /// operands in order of estimated cost, so that the cheap tests that usually decide (the
    /// event's kind, a failed call, a flag) run before globs, regexes and list fields. The
    /// operands are pure, so the order changes the work done, never the result.
    pub fn optimized(self) -> Matcher {
        match self {
            Matcher::And(v) => Self::ordered(v, true),
            Matcher::Or(v) => Self::ordered(v, false),
            Matcher::Not(m) => Matcher::Not(Box::new(m.optimized())),
            t => t,
        }
    }

    fn ordered(v: Vec<Matcher>, and: bool) -> Matcher {
        let mut flat = Vec::with_capacity(v.len());
        for m in v.into_iter().map(Matcher::optimized) {
            match m {
                Matcher::And(inner) if and => flat.extend(inner),
                Matcher::Or(inner) if !and => flat.extend(inner),
                m => flat.push(m),
            }
        }
        flat.sort_by_key(Matcher::cost);
        if and {
            Matcher::And(flat)
        } else {
            Matcher::Or(flat)
        }
    }

    /// A rough cost of evaluating this on one event (the relative sizes matter, nothing else).
    pub fn cost(&self) -> u32 {
        match self {
            Matcher::And(v) | Matcher::Or(v) => v.iter().map(Matcher::cost).sum::<u32>(),
            Matcher::Not(m) => m.cost(),
            Matcher::Test(f, t) => field_cost(*f) * test_cost(t),
        }
    }
}

fn field_cost(f: Field) -> u32 {
    use super::fields::{ProcField, Scope};
    match f {
        Field::EvtType | Field::EvtFailed => 1,
        Field::Proc(Scope::Ancestor, _) => 8,
        Field::Proc(_, ProcField::OwnerTool) => 6,
        Field::Proc(_, ProcField::Args | ProcField::Cmdline | ProcField::Argv) => 3,
        Field::FilePaths => 3,
        _ => 2,
    }
}

fn test_cost(t: &Test) -> u32 {
    match t {
        Test::Kind(_) | Test::Bool(_) | Test::NumIn(_) | Test::NumCmp(..) => 1,
        Test::IpIn(_) | Test::StrIn(StrSet::Few(_)) | Test::Prefix(_) | Test::Suffix(_) => 2,
        Test::StrIn(StrSet::Many(_)) | Test::Contains(_) => 3,
        Test::IContains(_) => 6,
        Test::Glob(_) => 8,
        Test::Regex(_) => 10,
    }
}

impl Test {
    fn str(&self, v: &str) -> bool {
        match self {
            Test::StrIn(set) => set.contains(v),
            Test::Glob(g) => g.is_match(v),
            Test::Prefix(p) => p.iter().any(|p| v.starts_with(p.as_str())),
            Test::Suffix(p) => p.iter().any(|p| v.ends_with(p.as_str())),
            Test::Contains(p) => p.iter().any(|p| v.contains(p.as_str())),
            Test::IContains(p) => {
                let v = v.to_lowercase();
                p.iter().any(|p| v.contains(p.as_str()))
            }
            Test::Regex(r) => r.is_match(v),
            _ => false,
        }
    }
}

/// One piece of a rule's `output`: text, or a `%field` to substitute.
#[derive(Debug)]
pub enum Piece {
    Text(String),
    Field(Field),
}

/// Where a condition came from: to turn offsets in its text into file positions.
pub struct Compiler<'d> {
    pub defs: &'d Defs,
    pub diags: Vec<Diagnostic>,
    /// Macros being expanded (cycle detection), innermost last.
    stack: Vec<String>,
    /// Each macro compiled once; None when it has errors (already reported).
    macros: HashMap<String, Option<(Matcher, Kinds)>>,
}

impl<'d> Compiler<'d> {
    pub fn new(defs: &'d Defs) -> Self {
        Self {
            defs,
            diags: Vec::new(),
            stack: Vec::new(),
            macros: HashMap::new(),
        }
    }

    /// Compile a macro, or take it from the cache: its matchers (globs, regexes) are built and
    /// its errors reported once however many rules use it.
    pub fn macro_named(&mut self, name: &str) -> Option<(Matcher, Kinds)> {
        if let Some(done) = self.macros.get(name) {
            return done.clone();
        }
        let defs = self.defs;
        self.stack.push(name.to_owned());
        let r = self.condition(&defs.macros[name].cond);
        self.stack.pop();
        self.macros.insert(name.to_owned(), r.clone());
        r
    }

    fn pos(&self, cond: &CondText, offset: usize) -> Pos {
        let (file, node, off) = cond.locate(offset);
        let src = self
            .defs
            .sources
            .get(file)
            .map(String::as_str)
            .unwrap_or("");
        let (line, col) = yaml::locate_in_scalar(src, node, off);
        Pos::new(file, line, col)
    }

    fn err(&mut self, cond: &CondText, at: usize, msg: impl Into<String>) {
        let p = self.pos(cond, at);
        self.diags.push(Diagnostic::error(p, msg));
    }

    /// Compile a condition; None after recording diagnostics.
    pub fn condition(&mut self, cond: &CondText) -> Option<(Matcher, Kinds)> {
        let expr = match cond::parse(&cond.text()) {
            Ok(e) => e,
            Err(e) => {
                self.err(cond, e.at, format!("condition: {}", e.message));
                return None;
            }
        };
        self.expr(&expr, cond)
    }

    fn expr(&mut self, e: &Expr, cond: &CondText) -> Option<(Matcher, Kinds)> {
        match e {
            Expr::And(items) | Expr::Or(items) => {
                let is_and = matches!(e, Expr::And(_));
                let mut ms = Vec::new();
                let mut kinds = if is_and { Kinds::ALL } else { Kinds::NONE };
                let mut ok = true;
                for i in items {
                    match self.expr(i, cond) {
                        Some((m, k)) => {
                            kinds = if is_and { kinds.and(k) } else { kinds.or(k) };
                            ms.push(m);
                        }
                        None => ok = false,
                    }
                }
                ok.then(|| {
                    (
                        if is_and {
                            Matcher::And(ms)
                        } else {
                            Matcher::Or(ms)
                        },
                        kinds,
                    )
                })
            }
            Expr::Not(inner) => {
                let (m, _) = self.expr(inner, cond)?;
                Some((Matcher::Not(Box::new(m)), Kinds::ALL))
            }
            Expr::Name(w) => self.name(w, cond),
            Expr::Test { field, op, rhs } => self.test(field, *op, rhs, cond),
        }
    }

    fn name(&mut self, w: &Word, cond: &CondText) -> Option<(Matcher, Kinds)> {
        if self.defs.macros.contains_key(&w.text) {
            if let Some(i) = self.stack.iter().position(|n| *n == w.text) {
                let mut cycle = self.stack[i..].to_vec();
                cycle.push(w.text.clone());
                self.err(
                    cond,
                    w.at,
                    format!(
                        "macros refer to each other in a cycle: {}",
                        cycle.join(" → ")
                    ),
                );
                return None;
            }
            return self.macro_named(&w.text);
        }
        match fields::resolve(&w.text) {
            Some(f) if f.ty == Type::Bool => {
                Some((Matcher::Test(f.field, Test::Bool(true)), f.kinds))
            }
            Some(_) => {
                self.err(
                    cond,
                    w.at,
                    format!(
                        "`{}` is a field; compare it with a value (`{} = …`)",
                        w.text, w.text
                    ),
                );
                None
            }
            None if self.defs.lists.contains_key(&w.text) => {
                self.err(
                    cond,
                    w.at,
                    format!(
                        "`{}` is a list; use it on the right of `in`, `glob`…",
                        w.text
                    ),
                );
                None
            }
            None => {
                let catalogue = fields::catalogue();
                let hint = did_you_mean(
                    &w.text,
                    catalogue
                        .iter()
                        .map(|(name, _)| name.as_str())
                        .chain(self.defs.macros.keys().map(String::as_str)),
                );
                self.err(
                    cond,
                    w.at,
                    format!("unknown macro or field `{}`{hint}", w.text),
                );
                None
            }
        }
    }

    /// The values on the right, with list names expanded (recursively, once each).
    fn values(&mut self, rhs: &Rhs) -> Vec<(String, bool, usize)> {
        let words: Vec<&Word> = match rhs {
            Rhs::One(w) => vec![w],
            Rhs::List(v) => v.iter().collect(),
        };
        let mut out = Vec::new();
        for w in words {
            if !w.quoted && self.defs.lists.contains_key(&w.text) {
                let mut seen = HashSet::new();
                self.expand_list(&w.text, w.at, &mut out, &mut seen);
            } else {
                out.push((w.text.clone(), w.quoted, w.at));
            }
        }
        out
    }

    fn expand_list(
        &self,
        name: &str,
        at: usize,
        out: &mut Vec<(String, bool, usize)>,
        seen: &mut HashSet<String>,
    ) {
        if !seen.insert(name.to_owned()) {
            return;
        }
        for (item, node) in &self.defs.lists[name].items {
            let quoted = matches!(
                node.value,
                yaml::Value::Scalar {
                    style: yaml::Style::Quoted,
                    ..
                }
            );
            if !quoted && self.defs.lists.contains_key(item) {
                self.expand_list(item, at, out, seen);
            } else {
                out.push((item.clone(), false, at));
            }
        }
    }

    fn test(&mut self, fw: &Word, op: Op, rhs: &Rhs, cond: &CondText) -> Option<(Matcher, Kinds)> {
        let Some(f) = fields::resolve(&fw.text) else {
            let hint = if self.defs.macros.contains_key(&fw.text) {
                " (it is a macro, which takes no operator)".to_owned()
            } else {
                let catalogue = fields::catalogue();
                did_you_mean(&fw.text, catalogue.iter().map(|(name, _)| name.as_str()))
            };
            self.err(cond, fw.at, format!("unknown field `{}`{hint}", fw.text));
            return None;
        };
        if matches!(rhs, Rhs::List(_))
            && matches!(op, Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge)
        {
            let at = match rhs {
                Rhs::List(v) => v.first().map_or(fw.at, |w| w.at),
                Rhs::One(w) => w.at,
            };
            self.err(
                cond,
                at,
                format!("`{op}` takes one value; use `in (…)` for a list"),
            );
            return None;
        }
        let vals = self.values(rhs);
        let bad = |c: &mut Self, at: usize, msg: String| {
            c.err(cond, at, msg);
            None
        };
        let test = match (f.ty, op) {
            (Type::Str | Type::StrList, Op::Eq | Op::Ne | Op::In) => {
                Test::StrIn(vals.iter().map(|(v, ..)| v.clone()).collect())
            }
            (Type::Str | Type::StrList, Op::Glob) => {
                let mut b = GlobSetBuilder::new();
                for (v, _, at) in &vals {
                    match GlobBuilder::new(v)
                        .literal_separator(true)
                        .backslash_escape(true)
                        .build()
                    {
                        Ok(g) => {
                            b.add(g);
                        }
                        Err(e) => return bad(self, *at, format!("bad glob `{v}`: {}", e.kind())),
                    }
                }
                match b.build() {
                    Ok(g) => Test::Glob(Globs::new(
                        g,
                        &vals.iter().map(|(v, ..)| v.as_str()).collect::<Vec<_>>(),
                    )),
                    Err(e) => return bad(self, fw.at, format!("globs: {e}")),
                }
            }
            (Type::Str | Type::StrList, Op::StartsWith) => {
                Test::Prefix(vals.iter().map(|v| v.0.clone()).collect())
            }
            (Type::Str | Type::StrList, Op::EndsWith) => {
                Test::Suffix(vals.iter().map(|v| v.0.clone()).collect())
            }
            (Type::Str | Type::StrList, Op::Contains) => {
                Test::Contains(vals.iter().map(|v| v.0.clone()).collect())
            }
            (Type::Str | Type::StrList, Op::IContains) => {
                Test::IContains(vals.iter().map(|v| v.0.to_lowercase()).collect())
            }
            (Type::Str | Type::StrList, Op::Regex) => {
                for (v, _, at) in &vals {
                    if let Err(e) = regex::Regex::new(v) {
                        return bad(self, *at, format!("bad regex `{v}`: {e}"));
                    }
                }
                match RegexSet::new(vals.iter().map(|v| &v.0)) {
                    Ok(r) => Test::Regex(r),
                    Err(e) => return bad(self, fw.at, format!("regex: {e}")),
                }
            }
            (Type::Num, Op::Eq | Op::Ne | Op::In) => {
                let mut ns = Vec::new();
                for (v, _, at) in &vals {
                    match v.parse::<i64>() {
                        Ok(n) => ns.push(n),
                        Err(_) => {
                            return bad(
                                self,
                                *at,
                                format!("`{}` is a number; `{v}` is not", fw.text),
                            );
                        }
                    }
                }
                Test::NumIn(ns)
            }
            (Type::Num, Op::Lt | Op::Le | Op::Gt | Op::Ge) => {
                let (v, _, at) = &vals[0];
                match v.parse::<i64>() {
                    Ok(n) => Test::NumCmp(op, n),
                    Err(_) => {
                        return bad(
                            self,
                            *at,
                            format!("`{}` is a number; `{v}` is not", fw.text),
                        );
                    }
                }
            }
            (Type::Ip, Op::Eq | Op::Ne | Op::In) => {
                let mut nets = Vec::new();
                for (v, _, at) in &vals {
                    match parse_net(v) {
                        Some(n) => nets.push(n),
                        None => {
                            return bad(self, *at, format!("`{v}` is not an IP address or CIDR"));
                        }
                    }
                }
                Test::IpIn(nets)
            }
            (Type::Bool, Op::Eq | Op::Ne) => match vals.first().map(|v| v.0.as_str()) {
                Some("true") => Test::Bool(true),
                Some("false") => Test::Bool(false),
                _ => {
                    return bad(
                        self,
                        vals.first().map_or(fw.at, |v| v.2),
                        format!("`{}` is true or false", fw.text),
                    );
                }
            },
            (ty, _) => {
                return bad(
                    self,
                    fw.at,
                    format!("`{op}` does not apply to `{}` ({})", fw.text, type_name(ty)),
                );
            }
        };
        if f.field == Field::EvtType {
            for (v, _, at) in &vals {
                if Kinds::of(v).is_none() {
                    return bad(
                        self,
                        *at,
                        format!(
                            "unknown event kind `{v}`{} (one of: {})",
                            did_you_mean(v, fields::KIND_NAMES.iter().copied()),
                            fields::KIND_NAMES.join(", ")
                        ),
                    );
                }
            }
        }
        let kinds = match (&f.field, &test, op) {
            (Field::EvtType, Test::StrIn(set), Op::Eq | Op::In) => set
                .iter()
                .filter_map(|k| Kinds::of(k))
                .fold(Kinds::NONE, Kinds::or),
            _ => f.kinds,
        };
        let test = match (f.field, op) {
            (Field::EvtType, Op::Eq | Op::Ne | Op::In) => Test::Kind(
                vals.iter()
                    .filter_map(|(v, ..)| Kinds::of(v))
                    .fold(Kinds::NONE, Kinds::or),
            ),
            _ => test,
        };
        let m = Matcher::Test(f.field, test);
        Some(if op == Op::Ne {
            (Matcher::Not(Box::new(m)), Kinds::ALL)
        } else {
            (m, kinds)
        })
    }

    /// Structured exceptions → one matcher that holds when any exception's values match.
    pub fn exceptions(&mut self, exs: &[ExceptionDef]) -> Option<Option<Matcher>> {
        let mut any = Vec::new();
        let mut ok = true;
        for ex in exs {
            match self.exception(ex) {
                Some(ms) => any.extend(ms),
                None => ok = false,
            }
        }
        ok.then(|| (!any.is_empty()).then_some(Matcher::Or(any)))
    }

    fn exception(&mut self, ex: &ExceptionDef) -> Option<Vec<Matcher>> {
        let src = self.defs.sources.get(&ex.file).cloned().unwrap_or_default();
        let err = |c: &mut Self, p: &Pos, msg: String| {
            c.diags
                .push(Diagnostic::error(p.clone(), msg).with_source(&src));
        };
        if ex.fields.is_empty() {
            err(
                self,
                &ex.pos,
                format!("exception `{}` has no `fields`", ex.name),
            );
            return None;
        }
        if !ex.comps.is_empty() && ex.comps.len() != ex.fields.len() {
            err(
                self,
                &ex.pos,
                format!(
                    "exception `{}`: {} comps for {} fields",
                    ex.name,
                    ex.comps.len(),
                    ex.fields.len()
                ),
            );
            return None;
        }
        let mut out = Vec::new();
        for value in &ex.values {
            let tuple: Vec<&yaml::Node> = match (&value.value, ex.single) {
                (_, true) => vec![value],
                (yaml::Value::Seq(items), false) => items.iter().collect(),
                _ => {
                    err(
                        self,
                        &value.pos,
                        format!(
                            "exception `{}` has {} fields, so each value is a list of {}",
                            ex.name,
                            ex.fields.len(),
                            ex.fields.len()
                        ),
                    );
                    return None;
                }
            };
            if tuple.len() != ex.fields.len() {
                err(
                    self,
                    &value.pos,
                    format!("{} values for {} fields", tuple.len(), ex.fields.len()),
                );
                return None;
            }
            let mut all = Vec::new();
            for (i, (fnode, vnode)) in ex.fields.iter().zip(tuple).enumerate() {
                let fname = fnode.as_str().unwrap_or_default();
                let op = match ex.comps.get(i).map(|c| c.as_str().unwrap_or_default()) {
                    None if matches!(vnode.value, yaml::Value::Seq(_)) => "in",
                    None => "=",
                    Some(c) => c,
                };
                // Exception values go through the condition compiler as one small condition, so
                // they are checked exactly like conditions are.
                // A plain value naming a list stands for the list's items, as in conditions.
                let item = |n: &yaml::Node| {
                    let text = n.as_str().unwrap_or_default();
                    let plain = matches!(
                        n.value,
                        yaml::Value::Scalar {
                            style: yaml::Style::Plain,
                            ..
                        }
                    );
                    if plain && self.defs.lists.contains_key(text) {
                        text.to_owned()
                    } else {
                        quote(text)
                    }
                };
                let rhs = match &vnode.value {
                    yaml::Value::Seq(items) => {
                        let vals: Vec<String> = items.iter().map(item).collect();
                        format!("({})", vals.join(", "))
                    }
                    yaml::Value::Scalar { .. } => item(vnode),
                    yaml::Value::Map(_) => {
                        err(
                            self,
                            &vnode.pos,
                            "an exception value is a string or a list of strings".into(),
                        );
                        return None;
                    }
                };
                let text = format!("{fname} {op} {rhs}");
                let expr = match cond::parse(&text) {
                    Ok(e @ Expr::Test { .. }) => e,
                    _ => {
                        err(
                            self,
                            &fnode.pos,
                            format!(
                                "exception `{}`: `{fname} {op} …` is not a valid test",
                                ex.name
                            ),
                        );
                        return None;
                    }
                };
                let synthetic = CondText {
                    parts: vec![(ex.file.clone(), vnode.clone())],
                };
                let before = self.diags.len();
                let compiled = self.expr(&expr, &synthetic);
                // Offsets in the synthetic text do not map onto the file: point at the value.
                for d in &mut self.diags[before..] {
                    d.pos = vnode.pos.clone();
                }
                all.push(compiled?.0);
            }
            out.push(Matcher::And(all));
        }
        Some(out)
    }

    /// Parse an `output` template, checking every `%field`.
    pub fn output(&mut self, text: &str, node: &yaml::Node) -> Option<Vec<Piece>> {
        let file = node.pos.file.as_str();
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        let mut ok = true;
        while i < chars.len() {
            if chars[i] != '%' {
                lit.push(chars[i]);
                i += 1;
                continue;
            }
            if chars.get(i + 1) == Some(&'%') {
                lit.push('%');
                i += 2;
                continue;
            }
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "._[]".contains(chars[i]))
            {
                i += 1;
            }
            // A trailing dot is punctuation, not part of the name.
            while i > start + 1 && chars[i - 1] == '.' {
                i -= 1;
            }
            let name: String = chars[start + 1..i].iter().collect();
            match fields::resolve(&name) {
                Some(f) => {
                    if !lit.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Field(f.field));
                }
                None => {
                    let src = self
                        .defs
                        .sources
                        .get(file)
                        .map(String::as_str)
                        .unwrap_or("");
                    let (line, col) = yaml::locate_in_scalar(src, node, start);
                    self.diags.push(Diagnostic::error(
                        Pos::new(file, line, col),
                        format!(
                            "unknown field `%{name}` in output{}",
                            did_you_mean(
                                &name,
                                fields::catalogue().iter().map(|(n, _)| n.as_str())
                            )
                        ),
                    ));
                    ok = false;
                }
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Text(lit));
        }
        ok.then_some(pieces)
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn type_name(t: Type) -> &'static str {
    match t {
        Type::Str => "a string",
        Type::StrList => "a list of strings",
        Type::Num => "a number",
        Type::Ip => "an IP address",
        Type::Bool => "true or false",
    }
}

/// An address (`10.0.0.1`, `::1`) or network (`10.0.0.0/8`).
pub fn parse_net(s: &str) -> Option<IpNet> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Some(n.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

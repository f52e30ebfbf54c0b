//! Loading stage one: YAML documents → list, macro and rule definitions, with `override`
//! (append or replace, per key) applied in file order. Nothing is compiled here; every problem
//! found is collected as a positioned diagnostic so `rules check` can report them all.

use std::collections::HashMap;

use super::{
    Severity,
    diag::{Diagnostic, Pos},
    yaml::{Node, Value},
};

/// One parsed document: the file it came from (for positions) and its items.
pub struct Doc {
    pub file: String,
    pub src: String,
    pub items: Vec<Node>,
}

/// A condition's text, possibly assembled from several YAML scalars by `override: append`.
#[derive(Clone, Debug)]
pub struct CondText {
    /// (file, node): the scalars in order; the text is their values joined by spaces.
    pub parts: Vec<(String, Node)>,
}

impl CondText {
    pub fn text(&self) -> String {
        let texts: Vec<&str> = self.parts.iter().filter_map(|(_, n)| n.as_str()).collect();
        texts.join(" ")
    }

    /// The scalar holding character `offset` of [`Self::text`], and the offset within it.
    pub fn locate(&self, mut offset: usize) -> (&str, &Node, usize) {
        for (i, (file, node)) in self.parts.iter().enumerate() {
            let len = node.as_str().map_or(0, |s| s.chars().count());
            if offset <= len || i + 1 == self.parts.len() {
                return (file, node, offset.min(len));
            }
            offset -= len + 1;
        }
        unreachable!("a condition has at least one part")
    }
}

#[derive(Clone, Debug)]
pub struct ListDef {
    pub pos: Pos,
    pub items: Vec<(String, Node)>,
}

#[derive(Clone, Debug)]
pub struct MacroDef {
    pub pos: Pos,
    pub cond: CondText,
}

#[derive(Clone, Debug)]
pub struct ExceptionDef {
    pub pos: Pos,
    pub file: String,
    pub name: String,
    /// Field names; `single` when written as one field (`fields: proc.name`), in which case
    /// each value is one item rather than a tuple.
    pub fields: Vec<Node>,
    pub single: bool,
    pub comps: Vec<Node>,
    pub values: Vec<Node>,
}

#[derive(Clone, Debug)]
pub struct RuleDef {
    pub pos: Pos,
    pub desc: String,
    pub cond: CondText,
    pub output: (String, Node),
    pub severity: Severity,
    pub category: String,
    pub tags: Vec<String>,
    pub exceptions: Vec<ExceptionDef>,
    pub enabled: bool,
}

#[derive(Default)]
pub struct Defs {
    pub lists: HashMap<String, ListDef>,
    pub macros: HashMap<String, MacroDef>,
    /// In definition order (the report lists rules in this order).
    pub rules: Vec<(String, RuleDef)>,
    pub sources: HashMap<String, String>,
}

const LIST_KEYS: &[&str] = &["list", "items", "override", "append"];
const MACRO_KEYS: &[&str] = &["macro", "condition", "override", "append"];
const RULE_KEYS: &[&str] = &[
    "rule",
    "desc",
    "condition",
    "output",
    "severity",
    "category",
    "tags",
    "exceptions",
    "enabled",
    "override",
    "append",
];
const EXCEPTION_KEYS: &[&str] = &["name", "fields", "comps", "values"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    Append,
    Replace,
}

pub fn collect(docs: &[Doc], out: &mut Defs, diags: &mut Vec<Diagnostic>) {
    for doc in docs {
        out.sources.insert(doc.file.clone(), doc.src.clone());
        for item in &doc.items {
            let mut cx = Cx {
                file: &doc.file,
                diags,
            };
            cx.item(item, out);
        }
    }
}

struct Cx<'a> {
    file: &'a str,
    diags: &'a mut Vec<Diagnostic>,
}

type Map<'n> = Vec<(&'n str, &'n Node, &'n Node)>;

impl Cx<'_> {
    fn err(&mut self, pos: &Pos, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(pos.clone(), msg));
    }

    fn warn(&mut self, pos: &Pos, msg: impl Into<String>) {
        self.diags.push(Diagnostic::warning(pos.clone(), msg));
    }

    /// A mapping's entries, checking keys are scalars, known and not repeated.
    fn map<'n>(&mut self, node: &'n Node, what: &str, known: &[&str]) -> Option<Map<'n>> {
        let Value::Map(entries) = &node.value else {
            self.err(
                &node.pos,
                format!("{what} must be a mapping, found {}", node.kind_name()),
            );
            return None;
        };
        let mut out: Map<'n> = Vec::new();
        let mut ok = true;
        for (k, v) in entries {
            let Some(key) = k.as_str() else {
                self.err(&k.pos, "keys must be plain names");
                ok = false;
                continue;
            };
            if !known.contains(&key) {
                self.err(
                    &k.pos,
                    format!(
                        "unknown field `{key}` in {what}{} (expected one of: {})",
                        super::diag::did_you_mean(key, known.iter().copied()),
                        known.join(", ")
                    ),
                );
                ok = false;
            } else if out.iter().any(|(n, ..)| *n == key) {
                self.err(&k.pos, format!("`{key}` given twice"));
                ok = false;
            } else {
                out.push((key, k, v));
            }
        }
        ok.then_some(out)
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match node.as_str() {
            Some(s) if !node.is_null() => Some(s.to_owned()),
            _ => {
                self.err(
                    &node.pos,
                    format!("`{what}` must be a string, found {}", kind(node)),
                );
                None
            }
        }
    }

    fn strings(&mut self, node: &Node, what: &str) -> Option<Vec<(String, Node)>> {
        let Value::Seq(items) = &node.value else {
            self.err(
                &node.pos,
                format!("`{what}` must be a list, found {}", kind(node)),
            );
            return None;
        };
        let mut out = Vec::new();
        for i in items {
            out.push((self.string(i, what)?, i.clone()));
        }
        Some(out)
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.as_str() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => {
                self.err(&node.pos, format!("`{what}` must be true or false"));
                None
            }
        }
    }

    fn item(&mut self, node: &Node, defs: &mut Defs) {
        let Value::Map(entries) = &node.value else {
            self.err(
                &node.pos,
                format!(
                    "each item must be a mapping with `list`, `macro` or `rule`, found {}",
                    node.kind_name()
                ),
            );
            return;
        };
        let head = entries.iter().find_map(|(k, _)| match k.as_str() {
            Some(h @ ("list" | "macro" | "rule")) => Some(h),
            _ => None,
        });
        match head {
            Some("list") => self.list(node, defs),
            Some("macro") => self.macro_(node, defs),
            Some("rule") => self.rule(node, defs),
            _ => self.err(&node.pos, "an item needs `list:`, `macro:` or `rule:`"),
        }
    }

    /// `override: {key: append|replace}` (or Falco's older `append: true` for everything).
    fn overrides(&mut self, m: &Map<'_>, allowed: &[&str]) -> Option<HashMap<String, (How, Pos)>> {
        let mut out = HashMap::new();
        if let Some((_, _, v)) = m.iter().find(|(k, ..)| *k == "append") {
            if self.boolean(v, "append")? {
                for (k, key, _) in m {
                    if allowed.contains(k) {
                        out.insert((*k).to_owned(), (How::Append, key.pos.clone()));
                    }
                }
            }
            return Some(out);
        }
        let Some((_, _, ov)) = m.iter().find(|(k, ..)| *k == "override") else {
            return Some(out);
        };
        let Value::Map(entries) = &ov.value else {
            self.err(&ov.pos, "`override` must map keys to `append` or `replace`");
            return None;
        };
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default();
            let how = match v.as_str() {
                Some("append") => How::Append,
                Some("replace") => How::Replace,
                _ => {
                    self.err(&v.pos, "override mode must be `append` or `replace`");
                    return None;
                }
            };
            if !allowed.contains(&key) {
                self.err(
                    &k.pos,
                    format!("`{key}` cannot be overridden (can: {})", allowed.join(", ")),
                );
                return None;
            }
            if !m.iter().any(|(n, ..)| *n == key) {
                self.err(&k.pos, format!("override of `{key}` but no `{key}:` given"));
                return None;
            }
            out.insert(key.to_owned(), (how, k.pos.clone()));
        }
        for (k, key, _) in m {
            if !matches!(*k, "list" | "macro" | "rule" | "override") && !out.contains_key(*k) {
                self.err(
                    &key.pos,
                    format!("`{k}` is given but not listed in `override`"),
                );
                return None;
            }
        }
        Some(out)
    }

    fn list(&mut self, node: &Node, defs: &mut Defs) {
        let Some(m) = self.map(node, "list", LIST_KEYS) else {
            return;
        };
        let (name, items) = (get(&m, "list"), get(&m, "items"));
        let Some(name) = name.and_then(|n| self.string(n, "list")) else {
            return;
        };
        let Some(items_node) = items else {
            self.err(&node.pos, format!("list `{name}` has no `items`"));
            return;
        };
        let Some(items) = self.strings(items_node, "items") else {
            return;
        };
        let Some(ov) = self.overrides(&m, &["items"]) else {
            return;
        };
        match (ov.get("items"), defs.lists.get_mut(&name)) {
            (Some((How::Append, _)), Some(existing)) => existing.items.extend(items),
            (Some((_, p)), None) => self.err(
                p,
                format!("cannot override list `{name}`: it is not defined before this file"),
            ),
            (_, existing) => {
                if existing.is_some() && ov.is_empty() {
                    self.warn(&node.pos, format!("list `{name}` redefined; the earlier definition is replaced (use `override` to make that explicit)"));
                }
                defs.lists.insert(
                    name,
                    ListDef {
                        pos: node.pos.clone(),
                        items,
                    },
                );
            }
        }
    }

    fn cond_text(&mut self, node: &Node, what: &str) -> Option<CondText> {
        self.string(node, what)?;
        Some(CondText {
            parts: vec![(self.file.to_owned(), node.clone())],
        })
    }

    fn macro_(&mut self, node: &Node, defs: &mut Defs) {
        let Some(m) = self.map(node, "macro", MACRO_KEYS) else {
            return;
        };
        let Some(name) = get(&m, "macro").and_then(|n| self.string(n, "macro")) else {
            return;
        };
        let Some(cnode) = get(&m, "condition") else {
            self.err(&node.pos, format!("macro `{name}` has no `condition`"));
            return;
        };
        let Some(cond) = self.cond_text(cnode, "condition") else {
            return;
        };
        let Some(ov) = self.overrides(&m, &["condition"]) else {
            return;
        };
        match (ov.get("condition"), defs.macros.get_mut(&name)) {
            (Some((How::Append, _)), Some(existing)) => existing.cond.parts.extend(cond.parts),
            (Some((_, p)), None) => self.err(
                p,
                format!("cannot override macro `{name}`: it is not defined before this file"),
            ),
            (_, existing) => {
                if existing.is_some() && ov.is_empty() {
                    self.warn(
                        &node.pos,
                        format!("macro `{name}` redefined; the earlier definition is replaced"),
                    );
                }
                defs.macros.insert(
                    name,
                    MacroDef {
                        pos: node.pos.clone(),
                        cond,
                    },
                );
            }
        }
    }

    fn exceptions(&mut self, node: &Node) -> Option<Vec<ExceptionDef>> {
        let Value::Seq(items) = &node.value else {
            self.err(&node.pos, "`exceptions` must be a list");
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            let m = self.map(item, "exception", EXCEPTION_KEYS)?;
            let name = match get(&m, "name") {
                Some(n) => self.string(n, "name")?,
                None => {
                    self.err(&item.pos, "an exception needs a `name`");
                    return None;
                }
            };
            let (fields, single) = match get(&m, "fields") {
                None => (Vec::new(), false),
                Some(f) => match &f.value {
                    Value::Seq(fs) => (fs.clone(), false),
                    Value::Scalar { .. } => (vec![f.clone()], true),
                    Value::Map(_) => {
                        self.err(&f.pos, "`fields` must be a field name or a list of them");
                        return None;
                    }
                },
            };
            let seq = |n: Option<&Node>| match n.map(|n| &n.value) {
                Some(Value::Seq(v)) => Some(v.clone()),
                None => Some(Vec::new()),
                _ => None,
            };
            let Some(comps) = seq(get(&m, "comps")).or_else(|| {
                get(&m, "comps")
                    .filter(|c| c.as_str().is_some())
                    .map(|c| vec![c.clone()])
            }) else {
                self.err(&item.pos, "`comps` must be a list of operators");
                return None;
            };
            let Some(values) = seq(get(&m, "values")) else {
                self.err(&item.pos, "`values` must be a list");
                return None;
            };
            out.push(ExceptionDef {
                pos: item.pos.clone(),
                file: self.file.to_owned(),
                name,
                fields,
                single,
                comps,
                values,
            });
        }
        Some(out)
    }

    fn rule(&mut self, node: &Node, defs: &mut Defs) {
        let Some(m) = self.map(node, "rule", RULE_KEYS) else {
            return;
        };
        let Some(name) = get(&m, "rule").and_then(|n| self.string(n, "rule")) else {
            return;
        };
        let Some(ov) = self.overrides(
            &m,
            &[
                "desc",
                "condition",
                "output",
                "severity",
                "category",
                "tags",
                "exceptions",
                "enabled",
            ],
        ) else {
            return;
        };
        let existing = defs.rules.iter().position(|(n, _)| *n == name);
        // `- rule: X` with only `enabled:` switches an existing rule on or off.
        let only_enabled = m.iter().all(|(k, ..)| matches!(*k, "rule" | "enabled"));
        if ov.is_empty() && only_enabled && get(&m, "enabled").is_some() {
            let Some(i) = existing else {
                self.err(
                    &node.pos,
                    format!("rule `{name}` is not defined, so it cannot be enabled or disabled"),
                );
                return;
            };
            if let Some(b) = self.boolean(get(&m, "enabled").expect("checked"), "enabled") {
                defs.rules[i].1.enabled = b;
            }
            return;
        }
        if !ov.is_empty() {
            let Some(i) = existing else {
                let p = ov
                    .values()
                    .next()
                    .map(|(_, p)| p.clone())
                    .unwrap_or(node.pos.clone());
                self.err(
                    &p,
                    format!("cannot override rule `{name}`: it is not defined before this file"),
                );
                return;
            };
            let mut rule = defs.rules[i].1.clone();
            let mut ok = true;
            for (key, (how, p)) in &ov {
                let v = get(&m, key).expect("override keys are present");
                ok &= self.apply(&mut rule, key, *how, v, p);
            }
            if ok {
                defs.rules[i].1 = rule;
            }
            return;
        }
        let mut missing = Vec::new();
        for k in ["desc", "condition", "output", "severity", "category"] {
            if get(&m, k).is_none() {
                missing.push(k);
            }
        }
        if !missing.is_empty() {
            self.err(
                &node.pos,
                format!("rule `{name}` is missing: {}", missing.join(", ")),
            );
            return;
        }
        let desc = self.string(get(&m, "desc").expect("checked"), "desc");
        let cond = self.cond_text(get(&m, "condition").expect("checked"), "condition");
        let onode = get(&m, "output").expect("checked");
        let output = self.string(onode, "output").map(|o| (o, onode.clone()));
        let severity = self.severity(get(&m, "severity").expect("checked"));
        let category = self.string(get(&m, "category").expect("checked"), "category");
        let tags = match get(&m, "tags") {
            Some(t) => self
                .strings(t, "tags")
                .map(|v| v.into_iter().map(|(s, _)| s).collect()),
            None => Some(Vec::new()),
        };
        let exceptions = match get(&m, "exceptions") {
            Some(e) => self.exceptions(e),
            None => Some(Vec::new()),
        };
        let enabled = match get(&m, "enabled") {
            Some(e) => self.boolean(e, "enabled"),
            None => Some(true),
        };
        let (
            Some(desc),
            Some(cond),
            Some(output),
            Some(severity),
            Some(category),
            Some(tags),
            Some(exceptions),
            Some(enabled),
        ) = (
            desc, cond, output, severity, category, tags, exceptions, enabled,
        )
        else {
            return;
        };
        let def = RuleDef {
            pos: node.pos.clone(),
            desc,
            cond,
            output,
            severity,
            category,
            tags,
            exceptions,
            enabled,
        };
        match existing {
            Some(i) => {
                self.warn(&node.pos, format!("rule `{name}` redefined; the earlier definition at {} is replaced (use `override` to change only some keys)", defs.rules[i].1.pos));
                defs.rules[i].1 = def;
            }
            None => defs.rules.push((name, def)),
        }
    }

    fn severity(&mut self, node: &Node) -> Option<Severity> {
        let s = self.string(node, "severity")?;
        match Severity::parse(&s) {
            Some(s) => Some(s),
            None => {
                self.err(
                    &node.pos,
                    format!("unknown severity `{s}` (low, medium, high, critical)"),
                );
                None
            }
        }
    }

    fn apply(&mut self, rule: &mut RuleDef, key: &str, how: How, v: &Node, p: &Pos) -> bool {
        let append = how == How::Append;
        match key {
            "condition" => {
                let Some(c) = self.cond_text(v, "condition") else {
                    return false;
                };
                if append {
                    rule.cond.parts.extend(c.parts);
                } else {
                    rule.cond = c;
                }
            }
            "exceptions" => {
                let Some(ex) = self.exceptions(v) else {
                    return false;
                };
                if !append {
                    rule.exceptions = ex;
                    return true;
                }
                for e in ex {
                    // Appending to a named exception with no `fields` adds values to it.
                    match rule.exceptions.iter_mut().find(|x| x.name == e.name) {
                        Some(x) if e.fields.is_empty() => x.values.extend(e.values),
                        Some(_) => {
                            self.err(&e.pos, format!("exception `{}` already exists; to add values to it, give only `name` and `values`", e.name));
                            return false;
                        }
                        None if e.fields.is_empty() => {
                            self.err(
                                &e.pos,
                                format!("exception `{}` is new, so it needs `fields`", e.name),
                            );
                            return false;
                        }
                        None => rule.exceptions.push(e),
                    }
                }
            }
            "tags" => {
                let Some(t) = self.strings(v, "tags") else {
                    return false;
                };
                let t = t.into_iter().map(|(s, _)| s);
                if append {
                    rule.tags.extend(t);
                } else {
                    rule.tags = t.collect();
                }
            }
            _ if append => {
                self.err(p, format!("`{key}` can only be replaced, not appended to"));
                return false;
            }
            "desc" => match self.string(v, "desc") {
                Some(s) => rule.desc = s,
                None => return false,
            },
            "output" => match self.string(v, "output") {
                Some(s) => rule.output = (s, v.clone()),
                None => return false,
            },
            "category" => match self.string(v, "category") {
                Some(s) => rule.category = s,
                None => return false,
            },
            "severity" => match self.severity(v) {
                Some(s) => rule.severity = s,
                None => return false,
            },
            "enabled" => match self.boolean(v, "enabled") {
                Some(b) => rule.enabled = b,
                None => return false,
            },
            _ => unreachable!("override keys are checked"),
        }
        true
    }
}

fn get<'n>(m: &Map<'n>, key: &str) -> Option<&'n Node> {
    m.iter().find(|(k, ..)| *k == key).map(|(_, _, v)| *v)
}

fn kind(node: &Node) -> &'static str {
    if node.is_null() {
        "nothing"
    } else {
        node.kind_name()
    }
}

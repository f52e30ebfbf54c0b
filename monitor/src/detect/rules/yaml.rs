//! A YAML document as a tree of positioned nodes, built from saphyr-parser's event stream.
//!
//! Rule and policy files are small and written by people, so every diagnostic must point at a
//! line and column. Scalars stay strings (with their style): the loaders decide what a value
//! means, so `yes`/`no`/`1.0` never change type behind the user's back. Anchors and aliases
//! are rejected rather than expanded (alias bombs cost nothing to write).

use std::borrow::Cow;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::diag::{Diagnostic, Pos};

#[derive(Clone, Debug)]
pub struct Node {
    pub pos: Pos,
    /// Character index of the node's first character in the source.
    pub index: usize,
    pub value: Value,
}

#[derive(Clone, Debug)]
pub enum Value {
    Scalar {
        text: String,
        style: Style,
    },
    Seq(Vec<Node>),
    /// In source order; duplicate keys are an error at load time.
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Plain,
    Quoted,
    /// `|` or `>` blocks.
    Block,
}

/// Deepest nesting accepted: rule files are a few levels deep, hostile input may be thousands.
const MAX_DEPTH: usize = 64;

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, style: Style::Plain }
            if text.is_empty() || text == "~" || text == "null")
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parse one YAML document (an empty file gives None).
pub fn parse(file: &str, src: &str) -> Result<Option<Node>, Diagnostic> {
    let mut stack: Vec<(Node, Option<Node>)> = Vec::new();
    let mut root = None;
    let mut docs = 0;
    for item in Parser::new_from_str(src) {
        let (event, span) = item.map_err(|e| {
            let m = e.marker();
            Diagnostic::error(
                Pos::new(file, m.line(), m.col() + 1),
                format!("YAML syntax: {}", e.info()),
            )
        })?;
        let node = |value| Node {
            pos: pos(file, &span),
            index: span.start.index(),
            value,
        };
        let done = match event {
            Event::DocumentStart(_) => {
                docs += 1;
                if docs > 1 {
                    return Err(Diagnostic::error(
                        pos(file, &span),
                        "only one YAML document per file is supported",
                    ));
                }
                None
            }
            Event::Alias(_) => {
                return Err(Diagnostic::error(
                    pos(file, &span),
                    "YAML aliases are not supported here; write the value out",
                ));
            }
            Event::Scalar(text, style, anchor, _) => {
                reject_anchor(file, &span, anchor)?;
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
                    ScalarStyle::Literal | ScalarStyle::Folded => Style::Block,
                };
                Some(node(Value::Scalar {
                    text: Cow::into_owned(text),
                    style,
                }))
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                reject_anchor(file, &span, anchor)?;
                if stack.len() >= MAX_DEPTH {
                    return Err(Diagnostic::error(
                        pos(file, &span),
                        format!("nesting deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let value = if matches!(event, Event::SequenceStart(..)) {
                    Value::Seq(Vec::new())
                } else {
                    Value::Map(Vec::new())
                };
                stack.push((node(value), None));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => stack.pop().map(|(n, _)| n),
            _ => None,
        };
        if let Some(n) = done {
            match stack.last_mut() {
                None => root = Some(n),
                Some((parent, pending_key)) => match &mut parent.value {
                    Value::Seq(items) => items.push(n),
                    Value::Map(entries) => match pending_key.take() {
                        None => *pending_key = Some(n),
                        Some(k) => entries.push((k, n)),
                    },
                    Value::Scalar { .. } => unreachable!("only collections are pushed"),
                },
            }
        }
    }
    Ok(root)
}

fn reject_anchor(file: &str, span: &Span, anchor: usize) -> Result<(), Diagnostic> {
    if anchor != 0 {
        return Err(Diagnostic::error(
            pos(file, span),
            "YAML anchors are not supported here; write the value out",
        ));
    }
    Ok(())
}

fn pos(file: &str, span: &Span) -> Pos {
    Pos::new(file, span.start.line(), span.start.col() + 1)
}

/// Where character `offset` of a scalar's value sits in the source. Whitespace runs in the
/// value are matched against whitespace runs in the source, so this holds for multi-line
/// plain and block scalars (whose line breaks and indentation fold into spaces).
pub fn locate_in_scalar(src: &str, node: &Node, offset: usize) -> (usize, usize) {
    let Value::Scalar { text, style } = &node.value else {
        return (node.pos.line, node.pos.col);
    };
    let src: Vec<char> = src.chars().collect();
    let mut i = node.index;
    // A quoted scalar's span starts at the quote; a block scalar's at its content.
    if *style == Style::Quoted {
        i += 1;
    }
    let mut chars = text.chars().take(offset).peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            while i < src.len() && src[i].is_whitespace() {
                i += 1;
            }
        } else {
            while i < src.len() && src[i] != c {
                i += 1;
            }
            i += 1;
        }
    }
    if matches!(style, Style::Block) {
        while i < src.len() && src[i].is_whitespace() {
            i += 1;
        }
    }
    let i = i.min(src.len());
    let line = 1 + src[..i].iter().filter(|&&c| c == '\n').count();
    let line_start = src[..i]
        .iter()
        .rposition(|&c| c == '\n')
        .map_or(0, |p| p + 1);
    (line, i - line_start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_one_based_positions() {
        let src = "- rule: a\n  condition: evt.type = open\n";
        let root = parse("f.yaml", src).unwrap().unwrap();
        let Value::Seq(items) = &root.value else {
            panic!()
        };
        let Value::Map(entries) = &items[0].value else {
            panic!()
        };
        let (k, v) = &entries[1];
        assert_eq!(k.as_str(), Some("condition"));
        assert_eq!((k.pos.line, k.pos.col), (2, 3));
        assert_eq!((v.pos.line, v.pos.col), (2, 14));
    }

    #[test]
    fn syntax_errors_are_positioned() {
        let e = parse("f.yaml", "- rule: a\n  desc: [unclosed\n").unwrap_err();
        assert_eq!(e.pos.file, "f.yaml");
        assert!(e.pos.line >= 2, "{e:?}");
        assert!(e.message.starts_with("YAML syntax"));
    }

    #[test]
    fn aliases_and_deep_nesting_are_refused() {
        assert!(parse("f", "a: &x 1\nb: *x\n").is_err());
        let deep = "[".repeat(1000);
        let e = parse("f", &deep).unwrap_err();
        assert!(
            e.message.contains("nesting") || e.message.contains("recursion"),
            "{e:?}"
        );
    }

    #[test]
    fn offsets_map_into_multiline_scalars() {
        let src = "c: >\n  proc.name = sh and\n    bogus.field = 1\n";
        let root = parse("f", src).unwrap().unwrap();
        let Value::Map(e) = &root.value else { panic!() };
        let v = &e[0].1;
        let text = v.as_str().unwrap();
        let off = text.find("bogus").unwrap();
        assert_eq!(locate_in_scalar(src, v, off), (3, 5));
        let src = "c: \"proc.name = x\"\n";
        let root = parse("f", src).unwrap().unwrap();
        let Value::Map(e) = &root.value else { panic!() };
        assert_eq!(locate_in_scalar(src, &e[0].1, 5), (1, 10));
    }
}

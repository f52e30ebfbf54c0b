//! The condition language: lexer and parser producing an unresolved syntax tree. Names are
//! resolved (field, macro or list) by the compiler, which knows what is defined.
//!
//! ```text
//! expr    := or
//! or      := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | primary
//! primary := "(" expr ")" | NAME [op rhs]
//! rhs     := value | "(" value ("," value)* ")"
//! op      := = | == | != | < | <= | > | >= | in | glob | startswith | endswith | contains
//!          | icontains | regex
//! ```
//! A `NAME` alone is a macro or a boolean field. Every node carries the character offset of
//! its text within the condition, so errors point at the right column.

use std::fmt;

/// Bounds on hostile or accidental input: conditions are at most a few hundred tokens.
const MAX_TOKENS: usize = 10_000;
const MAX_NESTING: usize = 100;

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// A bare name: a macro, or a boolean field.
    Name(Word),
    Test {
        field: Word,
        op: Op,
        rhs: Rhs,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Word {
    pub text: String,
    pub quoted: bool,
    /// Character offset in the condition.
    pub at: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Rhs {
    One(Word),
    List(Vec<Word>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Glob,
    StartsWith,
    EndsWith,
    Contains,
    IContains,
    Regex,
}

impl Op {
    fn from_word(w: &str) -> Option<Self> {
        Some(match w {
            "in" => Self::In,
            "glob" => Self::Glob,
            "startswith" => Self::StartsWith,
            "endswith" => Self::EndsWith,
            "contains" => Self::Contains,
            "icontains" => Self::IContains,
            "regex" => Self::Regex,
            _ => return None,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::In => "in",
            Self::Glob => "glob",
            Self::StartsWith => "startswith",
            Self::EndsWith => "endswith",
            Self::Contains => "contains",
            Self::IContains => "icontains",
            Self::Regex => "regex",
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    pub at: usize,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Open,
    Close,
    Comma,
    Sym(Op),
    Word(Word),
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, SyntaxError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if out.len() > MAX_TOKENS {
            return Err(SyntaxError {
                at: i,
                message: format!("condition longer than {MAX_TOKENS} tokens"),
            });
        }
        let c = chars[i];
        let start = i;
        let next = chars.get(i + 1).copied();
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => Tok::Open,
            ')' => Tok::Close,
            ',' => Tok::Comma,
            '=' if next == Some('=') => {
                i += 1;
                Tok::Sym(Op::Eq)
            }
            '=' => Tok::Sym(Op::Eq),
            '!' if next == Some('=') => {
                i += 1;
                Tok::Sym(Op::Ne)
            }
            '<' | '>' => {
                let eq = next == Some('=');
                if eq {
                    i += 1;
                }
                Tok::Sym(match (c, eq) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                })
            }
            '"' | '\'' => {
                let quote = c;
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(SyntaxError {
                                at: start,
                                message: "unterminated string".into(),
                            });
                        }
                        Some(&q) if q == quote => break,
                        Some('\\') if matches!(chars.get(i + 1), Some(&n) if n == quote || n == '\\') =>
                        {
                            text.push(chars[i + 1]);
                            i += 2;
                        }
                        Some(&ch) => {
                            text.push(ch);
                            i += 1;
                        }
                    }
                }
                Tok::Word(Word {
                    text,
                    quoted: true,
                    at: start,
                })
            }
            '!' => {
                return Err(SyntaxError {
                    at: start,
                    message: "`!` must be followed by `=`; use `not` to negate".into(),
                });
            }
            _ => {
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !"(),=!<>\"'".contains(chars[i])
                {
                    i += 1;
                }
                out.push((
                    Tok::Word(Word {
                        text: chars[start..i].iter().collect(),
                        quoted: false,
                        at: start,
                    }),
                    start,
                ));
                continue;
            }
        };
        i += 1;
        out.push((tok, start));
    }
    Ok(out)
}

pub fn parse(src: &str) -> Result<Expr, SyntaxError> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        i: 0,
        end: src.chars().count(),
        depth: 0,
    };
    if p.toks.is_empty() {
        return Err(SyntaxError {
            at: 0,
            message: "empty condition".into(),
        });
    }
    let e = p.or()?;
    if let Some((_, at)) = p.toks.get(p.i) {
        return Err(SyntaxError {
            at: *at,
            message: "expected `and`, `or` or the end of the condition".into(),
        });
    }
    Ok(e)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    i: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|(t, _)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.i).map_or(self.end, |(_, a)| *a)
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            at: self.at(),
            message: message.into(),
        })
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if !w.quoted && w.text == kw)
    }

    fn or(&mut self) -> Result<Expr, SyntaxError> {
        let mut items = vec![self.and()?];
        while self.keyword("or") {
            self.i += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut items = vec![self.unary()?];
        while self.keyword("and") {
            self.i += 1;
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return self.err(format!("nested deeper than {MAX_NESTING} levels"));
        }
        let e = if self.keyword("not") {
            self.i += 1;
            Expr::Not(Box::new(self.unary()?))
        } else {
            self.primary()?
        };
        self.depth -= 1;
        Ok(e)
    }

    fn primary(&mut self) -> Result<Expr, SyntaxError> {
        match self.peek().cloned() {
            Some(Tok::Open) => {
                self.i += 1;
                let e = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return self.err("expected `)`");
                }
                self.i += 1;
                Ok(e)
            }
            Some(Tok::Word(w)) if !w.quoted && !is_reserved(&w.text) => {
                self.i += 1;
                let op = match self.peek() {
                    Some(Tok::Sym(op)) => *op,
                    Some(Tok::Word(o)) if !o.quoted => match Op::from_word(&o.text) {
                        Some(op) => op,
                        None => return Ok(Expr::Name(w)),
                    },
                    _ => return Ok(Expr::Name(w)),
                };
                self.i += 1;
                let rhs = self.rhs()?;
                Ok(Expr::Test { field: w, op, rhs })
            }
            Some(Tok::Word(w)) if w.quoted => {
                self.err("expected a field or macro name, found a string")
            }
            Some(Tok::Word(w)) => self.err(format!("unexpected `{}`", w.text)),
            None => self.err("condition ends too early"),
            Some(_) => self.err("expected a field, a macro name, `not` or `(`"),
        }
    }

    fn rhs(&mut self) -> Result<Rhs, SyntaxError> {
        match self.peek().cloned() {
            Some(Tok::Word(w)) if w.quoted || !is_reserved(&w.text) => {
                self.i += 1;
                Ok(Rhs::One(w))
            }
            Some(Tok::Open) => {
                self.i += 1;
                let mut items = Vec::new();
                if self.peek() == Some(&Tok::Close) {
                    self.i += 1;
                    return Ok(Rhs::List(items));
                }
                loop {
                    match self.peek().cloned() {
                        Some(Tok::Word(w)) => {
                            self.i += 1;
                            items.push(w);
                        }
                        _ => return self.err("expected a value in the list"),
                    }
                    match self.peek() {
                        Some(Tok::Comma) => self.i += 1,
                        Some(Tok::Close) => {
                            self.i += 1;
                            return Ok(Rhs::List(items));
                        }
                        _ => return self.err("expected `,` or `)` in the list"),
                    }
                }
            }
            _ => self.err("expected a value after the operator"),
        }
    }
}

fn is_reserved(w: &str) -> bool {
    matches!(w, "and" | "or" | "not") || Op::from_word(w).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(text: &str, at: usize) -> Word {
        Word {
            text: text.into(),
            quoted: false,
            at,
        }
    }

    #[test]
    fn precedence_and_lists() {
        let e = parse("a = 1 or not b and c in (x, 'y z')").unwrap();
        let Expr::Or(items) = e else { panic!() };
        assert_eq!(
            items[0],
            Expr::Test {
                field: w("a", 0),
                op: Op::Eq,
                rhs: Rhs::One(w("1", 4))
            }
        );
        let Expr::And(and) = &items[1] else { panic!() };
        assert_eq!(and[0], Expr::Not(Box::new(Expr::Name(w("b", 13)))));
        let Expr::Test {
            rhs: Rhs::List(l), ..
        } = &and[1]
        else {
            panic!()
        };
        assert_eq!(l[1].text, "y z");
        assert!(l[1].quoted);
    }

    #[test]
    fn bare_words_keep_paths_and_globs() {
        let e = parse("file.path glob /home/*/.aws/**").unwrap();
        let Expr::Test {
            rhs: Rhs::One(v),
            op,
            ..
        } = e
        else {
            panic!()
        };
        assert_eq!((v.text.as_str(), op), ("/home/*/.aws/**", Op::Glob));
        let e = parse(r#"proc.cmdline contains "a \"q\" b""#).unwrap();
        let Expr::Test {
            rhs: Rhs::One(v), ..
        } = e
        else {
            panic!()
        };
        assert_eq!(v.text, "a \"q\" b");
    }

    #[test]
    fn errors_have_offsets() {
        assert_eq!(parse("a = ").unwrap_err().at, 4);
        assert_eq!(parse("(a = 1").unwrap_err().at, 6);
        assert_eq!(parse("a = 1 b").unwrap_err().at, 6);
        assert_eq!(parse("a ! b").unwrap_err().at, 2);
        assert_eq!(
            parse("x = \"open").unwrap_err().message,
            "unterminated string"
        );
        assert!(parse("").is_err());
        assert!(parse("and").is_err());
        let deep = format!("{}a{}", "(".repeat(500), ")".repeat(500));
        assert!(parse(&deep).is_err());
        let nots = format!("{}a", "not ".repeat(500));
        assert!(parse(&nots).is_err());
    }
}

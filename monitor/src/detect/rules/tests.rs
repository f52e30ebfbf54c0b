//! Rule loading and matching on synthetic subjects: no kernel, no events file.

use std::{borrow::Cow, collections::HashMap};

use super::{
    fields::{Field, ProcField, Scope, Subject, Val},
    *,
};

fn docs(user: &str) -> Vec<Doc> {
    let mut d = default_docs();
    d.push(parse_doc("user.yaml", user).expect("user YAML parses"));
    d
}

fn errors(user: &str) -> Vec<Diagnostic> {
    let (set, diags) = load(&[parse_doc("user.yaml", user).unwrap()]);
    assert!(set.is_none(), "expected errors, got none: {diags:?}");
    diags
        .into_iter()
        .filter(|d| d.level == Level::Error)
        .collect()
}

fn only_error(user: &str) -> (usize, usize, String) {
    let e = errors(user);
    assert_eq!(e.len(), 1, "{e:#?}");
    (e[0].pos.line, e[0].pos.col, e[0].message.clone())
}

/// A subject built from a field → value table.
struct Fake {
    kind: &'static str,
    vals: HashMap<Field, Val<'static>>,
}

impl Fake {
    fn new(kind: &'static str) -> Self {
        Self {
            kind,
            vals: HashMap::new(),
        }
    }
    fn s(mut self, f: Field, v: &'static str) -> Self {
        self.vals.insert(f, Val::Str(Cow::Borrowed(v)));
        self
    }
    fn b(mut self, f: Field, v: bool) -> Self {
        self.vals.insert(f, Val::Bool(v));
        self
    }
    fn l(mut self, f: Field, v: &[&'static str]) -> Self {
        self.vals
            .insert(f, Val::List(v.iter().map(|s| Cow::Borrowed(*s)).collect()));
        self
    }
}

impl Subject for Fake {
    fn kind(&self) -> usize {
        fields::Kinds::index(self.kind).unwrap()
    }
    fn value(&self, f: Field) -> Val<'_> {
        match f {
            Field::EvtType => Val::Str(Cow::Borrowed(self.kind)),
            f => self.vals.get(&f).cloned().unwrap_or(Val::Missing),
        }
    }
}

#[test]
fn default_rules_load_cleanly_and_cover_every_category() {
    let (set, diags) = load(&default_docs());
    assert!(
        diags.is_empty(),
        "{}",
        diags
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let set = set.unwrap();
    for cat in [
        "sensitive-file",
        "shell-spawn",
        "process-memory",
        "tamper",
        "persistence",
        "download-exec",
        "egress",
    ] {
        assert!(
            set.rules.iter().any(|r| r.category == cat),
            "no rule in {cat}"
        );
    }
    for r in &set.rules {
        assert!(
            r.kinds != fields::Kinds::ALL,
            "{} is not indexed by kind",
            r.name
        );
    }
}

#[test]
fn rules_are_indexed_by_kind() {
    let (set, _) = load(&default_docs());
    let set = set.unwrap();
    let fork = Fake::new("fork");
    assert_eq!(
        set.by_kind[fork.kind()].len(),
        0,
        "no default rule looks at fork events"
    );
    let open = Fake::new("open");
    // Rules on opens look at opens, and some also at renames and links (which write a name),
    // and removals and truncations (a history cleared).
    for &i in &set.by_kind[open.kind()] {
        let kinds = set.rules[i].kinds.names();
        assert!(
            kinds
                .iter()
                .all(|k| ["open", "rename", "link", "unlink", "truncate"].contains(k)),
            "{}: {kinds:?}",
            set.rules[i].name
        );
    }
}

#[test]
fn conditions_lists_globs_and_exceptions_match() {
    let user = r#"
- list: secrets
  items: ["**/.aws/credentials", more_secrets]
- list: more_secrets
  items: ["/etc/shadow"]
- macro: reads_secret
  condition: evt.type = open and file.path glob (secrets)
- rule: t
  desc: d
  condition: reads_secret and not proc.name in (aws)
  output: "%proc.name read %file.path"
  severity: high
  category: test
  exceptions:
    - name: git
      fields: [proc.name, file.path]
      comps: [=, startswith]
      values: [[git, /home/ci/]]
"#;
    let (set, diags) = load(&[parse_doc("u.yaml", user).unwrap()]);
    let set = set.unwrap_or_else(|| panic!("{diags:?}"));
    let rule = &set.rules[0];
    let node = |p: &'static str| {
        Fake::new("open")
            .s(Field::FilePath, p)
            .s(Field::Proc(Scope::Proc, ProcField::Name), "node")
    };
    assert!(rule.matches(&node("/home/ci/.aws/credentials")));
    assert_eq!(rule.message(&node("/etc/shadow")), "node read /etc/shadow");
    assert!(
        rule.matches(&node("/etc/shadow")),
        "list references inside lists expand"
    );
    assert!(!rule.matches(&node("/home/ci/.aws/config")));
    let git = Fake::new("open")
        .s(Field::FilePath, "/home/ci/.aws/credentials")
        .s(Field::Proc(Scope::Proc, ProcField::Name), "git");
    assert!(!rule.matches(&git), "exception applies");
    let git_elsewhere = Fake::new("open")
        .s(Field::FilePath, "/root/.aws/credentials")
        .s(Field::Proc(Scope::Proc, ProcField::Name), "git");
    assert!(
        rule.matches(&git_elsewhere),
        "exception needs every field to match"
    );
    assert!(
        !rule.matches(
            &Fake::new("open")
                .s(Field::FilePath, "/etc/shadow")
                .s(Field::Proc(Scope::Proc, ProcField::Name), "aws")
        )
    );
    assert_eq!(rule.kinds.names(), vec!["open"]);
}

#[test]
fn overrides_append_and_replace_without_copying() {
    let user = r#"
- list: sensitive_file_globs
  items: ["**/deploy.pem"]
  override: {items: append}
- rule: sensitive-file-read
  condition: and not proc.tool = deployer
  severity: critical
  override: {condition: append, severity: replace}
- rule: egress-unlisted
  enabled: false
- rule: write-git-hook
  exceptions:
    - name: git_itself
      values: [husky]
  override: {exceptions: append}
"#;
    let (set, diags) = load(&docs(user));
    let set = set.unwrap_or_else(|| panic!("{diags:?}"));
    let r = set
        .rules
        .iter()
        .find(|r| r.name == "sensitive-file-read")
        .unwrap();
    assert_eq!(r.severity, Severity::Critical);
    let opener = |tool: &'static str, path: &'static str| {
        Fake::new("open")
            .s(Field::FilePath, path)
            .s(Field::FileTarget, path)
            .l(Field::FilePaths, &[path])
            .l(Field::FileFlags, &["read"])
            .s(Field::FileName, "x")
            .s(Field::Proc(Scope::Proc, ProcField::Tool), tool)
            .b(Field::EvtFailed, false)
    };
    assert!(
        r.matches(&opener("node", "/srv/deploy.pem")),
        "appended list item"
    );
    assert!(
        !r.matches(&opener("deployer", "/srv/deploy.pem")),
        "appended condition"
    );
    assert!(
        r.matches(&opener("node", "/root/.aws/credentials")),
        "defaults still there"
    );
    assert!(
        !set.rules
            .iter()
            .find(|r| r.name == "egress-unlisted")
            .unwrap()
            .enabled
    );
    assert!(
        set.by_kind[Fake::new("connect").kind()]
            .iter()
            .all(|&i| set.rules[i].name != "egress-unlisted")
    );
    let hook = set
        .rules
        .iter()
        .find(|r| r.name == "write-git-hook")
        .unwrap();
    let w = |tool: &'static str| {
        Fake::new("open")
            .s(Field::FilePath, "/src/.git/hooks/pre-commit")
            .s(Field::FileName, "pre-commit")
            .s(Field::Proc(Scope::Proc, ProcField::Tool), tool)
            // Installed tools: owning-tool exceptions check owner_tool.
            .s(Field::Proc(Scope::Proc, ProcField::OwnerTool), tool)
            .b(Field::EvtFailed, false)
            .b(Field::FileWrite, true)
    };
    assert!(
        !hook.matches(&w("husky")),
        "values appended to a named exception"
    );
    assert!(!hook.matches(&w("git")));
    assert!(hook.matches(&w("node")));
}

#[test]
fn yaml_syntax_error_is_positioned() {
    let e = parse_doc("bad.yaml", "- rule: x\n  desc: [a, b\n  condition: y\n")
        .err()
        .unwrap();
    assert_eq!(e.pos.file, "bad.yaml");
    assert!(e.pos.line >= 2 && e.message.contains("YAML syntax"), "{e}");
    assert!(e.snippet.is_some());
}

const RULE_HEAD: &str = "- rule: r\n  desc: d\n  output: o\n  severity: high\n  category: c\n";

#[test]
fn unknown_field_is_positioned_at_the_field() {
    let src = format!("{RULE_HEAD}  condition: evt.type = open and file.pth = /x\n");
    assert_eq!(
        only_error(&src),
        (
            6,
            34,
            "unknown field `file.pth` (did you mean `file.path`?)".into()
        )
    );
}

#[test]
fn unknown_field_inside_a_folded_block() {
    let src = format!("{RULE_HEAD}  condition: >\n    evt.type = open\n    and nope.x = 1\n");
    let (line, col, msg) = only_error(&src);
    assert_eq!((line, col), (8, 9), "{msg}");
}

#[test]
fn unknown_macro_and_key_and_severity() {
    let src = format!("{RULE_HEAD}  condition: evt.type = open and is_evil\n");
    assert_eq!(
        only_error(&src),
        (6, 34, "unknown macro or field `is_evil`".into())
    );
    let e = errors(
        "- rule: r\n  desc: d\n  condition: evt.type = open\n  output: o\n  severity: urgent\n  category: c\n  priority: x\n",
    );
    let msgs: Vec<(usize, &str)> = e.iter().map(|d| (d.pos.line, d.message.as_str())).collect();
    assert_eq!(msgs.len(), 1, "an unknown key stops the item: {msgs:?}");
    assert!(
        msgs[0].1.starts_with("unknown field `priority` in rule"),
        "{msgs:?}"
    );
    let (l, c, m) = only_error(
        "- rule: r\n  desc: d\n  condition: evt.type = open\n  output: o\n  severity: urgent\n  category: c\n",
    );
    assert_eq!((l, c), (5, 13));
    assert!(m.contains("unknown severity"));
}

#[test]
fn cyclic_macros_are_an_error_not_a_hang() {
    let src = "- macro: a\n  condition: evt.type = open and b\n- macro: b\n  condition: not a\n";
    let e = errors(&format!("{src}{RULE_HEAD}  condition: a\n"));
    assert!(
        e.iter()
            .any(|d| d.message.contains("cycle: a → b → a")
                || d.message.contains("cycle: b → a → b")),
        "{e:?}"
    );
    let self_ref = errors("- macro: s\n  condition: s\n");
    assert!(self_ref[0].message.contains("cycle"), "{self_ref:?}");
}

#[test]
fn type_errors_and_bad_values() {
    let cases = [
        ("net.port = http", "is a number"),
        (
            "net.addr in (10.0.0.0/8, nowhere)",
            "not an IP address or CIDR",
        ),
        ("proc.name regex \"(unclosed\"", "bad regex"),
        ("file.path glob \"a[\"", "bad glob"),
        ("evt.type = opne", "unknown event kind"),
        ("net.port glob 8*", "does not apply"),
        ("proc.name = (a, b)", "takes one value"),
        ("evt.type = open and", "condition ends too early"),
    ];
    for (cond, want) in cases {
        let src = format!("{RULE_HEAD}  condition: {cond}\n");
        let e = errors(&src);
        assert!(
            e.iter()
                .any(|d| d.message.contains(want) && d.pos.line == 6),
            "{cond}: {e:?}"
        );
    }
}

#[test]
fn override_of_undefined_and_bad_override_shapes() {
    let (_, _, m) =
        only_error("- rule: ghost\n  condition: and x\n  override: {condition: append}\n");
    assert!(m.contains("not defined"), "{m}");
    let e =
        errors("- list: l\n  items: [a]\n- list: l\n  items: [b]\n  override: {items: merge}\n");
    assert!(e[0].message.contains("append` or `replace"), "{e:?}");
    let e = errors("- list: l\n  items: [a]\n- rule: r\n  desc: d\n  override: {desc: replace}\n");
    assert!(e[0].message.contains("not defined"), "{e:?}");
}

#[test]
fn hostile_input_does_not_panic() {
    for src in [
        "",
        "[]",
        "{}",
        "- 1",
        "- [a]",
        "- rule:",
        "- rule: [x]",
        "- list: l\n  items: {a: 1}",
        "- macro: m\n  condition: \"\"",
        "- rule: r\n  exceptions: 5",
        "\u{0}",
        "- rule: r\n  override: 3",
        "---\n- rule: a\n---\n- rule: b\n",
        "- macro: m\n  condition: ((((((",
    ] {
        if let Ok(d) = parse_doc("h.yaml", src) {
            let _ = load(&[d]);
        }
    }
}

#[test]
fn outputs_check_their_fields() {
    let src = "- rule: r\n  desc: d\n  condition: evt.type = open\n  output: \"%proc.name opened %file.paht.\"\n  severity: low\n  category: c\n";
    let (l, c, m) = only_error(src);
    assert_eq!((l, c), (4, 30), "{m}");
    assert!(m.contains("%file.paht"));
}

#[test]
fn host_defaults_load_and_narrow_the_build_rules() {
    let mut docs = default_docs();
    docs.extend(host_docs());
    let (set, diags) = load(&docs);
    let set = set.unwrap_or_else(|| panic!("{diags:?}"));
    for name in [
        "egress-unlisted",
        "egress-unresolved-address",
        "bpf-call-in-build",
        "privilege-tool-in-build",
    ] {
        let r = set.rules.iter().find(|r| r.name == name).unwrap();
        assert!(
            r.condition().ends_with("and in_install_script"),
            "{name}: {}",
            r.condition()
        );
    }
    // The agent installs no seccomp filter: a SIGSYS death on a host is not a refused
    // 32-bit syscall.
    let r = set
        .rules
        .iter()
        .find(|r| r.name == "syscall-32bit-killed")
        .unwrap();
    assert!(!r.enabled);
}

#[test]
fn conditions_run_their_cheap_tests_first_and_keep_their_meaning() {
    let (set, diags) = load(&docs(
        "- rule: r\n  desc: d\n  condition: (file.path glob \"**/.npmrc\" and (not evt.failed and evt.type = open)) or proc.name = x\n  output: o\n  severity: low\n  category: c\n",
    ));
    let set = set.unwrap_or_else(|| panic!("{diags:?}"));
    let r = set.rules.iter().find(|r| r.name == "r").unwrap();
    let compile::Matcher::Or(any) = &r.matcher else {
        panic!("{:?}", r.matcher)
    };
    // The string test before the and holding a glob; inside the and, flattened, the kind
    // (a bit test) and the failed flag first, the glob last.
    assert!(matches!(any[0], compile::Matcher::Test(Field::Proc(..), _)));
    let compile::Matcher::And(all) = &any[1] else {
        panic!("{:?}", any[1])
    };
    assert_eq!(all.len(), 3);
    assert!(all[..2].iter().any(|m| matches!(
        m,
        compile::Matcher::Test(Field::EvtType, compile::Test::Kind(_))
    )));
    assert!(matches!(
        all[2],
        compile::Matcher::Test(Field::FilePath, compile::Test::Glob(_))
    ));
    let hit = Fake::new("open")
        .b(Field::EvtFailed, false)
        .s(Field::FilePath, "/home/ci/.npmrc");
    assert!(r.matches(&hit));
    let failed = Fake::new("open")
        .b(Field::EvtFailed, true)
        .s(Field::FilePath, "/home/ci/.npmrc");
    assert!(!r.matches(&failed));
    let exec = Fake::new("exec")
        .b(Field::EvtFailed, false)
        .s(Field::FilePath, "/home/ci/.npmrc");
    assert!(!r.matches(&exec));
}

#[test]
fn rules_are_not_tried_on_events_their_conjuncts_rule_out() {
    let (set, diags) = load(&docs(
        "- rule: w\n  desc: d\n  condition: evt.type = open and not evt.failed and file.write and file.path glob \"**/.npmrc\"\n  output: o\n  severity: low\n  category: c\n\
         - rule: f\n  desc: d\n  condition: evt.type = open and evt.failed\n  output: o\n  severity: low\n  category: c\n\
         - rule: any\n  desc: d\n  condition: evt.type = open and (evt.failed or file.write)\n  output: o\n  severity: low\n  category: c\n",
    ));
    let set = set.unwrap_or_else(|| panic!("{diags:?}"));
    let needs = |name: &str| set.rules.iter().find(|r| r.name == name).unwrap().needs;
    assert_eq!(needs("w"), Facts::OK | Facts::WRITE);
    assert_eq!(needs("f"), Facts::FAILED);
    assert_eq!(needs("any"), 0, "an or requires nothing by itself");
    let names = |s: &Fake| {
        set.matching(s)
            .map(|r| r.name.clone())
            .filter(|n| ["w", "f", "any"].contains(&n.as_str()))
            .collect::<Vec<_>>()
    };
    let write = Fake::new("open")
        .b(Field::EvtFailed, false)
        .b(Field::FileWrite, true)
        .s(Field::FilePath, "/h/.npmrc");
    assert_eq!(names(&write), ["w", "any"]);
    let failed = Fake::new("open")
        .b(Field::EvtFailed, true)
        .b(Field::FileWrite, true)
        .s(Field::FilePath, "/h/.npmrc");
    assert_eq!(names(&failed), ["f", "any"]);
}

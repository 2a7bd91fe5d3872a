//! Trace summaries and a useful subset of X-Ray filter expressions.
//!
//! Supported:
//! - `service("name")`, `service(id(name: "name", type: "AWS::EC2::Instance"))`,
//!   `edge("caller", "callee")`
//! - `annotation.key = value` (string, number or boolean; `=`, `!=`, `<`, `<=`, `>`, `>=`,
//!   and `CONTAINS`/`BEGINSWITH`/`ENDSWITH` on strings)
//! - `responsetime`, `duration` and `http.status` compared with a number
//! - `http.url`, `http.method`, `user`, `id` compared with a string
//! - the keywords `fault`, `error`, `throttle`, `ok`, `partial` (also `fault = true`)
//! - `AND`, `OR` (also `&&`, `||`), `!`/`NOT`, parentheses; `AND` binds tighter than `OR`.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::map::{NodeKey, TraceGraph};
use crate::model::{AnnValue, Health};
use crate::store::Assembled;

/// What the trace list shows and the filters test.
#[derive(Debug, Clone, Serialize)]
pub struct TraceSummary {
    /// Trace id.
    pub id: String,
    /// Name of the root segment.
    pub name: String,
    /// Earliest start (epoch seconds).
    pub start: f64,
    /// Trace duration: latest end minus earliest start, in seconds.
    pub duration: f64,
    /// Root segment's duration, in seconds.
    pub response_time: f64,
    /// Worst health in the trace.
    pub status: &'static str,
    /// Any fault in the trace.
    pub fault: bool,
    /// Any error in the trace.
    pub error: bool,
    /// Any throttle in the trace.
    pub throttle: bool,
    /// Root segment HTTP method.
    pub method: Option<String>,
    /// Root segment HTTP URL.
    pub url: Option<String>,
    /// Root segment HTTP status.
    pub http_status: Option<u16>,
    /// All annotations of the trace (key, value as text).
    pub annotations: Vec<(String, String)>,
    /// Users seen in the trace.
    pub users: Vec<String>,
    /// Why the trace is partial (empty when whole).
    pub partial: Vec<String>,
    /// Nodes of the trace.
    #[serde(skip)]
    pub nodes: BTreeSet<NodeKey>,
    /// Edges of the trace (caller name, callee name).
    #[serde(skip)]
    pub edges: BTreeSet<(String, String)>,
    /// Typed annotations.
    #[serde(skip)]
    pub typed_annotations: Vec<(String, AnnValue)>,
}

impl TraceSummary {
    /// Summarises an assembled trace whose graph is already known.
    pub fn with_graph(a: &Assembled, g: &TraceGraph) -> TraceSummary {
        let (start, end) = a.span();
        let root = a
            .root()
            .or_else(|| a.orphans.first())
            .or_else(|| a.cycles.first());
        let mut worst = Health::Ok;
        let (mut fault, mut error, mut throttle) = (false, false, false);
        let mut annotations = Vec::new();
        let mut users = BTreeSet::new();
        for r in a.roots() {
            r.walk(&mut |e, _| {
                let h = e.health();
                worst = worst.max(h);
                fault |= h == Health::Fault || e.fault;
                throttle |= h == Health::Throttle || e.throttle;
                error |= h == Health::Error || e.error || e.throttle;
                annotations.extend(e.annotations.iter().cloned());
                if let Some(u) = &e.user {
                    users.insert(u.clone());
                }
            });
        }
        let http = root.and_then(|r| r.http.clone()).unwrap_or_default();
        TraceSummary {
            id: a.id.clone(),
            name: root.map(|r| r.name.clone()).unwrap_or_default(),
            start,
            duration: end - start,
            response_time: root.map(|r| r.duration()).unwrap_or(0.0),
            status: worst.as_str(),
            fault,
            error,
            throttle,
            method: http.method,
            url: http.url,
            http_status: http.status,
            annotations: {
                // Services often repeat the same annotation; list each pair once.
                let mut seen = BTreeSet::new();
                annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .filter(|kv| seen.insert(kv.clone()))
                    .collect()
            },
            users: users.into_iter().collect(),
            partial: a.partial.clone(),
            nodes: g.nodes.iter().map(|(k, _)| k.clone()).collect(),
            edges: g
                .edges
                .iter()
                .map(|(f, t, _)| (f.name.clone(), t.name.clone()))
                .collect(),
            typed_annotations: annotations,
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `CONTAINS`
    Contains,
    /// `BEGINSWITH`
    BeginsWith,
    /// `ENDSWITH`
    EndsWith,
}

/// A literal value in an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    /// `"text"`
    Str(String),
    /// `12.5`
    Num(f64),
    /// `true` / `false`
    Bool(bool),
}

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Matches everything (the empty filter).
    All,
    /// `a AND b`
    And(Box<Expr>, Box<Expr>),
    /// `a OR b`
    Or(Box<Expr>, Box<Expr>),
    /// `!a`
    Not(Box<Expr>),
    /// `service("name")`, or with a type: `service(id(name: "n", type: "t"))`
    Service(String, Option<String>),
    /// `edge("a", "b")`
    Edge(String, String),
    /// `annotation.key op value`
    Annotation(String, Op, Lit),
    /// A trace-level field compared with a value (`responsetime`, `http.status`, ...).
    Field(String, Op, Lit),
    /// `fault`, `error`, `throttle`, `ok`, `partial`.
    Keyword(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    LParen,
    RParen,
    Comma,
    Colon,
    Not,
    And,
    Or,
    Op(Op),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            ':' => {
                out.push(Tok::Colon);
                i += 1
            }
            '"' | '\'' => {
                let q = c;
                let mut v = String::new();
                i += 1;
                loop {
                    match cs.get(i) {
                        None => return Err("unterminated string".into()),
                        Some('\\') if i + 1 < cs.len() => {
                            v.push(cs[i + 1]);
                            i += 2;
                        }
                        Some(&ch) if ch == q => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            v.push(ch);
                            i += 1
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            '&' | '|' => {
                if cs.get(i + 1) != Some(&c) {
                    return Err(format!("expected `{c}{c}`"));
                }
                out.push(if c == '&' { Tok::And } else { Tok::Or });
                i += 2;
            }
            '!' if cs.get(i + 1) == Some(&'=') => {
                out.push(Tok::Op(Op::Ne));
                i += 2
            }
            '!' => {
                out.push(Tok::Not);
                i += 1
            }
            '=' => {
                out.push(Tok::Op(Op::Eq));
                i += if cs.get(i + 1) == Some(&'=') { 2 } else { 1 }
            }
            '<' | '>' => {
                let eq = cs.get(i + 1) == Some(&'=');
                out.push(Tok::Op(match (c, eq) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                }));
                i += if eq { 2 } else { 1 };
            }
            c if c.is_ascii_digit() || c == '-' || c == '.' => {
                let st = i;
                i += 1;
                while i < cs.len()
                    && (cs[i].is_ascii_digit() || matches!(cs[i], '.' | 'e' | 'E' | '+' | '-'))
                {
                    i += 1;
                }
                let t: String = cs[st..i].iter().collect();
                out.push(Tok::Num(
                    t.parse().map_err(|_| format!("bad number `{t}`"))?,
                ));
            }
            c if c.is_alphanumeric() || c == '_' => {
                let st = i;
                while i < cs.len() && (cs[i].is_alphanumeric() || matches!(cs[i], '_' | '.')) {
                    i += 1;
                }
                let w: String = cs[st..i].iter().collect();
                out.push(match w.to_ascii_uppercase().as_str() {
                    "AND" => Tok::And,
                    "OR" => Tok::Or,
                    "NOT" => Tok::Not,
                    "CONTAINS" => Tok::Op(Op::Contains),
                    "BEGINSWITH" => Tok::Op(Op::BeginsWith),
                    "ENDSWITH" => Tok::Op(Op::EndsWith),
                    _ => Tok::Ident(w),
                });
            }
            c => return Err(format!("unexpected `{c}`")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn expect(&mut self, t: Tok, what: &str) -> Result<(), String> {
        if self.next().as_ref() == Some(&t) {
            Ok(())
        } else {
            Err(format!("expected {what}"))
        }
    }
    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }
    fn unary(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::Not) => Ok(Expr::Not(Box::new(self.unary()?))),
            Some(Tok::LParen) => {
                let e = self.or()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(e)
            }
            Some(Tok::Ident(w)) => self.term(w),
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("unexpected end of expression".into()),
        }
    }
    fn string_arg(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Str(s)) | Some(Tok::Ident(s)) => Ok(s),
            _ => Err("expected a quoted name".into()),
        }
    }
    /// `(name: "n", type: "t")` after `id`; `type` is optional.
    fn id_args(&mut self) -> Result<(String, Option<String>), String> {
        self.expect(Tok::LParen, "`(` after id")?;
        let (mut name, mut kind) = (None, None);
        loop {
            let key = match self.next() {
                Some(Tok::Ident(k)) => k.to_ascii_lowercase(),
                _ => return Err("expected `name:` or `type:`".into()),
            };
            self.expect(Tok::Colon, "`:`")?;
            let v = self.string_arg()?;
            match key.as_str() {
                "name" => name = Some(v),
                "type" => kind = Some(v),
                _ => return Err(format!("unknown id field `{key}`")),
            }
            match self.next() {
                Some(Tok::Comma) => continue,
                Some(Tok::RParen) => break,
                _ => return Err("expected `,` or `)`".into()),
            }
        }
        Ok((name.ok_or("id() needs a name")?, kind))
    }

    fn literal(&mut self) -> Result<Lit, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Lit::Str(s)),
            Some(Tok::Num(n)) => Ok(Lit::Num(n)),
            Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("true") => Ok(Lit::Bool(true)),
            Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("false") => Ok(Lit::Bool(false)),
            _ => Err("expected a value".into()),
        }
    }
    fn op(&mut self) -> Result<Op, String> {
        match self.next() {
            Some(Tok::Op(o)) => Ok(o),
            _ => Err("expected a comparison operator".into()),
        }
    }
    fn term(&mut self, w: String) -> Result<Expr, String> {
        let lower = w.to_ascii_lowercase();
        match lower.as_str() {
            "service" => {
                self.expect(Tok::LParen, "`(` after service")?;
                if let Some(Tok::Ident(w)) = self.peek() {
                    if w.eq_ignore_ascii_case("id") {
                        self.pos += 1;
                        let (name, kind) = self.id_args()?;
                        self.expect(Tok::RParen, "`)`")?;
                        return Ok(Expr::Service(name, kind));
                    }
                }
                let n = self.string_arg()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(Expr::Service(n, None))
            }
            "edge" => {
                self.expect(Tok::LParen, "`(` after edge")?;
                let a = self.string_arg()?;
                self.expect(Tok::Comma, "`,`")?;
                let b = self.string_arg()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(Expr::Edge(a, b))
            }
            "fault" | "error" | "throttle" | "ok" | "partial" => {
                if let Some(Tok::Op(_)) = self.peek() {
                    let op = self.op()?;
                    let lit = self.literal()?;
                    let want = match (op, lit) {
                        (Op::Eq, Lit::Bool(b)) => b,
                        (Op::Ne, Lit::Bool(b)) => !b,
                        _ => return Err(format!("`{lower}` compares only with true/false")),
                    };
                    let k = Expr::Keyword(lower);
                    Ok(if want { k } else { Expr::Not(Box::new(k)) })
                } else {
                    Ok(Expr::Keyword(lower))
                }
            }
            _ if lower.starts_with("annotation.") || lower.starts_with("annotation[") => {
                let key = w["annotation.".len()..].to_owned();
                if key.is_empty() {
                    return Err("expected an annotation key".into());
                }
                let op = self.op()?;
                Ok(Expr::Annotation(key, op, self.literal()?))
            }
            "responsetime" | "duration" | "http.status" | "http.url" | "http.method" | "user"
            | "id" => {
                let op = self.op()?;
                Ok(Expr::Field(lower, op, self.literal()?))
            }
            _ => Err(format!("unknown keyword `{w}`")),
        }
    }
}

/// Most tokens a filter expression may have. Parsing, matching and dropping an
/// expression recurse as deep as it nests, and a filter comes from any URL: the bound keeps
/// one request from overflowing a worker thread's stack (which aborts the whole console).
pub const MAX_TOKENS: usize = 1_000;

/// Parses a filter expression; the empty string matches everything.
pub fn parse(s: &str) -> Result<Expr, String> {
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return Ok(Expr::All);
    }
    if toks.len() > MAX_TOKENS {
        return Err(format!(
            "expression too long ({} tokens, at most {MAX_TOKENS})",
            toks.len()
        ));
    }
    let mut p = Parser { toks, pos: 0 };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return Err(format!("unexpected {:?}", p.toks[p.pos]));
    }
    Ok(e)
}

/// How close two numbers are to be equal: times and durations are sums and
/// differences of floating-point seconds (100.0005 - 100.0 is not 0.0005).
/// Every operator uses it, so that `=` never disagrees with `<=` or `>`.
const NUM_TOLERANCE: f64 = 1e-9;

fn cmp_num(a: f64, op: Op, b: f64) -> bool {
    let equal = (a - b).abs() < NUM_TOLERANCE;
    match op {
        Op::Eq => equal,
        Op::Ne => !equal,
        Op::Lt => a < b && !equal,
        Op::Le => a < b || equal,
        Op::Gt => a > b && !equal,
        Op::Ge => a > b || equal,
        _ => false,
    }
}

fn cmp_str(a: &str, op: Op, b: &str) -> bool {
    match op {
        Op::Eq => a == b,
        Op::Ne => a != b,
        Op::Lt => a < b,
        Op::Le => a <= b,
        Op::Gt => a > b,
        Op::Ge => a >= b,
        Op::Contains => a.contains(b),
        Op::BeginsWith => a.starts_with(b),
        Op::EndsWith => a.ends_with(b),
    }
}

fn cmp(v: &AnnValue, op: Op, lit: &Lit) -> bool {
    match (v, lit) {
        (AnnValue::Num(a), Lit::Num(b)) => cmp_num(*a, op, *b),
        (AnnValue::Str(a), Lit::Str(b)) => cmp_str(a, op, b),
        (AnnValue::Bool(a), Lit::Bool(b)) => match op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            _ => false,
        },
        _ => false,
    }
}

impl Expr {
    /// Whether a trace matches.
    pub fn matches(&self, t: &TraceSummary) -> bool {
        match self {
            Expr::All => true,
            Expr::And(a, b) => a.matches(t) && b.matches(t),
            Expr::Or(a, b) => a.matches(t) || b.matches(t),
            Expr::Not(a) => !a.matches(t),
            Expr::Service(n, kind) => t
                .nodes
                .iter()
                .any(|k| &k.name == n && kind.as_ref().map_or(true, |kd| &k.kind == kd)),
            Expr::Edge(a, b) => t.edges.contains(&(a.clone(), b.clone())),
            Expr::Annotation(k, op, lit) => t
                .typed_annotations
                .iter()
                .any(|(key, v)| key == k && cmp(v, *op, lit)),
            Expr::Keyword(k) => match k.as_str() {
                "fault" => t.fault,
                "error" => t.error,
                "throttle" => t.throttle,
                "ok" => t.status == "ok",
                "partial" => !t.partial.is_empty(),
                _ => false,
            },
            Expr::Field(f, op, lit) => {
                let num = |v: Option<f64>| match (v, lit) {
                    (Some(v), Lit::Num(n)) => cmp_num(v, *op, *n),
                    _ => false,
                };
                let text = |v: Option<&str>| match (v, lit) {
                    (Some(v), Lit::Str(s)) => cmp_str(v, *op, s),
                    _ => false,
                };
                match f.as_str() {
                    "responsetime" => num(Some(t.response_time)),
                    "duration" => num(Some(t.duration)),
                    "http.status" => num(t.http_status.map(f64::from)),
                    "http.url" => text(t.url.as_deref()),
                    "http.method" => text(t.method.as_deref()),
                    "id" => text(Some(&t.id)),
                    "user" => t.users.iter().any(|u| text(Some(u))),
                    _ => false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> TraceSummary {
        TraceSummary {
            id: "1-a-b".into(),
            name: "orders-api".into(),
            start: 0.0,
            duration: 0.6,
            response_time: 0.5,
            status: "fault",
            fault: true,
            error: false,
            throttle: false,
            method: Some("GET".into()),
            url: Some("http://localhost/orders/42".into()),
            http_status: Some(502),
            annotations: vec![],
            users: vec!["user-123".into()],
            partial: vec![],
            nodes: [NodeKey {
                name: "orders-api".into(),
                kind: "service".into(),
            }]
            .into_iter()
            .collect(),
            edges: [("client".to_string(), "orders-api".to_string())]
                .into_iter()
                .collect(),
            typed_annotations: vec![
                ("customer".into(), AnnValue::Str("acme".into())),
                ("order_count".into(), AnnValue::Num(3.0)),
                ("vip".into(), AnnValue::Bool(true)),
            ],
        }
    }

    #[test]
    fn expressions() {
        let t = summary();
        let yes = [
            "",
            "service(\"orders-api\")",
            "service(id(name: \"orders-api\", type: \"service\"))",
            "service(id(name: \"orders-api\"))",
            "annotation.customer = \"acme\"",
            "annotation.order_count >= 3 AND annotation.vip = true",
            "responsetime > 0.4 and duration >= 0.6",
            "fault",
            "fault = true AND !error",
            "error OR throttle OR http.status = 502",
            "(error || fault) && http.url CONTAINS \"/orders\"",
            "http.method = \"GET\" AND user = \"user-123\"",
            "edge(\"client\", \"orders-api\")",
            "NOT partial",
        ];
        for e in yes {
            assert!(parse(e).unwrap().matches(&t), "{e}");
        }
        let no = [
            "service(\"other\")",
            "service(id(name: \"orders-api\", type: \"AWS::EC2::Instance\"))",
            "annotation.customer = \"x\"",
            "annotation.order_count > 3",
            "responsetime > 1",
            "error",
            "fault = false",
            "http.status = 200 OR throttle",
            "annotation.missing = 1",
        ];
        for e in no {
            assert!(!parse(e).unwrap().matches(&t), "{e}");
        }
    }

    #[test]
    fn precedence_and_errors() {
        assert_eq!(
            parse("fault OR error AND throttle").unwrap(),
            Expr::Or(
                Box::new(Expr::Keyword("fault".into())),
                Box::new(Expr::And(
                    Box::new(Expr::Keyword("error".into())),
                    Box::new(Expr::Keyword("throttle".into()))
                ))
            )
        );
        for bad in [
            "service(",
            "annotation.x",
            "responsetime >",
            "bogus",
            "fault AND",
            "\"open",
            "a & b",
            "fault)",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deep_or_long_expressions_are_errors_not_stack_overflows() {
        // Run where the HTTP workers run: on a spawned thread with the default stack.
        std::thread::spawn(|| {
            let t = summary();
            for n in [10, MAX_TOKENS / 4, 200_000] {
                let cases = [
                    format!("{}fault", "!".repeat(n)),
                    format!("{}fault{}", "(".repeat(n), ")".repeat(n)),
                    format!("fault{}", " AND fault".repeat(n)),
                ];
                for c in cases {
                    match parse(&c) {
                        Ok(e) => {
                            assert!(n < MAX_TOKENS, "{n}: a too long filter parsed");
                            e.matches(&t);
                        }
                        Err(e) => assert!(n >= MAX_TOKENS, "{n}: {e}"),
                    }
                }
            }
        })
        .join()
        .unwrap();
    }
}

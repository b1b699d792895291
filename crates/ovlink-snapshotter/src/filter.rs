//! containerd's filter syntax for `List` (Go: `Walk(ctx, fn, filters...)`), as containerd's
//! `filters` package and its snapshot adaptor (`metadata/adaptors.go`) define it:
//!
//! ```text
//! filters   := filter ...            one List request: a snapshot matches if ANY filter does
//! filter    := selector ("," selector)*          all selectors of one filter must match
//! selector  := fieldpath [("==" | "!=") value]   no operator: the field is present
//! fieldpath := field ("." field)*                field: a name or a "quoted string"
//! value     := "quoted string" | bare text up to the next ","
//! fields    := name | parent | kind (view, active, committed) | labels.<key>
//! ```
//!
//! These are the forms containerd's conformance suite and `ctr` send (`kind==active,labels.
//! "containerd.io/gc.root"==x`, `name==p`, `parent!=""`, `labels.l`). The regular-expression
//! operator `~=` is refused with InvalidArgument (no regex engine here). This module is pure.

use crate::error::{Result, SnapError};
use crate::store::Record;

/// A comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Present,
    Equal(String),
    NotEqual(String),
}

/// One `fieldpath op value`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector {
    path: Vec<String>,
    op: Op,
}

/// The parsed filters of one request (OR of ANDs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(Vec<Vec<Selector>>);

fn bad(f: &str, why: &str) -> SnapError {
    SnapError::InvalidArgument(format!("filter {f:?}: {why}"))
}

/// Reads a `"quoted"` string at the start of `s` (after the quote); returns it and the rest.
fn quoted<'a>(f: &str, s: &'a str) -> Result<(String, &'a str)> {
    let mut out = String::new();
    let mut it = s.char_indices();
    while let Some((i, c)) = it.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match it.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, c)) => out.push(c),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(bad(f, "unterminated quoted string"))
}

fn parse_one(f: &str) -> Result<Vec<Selector>> {
    let mut sels = Vec::new();
    let mut s = f.trim_start();
    loop {
        // fieldpath
        let mut path = Vec::new();
        loop {
            s = s.trim_start();
            if let Some(rest) = s.strip_prefix('"') {
                let (v, rest) = quoted(f, rest)?;
                path.push(v);
                s = rest;
            } else {
                let end = s
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '/'))
                    .unwrap_or(s.len());
                if end == 0 {
                    return Err(bad(f, "expected a field name"));
                }
                path.push(s[..end].to_string());
                s = &s[end..];
            }
            match s.strip_prefix('.') {
                Some(rest) => s = rest,
                None => break,
            }
        }
        s = s.trim_start();
        let op = if s.is_empty() || s.starts_with(',') {
            Op::Present
        } else {
            let (ctor, rest): (fn(String) -> Op, &str) = if let Some(r) = s.strip_prefix("==") {
                (Op::Equal, r)
            } else if let Some(r) = s.strip_prefix("!=") {
                (Op::NotEqual, r)
            } else if s.starts_with("~=") {
                return Err(bad(
                    f,
                    "the regular-expression operator ~= is not supported",
                ));
            } else {
                return Err(bad(f, "expected ==, != or ,"));
            };
            let rest = rest.trim_start();
            let (v, rest) = if let Some(r) = rest.strip_prefix('"') {
                quoted(f, r)?
            } else {
                let end = rest.find(',').unwrap_or(rest.len());
                (rest[..end].trim_end().to_string(), &rest[end..])
            };
            s = rest.trim_start();
            ctor(v)
        };
        sels.push(Selector { path, op });
        match s.strip_prefix(',') {
            Some(rest) => s = rest,
            None if s.is_empty() => break,
            None => return Err(bad(f, "unexpected text after a selector")),
        }
    }
    Ok(sels)
}

impl Filters {
    /// Parses the filters of a request (empty strings are ignored; none: everything matches).
    pub fn parse(filters: &[String]) -> Result<Filters> {
        let mut v = Vec::new();
        for f in filters.iter().filter(|f| !f.trim().is_empty()) {
            v.push(parse_one(f)?);
        }
        Ok(Filters(v))
    }

    /// True when snapshot `name` with record `r` matches.
    pub fn matches(&self, name: &str, r: &Record) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let field = |path: &[String]| -> Option<String> {
            match path.first().map(String::as_str) {
                Some("name") => Some(name.to_string()),
                Some("parent") => Some(r.parent.clone()),
                Some("kind") => Some(r.kind.name().to_string()),
                Some("labels") => r.labels.get(&path[1..].join(".")).cloned(),
                _ => None,
            }
        };
        self.0.iter().any(|all| {
            all.iter().all(|s| {
                let v = field(&s.path);
                match &s.op {
                    Op::Present => v.is_some(),
                    Op::Equal(x) => v.as_deref() == Some(x.as_str()),
                    Op::NotEqual(x) => v.as_deref().unwrap_or("") != x,
                }
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::Kind;
    use std::collections::BTreeMap;

    fn rec(kind: Kind, parent: &str, labels: &[(&str, &str)]) -> Record {
        Record {
            layer: None,
            kind,
            parent: parent.into(),
            labels: labels
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<BTreeMap<_, _>>(),
            created: 0,
            updated: 0,
            committing: None,
        }
    }

    #[test]
    fn the_suites_filters() {
        let gc = ("containerd.io/gc.root", "check-walk");
        let a = rec(Kind::Active, "p", &[gc, ("l", "2")]);
        let p = rec(Kind::Committed, "", &[gc]);
        let table: &[(&[&str], &str, &Record, bool)] = &[
            (
                &["labels.\"containerd.io/gc.root\"==check-walk"],
                "a",
                &a,
                true,
            ),
            (
                &["kind==active,labels.\"containerd.io/gc.root\"==check-walk"],
                "a",
                &a,
                true,
            ),
            (
                &["kind==committed,labels.\"containerd.io/gc.root\"==check-walk"],
                "a",
                &a,
                false,
            ),
            (&["name==p", "name==a"], "a", &a, true),
            (&["name==p", "name==x"], "a", &a, false),
            (&["name==a,labels.l"], "a", &a, true),
            (&["parent==p"], "a", &a, true),
            (&["parent!=\"\""], "a", &a, true),
            (&["parent!=\"\""], "p", &p, false),
            (&["labels.l"], "p", &p, false),
            (&["labels.l==2"], "a", &a, true),
            (&["labels.l==3"], "a", &a, false),
            (&[], "a", &a, true),
        ];
        for (f, name, r, want) in table {
            let fs: Vec<String> = f.iter().map(|s| s.to_string()).collect();
            assert_eq!(
                Filters::parse(&fs).unwrap().matches(name, r),
                *want,
                "{f:?} on {name}"
            );
        }
    }

    #[test]
    fn bad_filters_are_invalid_arguments() {
        for f in ["name~=x", "labels.\"open", "==x", "name==a b,"] {
            let e = Filters::parse(&[f.to_string()]);
            if f == "name==a b," {
                // Bare values run to the next comma; a trailing comma needs a selector.
                assert!(e.is_err(), "{f}");
                continue;
            }
            assert!(
                matches!(e, Err(SnapError::InvalidArgument(_))),
                "{f}: {e:?}"
            );
        }
    }
}

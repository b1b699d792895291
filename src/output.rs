//! Printing: JSON for `--json`, aligned plain-text tables otherwise.

use serde::Serialize;
use std::io::Write;

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Prints rows as a table with a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: Vec<String>| {
        let n = cells.len();
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == n {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(
        out,
        "{}",
        line(header.iter().map(|s| s.to_string()).collect())
    )?;
    for r in rows {
        writeln!(out, "{}", line(r.clone()))?;
    }
    Ok(())
}

/// `status` as one JSON object: each label in snake_case (`Backing Filesystem` ->
/// `backing_filesystem`), every `Warning` line in `warnings`, a label given twice as a list.
pub fn status_object(lines: &[(String, String)]) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    let mut warnings = Vec::new();
    for (k, v) in lines {
        if k == "Warning" {
            warnings.push(serde_json::Value::from(v.as_str()));
            continue;
        }
        let key = snake_case(k);
        let v = serde_json::Value::from(v.as_str());
        match o.get_mut(&key) {
            Some(serde_json::Value::Array(a)) => a.push(v),
            Some(old) => *old = serde_json::Value::Array(vec![old.take(), v]),
            None => {
                o.insert(key, v);
            }
        }
    }
    o.insert("warnings".into(), warnings.into());
    o.into()
}

/// `Supports d_type` -> `supports_d_type`.
fn snake_case(label: &str) -> String {
    let mut s = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.is_empty() && !s.ends_with('_') {
            s.push('_');
        }
    }
    s.trim_end_matches('_').to_string()
}

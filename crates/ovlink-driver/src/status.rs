//! What `ovlink status` shows of a driver: its `docker info` lines ([`crate::Driver::status`])
//! after its name and home, as text lines or as one object in the JSON convention of
//! `docs/cli.md` (snake_case keys, every warning in `warnings`, a label given twice as a list),
//! and the warnings of an init whose recovery could not finish.
//!
//! This module only reshapes what a driver reports; it never reads the home itself.

use crate::home::{RECOVERY_WARNING, WARNING};
use crate::Driver;
use std::collections::BTreeMap;

/// A value of [`object`]: one line's value, or the values of a label given more than once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Value {
    /// A label given once.
    One(String),
    /// A label given several times, and `warnings`.
    Many(Vec<String>),
}

/// `Storage Driver`, `Home`, then the driver's own status lines.
pub fn lines(d: &dyn Driver) -> Vec<(String, String)> {
    let mut st = vec![
        ("Storage Driver".to_string(), d.name().to_string()),
        ("Home".to_string(), d.home().display().to_string()),
    ];
    st.extend(d.status());
    st
}

/// `lines` as one object: each label in snake_case (`Backing Filesystem` ->
/// `backing_filesystem`), every `Warning` line in `warnings` (always present), a label given
/// twice as a list; keys sorted.
pub fn object(lines: &[(String, String)]) -> BTreeMap<String, Value> {
    let mut o = BTreeMap::new();
    let mut warnings = Vec::new();
    for (k, v) in lines {
        if k == WARNING {
            warnings.push(v.clone());
            continue;
        }
        let v = v.clone();
        match o.remove(&snake_case(k)) {
            None => o.insert(snake_case(k), Value::One(v)),
            Some(Value::One(old)) => o.insert(snake_case(k), Value::Many(vec![old, v])),
            Some(Value::Many(mut all)) => {
                all.push(v);
                o.insert(snake_case(k), Value::Many(all))
            }
        };
    }
    o.insert("warnings".into(), Value::Many(warnings));
    o
}

/// The warnings of an init whose recovery could not finish (the command goes on; the next
/// init tries again). Read from [`Driver::init_warnings`]: no `status` check (overlay2's is a test mount) runs.
pub fn recovery_warnings(d: &dyn Driver) -> Vec<&str> {
    (d.init_warnings().iter())
        .filter(|w| w.starts_with(RECOVERY_WARNING))
        .map(String::as_str)
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_become_snake_case_keys_warnings_a_list_repeats_a_list() {
        let l = |k: &str, v: &str| (k.to_string(), v.to_string());
        let o = object(&[
            l("Backing Filesystem", "extfs"),
            l("Supports d_type", "true"),
            l("Warning", "w1"),
            l("Mount Option", "a"),
            l("Mount Option", "b"),
            l("Mount Option", "c"),
        ]);
        let one = |s: &str| Value::One(s.into());
        let many = |v: &[&str]| Value::Many(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(o["backing_filesystem"], one("extfs"));
        assert_eq!(o["supports_d_type"], one("true"));
        assert_eq!(o["mount_option"], many(&["a", "b", "c"]));
        assert_eq!(o["warnings"], many(&["w1"]));
        assert_eq!(object(&[])["warnings"], many(&[]));
        assert_eq!(o.len(), 4);
    }
}

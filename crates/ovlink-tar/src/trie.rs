//! A tree of path components with a value per node: what the applier remembers about paths
//! (what it created, directory times) in memory linear in the number of distinct paths,
//! whatever their depth. A set of full paths costs the square of the depth: 2,048 ancestors
//! of one entry 2,048 deep are 2 million components.
//!
//! This module only holds data; it never touches the filesystem.

use std::collections::HashMap;
use std::ffi::OsString;

/// One node: its children by name and its value.
#[derive(Debug)]
struct Node<V> {
    children: HashMap<OsString, Node<V>>,
    value: Option<V>,
}

/// Dropped without recursion (a deep chain must not cost stack).
impl<V> Drop for Node<V> {
    fn drop(&mut self) {
        let mut stack: Vec<Node<V>> = self.children.drain().map(|(_, n)| n).collect();
        while let Some(mut n) = stack.pop() {
            stack.extend(n.children.drain().map(|(_, c)| c));
        }
    }
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            children: HashMap::new(),
            value: None,
        }
    }
}

/// Paths below the root (component lists) with a value each; the root is the empty list.
#[derive(Debug)]
pub(crate) struct PathTrie<V> {
    root: Node<V>,
}

impl<V> Default for PathTrie<V> {
    fn default() -> Self {
        PathTrie {
            root: Node::default(),
        }
    }
}

impl<V> PathTrie<V> {
    /// Sets the value at `comps` (creating the nodes on the way).
    pub(crate) fn insert(&mut self, comps: &[OsString], value: V) {
        let mut n = &mut self.root;
        for c in comps {
            n = n.children.entry(c.clone()).or_default();
        }
        n.value = Some(value);
    }

    /// True when `comps` is a node: a path with a value or an ancestor of one.
    pub(crate) fn has_node(&self, comps: &[OsString]) -> bool {
        let mut n = &self.root;
        for c in comps {
            match n.children.get(c.as_os_str()) {
                Some(child) => n = child,
                None => return false,
            }
        }
        true
    }

    /// Removes `comps` and everything below it (the root itself: its value and children).
    pub(crate) fn remove_under(&mut self, comps: &[OsString]) {
        let Some((last, dir)) = comps.split_last() else {
            self.root = Node::default();
            return;
        };
        let mut n = &mut self.root;
        for c in dir {
            match n.children.get_mut(c.as_os_str()) {
                Some(child) => n = child,
                None => return,
            }
        }
        n.children.remove(last.as_os_str());
    }

    /// Takes every value out, children before their parent (siblings in name order), calling
    /// `f(path, value)`; stops at the first error. Iterative: the depth costs no stack.
    pub(crate) fn drain_children_first<E>(
        &mut self,
        mut f: impl FnMut(&[OsString], V) -> Result<(), E>,
    ) -> Result<(), E> {
        let root = std::mem::take(&mut self.root);
        // Each frame: a node's value, its children still to visit (sorted, reversed so that
        // `pop` gives name order), and the name it has in its parent.
        type Frame<V> = (Option<V>, Vec<(OsString, Node<V>)>);
        fn frame<V>(mut n: Node<V>) -> Frame<V> {
            let mut kids: Vec<(OsString, Node<V>)> =
                std::mem::take(&mut n.children).into_iter().collect();
            kids.sort_by(|a, b| b.0.cmp(&a.0));
            (n.value.take(), kids)
        }
        let mut path: Vec<OsString> = Vec::new();
        let mut stack: Vec<Frame<V>> = vec![frame(root)];
        while let Some(top) = stack.last_mut() {
            if let Some((name, child)) = top.1.pop() {
                path.push(name);
                stack.push(frame(child));
                continue;
            }
            let (value, _) = stack.pop().unwrap_or((None, Vec::new()));
            if let Some(v) = value {
                f(&path, v)?;
            }
            path.pop();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn p(s: &str) -> Vec<OsString> {
        s.split('/')
            .filter(|c| !c.is_empty())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn nodes_values_and_removal() {
        let mut t = PathTrie::default();
        t.insert(&p("a/b/c"), 1);
        t.insert(&p("a"), 2);
        t.insert(&p("x/y"), 3);
        t.insert(&p(""), 0);
        assert!(t.has_node(&p("a/b")));
        assert!(t.has_node(&p("a/b/c")));
        assert!(!t.has_node(&p("a/b/c/d")));
        assert!(!t.has_node(&p("a/x")));
        t.remove_under(&p("x"));
        assert!(!t.has_node(&p("x")));
        let mut seen = Vec::new();
        t.drain_children_first::<()>(|path, v| {
            seen.push((path.join(OsStr::new("/")), v));
            Ok(())
        })
        .unwrap();
        let want: Vec<(OsString, i32)> = vec![("a/b/c".into(), 1), ("a".into(), 2), ("".into(), 0)];
        assert_eq!(seen, want);
    }

    #[test]
    fn deep_chain_is_linear() {
        // Dropping and removing a deep chain costs no stack either.
        let mut d = PathTrie::default();
        d.insert(
            &(0..200_000)
                .map(|_| OsString::from("a"))
                .collect::<Vec<_>>(),
            (),
        );
        d.remove_under(&p("a/a"));
        drop(d);
        let mut t = PathTrie::default();
        let deep: Vec<OsString> = (0..100_000).map(|_| OsString::from("a")).collect();
        t.insert(&deep, ());
        t.insert(&deep[..50_000], ());
        let mut n = 0;
        t.drain_children_first::<()>(|path, ()| {
            assert!(path.len() == 100_000 || path.len() == 50_000);
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 2);
    }
}

//! The change list (`docker diff`): the walk's results as paths with A, C or D.
//!
//! Owns the mapping from walk events to [`Change`]s; never touches a tree itself.

use crate::error::Result;
use crate::walk::{Event, Kind, Sink};
use rustix::fs::Stat;

/// One entry of the change list (`changes`, `docker diff`): the one `Change` of ovlink, which
/// the driver crate re-exports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Change {
    /// Absolute path inside the layer, starting with `/` (lossy UTF-8 for other names).
    pub path: String,
    /// What happened to it.
    pub kind: ChangeKind,
}

/// Kind of a [`Change`]; the numbers ([`ChangeKind::wire`]) are the plugin protocol's, and
/// what the kind serializes as (`ovlink changes --json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(into = "u8")]
pub enum ChangeKind {
    /// `C`: in both, different (or a directory with a change inside).
    Modify,
    /// `A`: only in the new tree.
    Add,
    /// `D`: only in the old tree.
    Delete,
}

impl ChangeKind {
    /// The number the plugin protocol uses (`Kind` in `GraphDriver.Changes`).
    pub fn wire(self) -> u8 {
        match self {
            ChangeKind::Modify => 0,
            ChangeKind::Add => 1,
            ChangeKind::Delete => 2,
        }
    }

    /// The letter `docker diff` prints.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Modify => 'C',
            ChangeKind::Add => 'A',
            ChangeKind::Delete => 'D',
        }
    }
}

impl From<ChangeKind> for u8 {
    fn from(k: ChangeKind) -> u8 {
        k.wire()
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.letter(), self.path)
    }
}

fn abs(rel: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(rel))
}

/// Collects the change list.
#[derive(Debug, Default)]
pub(crate) struct ChangeSink {
    pub(crate) out: Vec<Change>,
}

impl Sink for ChangeSink {
    fn entry(&mut self, ev: &Event<'_>) -> Result<()> {
        if ev.rel.is_empty() {
            return Ok(()); // `/` is never listed
        }
        let kind = match ev.kind {
            Kind::Add => ChangeKind::Add,
            Kind::Modify | Kind::Parent => ChangeKind::Modify,
            Kind::Unchanged => return Ok(()),
        };
        self.out.push(Change {
            path: abs(ev.rel),
            kind,
        });
        Ok(())
    }

    fn delete(&mut self, rel: &[u8], _dir_st: &Stat, _covered: bool) -> Result<()> {
        self.out.push(Change {
            path: abs(rel),
            kind: ChangeKind::Delete,
        });
        Ok(())
    }
}

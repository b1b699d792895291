//! ovlink's teaching scenarios as a library: `ovlink demo` ([`demo`]) and the labs of
//! `ovlink lab <name>` ([`inodes`], [`copy_up`], [`whiteouts`], [`rename`], [`page_cache`],
//! [`layers`], [`workdir`], [`lower`], [`xfs`]).
//!
//! Every scenario runs on real mounts below a private scratch directory ([`scratch`]), undoes
//! every mount on the way out (also on error), narrates what it does through a [`Narrator`]
//! (the exact shell commands a student can retype, what the kernel answered, where the seed
//! articles differ from this kernel, questions for students) and returns a typed result whose
//! fields are the observations themselves (measured, never assumed), so tests can assert them.
//!
//! This crate owns the scenarios and their observations. It never prints, never reads the
//! environment or the command line (configuration comes as typed values), and never touches
//! anything outside the scratch directory it made.
#![forbid(unsafe_code)]

pub mod copy_up;
pub mod demo;
pub mod error;
pub mod inodes;
pub mod layers;
pub mod lower;
pub mod page_cache;
pub mod rename;
pub mod scratch;
pub mod whiteouts;
pub mod workdir;
pub mod worksheet;
pub mod xfs;

pub use error::{LabError, Result};
pub use worksheet::Worksheet;

use serde::Serialize;
use std::path::PathBuf;

/// One piece of narration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The lab's title (once, first).
    Title {
        /// The text.
        text: String,
    },
    /// A new section.
    Step {
        /// The section title.
        text: String,
    },
    /// A shell command a student can retype (run from the lab's directory).
    Command {
        /// The command line.
        text: String,
    },
    /// What a command or the kernel answered (one line).
    Output {
        /// The text.
        text: String,
    },
    /// An observation: a measured fact, in words.
    Observed {
        /// The text.
        text: String,
    },
    /// Where a seed article says something this kernel does differently.
    Article {
        /// What the article claims (in English, briefly).
        claim: String,
        /// What this kernel did instead.
        kernel: String,
    },
    /// A question for students.
    Question {
        /// The question.
        text: String,
    },
    /// Explanatory text.
    Text {
        /// The text.
        text: String,
    },
}

/// Receives the narration of a scenario, as it happens (the binary prints it; a
/// [`Worksheet`] records it).
pub trait Narrator {
    /// One event.
    fn event(&self, e: &Event);
}

/// Narration that goes nowhere.
pub struct Silent;

impl Narrator for Silent {
    fn event(&self, _e: &Event) {}
}

/// A [`Narrator`] made of a closure.
pub struct FnNarrator<F: Fn(&Event)>(pub F);

impl<F: Fn(&Event)> Narrator for FnNarrator<F> {
    fn event(&self, e: &Event) {
        (self.0)(e)
    }
}

/// Short-hands every scenario uses.
pub(crate) struct Say<'a>(pub &'a dyn Narrator);

impl Say<'_> {
    pub fn title(&self, s: impl Into<String>) {
        self.0.event(&Event::Title { text: s.into() })
    }
    pub fn step(&self, s: impl Into<String>) {
        self.0.event(&Event::Step { text: s.into() })
    }
    pub fn cmd(&self, s: impl Into<String>) {
        self.0.event(&Event::Command { text: s.into() })
    }
    pub fn out(&self, s: impl Into<String>) {
        self.0.event(&Event::Output { text: s.into() })
    }
    pub fn saw(&self, s: impl Into<String>) {
        self.0.event(&Event::Observed { text: s.into() })
    }
    pub fn text(&self, s: impl Into<String>) {
        self.0.event(&Event::Text { text: s.into() })
    }
    pub fn ask(&self, s: impl Into<String>) {
        self.0.event(&Event::Question { text: s.into() })
    }
    pub fn article(&self, claim: impl Into<String>, kernel: impl Into<String>) {
        self.0.event(&Event::Article {
            claim: claim.into(),
            kernel: kernel.into(),
        })
    }
}

/// Where and how a scenario runs.
#[derive(Debug, Clone, Default)]
pub struct LabConfig {
    /// The directory to make the private scratch directory in (`None`: the system's temporary
    /// directory). The binary passes `--root` here when it was given, so a teacher can run a
    /// lab on the filesystem under discussion.
    pub base: Option<PathBuf>,
    /// Leave the scratch directory (and its mounts) in place and say how to clean up.
    pub keep: bool,
}

/// The labs `ovlink lab` knows, in the order a lesson uses them.
pub const LABS: &[(&str, &str)] = &[
    (
        "inodes",
        "the legacy layout runs a filesystem out of inodes; the hardlink limit",
    ),
    (
        "copy-up",
        "the first write (even chmod) copies the whole file; sizes and timing",
    ),
    (
        "whiteouts",
        "deleted files and dirs: whiteouts, opaque dirs, copying a whiteout",
    ),
    (
        "rename",
        "rename(2) of a lower dir: EXDEV, redirect_dir, mv",
    ),
    (
        "page-cache",
        "two containers reading one lower file share its page cache",
    ),
    (
        "layers",
        "overlay vs overlay2 on one image: lowerdirs, inodes, a deep read",
    ),
    (
        "workdir",
        "the workdir's role, and why it must be on the upper's filesystem",
    ),
    (
        "lower",
        "deleted lower files still use space; editing the lower dir under a mount",
    ),
    (
        "xfs",
        "ftype/d_type on xfs: V4 ftype=0 refused by today's kernels, V5 implies ftype=1",
    ),
];

/// The current kernel release (`uname -r`).
pub fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

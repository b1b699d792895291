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

/// One lab of `ovlink lab`, with its settings.
#[derive(Debug, Clone)]
pub enum Lab {
    /// [`inodes`].
    Inodes(inodes::InodesConfig),
    /// [`copy_up`].
    CopyUp(copy_up::CopyUpConfig),
    /// [`whiteouts`].
    Whiteouts,
    /// [`rename`].
    Rename,
    /// [`page_cache`].
    PageCache(page_cache::PageCacheConfig),
    /// [`layers`].
    Layers(layers::LayersConfig),
    /// [`workdir`].
    Workdir,
    /// [`lower`].
    Lower,
    /// [`xfs`].
    Xfs,
}

/// What a [`Lab`] observed: its own result type (serialized as that type alone).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Observations {
    /// [`inodes::run`]'s.
    Inodes(inodes::LabResult),
    /// [`copy_up::run`]'s.
    CopyUp(copy_up::CopyUpResult),
    /// [`whiteouts::run`]'s.
    Whiteouts(whiteouts::WhiteoutsResult),
    /// [`rename::run`]'s.
    Rename(rename::RenameResult),
    /// [`page_cache::run`]'s.
    PageCache(page_cache::PageCacheResult),
    /// [`layers::run`]'s.
    Layers(layers::LayersResult),
    /// [`workdir::run`]'s.
    Workdir(workdir::WorkdirResult),
    /// [`lower::run`]'s.
    Lower(lower::LowerResult),
    /// [`xfs::run`]'s.
    Xfs(xfs::XfsResult),
}

impl Lab {
    /// Its name on the command line (as in [`LABS`]).
    pub fn name(&self) -> &'static str {
        match self {
            Lab::Inodes(_) => "inodes",
            Lab::CopyUp(_) => "copy-up",
            Lab::Whiteouts => "whiteouts",
            Lab::Rename => "rename",
            Lab::PageCache(_) => "page-cache",
            Lab::Layers(_) => "layers",
            Lab::Workdir => "workdir",
            Lab::Lower => "lower",
            Lab::Xfs => "xfs",
        }
    }

    /// Runs it in a scratch directory as `cfg` says, narrating to `n`.
    pub fn run(&self, cfg: &LabConfig, n: &dyn Narrator) -> Result<Observations> {
        Ok(match self {
            Lab::Inodes(c) => Observations::Inodes(inodes::run(cfg, c, n)?),
            Lab::CopyUp(c) => Observations::CopyUp(copy_up::run(cfg, c, n)?),
            Lab::Whiteouts => Observations::Whiteouts(whiteouts::run(cfg, n)?),
            Lab::Rename => Observations::Rename(rename::run(cfg, n)?),
            Lab::PageCache(c) => Observations::PageCache(page_cache::run(cfg, c, n)?),
            Lab::Layers(c) => Observations::Layers(layers::run(cfg, c, n)?),
            Lab::Workdir => Observations::Workdir(workdir::run(cfg, n)?),
            Lab::Lower => Observations::Lower(lower::run(cfg, n)?),
            Lab::Xfs => Observations::Xfs(xfs::run(cfg, n)?),
        })
    }
}

/// The narration as a terminal shows it: a step after a blank line as `== title`, a command
/// as `$ command`, an output indented, an observation as `-> `, an article's claim against
/// this kernel's answer, a question for students; one or more lines, no trailing newline.
impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Title { text } => f.write_str(text),
            Event::Step { text } => write!(f, "\n== {text}"),
            Event::Command { text } => write!(f, "$ {text}"),
            Event::Output { text } => {
                for (i, l) in text.lines().enumerate() {
                    let sep = if i == 0 { "" } else { "\n" };
                    write!(f, "{sep}   {l}")?;
                }
                Ok(())
            }
            Event::Observed { text } => write!(f, "   -> {text}"),
            Event::Article { claim, kernel } => write!(
                f,
                "   ! the article says: {claim}\n     this kernel: {kernel}"
            ),
            Event::Question { text } => write!(f, "   ? for students: {text}"),
            Event::Text { text } => write!(f, "   {text}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_display_as_the_terminal_shows_them() {
        let t = |text: &str| text.to_string();
        let cases = [
            (Event::Title { text: t("Lab") }, "Lab"),
            (Event::Step { text: t("one") }, "\n== one"),
            (Event::Command { text: t("ls") }, "$ ls"),
            (Event::Output { text: t("a\nb\n") }, "   a\n   b"),
            (Event::Output { text: t("") }, ""),
            (Event::Observed { text: t("x") }, "   -> x"),
            (
                Event::Article {
                    claim: t("c"),
                    kernel: t("k"),
                },
                "   ! the article says: c\n     this kernel: k",
            ),
            (Event::Question { text: t("q") }, "   ? for students: q"),
            (Event::Text { text: t("s") }, "   s"),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want, "{e:?}");
        }
    }

    #[test]
    fn every_lab_has_its_name_in_labs() {
        let labs = [
            Lab::Inodes(Default::default()),
            Lab::CopyUp(Default::default()),
            Lab::Whiteouts,
            Lab::Rename,
            Lab::PageCache(Default::default()),
            Lab::Layers(layers::LayersConfig { layers: 1, dirs: 1 }),
            Lab::Workdir,
            Lab::Lower,
            Lab::Xfs,
        ];
        let names: Vec<_> = labs.iter().map(Lab::name).collect();
        let listed: Vec<_> = LABS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, listed);
    }
}

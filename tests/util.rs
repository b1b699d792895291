//! What the integration tests share that is about the `ovlink` binary of this package:
//! running it (under a wrapper such as strace when asked) in a test's root. Everything else
//! (the test root, tar builder, loop filesystems, tree manifests) is ovlink-testkit's,
//! re-exported here so that every module's `use crate::util::*` sees one set of helpers.
#![allow(dead_code)]

pub use ovlink_testkit::*;
use std::path::Path;
use std::process::{Command, Output};

/// A fresh [`TestRoot`] for one test, in `$OVLINK_TEST_TMP` when set (a disk other than the
/// temporary directory's), else in the temporary directory. The test binary is the edge that
/// reads the environment; the test kit takes the base as a path.
pub fn test_root() -> TestRoot {
    let base = std::env::var_os("OVLINK_TEST_TMP")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    TestRoot::in_dir(&base)
}

/// Running ovlink in a [`TestRoot`]: `ovlink --root <root> ARGS…` with the test's TMPDIR
/// (the `_in` forms with another `--root`, such as a second, fresh root of the same test).
pub trait Run {
    /// Runs ovlink on `root` and returns its output.
    fn ovlink_in(&self, root: &Path, args: &[&str]) -> Output;
    /// Runs ovlink and returns its output.
    fn ovlink(&self, args: &[&str]) -> Output;
    /// Runs ovlink on `root` and asserts success; returns stdout.
    fn ok_in(&self, root: &Path, args: &[&str]) -> String;
    /// Runs ovlink and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String;
    /// Runs ovlink and asserts failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String;
}

impl Run for TestRoot {
    fn ovlink_in(&self, root: &Path, args: &[&str]) -> Output {
        ovlink_cmd(root, args)
            .env("TMPDIR", self.tmp())
            .output()
            .unwrap()
    }

    fn ovlink(&self, args: &[&str]) -> Output {
        self.ovlink_in(&self.root(), args)
    }

    fn ok_in(&self, root: &Path, args: &[&str]) -> String {
        let out = self.ovlink_in(root, args);
        assert!(
            out.status.success(),
            "ovlink {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        self.ok_in(&self.root(), args)
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.ovlink(args);
        assert!(!out.status.success(), "ovlink {args:?} should have failed");
        String::from_utf8(out.stderr).unwrap()
    }
}

thread_local! {
    /// A command every `ovlink_cmd` of this thread runs ovlink under (see [`run_ovlink_under`]).
    static WRAPPER: std::cell::RefCell<Vec<std::ffi::OsString>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// While the returned guard lives, every [`ovlink_cmd`] made on this thread runs
/// `WRAPPER… ovlink …` (e.g. `strace -f -e inject=…`), so helpers written for plain runs
/// (the kill loops of `faults.rs`) run unchanged under the wrapper.
pub fn run_ovlink_under(wrapper: Vec<std::ffi::OsString>) -> WrapperGuard {
    WRAPPER.with(|w| *w.borrow_mut() = wrapper);
    WrapperGuard
}

/// Ends [`run_ovlink_under`] on drop.
pub struct WrapperGuard;

impl Drop for WrapperGuard {
    fn drop(&mut self) {
        WRAPPER.with(|w| w.borrow_mut().clear());
    }
}

/// `ovlink --root ROOT ARGS…` as a command (under this thread's wrapper, if any).
pub fn ovlink_cmd(root: &Path, args: &[&str]) -> Command {
    let bin = env!("CARGO_BIN_EXE_ovlink");
    let wrapper = WRAPPER.with(|w| w.borrow().clone());
    let mut c = match wrapper.split_first() {
        Some((prog, rest)) => {
            let mut c = Command::new(prog);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    c.arg("--root").arg(root).args(args);
    c.env_remove("OVLINK_ROOT");
    c
}

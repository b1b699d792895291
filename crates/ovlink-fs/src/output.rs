//! Output files a user names (`ovlink diff -o FILE`, `ovlink image save -o FILE`).
//!
//! A regular file (or a path that does not exist yet) is written under a temporary name in the
//! same directory and renamed into place only when complete, so a failed or killed write never
//! leaves half a tarball under the user's name. Anything else that already exists at the path
//! (a character device such as `/dev/null`, a fifo, a socket) is opened and written in place:
//! renaming over it would replace the device node itself (a write to `-o /dev/null` used to
//! turn the host's `/dev/null` into a regular file holding the tar). A symlink is followed, so
//! the rename happens at the file it names and the link stays.
//!
//! This module never removes or replaces anything but a regular file at the named path, and
//! never leaves its temporary file behind on an error it sees (a killed process can: the name
//! starts with the caller's prefix so it can be found).

use crate::error::{FsError, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

/// An output being written; [`OutputFile::commit`] makes it visible under its name.
#[derive(Debug)]
pub struct OutputFile {
    path: PathBuf,
    target: Target,
}

#[derive(Debug)]
enum Target {
    /// A temporary file next to the final path, renamed over it on commit.
    Atomic(tempfile::NamedTempFile),
    /// An existing device, fifo or socket, written in place.
    Direct(File),
}

impl OutputFile {
    /// Opens `path` for writing. `prefix` names the temporary file (`.ovlink-save-`).
    pub fn create(path: &Path, prefix: &str) -> Result<Self> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(FsError::io("stat", path, e)),
        };
        match meta {
            Some(m) if m.is_dir() => Err(FsError::io(
                "write to",
                path,
                std::io::Error::from(std::io::ErrorKind::IsADirectory),
            )),
            Some(m) if !m.is_file() => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| FsError::io("open", path, e))?;
                Ok(OutputFile {
                    path: path.to_path_buf(),
                    target: Target::Direct(f),
                })
            }
            m => {
                // An existing regular file is replaced where it really is (through symlinks).
                let real = if m.is_some() {
                    std::fs::canonicalize(path).map_err(|e| FsError::io("resolve", path, e))?
                } else {
                    path.to_path_buf()
                };
                let dir = real
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let tmp = tempfile::Builder::new()
                    .prefix(prefix)
                    .tempfile_in(dir)
                    .map_err(|e| FsError::io("create a temporary file in", dir, e))?;
                Ok(OutputFile {
                    path: real,
                    target: Target::Atomic(tmp),
                })
            }
        }
    }

    /// The file to write to.
    pub fn file(&self) -> &File {
        match &self.target {
            Target::Atomic(t) => t.as_file(),
            Target::Direct(f) => f,
        }
    }

    /// The path the output appears under (symlinks resolved for a regular file).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the output is written in place (a device, fifo or socket).
    pub fn is_direct(&self) -> bool {
        matches!(self.target, Target::Direct(_))
    }

    /// Makes the output visible: fsync and rename into place for a regular file (`sync`
    /// false skips the fsync); nothing more for a device or fifo.
    pub fn commit(self, sync: bool) -> Result<()> {
        match self.target {
            Target::Direct(_) => Ok(()),
            Target::Atomic(tmp) => {
                if sync {
                    tmp.as_file()
                        .sync_all()
                        .map_err(|e| FsError::io("fsync", &self.path, e))?;
                }
                tmp.persist(&self.path)
                    .map_err(|e| FsError::io("rename into place", &self.path, e.error))?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn a_regular_file_is_replaced_only_on_commit() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.tar");
        std::fs::write(&p, b"old").unwrap();
        let o = OutputFile::create(&p, ".t-").unwrap();
        assert!(!o.is_direct());
        o.file().write_all(b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        o.commit(true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_dropped_output_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.tar");
        let o = OutputFile::create(&p, ".t-").unwrap();
        o.file().write_all(b"half").unwrap();
        drop(o);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_symlink_stays_and_its_target_is_replaced() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real.tar");
        std::fs::write(&real, b"old").unwrap();
        let link = d.path().join("link.tar");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let o = OutputFile::create(&link, ".t-").unwrap();
        o.file().write_all(b"new").unwrap();
        o.commit(false).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn a_fifo_is_written_in_place_never_replaced() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pipe");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from(0o600),
            0,
        )
        .unwrap();
        let reader = {
            let p = p.clone();
            std::thread::spawn(move || std::fs::read(p).unwrap())
        };
        let o = OutputFile::create(&p, ".t-").unwrap();
        assert!(o.is_direct());
        o.file().write_all(b"streamed").unwrap();
        o.commit(true).unwrap();
        assert_eq!(reader.join().unwrap(), b"streamed");
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert!(m.file_type().is_fifo(), "the fifo was replaced");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = OutputFile::create(d.path(), ".t-").unwrap_err();
        assert!(
            e.to_string().contains(&d.path().display().to_string()),
            "{e}"
        );
    }
}

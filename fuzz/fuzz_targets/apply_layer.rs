//! Fuzzes `ovlink_tar::apply_layer`: every input is applied into a fresh layer root whose
//! sibling `sentinel/` (a file, a directory, a symlink target) must be exactly as before,
//! and whose parent must hold nothing new. Panics (a fuzzer finding) on any escape.
#![no_main]

use std::fs;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ovlink_fuzz::{fix_tar_checksums, links, snapshot};
use rustix::fs::{open, Mode, OFlags};

fuzz_target!(|data: &[u8]| {
    let mut data = data.to_vec();
    fix_tar_checksums(&mut data);
    let Ok(tmp) = tempfile::Builder::new()
        .prefix("ovlink-fuzz-apply-")
        .tempdir()
    else {
        return;
    };
    let base = tmp.path();
    let root = base.join("root");
    let sentinel = base.join("sentinel");
    fs::create_dir(&root).expect("mkdir root");
    fs::create_dir(&sentinel).expect("mkdir sentinel");
    fs::write(sentinel.join("file"), b"sentinel").expect("write sentinel");
    fs::create_dir(sentinel.join("dir")).expect("mkdir sentinel/dir");
    // A pre-existing lower-layer-like tree inside the root, sharing an inode with the sentinel
    // (the applier must never modify it in place).
    fs::hard_link(sentinel.join("file"), root.join("shared")).expect("link shared");
    std::os::unix::fs::symlink("../sentinel", root.join("up")).expect("symlink up");
    std::os::unix::fs::symlink("/", root.join("slash")).expect("symlink slash");
    fs::create_dir(root.join("etc")).expect("mkdir etc");

    let outside_before = snapshot(&sentinel);
    let links_before = links(&sentinel);
    let parent_before: Vec<_> = list(base);
    let content_before = fs::read(sentinel.join("file")).expect("read sentinel");

    let fd = open(
        &root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("open root");
    let _ = ovlink_tar::apply_layer(
        fd.as_fd_ref(),
        &root,
        &mut &data[..],
        &ovlink_tar::ApplyOptions::default(),
    );
    drop(fd);

    assert_eq!(
        snapshot(&sentinel),
        outside_before,
        "sentinel changed: escape"
    );
    for (path, n) in links(&sentinel) {
        // A new link to an outside inode would be a hardlink escape.
        let was = links_before.get(&path).copied().unwrap_or(0);
        assert!(n <= was, "{path}: new link from the tree");
    }
    assert_eq!(
        list(base),
        parent_before,
        "something created next to the root: escape"
    );
    assert_eq!(
        fs::read(sentinel.join("file")).expect("read sentinel"),
        content_before,
        "shared inode modified in place"
    );
    // The tempdir's drop removes everything; make sure it can (a chmod 000 dir would
    // otherwise leak) by fixing modes first.
    make_removable(&root);
});

trait AsFdRef {
    fn as_fd_ref(&self) -> std::os::fd::BorrowedFd<'_>;
}
impl AsFdRef for std::os::fd::OwnedFd {
    fn as_fd_ref(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.as_fd()
    }
}

fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn make_removable(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for e in walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if e.file_type().is_dir() {
            let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o700));
        }
    }
    let _ = fs::remove_dir_all(root);
    assert!(!root.exists(), "layer root could not be removed");
}

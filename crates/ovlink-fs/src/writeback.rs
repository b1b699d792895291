//! Starting a file's writeback early: `sync_file_range(SYNC_FILE_RANGE_WRITE)` on a file just
//! written, so its pages go to the device while the apply writes the next ones, and the one
//! flush that makes the layer durable (a `syncfs` per layer) finds little left to write.
//!
//! This module owns the one `unsafe` call of the crate (rustix has no `sync_file_range`). It
//! only starts writeback: it never waits, never flushes a device cache and never makes
//! anything durable; a caller that needs durability must still sync.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

/// Asks the kernel to start writing back every dirty page of `fd` (Linux 2.6.17+, so every
/// kernel ovlink runs on). A hint only: a failure (a filesystem or file type that refuses it)
/// changes nothing about correctness, so it is not reported.
pub fn start(fd: BorrowedFd<'_>) {
    // SAFETY: sync_file_range takes a file descriptor, which `fd` keeps open for the call,
    // and plain integers; it touches no memory of this process.
    unsafe {
        libc::sync_file_range(fd.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

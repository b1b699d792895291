//! Reading image archives: a `docker save` tarball (`manifest.json`, `<hex>.json` config,
//! `<id>/layer.tar` or `blobs/sha256/<hex>` layers) or an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/<hex>`), either as a tarball or as an extracted directory.
//!
//! The outer tar is indexed once (member name → data offset and size; `manifest.json` may
//! come last) and members are then read with positional reads. Every path a manifest names
//! is resolved inside the archive only: absolute paths, `..` and links leaving the archive
//! are [`ImageError::ManifestEscape`], absent names [`ImageError::MissingBlob`]. Small JSON
//! members are verified against their digest when read; layers are handed out as a
//! [`LayerStream`] that decompresses (by magic bytes) and verifies the blob digest and the
//! diff id **at EOF** while the consumer reads. This module never writes anything and never
//! calls the driver.
//!
//! This file owns what both layouts share: the container (tarball index or directory),
//! member resolution, verified JSON members, configs' `rootfs`, limits and [`LayerStream`].
//! Each layout's manifests are read in a module of their own: `docker_save` and `oci`; the
//! documents themselves are typed in [`crate::wire`].

mod docker_save;
mod oci;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use ovlink_tar::decompress::Compression;
use ovlink_tar::decompress::Decoder;

use crate::digest::{
    parse_sha256, sha256_hex, Mismatch, MismatchCell, VerifyingReader, SHA256_PREFIX,
};
use crate::error::{ImageError, Result};
use crate::progress::Progress;
use crate::wire::ImageConfigRootFs;

/// Largest JSON member (manifest, index, config) read into memory.
pub const MAX_JSON_SIZE: u64 = 64 << 20;

/// Most images one archive may describe (`manifest.json` entries, `index.json` manifests).
/// Each is held in memory with its config, and recorded once per name.
pub const MAX_IMAGES: usize = 1024;
/// Most names (`RepoTags`) one archive may give, over all its images.
pub const MAX_NAMES: usize = 4096;
/// Most layers one image may have (Docker refuses more than 125 when it mounts them; a
/// config may list a few more than are mountable).
pub const MAX_LAYERS: usize = 1024;

/// How many links (symlink or hardlink members) are followed resolving one path.
const MAX_LINK_HOPS: usize = 16;

/// The layout of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `docker save` (`manifest.json`).
    DockerSave,
    /// OCI image layout (`oci-layout` + `index.json`).
    Oci,
}

/// One image described by an archive, its manifest and config already read and verified.
#[derive(Debug, Clone)]
pub struct ArchiveImage {
    /// Names from the archive (`RepoTags`, or OCI name annotations); may be empty.
    pub repo_tags: Vec<String>,
    /// The raw config JSON, exactly as stored (its sha256 is the image id); shared by every
    /// image of the archive that names the same config (it is read once).
    pub config: Arc<Vec<u8>>,
    /// The image id: `sha256:<hex>` of `config`.
    pub config_digest: String,
    /// `rootfs.diff_ids` of the config, bottom first (`sha256:<hex>`).
    pub diff_ids: Vec<String>,
    /// The layers, bottom first (same length as `diff_ids`).
    pub layers: Vec<ArchiveLayer>,
}

/// A layer member of an archive.
#[derive(Debug, Clone)]
pub struct ArchiveLayer {
    /// The path as the manifest names it.
    pub path: String,
    /// The member actually read (after following links inside the archive).
    pub resolved: String,
    /// Size of the member as stored (compressed or not).
    pub size: u64,
    /// The digest the stored bytes must have (`sha256:<hex>`): the OCI descriptor digest, or
    /// a `blobs/sha256/<hex>` name. `None` for docker-save `<id>/layer.tar` members.
    pub blob_digest: Option<String>,
    /// The digest of the uncompressed layer tar (`sha256:<hex>`).
    pub diff_id: String,
    /// The OCI media type, when the manifest gives one.
    pub media_type: Option<String>,
}

/// A config member read once: its bytes, its digest and its diff ids.
type ReadConfig = (Arc<Vec<u8>>, String, Vec<String>);

#[derive(Debug, Clone)]
enum Member {
    File { offset: u64, size: u64 },
    Dir,
    Symlink(String),
    Hardlink(String),
    Other(&'static str),
}

enum Source {
    Tar {
        file: Arc<File>,
        members: BTreeMap<String, Member>,
    },
    Dir {
        root: PathBuf,
    },
}

/// An opened image archive (tarball or directory) and the images it describes.
pub struct Archive {
    path: PathBuf,
    source: Source,
    format: Format,
    images: Vec<ArchiveImage>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("images", &self.images)
            .finish_non_exhaustive()
    }
}

/// Splits a path as written in a manifest into clean components, refusing absolute paths
/// and `..` ([`ImageError::ManifestEscape`]) and empty ones ([`ImageError::MissingBlob`]).
pub fn clean_manifest_path(path: &str) -> Result<String> {
    if path.starts_with('/') {
        return Err(ImageError::ManifestEscape {
            path: path.to_string(),
        });
    }
    let mut parts = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                return Err(ImageError::ManifestEscape {
                    path: path.to_string(),
                })
            }
            c if c.contains('\0') => {
                return Err(ImageError::MissingBlob {
                    path: path.to_string(),
                })
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(ImageError::MissingBlob {
            path: path.to_string(),
        });
    }
    Ok(parts.join("/"))
}

/// Normalizes a member name as found in the outer tar (`./a//b/` → `a/b`); `None` for names
/// that can never be named by a manifest (`..`, empty).
fn normalize_member_name(name: &str) -> Option<String> {
    let mut parts = Vec::new();
    for comp in name.split('/') {
        match comp {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Resolves a link target against the directory of `from`, staying inside the archive.
fn resolve_link(from: &str, target: &str, symlink: bool) -> Result<String> {
    if target.starts_with('/') {
        return Err(ImageError::ManifestEscape {
            path: target.to_string(),
        });
    }
    let mut parts: Vec<&str> = Vec::new();
    if symlink {
        parts.extend(from.split('/'));
        parts.pop();
    }
    for comp in target.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(ImageError::ManifestEscape {
                        path: target.to_string(),
                    });
                }
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(ImageError::MissingBlob {
            path: target.to_string(),
        });
    }
    Ok(parts.join("/"))
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], path: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::BadManifest {
        path: path.to_string(),
        source,
    })
}

/// Refuses an archive describing more than [`MAX_IMAGES`] images, [`MAX_NAMES`] names or an
/// image with more than [`MAX_LAYERS`] layers (what one archive may cost in memory and in
/// image records).
fn check_counts(path: &str, images: usize, names: usize, layers: usize) -> Result<()> {
    let over = |what: &str, n: usize, max: usize| {
        invalid(
            path,
            format!("it lists {n} {what}, more than the {max} accepted in one archive"),
        )
    };
    if images > MAX_IMAGES {
        return Err(over("images", images, MAX_IMAGES));
    }
    if names > MAX_NAMES {
        return Err(over("names (RepoTags)", names, MAX_NAMES));
    }
    if layers > MAX_LAYERS {
        return Err(over("layers for one image", layers, MAX_LAYERS));
    }
    Ok(())
}

fn invalid(path: &str, reason: impl Into<String>) -> ImageError {
    ImageError::InvalidImage {
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn read_fully(reader: &mut dyn Read, limit: u64, shown: &Path) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ImageError::io("read", shown, e))?;
    Ok(buf)
}

impl Archive {
    /// Opens `path` (a docker-save or OCI layout tarball, or an extracted directory of
    /// either), indexes it and reads and verifies every manifest and config. Layers are
    /// not read until [`Archive::layer_stream`].
    pub fn open(path: &Path) -> Result<Archive> {
        let meta = std::fs::metadata(path).map_err(|e| ImageError::io("stat", path, e))?;
        let source = if meta.is_dir() {
            let root = path
                .canonicalize()
                .map_err(|e| ImageError::io("resolve", path, e))?;
            Source::Dir { root }
        } else {
            let file = File::open(path).map_err(|e| ImageError::io("open", path, e))?;
            let members = index_tar(&file, path)?;
            Source::Tar {
                file: Arc::new(file),
                members,
            }
        };
        let mut archive = Archive {
            path: path.to_path_buf(),
            source,
            format: Format::DockerSave,
            images: Vec::new(),
        };
        if archive.has("manifest.json") {
            archive.format = Format::DockerSave;
            archive.images = archive.read_docker_save()?;
        } else if archive.has("index.json") && archive.has("oci-layout") {
            archive.format = Format::Oci;
            archive.images = archive.read_oci()?;
        } else {
            return Err(ImageError::UnknownFormat {
                path: path.to_path_buf(),
            });
        }
        if archive.images.is_empty() {
            return Err(invalid(
                match archive.format {
                    Format::DockerSave => "manifest.json",
                    Format::Oci => "index.json",
                },
                "the archive describes no image",
            ));
        }
        Ok(archive)
    }

    /// The archive path as given to [`Archive::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layout of the archive.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The images the archive describes, in manifest order.
    pub fn images(&self) -> &[ArchiveImage] {
        &self.images
    }

    /// `archive!member`, for messages.
    fn shown(&self, member: &str) -> PathBuf {
        PathBuf::from(format!("{}!{member}", self.path.display()))
    }

    fn has(&self, name: &str) -> bool {
        match &self.source {
            Source::Tar { members, .. } => members.contains_key(name),
            Source::Dir { root } => root.join(name).exists(),
        }
    }

    /// Resolves a manifest path to (resolved member name, size).
    fn resolve(&self, path: &str) -> Result<(String, u64)> {
        let mut current = clean_manifest_path(path)?;
        match &self.source {
            Source::Tar { members, .. } => {
                for _ in 0..=MAX_LINK_HOPS {
                    match members.get(&current) {
                        None => {
                            return Err(ImageError::MissingBlob {
                                path: path.to_string(),
                            })
                        }
                        Some(Member::File { size, .. }) => return Ok((current, *size)),
                        Some(Member::Symlink(target)) => {
                            current = resolve_link(&current, target, true)?
                        }
                        Some(Member::Hardlink(target)) => {
                            current = resolve_link(&current, target, false)?
                        }
                        Some(Member::Dir) => {
                            return Err(invalid(path, "is a directory, not a file"))
                        }
                        Some(Member::Other(kind)) => {
                            return Err(invalid(
                                path,
                                format!("is a {kind} member, not a regular file"),
                            ))
                        }
                    }
                }
                Err(invalid(path, "too many levels of links"))
            }
            Source::Dir { root } => {
                let joined = root.join(&current);
                let real = match joined.canonicalize() {
                    Ok(p) => p,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(ImageError::MissingBlob {
                            path: path.to_string(),
                        })
                    }
                    Err(e) => return Err(ImageError::io("resolve", joined, e)),
                };
                let rel = real
                    .strip_prefix(root)
                    .map_err(|_| ImageError::ManifestEscape {
                        path: path.to_string(),
                    })?;
                let meta =
                    std::fs::metadata(&real).map_err(|e| ImageError::io("stat", &real, e))?;
                if !meta.is_file() {
                    return Err(invalid(path, "is not a regular file"));
                }
                current = rel.to_string_lossy().into_owned();
                Ok((current, meta.len()))
            }
        }
    }

    /// Opens the raw bytes of a resolved member.
    fn open_member(&self, resolved: &str) -> Result<MemberReader> {
        match &self.source {
            Source::Tar { file, members } => match members.get(resolved) {
                Some(Member::File { offset, size }) => Ok(MemberReader::Tar {
                    file: Arc::clone(file),
                    pos: *offset,
                    end: offset + size,
                }),
                _ => Err(ImageError::MissingBlob {
                    path: resolved.to_string(),
                }),
            },
            Source::Dir { root } => {
                let p = root.join(resolved);
                let f = File::open(&p).map_err(|e| ImageError::io("open", &p, e))?;
                Ok(MemberReader::File(f))
            }
        }
    }

    /// Reads a small member named by a manifest; verifies it against `expected` when given.
    /// Returns the bytes, the resolved name and the actual digest (`sha256:<hex>`).
    fn read_json_member(
        &self,
        path: &str,
        expected: Option<&str>,
        what: &str,
    ) -> Result<(Vec<u8>, String, String)> {
        let (resolved, size) = self.resolve(path)?;
        if size > MAX_JSON_SIZE {
            return Err(invalid(
                path,
                format!("{what} is {size} bytes, more than the {MAX_JSON_SIZE} accepted"),
            ));
        }
        let mut r = self.open_member(&resolved)?;
        let bytes = read_fully(&mut r, MAX_JSON_SIZE, &self.shown(&resolved))?;
        let actual = format!("{SHA256_PREFIX}{}", sha256_hex(&bytes));
        if let Some(expected) = expected {
            if expected != actual {
                return Err(ImageError::DigestMismatch {
                    what: format!("{what} {path}"),
                    expected: expected.to_string(),
                    actual,
                });
            }
        }
        Ok((bytes, resolved, actual))
    }

    fn parse_config(&self, bytes: &[u8], path: &str) -> Result<Vec<String>> {
        let config: ImageConfigRootFs = parse_json(bytes, path)?;
        if config.rootfs.kind != "layers" {
            return Err(invalid(
                path,
                format!("rootfs.type is {:?}, not \"layers\"", config.rootfs.kind),
            ));
        }
        for d in &config.rootfs.diff_ids {
            if parse_sha256(d).is_none() {
                return Err(invalid(
                    path,
                    format!("diff id {d:?} is not sha256:<64 hex>"),
                ));
            }
        }
        Ok(config.rootfs.diff_ids)
    }

    /// Opens layer `layer` of image `image` as a stream of the **uncompressed** layer tar.
    /// Bytes read from the member are reported to `progress`; the blob digest (when known)
    /// and the diff id are checked at EOF (see [`LayerStream`]). `what` in mismatches names
    /// the layer by `id` and member.
    pub fn layer_stream<'p>(
        &self,
        image: usize,
        layer: usize,
        id: &str,
        progress: &'p dyn Progress,
    ) -> Result<LayerStream<'p>> {
        let l = self
            .images
            .get(image)
            .and_then(|i| i.layers.get(layer))
            .ok_or_else(|| {
                invalid(
                    &self.path.display().to_string(),
                    format!("no layer {layer} in image {image}"),
                )
            })?;
        let member = self.open_member(&l.resolved)?;
        let cell = MismatchCell::new();
        let counted = Counting {
            inner: member,
            progress,
        };
        let blob = VerifyingReader::new(
            counted,
            l.blob_digest.clone(),
            format!("layer {id} (blob {})", l.path),
            cell.clone(),
        );
        let shown = self.shown(&l.resolved);
        let prefixed = match ovlink_tar::decompress::sniff(blob) {
            Ok(p) => p,
            Err(e) => {
                return Err(match cell.get() {
                    Some(m) => m.into_error(),
                    None => ImageError::io("read", &shown, e),
                })
            }
        };
        let decoder = Decoder::new(prefixed)
            .map_err(|e| ImageError::io("start the decoder of", &shown, e))?;
        let diff = VerifyingReader::new(
            decoder,
            Some(l.diff_id.clone()),
            format!("layer {id} (diff id of {})", l.path),
            cell.clone(),
        );
        Ok(LayerStream { diff, cell, shown })
    }
}

/// Indexes the outer tar: normalized member name → kind, data offset and size.
fn index_tar(file: &File, shown: &Path) -> Result<BTreeMap<String, Member>> {
    let mut members = BTreeMap::new();
    let mut ar = tar::Archive::new(file);
    let entries = ar
        .entries_with_seek()
        .map_err(|e| ImageError::io("read tar index of", shown, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ImageError::io("read tar index of", shown, e))?;
        let Ok(name) = String::from_utf8(entry.path_bytes().into_owned()) else {
            continue;
        };
        let Some(name) = normalize_member_name(&name) else {
            continue;
        };
        let header = entry.header();
        let link = || -> String {
            entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                offset: entry.raw_file_position(),
                size: entry.size(),
            },
            tar::EntryType::Directory => Member::Dir,
            tar::EntryType::Symlink => Member::Symlink(link()),
            tar::EntryType::Link => Member::Hardlink(link()),
            tar::EntryType::GNUSparse => Member::Other("sparse"),
            _ => Member::Other("special"),
        };
        members.insert(name, kind);
    }
    Ok(members)
}

/// Raw bytes of one member: positional reads in the outer tar, or a file of a directory.
enum MemberReader {
    Tar { file: Arc<File>, pos: u64, end: u64 },
    File(File),
}

impl Read for MemberReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MemberReader::Tar { file, pos, end } => {
                let left = end.saturating_sub(*pos);
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                if want == 0 {
                    return Ok(0);
                }
                let n = file.read_at(&mut buf[..want], *pos)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "archive ends inside a member (truncated tar)",
                    ));
                }
                *pos += n as u64;
                Ok(n)
            }
            MemberReader::File(f) => f.read(buf),
        }
    }
}

/// Reports every byte read to a [`Progress`].
struct Counting<'p, R> {
    inner: R,
    progress: &'p dyn Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.progress.bytes(n as u64);
        }
        Ok(n)
    }
}

type BlobReader<'p> = VerifyingReader<Counting<'p, MemberReader>>;

/// The uncompressed layer tar of one archive layer, as a `Read`.
///
/// It decompresses by magic bytes (gzip, zstd, or plain) and hashes both the stored bytes
/// (against the blob digest, when the archive gives one) and the uncompressed stream
/// (against the diff id). Each check happens when its stream reaches EOF: the read that
/// hits EOF fails with `InvalidData` naming the layer and both digests, and the mismatch is
/// recorded so that [`LayerStream::mismatch`] can return it typed. Call
/// [`LayerStream::finish`] after the consumer is done: it reads whatever the consumer left
/// and fails unless both digests were verified.
pub struct LayerStream<'p> {
    diff: VerifyingReader<Decoder<BlobReader<'p>>>,
    cell: MismatchCell,
    shown: PathBuf,
}

impl Read for LayerStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.diff.read(buf)
    }
}

impl LayerStream<'_> {
    /// Bytes of uncompressed layer tar read so far.
    pub fn uncompressed_bytes(&self) -> u64 {
        self.diff.bytes_read()
    }

    /// The first digest mismatch seen so far, if any.
    pub fn mismatch(&self) -> Option<Mismatch> {
        self.cell.get()
    }

    /// Reads the rest of the stored member (without decompressing) so that its blob digest
    /// is checked, then returns the first mismatch seen, if any. Used after a consumer
    /// failed, to tell a corrupt blob from other failures.
    pub fn diagnose(&mut self) -> Option<Mismatch> {
        if self.cell.get().is_none() {
            let _ = io::copy(self.diff.get_mut().raw_mut(), &mut io::sink());
        }
        self.cell.get()
    }

    /// Reads both streams to their end and checks both digests; the typed error on a
    /// mismatch, [`ImageError::Io`] when the member cannot be read or decompressed.
    pub fn finish(&mut self) -> Result<()> {
        let drained = io::copy(&mut self.diff, &mut io::sink())
            .and_then(|_| io::copy(self.diff.get_mut().raw_mut(), &mut io::sink()));
        if let Some(m) = self.cell.get() {
            return Err(m.into_error());
        }
        drained.map_err(|e| ImageError::io("read", &self.shown, e))?;
        let blob_ok = self.diff.get_mut().raw_mut().is_verified();
        if !self.diff.is_verified() || !blob_ok {
            return Err(ImageError::io(
                "verify",
                &self.shown,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "layer stream was not read to its end",
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_stay_inside() {
        assert_eq!(
            clean_manifest_path("./a//b/layer.tar").ok().as_deref(),
            Some("a/b/layer.tar")
        );
        assert!(matches!(
            clean_manifest_path("/etc/passwd"),
            Err(ImageError::ManifestEscape { .. })
        ));
        assert!(matches!(
            clean_manifest_path("../x"),
            Err(ImageError::ManifestEscape { .. })
        ));
        assert!(matches!(
            clean_manifest_path("a/../../x"),
            Err(ImageError::ManifestEscape { .. })
        ));
        assert!(matches!(
            clean_manifest_path(""),
            Err(ImageError::MissingBlob { .. })
        ));
    }

    #[test]
    fn link_targets_resolve_inside() {
        assert_eq!(
            resolve_link("a/layer.tar", "../b/layer.tar", true)
                .ok()
                .as_deref(),
            Some("b/layer.tar")
        );
        assert_eq!(
            resolve_link("a/layer.tar", "b/layer.tar", false)
                .ok()
                .as_deref(),
            Some("b/layer.tar")
        );
        assert!(matches!(
            resolve_link("a/layer.tar", "../../x", true),
            Err(ImageError::ManifestEscape { .. })
        ));
        assert!(matches!(
            resolve_link("a/layer.tar", "/x", true),
            Err(ImageError::ManifestEscape { .. })
        ));
    }
}

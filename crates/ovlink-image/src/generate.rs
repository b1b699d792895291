//! A deterministic image generator for demos, tests and benchmarks: [`generate`] writes a
//! `docker save` tarball and [`generate_oci`] an OCI layout tarball of the same image, byte
//! for byte the same for the same [`GenSpec`] (fixed mtimes and owners, entries in sorted
//! order, and `rand_chacha`'s ChaCha8 seeded with [`GenSpec::seed`], a stream that crate
//! documents as fixed for a given seed). The random stream is part of the image: a change
//! of algorithm, seeding or the way draws are made changes every generated layer, hence the
//! diff ids, chain ids and image id (the `stream_is_pinned` test fails then; only update its
//! values knowingly, as a change of every generated image).
//!
//! The base layer holds a tree of directories a few levels deep, regular files with
//! pseudo-random content, relative symlinks (some dangling), a hardlink pair, a setuid file,
//! a fifo and a long (GNU long-name) path. Each higher layer adds files, rewrites some,
//! deletes some with `.wh.NAME`, deletes a whole directory with `.wh.DIR`, and one layer
//! re-creates a directory as opaque (`DIR/.wh..wh..opq` plus new content). Every entry's
//! parent directories come before it, as in Docker's layer tars. This module only writes to
//! the `Write` it is given; it never touches the filesystem, the driver or the store.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::archive::Compression;
use crate::digest::{chain_ids, sha256_hex, SHA256_PREFIX};
use crate::tarball::TarballWriter;
use crate::wire::{
    self, split_tag, Descriptor, DockerManifestEntry, OciIndex, OciLayout, OciManifest,
    Repositories, RootFs, V1ContainerConfig, V1LayerJson,
};
use ovlink_tar::whiteout::{OPAQUE_STR, PREFIX_STR};

/// mtime of every entry of the generated layers (2021-01-01T00:00:00Z).
const LAYER_MTIME: u64 = 1_609_459_200;
/// `created` of the generated config and history.
const CREATED: &str = "2021-01-01T00:00:00Z";

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSpec {
    /// Approximate number of entries of the base layer (at least 20 are made).
    pub entries: usize,
    /// Number of layers (at least 1).
    pub layers: usize,
    /// PRNG seed: the same spec gives the same bytes.
    pub seed: u64,
    /// Largest regular file, in bytes.
    pub file_size: usize,
    /// The image name (RepoTag), e.g. `ovlink/gen:demo`.
    pub name: String,
}

impl GenSpec {
    /// A few hundred entries over 4 layers.
    pub fn demo() -> GenSpec {
        GenSpec {
            entries: 300,
            layers: 4,
            seed: 1,
            file_size: 512,
            name: "ovlink/gen:demo".to_string(),
        }
    }

    /// `entries` over `layers` with `seed`, named `name`, files as small as the demo's (what
    /// `ovlink image generate` asks for).
    pub fn sized(entries: usize, layers: usize, seed: u64, name: String) -> GenSpec {
        GenSpec {
            entries,
            layers,
            seed,
            name,
            ..GenSpec::demo()
        }
    }

    /// About 10,000 entries over 5 layers.
    pub fn bench() -> GenSpec {
        GenSpec {
            entries: 10_000,
            layers: 5,
            seed: 1,
            file_size: 512,
            name: "ovlink/gen:bench".to_string(),
        }
    }
}

/// Container format of the generated archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenLayout {
    /// `docker save`: `manifest.json`, `<hex>.json`, `<id>/layer.tar`, `repositories`.
    DockerSave,
    /// OCI image layout: `oci-layout`, `index.json`, `blobs/sha256/<hex>`.
    Oci,
}

/// Layout and layer compression of a generated archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenFormat {
    /// The container format.
    pub layout: GenLayout,
    /// How each layer tar is stored (diff ids are always of the uncompressed tar).
    pub compression: Compression,
}

impl GenFormat {
    /// `docker save`'s format, uncompressed layers; with `oci`, an OCI layout with gzip ones.
    pub fn of(oci: bool) -> GenFormat {
        match oci {
            true => GenFormat {
                layout: GenLayout::Oci,
                compression: Compression::Gzip,
            },
            false => GenFormat {
                layout: GenLayout::DockerSave,
                compression: Compression::None,
            },
        }
    }
}

/// Counts of one generated layer tar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenLayerSummary {
    /// `sha256:<hex>` of the uncompressed layer tar.
    pub diff_id: String,
    /// Size of the uncompressed layer tar.
    pub tar_size: u64,
    /// Size of the layer as stored in the archive (compressed or not).
    pub stored_size: u64,
    /// Regular files (whiteouts not included).
    pub files: usize,
    /// Directory entries (parents repeated in upper layers included).
    pub dirs: usize,
    /// Symlinks.
    pub symlinks: usize,
    /// Hardlinks.
    pub hardlinks: usize,
    /// Whiteout files (`.wh.NAME` and opaque markers).
    pub whiteouts: usize,
    /// Opaque directory markers (`.wh..wh..opq`).
    pub opaque: usize,
    /// Fifos.
    pub others: usize,
    /// Sum of the regular files' sizes (what `apply_diff` returns).
    pub file_bytes: u64,
}

impl GenLayerSummary {
    /// All entries of the layer tar.
    pub fn entries(&self) -> usize {
        self.files + self.dirs + self.symlinks + self.hardlinks + self.whiteouts + self.others
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSummary {
    /// The image name (RepoTag).
    pub name: String,
    /// The image id: `sha256:<hex>` of the config.
    pub image_id: String,
    /// Per layer, bottom first.
    pub layers: Vec<GenLayerSummary>,
    /// Total bytes written.
    pub archive_size: u64,
}

impl GenSummary {
    /// One line for people: name, id, layers, entries, bytes.
    pub fn describe(&self) -> String {
        let entries: usize = self.layers.iter().map(|l| l.entries()).sum();
        format!(
            "{} ({}, {} layers, {entries} tar entries, {} bytes)",
            self.name,
            self.image_id,
            self.layers.len(),
            self.archive_size
        )
    }

    /// The layer ids (chain ids, hex) an import will create, bottom first.
    pub fn chain_ids(&self) -> Vec<String> {
        chain_ids(
            &self
                .layers
                .iter()
                .map(|l| l.diff_id.clone())
                .collect::<Vec<_>>(),
        )
    }
}

/// Writes the image of `spec` as an uncompressed `docker save` tarball to `out`.
pub fn generate(spec: &GenSpec, out: &mut dyn Write) -> io::Result<GenSummary> {
    generate_with(
        spec,
        GenFormat {
            layout: GenLayout::DockerSave,
            compression: Compression::None,
        },
        out,
    )
}

/// Writes the image of `spec` as an OCI image layout tarball with gzip-compressed layers.
pub fn generate_oci(spec: &GenSpec, out: &mut dyn Write) -> io::Result<GenSummary> {
    generate_with(
        spec,
        GenFormat {
            layout: GenLayout::Oci,
            compression: Compression::Gzip,
        },
        out,
    )
}

/// Writes the image of `spec` in `format` to `out`. The layer tars (hence diff ids, chain
/// ids and image id) depend on `spec` only, not on the format.
pub fn generate_with(
    spec: &GenSpec,
    format: GenFormat,
    out: &mut dyn Write,
) -> io::Result<GenSummary> {
    let mut gen = Generator::new(spec);
    let mut layers = Vec::new();
    let mut summaries = Vec::new();
    for k in 0..spec.layers.max(1) {
        let entries = if k == 0 {
            gen.base_layer()
        } else {
            gen.upper_layer(k)
        };
        let (tar, mut summary) = write_layer_tar(&entries, LAYER_MTIME + k as u64 * 3600)?;
        let stored = compress(&tar, format.compression)?;
        summary.stored_size = stored.len() as u64;
        summaries.push(summary);
        layers.push(stored);
    }
    let diff_ids: Vec<String> = summaries.iter().map(|s| s.diff_id.clone()).collect();
    let history: Vec<serde_json::Value> = summaries
        .iter()
        .enumerate()
        .map(|(k, s)| {
            json!({
                "created": CREATED,
                "created_by": format!("ovlink generate: layer {k} ({} entries, seed {})", s.entries(), spec.seed),
            })
        })
        .collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
        },
        "history": history,
        "rootfs": RootFs::layers(diff_ids),
    }))
    .map_err(io::Error::other)?;
    let config_hex = sha256_hex(&config);

    let mut counter = CountingWriter { inner: out, n: 0 };
    let mut outer = TarballWriter::new(&mut counter, LAYER_MTIME);
    match format.layout {
        GenLayout::DockerSave => {
            write_docker_save(&mut outer, spec, &config, &config_hex, &summaries, &layers)?
        }
        GenLayout::Oci => write_oci(
            &mut outer,
            spec,
            format.compression,
            &config,
            &config_hex,
            &layers,
        )?,
    }
    outer.finish()?;
    Ok(GenSummary {
        name: spec.name.clone(),
        image_id: format!("{SHA256_PREFIX}{config_hex}"),
        layers: summaries,
        archive_size: counter.n,
    })
}

fn compress(tar: &[u8], compression: Compression) -> io::Result<Vec<u8>> {
    match compression {
        Compression::None => Ok(tar.to_vec()),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            enc.write_all(tar)?;
            enc.finish()
        }
        Compression::Zstd => zstd::stream::encode_all(tar, 3),
    }
}

fn write_docker_save(
    outer: &mut TarballWriter<&mut CountingWriter<'_>>,
    spec: &GenSpec,
    config: &[u8],
    config_hex: &str,
    summaries: &[GenLayerSummary],
    layers: &[Vec<u8>],
) -> io::Result<()> {
    // v1 layer ids, as docker save names the layer directories.
    let chain = chain_ids(
        &summaries
            .iter()
            .map(|s| s.diff_id.clone())
            .collect::<Vec<_>>(),
    );
    let mut v1_ids: Vec<String> = Vec::new();
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, layer) in layers.iter().enumerate() {
        let parent = v1_ids.last().cloned();
        let id = sha256_hex(
            format!(
                "ovlink-gen v1 {} {}",
                chain[k],
                parent.as_deref().unwrap_or("")
            )
            .as_bytes(),
        );
        let v1 = V1LayerJson {
            id: id.clone(),
            parent,
            created: Some(CREATED.to_string()),
            container_config: Some(V1ContainerConfig {
                cmd: vec![format!("ovlink generate: layer {k}")],
            }),
            os: Some("linux".to_string()),
        };
        files.insert(format!("{id}/VERSION"), b"1.0".to_vec());
        files.insert(
            format!("{id}/json"),
            serde_json::to_vec(&v1).map_err(io::Error::other)?,
        );
        files.insert(format!("{id}/layer.tar"), layer.clone());
        v1_ids.push(id);
    }
    files.insert(format!("{config_hex}.json"), config.to_vec());
    let manifest = [DockerManifestEntry {
        config: format!("{config_hex}.json"),
        repo_tags: Some(vec![spec.name.clone()]),
        layers: v1_ids.iter().map(|id| format!("{id}/layer.tar")).collect(),
    }];
    files.insert(
        "manifest.json".to_string(),
        serde_json::to_vec(&manifest).map_err(io::Error::other)?,
    );
    let (repo, tag) = split_tag(&spec.name);
    let top = v1_ids.last().cloned().unwrap_or_default();
    let repositories: Repositories =
        BTreeMap::from([(repo.to_string(), BTreeMap::from([(tag.to_string(), top)]))]);
    files.insert(
        "repositories".to_string(),
        serde_json::to_vec(&repositories).map_err(io::Error::other)?,
    );
    // Sorted, as docker save writes them: manifest.json and repositories come last.
    let mut dirs_done = BTreeSet::new();
    for (name, data) in &files {
        if let Some((dir, _)) = name.split_once('/') {
            if dirs_done.insert(dir.to_string()) {
                outer.dir(&format!("{dir}/"))?;
            }
        }
        outer.file(name, data)?;
    }
    Ok(())
}

fn write_oci(
    outer: &mut TarballWriter<&mut CountingWriter<'_>>,
    spec: &GenSpec,
    compression: Compression,
    config: &[u8],
    config_hex: &str,
    layers: &[Vec<u8>],
) -> io::Result<()> {
    let layer_type = match compression {
        Compression::None => wire::OCI_LAYER,
        Compression::Gzip => wire::OCI_LAYER_GZIP,
        Compression::Zstd => wire::OCI_LAYER_ZSTD,
    };
    let mut blobs: BTreeMap<String, &[u8]> = BTreeMap::new();
    let mut layer_descs = Vec::new();
    for layer in layers {
        let hex = sha256_hex(layer);
        layer_descs.push(Descriptor::new(
            layer_type,
            format!("{SHA256_PREFIX}{hex}"),
            layer.len() as u64,
        ));
        blobs.insert(hex, layer);
    }
    blobs.insert(config_hex.to_string(), config);
    let manifest = serde_json::to_vec(&OciManifest {
        schema_version: 2,
        media_type: Some(wire::OCI_MANIFEST.to_string()),
        config: Descriptor::new(
            wire::OCI_CONFIG,
            format!("{SHA256_PREFIX}{config_hex}"),
            config.len() as u64,
        ),
        layers: layer_descs,
    })
    .map_err(io::Error::other)?;
    let manifest_hex = sha256_hex(&manifest);
    blobs.insert(manifest_hex.clone(), &manifest);
    let (_, tag) = split_tag(&spec.name);
    let mut desc = Descriptor::new(
        wire::OCI_MANIFEST,
        format!("{SHA256_PREFIX}{manifest_hex}"),
        manifest.len() as u64,
    );
    desc.annotations = BTreeMap::from([
        (wire::ANNOTATION_IMAGE_NAME.to_string(), spec.name.clone()),
        (wire::ANNOTATION_REF_NAME.to_string(), tag.to_string()),
    ]);
    let index = serde_json::to_vec(&OciIndex {
        schema_version: 2,
        media_type: Some(wire::OCI_INDEX.to_string()),
        manifests: vec![desc],
    })
    .map_err(io::Error::other)?;
    let layout = serde_json::to_vec(&OciLayout::default()).map_err(io::Error::other)?;

    outer.file("oci-layout", &layout)?;
    outer.dir("blobs/")?;
    outer.dir("blobs/sha256/")?;
    for (hex, data) in &blobs {
        outer.file(&format!("blobs/sha256/{hex}"), data)?;
    }
    // index.json last: the importer must not depend on member order.
    outer.file("index.json", &index)
}

struct CountingWriter<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The generator's random stream: ChaCha8 seeded with the spec's seed (see the module docs:
/// its values are part of every generated image).
struct Rng(ChaCha8Rng);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// True with probability `pct`%.
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }

    fn pick<'v, T>(&mut self, v: &'v [T]) -> Option<&'v T> {
        if v.is_empty() {
            None
        } else {
            v.get(self.below(v.len()))
        }
    }
}

/// One entry of a generated layer tar.
#[derive(Debug, Clone)]
enum Entry {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
    Hardlink { target: String },
    Fifo,
    Whiteout,
}

/// What the generator remembers of the merged tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir(u32),
    File,
    Symlink,
    /// Part of the special fixture (hardlinks, setuid, fifo): never modified or deleted.
    Fixed,
}

const WORDS: &[&str] = &[
    "alpha", "bin", "cache", "data", "etc", "lib", "log", "misc", "node", "opt", "pkg", "run",
    "share", "src", "tmp", "usr", "var", "www", "conf", "docs",
];

/// The special fixture directory of the base layer.
const SPECIAL: &str = "special";

struct Generator {
    rng: Rng,
    spec: GenSpec,
    tree: BTreeMap<String, Node>,
    counter: u64,
}

fn parent_of(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

fn depth_of(path: &str) -> usize {
    if path.is_empty() {
        0
    } else {
        path.matches('/').count() + 1
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn is_under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

impl Generator {
    fn new(spec: &GenSpec) -> Self {
        Generator {
            rng: Rng::new(spec.seed),
            spec: spec.clone(),
            tree: BTreeMap::new(),
            counter: 0,
        }
    }

    fn content(&mut self) -> Vec<u8> {
        let len = self.rng.below(self.spec.file_size + 1);
        let mut data = Vec::with_capacity(len + 8);
        while data.len() < len {
            let mut x = self.rng.next();
            for _ in 0..8 {
                // Mostly letters, some newlines: text-like and compressible.
                let c = (x & 0x3f) as u8;
                data.push(if c >= 52 {
                    b'\n'
                } else if c >= 26 {
                    b'a' + c - 26
                } else {
                    b'A' + c
                });
                x >>= 8;
            }
        }
        data.truncate(len);
        data
    }

    /// A fresh name in `dir` (not in the tree).
    fn fresh_name(&mut self, dir: &str, ext: &str) -> String {
        loop {
            self.counter += 1;
            let word = WORDS[self.rng.below(WORDS.len())];
            let path = join(dir, &format!("{word}{}{ext}", self.counter));
            if !self.tree.contains_key(&path) {
                return path;
            }
        }
    }

    fn dirs(&self, exclude: &[&str]) -> Vec<String> {
        self.tree
            .iter()
            .filter(|(p, n)| {
                matches!(n, Node::Dir(_))
                    && p.as_str() != SPECIAL
                    && !is_under(p, SPECIAL)
                    && !exclude.iter().any(|x| p.as_str() == *x || is_under(p, x))
            })
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn files(&self, exclude: &[&str]) -> Vec<String> {
        self.tree
            .iter()
            .filter(|(p, n)| **n == Node::File && !exclude.iter().any(|x| is_under(p, x)))
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn add_file(&mut self, out: &mut BTreeMap<String, Entry>, dir: &str) {
        let path = self.fresh_name(dir, ".txt");
        let mode = if self.rng.chance(10) { 0o755 } else { 0o644 };
        let data = self.content();
        self.tree.insert(path.clone(), Node::File);
        out.insert(path, Entry::File { mode, data });
    }

    fn base_layer(&mut self) -> BTreeMap<String, Entry> {
        let mut out = BTreeMap::new();
        let total = self.spec.entries.max(20);
        // Directories, up to 4 levels deep.
        let ndirs = (total / 10).max(4);
        let mut dirs: Vec<String> = Vec::new();
        for _ in 0..ndirs {
            let candidates: Vec<&String> = dirs.iter().filter(|d| depth_of(d) < 4).collect();
            let parent = if candidates.is_empty() || self.rng.chance(15) {
                String::new()
            } else {
                candidates[self.rng.below(candidates.len())].clone()
            };
            let path = self.fresh_name(&parent, "");
            let mode = if self.rng.chance(10) { 0o750 } else { 0o755 };
            self.tree.insert(path.clone(), Node::Dir(mode));
            out.insert(path.clone(), Entry::Dir { mode });
            dirs.push(path);
        }
        // The special fixture.
        let long = format!("{SPECIAL}/long-{}", "n".repeat(140));
        let fixed: Vec<(String, Entry)> = vec![
            (SPECIAL.to_string(), Entry::Dir { mode: 0o755 }),
            (format!("{SPECIAL}/empty"), Entry::Dir { mode: 0o700 }),
            (
                format!("{SPECIAL}/hard-a"),
                Entry::File {
                    mode: 0o644,
                    data: b"linked twice\n".to_vec(),
                },
            ),
            (
                format!("{SPECIAL}/hard-b"),
                Entry::Hardlink {
                    target: format!("{SPECIAL}/hard-a"),
                },
            ),
            (
                format!("{SPECIAL}/setuid"),
                Entry::File {
                    mode: 0o4755,
                    data: b"#!/bin/sh\n".to_vec(),
                },
            ),
            (format!("{SPECIAL}/fifo"), Entry::Fifo),
            (
                format!("{SPECIAL}/link-rel"),
                Entry::Symlink {
                    target: "hard-a".to_string(),
                },
            ),
            (
                format!("{SPECIAL}/link-dangling"),
                Entry::Symlink {
                    target: "../nowhere/missing".to_string(),
                },
            ),
            (
                long,
                Entry::File {
                    mode: 0o644,
                    data: b"long name\n".to_vec(),
                },
            ),
        ];
        for (path, entry) in fixed {
            let node = match entry {
                Entry::Dir { mode } => Node::Dir(mode),
                _ => Node::Fixed,
            };
            self.tree.insert(path.clone(), node);
            out.insert(path, entry);
        }
        // Files and symlinks for the rest.
        let rest = total.saturating_sub(out.len());
        let nlinks = rest / 10;
        for _ in 0..rest - nlinks {
            let dir = if self.rng.chance(5) {
                String::new()
            } else {
                self.rng.pick(&dirs).cloned().unwrap_or_default()
            };
            self.add_file(&mut out, &dir);
        }
        let files = self.files(&[SPECIAL]);
        for i in 0..nlinks {
            let dir = self.rng.pick(&dirs).cloned().unwrap_or_default();
            let path = self.fresh_name(&dir, ".lnk");
            let target = match self.rng.pick(&files) {
                Some(f) if i % 4 != 0 => format!("{}{f}", "../".repeat(depth_of(&dir))),
                _ => format!("missing-{i}"),
            };
            self.tree.insert(path.clone(), Node::Symlink);
            out.insert(path, Entry::Symlink { target });
        }
        out
    }

    fn upper_layer(&mut self, k: usize) -> BTreeMap<String, Entry> {
        let mut out: BTreeMap<String, Entry> = BTreeMap::new();
        let scale = self.spec.entries.max(20);
        let opaque_layer = if self.spec.layers >= 3 { 2 } else { 1 };

        // 1. Delete a whole directory.
        let mut gone: Vec<String> = Vec::new();
        let candidates: Vec<String> = self
            .dirs(&[])
            .into_iter()
            .filter(|d| depth_of(d) >= 2)
            .collect();
        if let Some(d) = self.rng.pick(&candidates).cloned() {
            let name = &d[d.rfind('/').map_or(0, |i| i + 1)..];
            out.insert(
                join(parent_of(&d), &format!("{PREFIX_STR}{name}")),
                Entry::Whiteout,
            );
            self.tree.retain(|p, _| p != &d && !is_under(p, &d));
            gone.push(d);
        }

        // 2. Re-create a directory as opaque.
        let mut opaque: Option<String> = None;
        if k == opaque_layer {
            let candidates: Vec<String> = self
                .dirs(&[])
                .into_iter()
                .filter(|o| !gone.iter().any(|g| is_under(g, o)))
                .collect();
            if let Some(o) = self.rng.pick(&candidates).cloned() {
                self.tree.retain(|p, _| !is_under(p, &o));
                let mode = match self.tree.get(&o) {
                    Some(Node::Dir(m)) => *m,
                    _ => 0o755,
                };
                out.insert(o.clone(), Entry::Dir { mode });
                out.insert(format!("{o}/{OPAQUE_STR}"), Entry::Whiteout);
                for _ in 0..3 + self.rng.below(3) {
                    self.add_file(&mut out, &o);
                }
                let sub = self.fresh_name(&o, "");
                self.tree.insert(sub.clone(), Node::Dir(0o755));
                out.insert(sub.clone(), Entry::Dir { mode: 0o755 });
                self.add_file(&mut out, &sub);
                opaque = Some(o);
            }
        }
        let fenced: Vec<&str> = opaque.iter().map(String::as_str).collect();

        // 3. Rewrite some files, 4. delete some others.
        let mut files = self.files(&fenced);
        let nmod = (files.len() / 20).max(2).min(files.len());
        for _ in 0..nmod {
            let i = self.rng.below(files.len());
            let path = files.swap_remove(i);
            let data = self.content();
            out.insert(path, Entry::File { mode: 0o644, data });
        }
        let ndel = (files.len() / 30).max(2).min(files.len());
        for _ in 0..ndel {
            let i = self.rng.below(files.len());
            let path = files.swap_remove(i);
            let name = &path[path.rfind('/').map_or(0, |i| i + 1)..];
            out.insert(
                join(parent_of(&path), &format!("{PREFIX_STR}{name}")),
                Entry::Whiteout,
            );
            self.tree.remove(&path);
        }

        // 5. Add files, and a new directory with a few.
        let dirs = self.dirs(&[]);
        for _ in 0..(scale / 50).max(3) {
            let dir = self.rng.pick(&dirs).cloned().unwrap_or_default();
            self.add_file(&mut out, &dir);
        }
        let base = self.rng.pick(&dirs).cloned().unwrap_or_default();
        let newdir = self.fresh_name(&base, "");
        self.tree.insert(newdir.clone(), Node::Dir(0o755));
        out.insert(newdir.clone(), Entry::Dir { mode: 0o755 });
        for _ in 0..2 {
            self.add_file(&mut out, &newdir);
        }

        // Parent directories of everything, as Docker's diff tars carry them.
        let paths: Vec<String> = out.keys().cloned().collect();
        for p in paths {
            let mut dir = parent_of(&p);
            while !dir.is_empty() {
                let mode = match self.tree.get(dir) {
                    Some(Node::Dir(m)) => *m,
                    _ => 0o755,
                };
                out.entry(dir.to_string()).or_insert(Entry::Dir { mode });
                dir = parent_of(dir);
            }
        }
        out
    }
}

/// Writes a layer tar of `entries` (sorted by path, so parents precede children).
fn write_layer_tar(
    entries: &BTreeMap<String, Entry>,
    mtime: u64,
) -> io::Result<(Vec<u8>, GenLayerSummary)> {
    let mut s = GenLayerSummary::default();
    let mut b = tar::Builder::new(Vec::new());
    for (path, entry) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        match entry {
            Entry::Dir { mode } => {
                s.dirs += 1;
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                b.append_data(&mut h, format!("{path}/"), io::empty())?;
            }
            Entry::File { mode, data } => {
                s.files += 1;
                s.file_bytes += data.len() as u64;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data.as_slice())?;
            }
            Entry::Symlink { target } => {
                s.symlinks += 1;
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                b.append_link(&mut h, path, target)?;
            }
            Entry::Hardlink { target } => {
                s.hardlinks += 1;
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                b.append_link(&mut h, path, target)?;
            }
            Entry::Fifo => {
                s.others += 1;
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o644);
                b.append_data(&mut h, path, io::empty())?;
            }
            Entry::Whiteout => {
                s.whiteouts += 1;
                if path.rsplit('/').next() == Some(OPAQUE_STR) {
                    s.opaque += 1;
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                b.append_data(&mut h, path, io::empty())?;
            }
        }
    }
    let tar = b.into_inner()?;
    s.tar_size = tar.len() as u64;
    s.diff_id = format!("{SHA256_PREFIX}{}", sha256_hex(&tar));
    Ok((tar, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the random stream and, through it, the generated images: a failure here means
    /// every generated image changed (its layers' diff ids and its image id).
    #[test]
    fn stream_is_pinned() {
        // ChaCha8Rng::seed_from_u64(0), as rand_chacha 0.3 gives it.
        let mut r = Rng::new(0);
        assert_eq!(r.next(), 0xb585_f767_a79a_3b6c);
        assert_eq!(r.next(), 0x7746_a55f_bad8_c037);
        let mut out = Vec::new();
        let s = generate(&GenSpec::demo(), &mut out).expect("generate");
        assert_eq!(
            s.image_id,
            "sha256:65ed852cc9d77b4325d6d98746c755c59f1b7b5e29bccf2162b355dfc8275904"
        );
        assert_eq!(
            s.layers[0].diff_id,
            "sha256:cdae2031f647ccdb5fa2f850176ff8410994231a34f3adf8163d00963e4bb2fa"
        );
    }
}

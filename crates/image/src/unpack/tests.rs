//! Unpack tests: archives built in memory, extracted into real directories.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};
use tempfile::TempDir;

use super::{
    Compression, DeviceNodes, EntryProblem, ParentSymlinks, UnpackError, UnpackOptions,
    UnpackStats, unpack_layer,
};

const MTIME: u64 = 1_600_000_000;

/// Builds a tar archive in memory. Names and link names are written into the header
/// bytes directly, so hostile names (`..`, absolute) get through, which
/// `tar::Builder` would refuse.
struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

fn put(field: &mut [u8], value: &str) {
    assert!(value.len() < field.len(), "test name too long: {value}");
    field.fill(0);
    field[..value.len()].copy_from_slice(value.as_bytes());
}

impl Layer {
    fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn entry(
        &mut self,
        kind: EntryType,
        name: &str,
        link: &str,
        data: &[u8],
        mode: u32,
        tweak: impl FnOnce(&mut Header),
    ) -> &mut Self {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(MTIME);
        header.set_size(data.len() as u64);
        put(&mut header.as_old_mut().name, name);
        put(&mut header.as_old_mut().linkname, link);
        tweak(&mut header);
        header.set_cksum();
        self.builder
            .append(&header, data)
            .expect("append to memory");
        self
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry(EntryType::Directory, name, "", b"", mode, |_| {})
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(EntryType::Regular, name, "", data, 0o644, |_| {})
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(EntryType::Symlink, name, target, b"", 0o777, |_| {})
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(EntryType::Link, name, target, b"", 0o644, |_| {})
    }

    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.builder
            .append_pax_extensions(records.iter().copied())
            .expect("append to memory");
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        builder.into_inner().expect("finish in memory")
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).expect("zstd in memory")
}

fn unpack(layer: &[u8], dest: &Path, opts: &UnpackOptions) -> Result<UnpackStats, UnpackError> {
    unpack_layer(layer, Compression::Detect, dest, opts)
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn lmeta(path: &Path) -> fs::Metadata {
    fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn xattr(path: &Path, key: &str) -> Result<Vec<u8>, rustix::io::Errno> {
    let mut buf = [0u8; 256];
    let len = rustix::fs::lgetxattr(path, key, &mut buf[..])?;
    Ok(buf[..len].to_vec())
}

fn tree_layer() -> Vec<u8> {
    Layer::new()
        .dir("etc/", 0o755)
        .file("etc/hostname", b"strata\n")
        .entry(EntryType::Regular, "bin/su", "", b"#!su", 0o4755, |h| {
            h.set_uid(1234);
            h.set_gid(5678);
        })
        .entry(EntryType::Regular, "bin/wall", "", b"wall", 0o2755, |_| {})
        .dir("tmp", 0o1777)
        .symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
        .hardlink("bin/su-again", "bin/su")
        .entry(EntryType::Fifo, "run/fifo", "", b"", 0o620, |_| {})
        .entry(EntryType::Char, "dev/null", "", b"", 0o666, |h| {
            h.set_device_major(1).expect("gnu header");
            h.set_device_minor(3).expect("gnu header");
        })
        .pax(&[
            ("SCHILY.xattr.user.origin", b"layer-1"),
            ("mtime", b"1700000000.25"),
            ("uid", b"70000"),
        ])
        .file("etc/motd", b"hello\n")
        .dir("deep/er/", 0o700)
        .file("deep/er/leaf", b"x")
        .finish()
}

fn assert_tree(dest: &Path) {
    assert_eq!(
        fs::read(dest.join("etc/hostname")).expect("hostname"),
        b"strata\n"
    );
    let su = lmeta(&dest.join("bin/su"));
    assert_eq!(
        su.permissions().mode() & 0o7777,
        0o4755,
        "setuid kept after chown"
    );
    assert_eq!((su.uid(), su.gid()), (1234, 5678));
    assert_eq!(su.mtime(), MTIME as i64);
    assert_eq!(su.nlink(), 2);
    assert_eq!(lmeta(&dest.join("bin/su-again")).ino(), su.ino());
    assert_eq!(
        lmeta(&dest.join("bin/wall")).permissions().mode() & 0o7777,
        0o2755
    );
    let tmp = lmeta(&dest.join("tmp"));
    assert!(tmp.is_dir());
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    let localtime = dest.join("etc/localtime");
    assert!(lmeta(&localtime).file_type().is_symlink());
    assert_eq!(
        fs::read_link(&localtime).expect("readlink"),
        Path::new("/usr/share/zoneinfo/UTC")
    );
    assert_eq!(lmeta(&localtime).mtime(), MTIME as i64);
    let fifo = lmeta(&dest.join("run/fifo"));
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.permissions().mode() & 0o7777, 0o620);
    let null = lmeta(&dest.join("dev/null"));
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    // PAX records override the header's uid and mtime, and carry xattrs.
    let motd = dest.join("etc/motd");
    let motd_meta = lmeta(&motd);
    assert_eq!(motd_meta.uid(), 70000);
    assert_eq!(
        (motd_meta.mtime(), motd_meta.mtime_nsec()),
        (1_700_000_000, 250_000_000)
    );
    match xattr(&motd, "user.origin") {
        Ok(value) => assert_eq!(value, b"layer-1"),
        Err(e) => println!("SKIP user xattr check: the filesystem refused it ({e})"),
    }
    // Directory times are set after their contents.
    for dir in ["etc", "tmp", "deep/er"] {
        assert_eq!(lmeta(&dest.join(dir)).mtime(), MTIME as i64, "{dir}");
    }
    assert_eq!(
        lmeta(&dest.join("deep/er")).permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn unpacks_a_tree_with_modes_owners_times_links_and_nodes() {
    let tar = tree_layer();
    let cases = [
        ("plain", tar.clone(), Compression::None),
        ("gzip", gzip(&tar), Compression::Gzip),
        ("zstd", zstd(&tar), Compression::Zstd),
        ("plain detected", tar.clone(), Compression::Detect),
        ("gzip detected", gzip(&tar), Compression::Detect),
        ("zstd detected", zstd(&tar), Compression::Detect),
    ];
    for (what, blob, compression) in cases {
        let dest = TempDir::new().expect("tempdir");
        let stats = unpack_layer(
            &blob[..],
            compression,
            dest.path(),
            &UnpackOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_tree(dest.path());
        assert_eq!(stats.entries, 12, "{what}");
        assert_eq!(stats.bytes, (7 + 4 + 4 + 6 + 1) as u64, "{what}");
        assert_eq!(stats.whiteouts, 0);
    }
}

#[test]
fn wrong_explicit_compression_fails_to_read() {
    let dest = TempDir::new().expect("tempdir");
    let err = unpack_layer(
        &tree_layer()[..],
        Compression::Gzip,
        dest.path(),
        &UnpackOptions::default(),
    )
    .expect_err("plain tar is not gzip");
    assert!(matches!(err, UnpackError::Read(_)), "{err:?}");
}

#[test]
fn media_types_and_magic_numbers_name_the_compression() {
    let cases = [
        ("application/vnd.oci.image.layer.v1.tar", Compression::None),
        (
            "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Gzip,
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::Zstd,
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Compression::Gzip,
        ),
    ];
    for (media_type, expected) in cases {
        assert_eq!(
            Compression::from_media_type(media_type).expect(media_type),
            expected
        );
    }
    assert!(matches!(
        Compression::from_media_type("application/vnd.oci.image.config.v1+json"),
        Err(UnpackError::UnsupportedMediaType(_))
    ));
    assert_eq!(
        Compression::detect(&gzip(b"x")).expect("gzip"),
        Compression::Gzip
    );
    assert_eq!(
        Compression::detect(&zstd(b"x")).expect("zstd"),
        Compression::Zstd
    );
    assert_eq!(
        Compression::detect(b"etc/").expect("tar"),
        Compression::None
    );
    assert_eq!(Compression::detect(b"").expect("empty"), Compression::None);
    let dest = TempDir::new().expect("tempdir");
    let xz = [0xfd, b'7', b'z', b'X', b'Z', 0, 0, 0];
    let err = unpack(&xz, dest.path(), &UnpackOptions::default()).expect_err("xz");
    assert_eq!(err.to_string(), "unsupported layer compression xz");
}

#[test]
fn reads_the_stream_to_its_end() {
    struct Counting<'a>(&'a [u8], usize);
    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1 += n;
            Ok(n)
        }
    }
    let mut blob = Layer::new().file("a", b"a").finish();
    blob.extend_from_slice(&[0u8; 4096]);
    let total = blob.len();
    let dest = TempDir::new().expect("tempdir");
    let mut reader = Counting(&blob, 0);
    unpack_layer(
        &mut reader,
        Compression::None,
        dest.path(),
        &UnpackOptions::default(),
    )
    .expect("unpack");
    assert_eq!(reader.1, total);
}

#[test]
fn whiteouts_and_opaque_dirs_apply_across_layers() {
    let dest = TempDir::new().expect("tempdir");
    let dest = dest.path();
    let lower = Layer::new()
        .file("a/keep", b"1")
        .file("a/gone", b"2")
        .file("b/x", b"3")
        .file("b/sub/old", b"4")
        .file("c/deep/file", b"5")
        .file("d/same", b"6")
        .finish();
    unpack(&lower, dest, &UnpackOptions::flatten()).expect("lower");
    let upper = Layer::new()
        .file("a/.wh.gone", b"")
        .file(".wh.c", b"")
        .file(".wh.never-existed", b"")
        // Same-layer entries before the opaque marker survive it ...
        .file("b/before", b"7")
        .file("b/sub/new", b"8")
        .file("b/.wh..wh..opq", b"")
        // ... and so do those after it.
        .file("b/after", b"9")
        // A whiteout never hides an entry of its own layer.
        .file("d/same", b"10")
        .file("d/.wh.same", b"")
        .finish();
    let stats = unpack(&upper, dest, &UnpackOptions::flatten()).expect("upper");
    assert_eq!(stats.whiteouts, 5);
    assert_eq!(names(dest), set(&["a", "b", "d"]));
    assert_eq!(names(&dest.join("a")), set(&["keep"]));
    assert_eq!(names(&dest.join("b")), set(&["after", "before", "sub"]));
    assert_eq!(names(&dest.join("b/sub")), set(&["new"]));
    assert_eq!(fs::read(dest.join("d/same")).expect("same"), b"10");
}

#[test]
fn whiteouts_become_overlayfs_whiteouts_in_overlay_mode() {
    let dest = TempDir::new().expect("tempdir");
    let dest = dest.path();
    let layer = Layer::new()
        .file("a/.wh.gone", b"")
        .file("b/.wh..wh..opq", b"")
        .file("b/new", b"n")
        .file("c/kept", b"k")
        .file("c/.wh.kept", b"")
        .finish();
    let stats = unpack(&layer, dest, &UnpackOptions::overlay()).expect("unpack");
    assert_eq!(stats.whiteouts, 3);
    let gone = lmeta(&dest.join("a/gone"));
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    assert_eq!((gone.uid(), gone.gid()), (0, 0));
    assert_eq!(names(&dest.join("b")), set(&["new"]));
    assert!(
        lmeta(&dest.join("c/kept")).is_file(),
        "same-layer file kept"
    );
    match xattr(&dest.join("b"), "trusted.overlay.opaque") {
        Ok(value) => assert_eq!(value, b"y"),
        Err(e) => println!("SKIP opaque xattr check: trusted xattrs unavailable here ({e})"),
    }
}

#[test]
fn overlay_metadata_xattrs_from_the_archive_are_dropped() {
    let dest = TempDir::new().expect("tempdir");
    let layer = Layer::new()
        .pax(&[
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
            ("SCHILY.xattr.bogus.namespace", b"x"),
        ])
        .file("f", b"f")
        .finish();
    let stats = unpack(&layer, dest.path(), &UnpackOptions::flatten()).expect("unpack");
    assert_eq!(stats.warnings, 2);
    assert!(xattr(&dest.path().join("f"), "trusted.overlay.redirect").is_err());
}

#[test]
fn absolute_names_land_inside_dest() {
    let dest = TempDir::new().expect("tempdir");
    let layer = Layer::new()
        .file("/etc/hosts", b"127.0.0.1 localhost\n")
        .finish();
    unpack(&layer, dest.path(), &UnpackOptions::default()).expect("unpack");
    assert_eq!(
        fs::read(dest.path().join("etc/hosts")).expect("hosts"),
        b"127.0.0.1 localhost\n"
    );
}

#[test]
fn later_entries_replace_files_and_directories() {
    let dest = TempDir::new().expect("tempdir");
    let dest = dest.path();
    let lower = Layer::new()
        .file("x/child", b"c")
        .file("y", b"file")
        .dir("z", 0o755)
        .file("z/keep", b"k")
        .finish();
    unpack(&lower, dest, &UnpackOptions::default()).expect("lower");
    let keep_ino = lmeta(&dest.join("z/keep")).ino();
    let upper = Layer::new()
        .file("x", b"now a file")
        .dir("y", 0o750)
        .file("y/inner", b"i")
        .dir("z", 0o700)
        .finish();
    unpack(&upper, dest, &UnpackOptions::default()).expect("upper");
    assert_eq!(fs::read(dest.join("x")).expect("x"), b"now a file");
    assert_eq!(names(&dest.join("y")), set(&["inner"]));
    assert_eq!(lmeta(&dest.join("y")).permissions().mode() & 0o777, 0o750);
    assert_eq!(lmeta(&dest.join("z")).permissions().mode() & 0o777, 0o700);
    assert_eq!(
        lmeta(&dest.join("z/keep")).ino(),
        keep_ino,
        "dir over dir keeps contents"
    );
}

#[test]
fn a_file_over_a_lower_hardlink_gets_a_new_inode() {
    let dest = TempDir::new().expect("tempdir");
    let dest = dest.path();
    let lower = Layer::new()
        .file("a", b"shared")
        .hardlink("b", "a")
        .finish();
    unpack(&lower, dest, &UnpackOptions::default()).expect("lower");
    let upper = Layer::new().file("b", b"changed").finish();
    unpack(&upper, dest, &UnpackOptions::default()).expect("upper");
    assert_eq!(fs::read(dest.join("a")).expect("a"), b"shared");
    assert_eq!(fs::read(dest.join("b")).expect("b"), b"changed");
}

#[test]
fn byte_limit_stops_a_bomb() {
    let dest = TempDir::new().expect("tempdir");
    let layer = gzip(&Layer::new().file("big", &vec![0u8; 1 << 20]).finish());
    let opts = UnpackOptions::default().with_max_bytes(64 * 1024);
    let err = unpack(&layer, dest.path(), &opts).expect_err("over the limit");
    assert_eq!(err.entry_problem(), Some(EntryProblem::TooLarge));
    assert_eq!(err.entry_path(), Some("big"));
}

#[test]
fn a_file_cannot_be_a_parent() {
    let dest = TempDir::new().expect("tempdir");
    let layer = Layer::new().file("f", b"f").file("f/x", b"x").finish();
    let err = unpack(&layer, dest.path(), &UnpackOptions::default()).expect_err("f is a file");
    assert_eq!(err.entry_problem(), Some(EntryProblem::ParentNotDir));
    assert_eq!(err.entry_path(), Some("f/x"));
}

#[test]
fn unprivileged_device_policy_is_accepted_as_root() {
    // As root mknod succeeds, so the skip path is not taken; this checks the option
    // does not change the privileged result. (The EPERM branch needs an
    // unprivileged user namespace to exercise.)
    let dest = TempDir::new().expect("tempdir");
    let opts = UnpackOptions::default().with_device_nodes(DeviceNodes::SkipIfNotPermitted);
    let stats = unpack(&tree_layer(), dest.path(), &opts).expect("unpack");
    assert_eq!(stats.warnings, 0);
    assert!(
        lmeta(&dest.path().join("dev/null"))
            .file_type()
            .is_char_device()
    );
}

/// A destination inside a directory with a sentinel file and an empty `outside`
/// directory beside it, to prove nothing was written outside `dest`.
struct Jail {
    base: TempDir,
}

impl Jail {
    fn new() -> Self {
        let base = TempDir::new().expect("tempdir");
        let jail = Self { base };
        fs::create_dir_all(jail.dest()).expect("dest");
        fs::create_dir(jail.outside()).expect("outside");
        fs::write(jail.sentinel(), b"sentinel").expect("sentinel");
        jail
    }

    fn dir(&self) -> PathBuf {
        self.base.path().join("t")
    }

    fn dest(&self) -> PathBuf {
        self.dir().join("dest")
    }

    fn outside(&self) -> PathBuf {
        self.dir().join("outside")
    }

    fn sentinel(&self) -> PathBuf {
        self.dir().join("sentinel")
    }

    fn unpack(&self, layer: &[u8], opts: &UnpackOptions) -> Result<UnpackStats, UnpackError> {
        unpack(layer, &self.dest(), opts)
    }

    fn assert_contained(&self) {
        assert_eq!(names(self.base.path()), set(&["t"]));
        assert_eq!(names(&self.dir()), set(&["dest", "outside", "sentinel"]));
        assert!(names(&self.outside()).is_empty());
        assert_eq!(fs::read(self.sentinel()).expect("sentinel"), b"sentinel");
        assert_eq!(lmeta(&self.sentinel()).nlink(), 1);
    }
}

/// The host's /etc/passwd, as far as a layer could change it.
fn host_passwd() -> (u64, u64, u64, i64) {
    let meta = lmeta(Path::new("/etc/passwd"));
    (meta.ino(), meta.nlink(), meta.len(), meta.mtime())
}

fn assert_refused(result: Result<UnpackStats, UnpackError>, entry: &str, problem: EntryProblem) {
    let err = result.expect_err("hostile entry accepted");
    assert_eq!(err.entry_path(), Some(entry), "{err}");
    assert_eq!(err.entry_problem(), Some(problem), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("layer entry {entry:?}: ")),
        "{err}"
    );
}

#[test]
fn names_that_climb_out_are_refused() {
    for name in [
        "../x",
        "/../../x",
        "a/../../x",
        "./../sentinel",
        "../.wh.sentinel",
    ] {
        let jail = Jail::new();
        let layer = Layer::new().file(name, b"pwned").finish();
        assert_refused(
            jail.unpack(&layer, &UnpackOptions::default()),
            name,
            EntryProblem::Escapes,
        );
        jail.assert_contained();
    }
    let jail = Jail::new();
    let layer = Layer::new().file("../x", b"pwned").finish();
    let err = jail
        .unpack(&layer, &UnpackOptions::default())
        .expect_err("escape");
    assert_eq!(
        err.to_string(),
        r#"layer entry "../x": path escapes the layer root"#
    );
}

/// What a case is called, its symlinks (name, target), the entry written through
/// them, and where inside dest that entry must land.
type SymlinkCase<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);

#[test]
fn symlinked_parents_resolve_inside_dest_or_are_refused() {
    let passwd = host_passwd();
    let cases: &[SymlinkCase] = &[
        ("to /", &[("a", "/")], "a/etc/passwd", "etc/passwd"),
        ("to ../..", &[("up", "../..")], "up/x", "x"),
        (
            "chain",
            &[("l1", "l2"), ("l2", "l3/.."), ("l3", "../../..")],
            "l1/x",
            "x",
        ),
        (
            "to ../../../etc",
            &[("e", "../../../etc")],
            "e/passwd",
            "etc/passwd",
        ),
    ];
    for (what, links, entry, lands) in cases {
        let mut layer = Layer::new();
        layer.dir("etc", 0o755);
        for (name, target) in *links {
            layer.symlink(name, target);
        }
        if *what == "chain" {
            layer.dir("l3", 0o755);
        }
        let layer = layer.file(entry, b"pwned").finish();

        let jail = Jail::new();
        jail.unpack(&layer, &UnpackOptions::default())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            fs::read(jail.dest().join(lands)).expect(what),
            b"pwned",
            "{what}"
        );
        jail.assert_contained();

        let jail = Jail::new();
        let opts = UnpackOptions::default().with_parent_symlinks(ParentSymlinks::Reject);
        assert_refused(
            jail.unpack(&layer, &opts),
            entry,
            EntryProblem::ParentSymlink,
        );
        jail.assert_contained();
    }
    assert_eq!(host_passwd(), passwd);
}

#[test]
fn symlinks_to_absolute_host_paths_lead_nowhere() {
    let jail = Jail::new();
    let outside = jail.outside();
    let sentinel = jail.sentinel();
    // Resolved inside dest, the host path does not exist: the write is refused.
    let layer = Layer::new()
        .symlink("s", outside.to_str().expect("utf-8 temp path"))
        .file("s/pwned", b"pwned")
        .finish();
    assert_refused(
        jail.unpack(&layer, &UnpackOptions::default()),
        "s/pwned",
        EntryProblem::ParentNotDir,
    );
    jail.assert_contained();
    // An entry at the symlink's own path replaces the symlink, never its target.
    let jail = Jail::new();
    let layer = Layer::new()
        .symlink("s", sentinel.to_str().expect("utf-8 temp path"))
        .file("s", b"mine")
        .symlink("d", jail.dir().to_str().expect("utf-8 temp path"))
        .dir("d", 0o700)
        .finish();
    jail.unpack(&layer, &UnpackOptions::default())
        .expect("unpack");
    assert_eq!(fs::read(jail.dest().join("s")).expect("s"), b"mine");
    assert!(lmeta(&jail.dest().join("d")).is_dir());
    jail.assert_contained();
}

#[test]
fn hardlinks_cannot_reach_outside() {
    let passwd = host_passwd();
    let cases = [
        ("/etc/passwd", EntryProblem::LinkTargetMissing),
        ("../outside", EntryProblem::LinkTargetEscapes),
        ("../sentinel", EntryProblem::LinkTargetEscapes),
        ("a/../../sentinel", EntryProblem::LinkTargetEscapes),
        ("etc-link/passwd", EntryProblem::LinkTargetMissing),
        ("host/sentinel", EntryProblem::LinkTargetMissing),
    ];
    for (target, problem) in cases {
        let jail = Jail::new();
        let layer = Layer::new()
            .symlink("etc-link", "/etc")
            .symlink("host", jail.dir().to_str().expect("utf-8 temp path"))
            .hardlink("h", target)
            .finish();
        assert_refused(jail.unpack(&layer, &UnpackOptions::default()), "h", problem);
        jail.assert_contained();
    }
    assert_eq!(host_passwd(), passwd);
    // A hardlink to a symlink links the symlink itself.
    let jail = Jail::new();
    let layer = Layer::new()
        .symlink("p", "/etc/passwd")
        .hardlink("h", "p")
        .finish();
    jail.unpack(&layer, &UnpackOptions::default())
        .expect("unpack");
    assert!(lmeta(&jail.dest().join("h")).file_type().is_symlink());
    jail.assert_contained();
    assert_eq!(host_passwd(), passwd);
}

#[test]
fn whiteouts_cannot_reach_outside() {
    for (opts, what) in [
        (UnpackOptions::flatten(), "apply"),
        (UnpackOptions::overlay(), "overlay"),
    ] {
        let jail = Jail::new();
        let dir = jail.dir();
        let dir = dir.to_str().expect("utf-8 temp path");
        // Through a symlinked parent the whiteout resolves inside dest, where the
        // target does not exist.
        let layer = Layer::new()
            .symlink("s", dir)
            .symlink("up", "../..")
            .file("up/.wh.sentinel", b"")
            .file(".wh..", b"")
            .finish();
        let err = jail.unpack(&layer, &opts).expect_err(what);
        assert_eq!(err.entry_path(), Some(".wh.."), "{what}: {err}");
        assert_eq!(err.entry_problem(), Some(EntryProblem::InvalidWhiteout));
        jail.assert_contained();

        let jail = Jail::new();
        let layer = Layer::new().file("../.wh.x", b"").finish();
        assert_refused(
            jail.unpack(&layer, &opts),
            "../.wh.x",
            EntryProblem::Escapes,
        );
        jail.assert_contained();

        // An opaque marker under a symlink to / clears dest's root, nothing else.
        let jail = Jail::new();
        fs::write(jail.dest().join("lower"), b"l").expect("lower file");
        let layer = Layer::new()
            .symlink("r", "/")
            .file("r/.wh..wh..opq", b"")
            .finish();
        jail.unpack(&layer, &opts)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        jail.assert_contained();
    }
}

#[test]
fn device_nodes_are_created_inside_dest() {
    let jail = Jail::new();
    let layer = Layer::new()
        .symlink("dev", "/dev")
        .entry(EntryType::Block, "dev/sda", "", b"", 0o660, |h| {
            h.set_device_major(8).expect("gnu header");
            h.set_device_minor(0).expect("gnu header");
        })
        .finish();
    jail.unpack(&layer, &UnpackOptions::default())
        .expect_err("/dev does not exist in dest");
    jail.assert_contained();
    let jail = Jail::new();
    let layer = Layer::new()
        .entry(EntryType::Block, "dev/sda", "", b"", 0o660, |h| {
            h.set_device_major(8).expect("gnu header");
            h.set_device_minor(0).expect("gnu header");
        })
        .finish();
    jail.unpack(&layer, &UnpackOptions::default())
        .expect("unpack");
    assert!(
        lmeta(&jail.dest().join("dev/sda"))
            .file_type()
            .is_block_device()
    );
    jail.assert_contained();
}

/// Figures for docs/benchmarks.md; prints, asserts nothing about speed.
/// `cargo test --release -p strata-image unpack_timing -- --ignored --nocapture`
/// (`STRATA_UNPACK_TIMING_DIR` picks the filesystem; default `/dev/shm`).
#[test]
#[ignore = "timing, run by hand"]
fn unpack_timing() {
    // tmpfs by default, so the figures are the unpacker's and not the disk's.
    let base = std::env::var_os("STRATA_UNPACK_TIMING_DIR").unwrap_or_else(|| "/dev/shm".into());
    println!("unpacking into {}", Path::new(&base).display());
    let mut many = Layer::new();
    let small = vec![b's'; 4096];
    for dir in 0..100 {
        many.dir(&format!("d{dir}/"), 0o755);
        for file in 0..200 {
            many.file(&format!("d{dir}/f{file}"), &small);
        }
    }
    let many = many.finish();
    let big = Layer::new().file("big", &vec![b'b'; 256 << 20]).finish();
    for (layer, tar) in [("20k x 4 KiB files", many), ("one 256 MiB file", big)] {
        for (what, blob) in [
            ("tar", tar.clone()),
            ("gzip", gzip(&tar)),
            ("zstd", zstd(&tar)),
        ] {
            let dest = TempDir::new_in(&base).expect("tempdir");
            let start = std::time::Instant::now();
            let stats = unpack(&blob, dest.path(), &UnpackOptions::default()).expect("unpack");
            let elapsed = start.elapsed();
            println!(
                "{layer}, {what}: {} entries, {} MiB in {:.2?} ({:.0} MiB/s, {:.0} entries/s)",
                stats.entries,
                stats.bytes >> 20,
                elapsed,
                (stats.bytes >> 20) as f64 / elapsed.as_secs_f64(),
                stats.entries as f64 / elapsed.as_secs_f64(),
            );
        }
    }
}

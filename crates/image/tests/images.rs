#![allow(clippy::unwrap_used)]
//! The image index end to end on a real directory: import, resolve, tag, untag, GC.

use std::path::Path;

use strata_image::import::import_rootfs;
use strata_image::{ImageError, ImageStore, Reference};

fn tree(root: &Path, marker: &str) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/hello"), format!("echo {marker}\n")).unwrap();
}

#[test]
fn imported_images_resolve_by_reference_and_id_and_gc_keeps_what_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("images")).unwrap();
    let src = dir.path().join("src");
    tree(&src, "one");
    let web: Reference = "localhost/web".parse().unwrap();
    let image = import_rootfs(
        &store,
        &src,
        &web,
        &[
            "CMD [\"/bin/hello\"]".to_string(),
            "EXPOSE 8080".to_string(),
        ],
    )
    .unwrap();
    assert_eq!(image.manifest.layers.len(), 1);
    assert_eq!(image.config.command_line(&[]), vec!["/bin/hello"]);
    assert!(
        image
            .config
            .config
            .env
            .iter()
            .any(|e| e.starts_with("PATH="))
    );

    // By reference (normalised), by ID, by ID prefix, by repo digest.
    let by_ref = store.resolve("localhost/web:latest").unwrap();
    assert_eq!(by_ref.id(), image.id());
    assert_eq!(by_ref.references, vec!["localhost/web:latest"]);
    assert_eq!(
        store.resolve(&image.id().to_string()).unwrap().id(),
        image.id()
    );
    assert_eq!(
        store.resolve(&image.id().hex()[..12]).unwrap().id(),
        image.id()
    );
    let pinned = format!("localhost/web@{}", image.digest());
    assert_eq!(store.resolve(&pinned).unwrap().id(), image.id());
    assert!(matches!(
        store.resolve("localhost/nope"),
        Err(ImageError::NotFound(_))
    ));

    // A second tag is the same image; a second import is another.
    store
        .tag(
            &"localhost/web:v1".parse().unwrap(),
            &store.references().unwrap()["localhost/web:latest"],
        )
        .unwrap();
    tree(&src, "two");
    let other = import_rootfs(&store, &src, &"localhost/other".parse().unwrap(), &[]).unwrap();
    assert_ne!(other.id(), image.id());
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 2);
    let web_entry = listed.iter().find(|i| i.id() == image.id()).unwrap();
    assert_eq!(
        web_entry.references,
        vec!["localhost/web:latest", "localhost/web:v1"]
    );

    // Nothing is garbage while every image is named.
    let blobs_before = store.content().list().unwrap().len();
    assert_eq!(store.collect_garbage(&[]).unwrap().blobs, 0);
    assert_eq!(store.content().list().unwrap().len(), blobs_before);

    // Untag `other`: its manifest, config and layer go; kept as a root, they stay.
    store.untag(&"localhost/other".parse().unwrap()).unwrap();
    assert_eq!(
        store
            .collect_garbage(std::slice::from_ref(other.digest()))
            .unwrap()
            .blobs,
        0
    );
    let report = store.collect_garbage(&[]).unwrap();
    assert_eq!(report.blobs, 3);
    assert!(!store.content().contains(other.id()));
    assert!(store.content().contains(image.id()));
    assert_eq!(store.resolve("localhost/web:v1").unwrap().id(), image.id());
}

#[test]
fn a_bad_change_or_missing_directory_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("images")).unwrap();
    let src = dir.path().join("src");
    tree(&src, "x");
    let name: Reference = "localhost/bad".parse().unwrap();
    let err = import_rootfs(&store, &src, &name, &["RUN rm -rf /".to_string()]).unwrap_err();
    assert!(err.to_string().contains("--change"), "{err}");
    let err = import_rootfs(&store, &dir.path().join("missing"), &name, &[]).unwrap_err();
    assert!(err.to_string().contains("is not a directory"), "{err}");
    assert!(store.references().unwrap().is_empty());
    assert!(store.content().list().unwrap().is_empty());
}

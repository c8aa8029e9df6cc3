//! The registry client against a real registry (Debian's docker-registry on loopback).

#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_image::config::History;
use strata_image::manifest::media_type;
use strata_image::pack::pack_directory;
use strata_image::registry::{
    self, BlobOutcome, Credentials, NoProgress, PullOptions, PushOptions, RegistryError,
    RegistryOptions,
};
use strata_image::{
    Descriptor, Digest, ImageConfig, ImageIndex, ImageStore, Platform, RefTarget, Reference,
};
use strata_testkit::registry::{RegistryConfig, TestRegistry, require_registry};

/// Bytes that do not compress (xorshift), so layers keep their size.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A two-layer image: a small layer and one of ~`big` incompressible bytes.
fn build_image(store: &ImageStore, big: usize, seed: u64) -> RefTarget {
    let work = tempfile::tempdir().unwrap();
    let mut config = ImageConfig::for_host();
    config.config.cmd = Some(vec!["/hello".into()]);
    let mut layers = Vec::new();
    for (i, files) in [
        vec![("hello", b"hello from layer one\n".to_vec())],
        vec![("data/blob.bin", noise(big, seed))],
    ]
    .into_iter()
    .enumerate()
    {
        let dir = work.path().join(format!("layer{i}"));
        for (name, bytes) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let layer = pack_directory(&dir, store.content()).unwrap();
        config.rootfs.diff_ids.push(layer.diff_id.clone());
        config.history.push(History::default());
        layers.push(layer.descriptor);
    }
    store.write_image(&config, &layers).unwrap()
}

fn open_store(dir: &Path) -> ImageStore {
    ImageStore::open(dir.join("images")).unwrap()
}

fn reference(registry: &TestRegistry, name: &str) -> Reference {
    format!("{}/{name}", registry.host()).parse().unwrap()
}

fn push_options(chunk_size: u64) -> PushOptions {
    PushOptions {
        chunk_size,
        ..PushOptions::default()
    }
}

fn outcomes(blobs: &[(Digest, BlobOutcome)]) -> Vec<BlobOutcome> {
    blobs.iter().map(|(_, o)| o.clone()).collect()
}

#[tokio::test]
async fn a_pushed_image_pulls_back_identical_with_chunked_uploads() {
    if !require_registry("a_pushed_image_pulls_back_identical_with_chunked_uploads") {
        return;
    }
    let registry = TestRegistry::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let store = open_store(local.path());
    let target = build_image(&store, 200 * 1024, 1);
    let remote = reference(&registry, "strata/app:v1");

    // 64 KiB chunks: the big layer goes up in several PATCHes, the rest in one PUT.
    let pushed = registry::push(
        &store,
        &target,
        &remote,
        &push_options(64 * 1024),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(pushed.target, target);
    let kinds = outcomes(&pushed.blobs);
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert!(
        kinds
            .iter()
            .any(|o| matches!(o, BlobOutcome::UploadedInChunks(n) if *n >= 3)),
        "{kinds:?}"
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|o| **o == BlobOutcome::Uploaded)
            .count(),
        2
    );
    assert!(registry.count_requests("PATCH", "/v2/strata/app/blobs/uploads/") >= 3);

    // A second push finds every blob there.
    let again = registry::push(
        &store,
        &target,
        &remote,
        &push_options(64 * 1024),
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(
        outcomes(&again.blobs)
            .iter()
            .all(|o| *o == BlobOutcome::AlreadyExists)
    );

    // Pull into an empty store.
    let other = tempfile::tempdir().unwrap();
    let fresh = open_store(other.path());
    let report = registry::pull(&fresh, &remote, &PullOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.target, target);
    assert!(report.updated);
    assert_eq!(
        outcomes(&report.blobs),
        vec![BlobOutcome::Downloaded; 3],
        "config and both layers"
    );
    let original = store.load(&target).unwrap();
    let pulled = fresh.resolve(&remote.to_string()).unwrap();
    assert_eq!(pulled.digest(), &target.digest);
    assert_eq!(pulled.config_digest, original.config_digest);
    assert_eq!(pulled.manifest, original.manifest);
    for layer in &original.manifest.layers {
        assert_eq!(
            fresh.content().read(&layer.digest).unwrap(),
            store.content().read(&layer.digest).unwrap()
        );
    }

    // Pulling again downloads nothing.
    let second = registry::pull(&fresh, &remote, &PullOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert!(!second.updated);
    assert_eq!(second.bytes_downloaded, 0);
    assert_eq!(
        outcomes(&second.blobs),
        vec![BlobOutcome::AlreadyPresent; 3]
    );

    // By digest: the digest reference is what gets tagged.
    let by_digest: Reference = format!("{}@{}", remote.name(), target.digest)
        .parse()
        .unwrap();
    let third = tempfile::tempdir().unwrap();
    let third_store = open_store(third.path());
    let report = registry::pull(
        &third_store,
        &by_digest,
        &PullOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(report.target.digest, target.digest);
    let refs = third_store.references().unwrap();
    assert_eq!(
        refs.keys().collect::<Vec<_>>(),
        vec![&by_digest.to_string()]
    );

    // A digest the registry does not have.
    let wrong: Reference = format!("{}@{}", remote.name(), Digest::of(b"nothing"))
        .parse()
        .unwrap();
    let err = registry::pull(&third_store, &wrong, &PullOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("MANIFEST_UNKNOWN"), "{err}");
}

#[tokio::test]
async fn a_missing_tag_is_a_one_line_registry_error() {
    if !require_registry("a_missing_tag_is_a_one_line_registry_error") {
        return;
    }
    let registry = TestRegistry::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let store = open_store(local.path());
    let err = registry::pull(
        &store,
        &reference(&registry, "nope"),
        &PullOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "manifest unknown");
    assert!(matches!(err, RegistryError::Refused { status: 404, .. }));
    assert!(store.references().unwrap().is_empty());

    // Nothing listening: the error names the host.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone: Reference = format!("127.0.0.1:{port}/x:1").parse().unwrap();
    let err = registry::pull(&store, &gone, &PullOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), format!("cannot reach 127.0.0.1:{port}"));
}

#[tokio::test]
async fn blobs_the_registry_has_in_another_repository_are_mounted() {
    if !require_registry("blobs_the_registry_has_in_another_repository_are_mounted") {
        return;
    }
    let registry = TestRegistry::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let store = open_store(local.path());
    let target = build_image(&store, 10 * 1024, 2);
    let a = reference(&registry, "team/a:1");
    let b = reference(&registry, "team/b:1");
    store.tag(&a, &target).unwrap();
    registry::push(&store, &target, &a, &PushOptions::default(), &NoProgress)
        .await
        .unwrap();
    store.tag(&b, &target).unwrap();
    let report = registry::push(&store, &target, &b, &PushOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        outcomes(&report.blobs),
        vec![
            BlobOutcome::Mounted {
                from: "team/a".into()
            };
            3
        ]
    );
    assert_eq!(report.bytes_uploaded, 0);
    assert_eq!(
        registry.requests_with_status("POST /v2/team/b/blobs/uploads/?mount=", 201),
        3
    );
    assert_eq!(registry.count_requests("PUT", "/v2/team/b/blobs/"), 0);
    assert_eq!(registry.count_requests("PATCH", "/v2/team/b/blobs/"), 0);

    let other = tempfile::tempdir().unwrap();
    let fresh = open_store(other.path());
    let pulled = registry::pull(&fresh, &b, &PullOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(pulled.target, target);
}

#[tokio::test]
async fn a_corrupted_blob_fails_the_pull_and_leaves_nothing_of_it() {
    if !require_registry("a_corrupted_blob_fails_the_pull_and_leaves_nothing_of_it") {
        return;
    }
    let registry = TestRegistry::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let store = open_store(local.path());
    let target = build_image(&store, 20 * 1024, 3);
    let remote = reference(&registry, "strata/corrupt:1");
    registry::push(
        &store,
        &target,
        &remote,
        &PushOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    let image = store.load(&target).unwrap();
    let layer = &image.manifest.layers[1];
    let file = registry.blob_file(layer.digest.hex());
    let size = std::fs::metadata(&file).unwrap().len() as usize;
    std::fs::write(&file, noise(size, 99)).unwrap();

    let other = tempfile::tempdir().unwrap();
    let fresh = open_store(other.path());
    let err = registry::pull(&fresh, &remote, &PullOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    let chain = {
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    };
    assert!(
        chain.contains(&format!("blob {}", layer.digest))
            && chain.contains("does not match its digest"),
        "{chain}"
    );
    assert!(!fresh.content().contains(&layer.digest));
    assert!(
        !fresh.content().contains(&target.digest),
        "no manifest either"
    );
    assert!(fresh.references().unwrap().is_empty());
    let ingest = std::fs::read_dir(other.path().join("images/ingest")).unwrap();
    assert_eq!(ingest.count(), 0, "no partial file stays");
}

/// A TCP proxy in front of the registry that cuts the connection once, after
/// `cut_after` bytes from the registry, as a flaky network would.
fn cutting_proxy(upstream: String, cut_after: usize) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let armed = Arc::new(AtomicBool::new(true));
    let flag = armed.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&upstream) else {
                return;
            };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
                let _ = s_out.shutdown(std::net::Shutdown::Write);
            });
            let flag = flag.clone();
            let (mut s_in, mut c_out) = (server, client);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                let mut sent = 0;
                loop {
                    let n = match s_in.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if flag.load(Ordering::SeqCst) && sent + n > cut_after {
                        let _ = c_out.write_all(&buf[..cut_after - sent]);
                        flag.store(false, Ordering::SeqCst);
                        let _ = c_out.shutdown(std::net::Shutdown::Both);
                        let _ = s_in.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sent += n;
                }
                let _ = c_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, armed)
}

#[tokio::test]
async fn a_dropped_download_resumes_with_a_range_request() {
    if !require_registry("a_dropped_download_resumes_with_a_range_request") {
        return;
    }
    let registry = TestRegistry::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let store = open_store(local.path());
    let target = build_image(&store, 512 * 1024, 4);
    let remote = reference(&registry, "strata/flaky:1");
    registry::push(
        &store,
        &target,
        &remote,
        &PushOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    let total: u64 = store.load(&target).unwrap().size();

    let (port, armed) = cutting_proxy(registry.host(), 256 * 1024);
    let via_proxy: Reference = format!("127.0.0.1:{port}/strata/flaky:1").parse().unwrap();
    let other = tempfile::tempdir().unwrap();
    let fresh = open_store(other.path());
    let options = PullOptions {
        initial_backoff: std::time::Duration::from_millis(10),
        ..PullOptions::default()
    };
    let report = registry::pull(&fresh, &via_proxy, &options, &NoProgress)
        .await
        .unwrap();
    assert!(!armed.load(Ordering::SeqCst), "the proxy cut a connection");
    assert_eq!(report.retries, 1);
    assert_eq!(
        report.bytes_downloaded, total,
        "the retry resumed instead of starting over"
    );
    assert_eq!(report.target, target);
}

#[tokio::test]
async fn an_index_is_pushed_after_its_manifests_and_pulled_for_one_platform() {
    if !require_registry("an_index_is_pushed_after_its_manifests_and_pulled_for_one_platform") {
        return;
    }
    let registry = TestRegistry::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let store = open_store(local.path());
    let host = store.load(&build_image(&store, 4 * 1024, 5)).unwrap();
    let foreign_target = build_image(&store, 4 * 1024, 6);
    let foreign = store.load(&foreign_target).unwrap();
    let foreign_platform: Platform = if Platform::host().architecture == "arm64" {
        "linux/amd64".parse().unwrap()
    } else {
        "linux/arm64/v8".parse().unwrap()
    };
    let child = |image: &strata_image::Image, platform: Platform| Descriptor {
        platform: Some(platform),
        ..Descriptor {
            media_type: media_type::OCI_MANIFEST.into(),
            digest: image.manifest_digest.clone(),
            size: store.content().read(&image.manifest_digest).unwrap().len() as u64,
            platform: None,
            annotations: Default::default(),
            urls: vec![],
        }
    };
    let index = ImageIndex {
        schema_version: 2,
        media_type: Some(media_type::OCI_INDEX.into()),
        manifests: vec![
            child(&foreign, foreign_platform.clone()),
            child(&host, Platform::host()),
        ],
        annotations: Default::default(),
    };
    let bytes = serde_json::to_vec(&index).unwrap();
    let digest = store.content().put(&bytes).unwrap();
    let target = RefTarget {
        digest,
        media_type: media_type::OCI_INDEX.into(),
        size: bytes.len() as u64,
    };
    let remote = reference(&registry, "strata/multi:1");
    let pushed = registry::push(
        &store,
        &target,
        &remote,
        &PushOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(pushed.target, target);

    let other = tempfile::tempdir().unwrap();
    let fresh = open_store(other.path());
    let report = registry::pull(&fresh, &remote, &PullOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.target, target);
    assert_eq!(report.manifest_digest, host.manifest_digest);
    assert!(
        fresh.content().contains(&target.digest),
        "the index is stored"
    );
    assert!(fresh.content().contains(&host.manifest_digest));
    assert!(!fresh.content().contains(&foreign.manifest_digest));
    assert!(!fresh.content().contains(&foreign.config_digest));
    let image = fresh.resolve(&remote.to_string()).unwrap();
    assert_eq!(image.config_digest, host.config_digest);

    // --platform picks the other one.
    let third = tempfile::tempdir().unwrap();
    let third_store = open_store(third.path());
    let options = PullOptions {
        platform: foreign_platform,
        ..PullOptions::default()
    };
    let report = registry::pull(&third_store, &remote, &options, &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.manifest_digest, foreign.manifest_digest);
    assert!(third_store.content().contains(&foreign.config_digest));
    // The image loads as the platform that was pulled.
    let image = third_store.resolve(&remote.to_string()).unwrap();
    assert_eq!(image.config_digest, foreign.config_digest);
    assert_eq!(image.target, target);
    let _ = foreign_target;
}

#[tokio::test]
async fn basic_auth_is_required_checked_at_login_and_used_when_given() {
    if !require_registry("basic_auth_is_required_checked_at_login_and_used_when_given") {
        return;
    }
    let registry = TestRegistry::start_with(&RegistryConfig {
        user: Some(("alice".into(), "wonderland".into())),
        tls: false,
        token: false,
    })
    .unwrap();
    let local = tempfile::tempdir().unwrap();
    let store = open_store(local.path());
    let target = build_image(&store, 1024, 7);
    let remote = reference(&registry, "private/app:1");

    let err = registry::push(
        &store,
        &target,
        &remote,
        &PushOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "authentication required (run strata login {})",
            registry.host()
        )
    );

    let wrong = Credentials {
        username: "alice".into(),
        password: "looking-glass".into(),
    };
    let err = registry::login(&registry.host(), &wrong, &RegistryOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::LoginFailed { .. }), "{err}");

    let right = Credentials {
        username: "alice".into(),
        password: "wonderland".into(),
    };
    registry::login(&registry.host(), &right, &RegistryOptions::default())
        .await
        .unwrap();
    let options = PushOptions {
        credentials: Some(right.clone()),
        ..PushOptions::default()
    };
    registry::push(&store, &target, &remote, &options, &NoProgress)
        .await
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let fresh = open_store(other.path());
    let options = PullOptions {
        credentials: Some(right),
        ..PullOptions::default()
    };
    let report = registry::pull(&fresh, &remote, &options, &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.target, target);
}

#[tokio::test]
async fn https_registries_need_their_ca_trusted() {
    if !require_registry("https_registries_need_their_ca_trusted") {
        return;
    }
    let registry = TestRegistry::start_with(&RegistryConfig {
        user: Some(("bob".into(), "builder".into())),
        tls: true,
        token: false,
    })
    .unwrap();
    let bob = Credentials {
        username: "bob".into(),
        password: "builder".into(),
    };
    let err = registry::login(&registry.host(), &bob, &RegistryOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Unreachable { .. }),
        "an unknown CA is refused: {err:?}"
    );
    let trusted = RegistryOptions {
        extra_roots: vec![registry.ca_cert()],
        ..RegistryOptions::default()
    };
    registry::login(&registry.host(), &bob, &trusted)
        .await
        .unwrap();
    let listed = RegistryOptions {
        insecure: vec![registry.host()],
        ..RegistryOptions::default()
    };
    registry::login(&registry.host(), &bob, &listed)
        .await
        .unwrap();

    let local = tempfile::tempdir().unwrap();
    let store = open_store(local.path());
    let target = build_image(&store, 1024, 8);
    let remote = reference(&registry, "tls/app:1");
    let options = PushOptions {
        registry: trusted.clone(),
        credentials: Some(bob.clone()),
        ..PushOptions::default()
    };
    registry::push(&store, &target, &remote, &options, &NoProgress)
        .await
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let fresh = open_store(other.path());
    let options = PullOptions {
        registry: trusted,
        credentials: Some(bob),
        ..PullOptions::default()
    };
    assert_eq!(
        registry::pull(&fresh, &remote, &options, &NoProgress)
            .await
            .unwrap()
            .target,
        target
    );
}

#[tokio::test]
async fn bearer_tokens_are_fetched_per_scope_and_cached() {
    if !require_registry("bearer_tokens_are_fetched_per_scope_and_cached") {
        return;
    }
    let registry = TestRegistry::start_with(&RegistryConfig {
        user: Some(("dave".into(), "tokens".into())),
        tls: false,
        token: true,
    })
    .unwrap();
    let tokens = registry.token_server().unwrap();
    let local = tempfile::tempdir().unwrap();
    let store = open_store(local.path());
    let target = build_image(&store, 2048, 9);
    let a = reference(&registry, "tok/a:1");

    // Anonymous callers get a token without access: the registry still says 401.
    let err = registry::push(&store, &target, &a, &PushOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::AuthRequired { .. }), "{err}");

    let wrong = Credentials {
        username: "dave".into(),
        password: "guess".into(),
    };
    let err = registry::login(&registry.host(), &wrong, &RegistryOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::LoginFailed { .. }), "{err}");
    let dave = Credentials {
        username: "dave".into(),
        password: "tokens".into(),
    };
    registry::login(&registry.host(), &dave, &RegistryOptions::default())
        .await
        .unwrap();

    let before = tokens.requests();
    let options = PushOptions {
        credentials: Some(dave.clone()),
        ..PushOptions::default()
    };
    store.tag(&a, &target).unwrap();
    registry::push(&store, &target, &a, &options, &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        tokens.requests() - before,
        1,
        "one token for repository:tok/a:pull,push, reused by every request"
    );

    // A mount needs pull on the source too: a token for that scope set.
    let b = reference(&registry, "tok/b:1");
    store.tag(&b, &target).unwrap();
    let report = registry::push(&store, &target, &b, &options, &NoProgress)
        .await
        .unwrap();
    assert!(
        outcomes(&report.blobs)
            .iter()
            .all(|o| matches!(o, BlobOutcome::Mounted { .. })),
        "{:?}",
        report.blobs
    );

    let other = tempfile::tempdir().unwrap();
    let fresh = open_store(other.path());
    let options = PullOptions {
        credentials: Some(dave),
        ..PullOptions::default()
    };
    let pulled = registry::pull(&fresh, &b, &options, &NoProgress)
        .await
        .unwrap();
    assert_eq!(pulled.target, target);
}

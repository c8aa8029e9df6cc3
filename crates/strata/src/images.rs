//! `strata image …`: listing, inspecting, tagging, removing and importing images in
//! the image store under `<data-dir>/images`.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::json;
use strata_image::archive;
use strata_image::import::import_rootfs;
use strata_image::{Digest, Image, ImageStore, Reference};

use crate::cli::{ImageCommand, ImageLsArgs, ImageRmArgs};
use crate::output;
use strata_agent::containers::Store;

/// Opens the image store of `data_dir`.
pub fn open(data_dir: &Path) -> Result<ImageStore> {
    let root = data_dir.join("images");
    ImageStore::open(&root)
        .with_context(|| format!("cannot open the image store {}", root.display()))
}

/// Runs one `strata image` command.
pub fn dispatch(data_dir: &Path, command: ImageCommand) -> Result<u8> {
    let images = open(data_dir)?;
    match command {
        ImageCommand::Ls(args) => ls(&images, &args),
        ImageCommand::Inspect { images: names } => inspect(&images, &names),
        ImageCommand::Tag { source, target } => {
            let image = images.resolve(&source)?;
            let target: Reference = target.parse()?;
            images.tag(&target, &image.target)?;
            Ok(0)
        }
        ImageCommand::Rm(args) => rm(data_dir, &images, &args),
        ImageCommand::Prune { all } => prune(data_dir, &images, all),
        ImageCommand::Import { file, reference } => {
            let reference = reference.map(|r| r.parse::<Reference>()).transpose()?;
            let imported = if file.as_os_str() == "-" {
                archive::import(&images, std::io::stdin().lock(), reference.as_ref())
            } else {
                let input = std::fs::File::open(&file)
                    .with_context(|| format!("cannot open {}", file.display()))?;
                let size = input.metadata().map(|m| m.len()).unwrap_or(0);
                let input = crate::progress::ReadProgress::new(input, size, "Importing");
                archive::import(&images, input, reference.as_ref())
            }
            .with_context(|| format!("cannot import {}", file.display()))?;
            for image in imported {
                if image.references.is_empty() {
                    println!("Loaded image: {}", image.target.digest);
                }
                for name in image.references {
                    println!("Loaded image: {name}");
                }
            }
            Ok(0)
        }
        ImageCommand::Export { reference, file } => {
            let image = images.resolve(&reference)?;
            let name = image
                .references
                .first()
                .context("the image has no name to export it under")?
                .parse::<Reference>()?;
            if file.as_os_str() == "-" {
                let stdout = std::io::stdout().lock();
                archive::export(&images, &[name], std::io::BufWriter::new(stdout))?;
            } else {
                // Written beside the target and renamed, so a failed export leaves no
                // half archive under the real name.
                let tmp = file.with_extension("partial");
                let out = std::fs::File::create(&tmp)
                    .with_context(|| format!("cannot create {}", tmp.display()))?;
                let written = archive::export(&images, &[name], std::io::BufWriter::new(out))
                    .map_err(anyhow::Error::from)
                    .and_then(|()| std::fs::rename(&tmp, &file).map_err(Into::into));
                if let Err(err) = written {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(err.context(format!("cannot export to {}", file.display())));
                }
            }
            Ok(0)
        }
        ImageCommand::Unpack { image, dir } => {
            let resolved = images.resolve(&image)?;
            strata_image::rootfs::unpack_image(&images, &resolved, &dir)
                .with_context(|| format!("cannot unpack {image} into {}", dir.display()))?;
            Ok(0)
        }
        ImageCommand::Build(args) => crate::build::run(data_dir, &images, &args),
        ImageCommand::Pull(args) => crate::registry::pull(data_dir, &args),
        ImageCommand::Push(args) => crate::registry::push(data_dir, &args),
        ImageCommand::ImportRootfs {
            change,
            dir,
            reference,
        } => {
            let reference: Reference = reference.parse()?;
            let image = import_rootfs(&images, &dir, &reference, &change)?;
            println!("{}", image.id());
            Ok(0)
        }
    }
}

/// Image digests (manifest or index) used by containers: roots for garbage collection,
/// and images `rm` refuses to remove without `--force`.
fn images_in_use(data_dir: &Path) -> Result<BTreeSet<Digest>> {
    let containers = Store::open(data_dir)?;
    Ok(containers
        .list()?
        .into_iter()
        .filter_map(|e| e.meta.image.map(|i| i.digest))
        .collect())
}

fn short_id(digest: &Digest) -> String {
    digest.hex()[..12].to_string()
}

fn ls(images: &ImageStore, args: &ImageLsArgs) -> Result<u8> {
    let list = images.list()?;
    if args.quiet {
        let ids: BTreeSet<String> = list.iter().map(|i| short_id(i.id())).collect();
        for id in ids {
            println!("{id}");
        }
        return Ok(0);
    }
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    for image in &list {
        let created = image
            .config
            .created
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map(|t| {
                format!(
                    "{} ago",
                    output::human_duration((now - t.with_timezone(&chrono::Utc)).num_seconds())
                )
            })
            .unwrap_or_else(|| "N/A".to_string());
        for name in &image.references {
            let reference: Reference = name.parse()?;
            let mut row = vec![
                reference.name(),
                reference.tag().unwrap_or("<none>").to_string(),
            ];
            if args.digests {
                row.push(image.digest().to_string());
            }
            row.extend([
                short_id(image.id()),
                created.clone(),
                output::human_size(image.size()),
            ]);
            rows.push(row);
        }
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if args.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    output::print_table(&header, &rows);
    Ok(0)
}

fn inspect_json(image: &Image) -> serde_json::Value {
    let repo_digests: BTreeSet<String> = image
        .references
        .iter()
        .filter_map(|r| r.parse::<Reference>().ok())
        .map(|r| format!("{}@{}", r.name(), image.digest()))
        .collect();
    json!({
        "Id": image.id().to_string(),
        "RepoTags": image.references,
        "RepoDigests": repo_digests,
        "Created": image.config.created,
        "Author": image.config.author,
        "Architecture": image.config.architecture,
        "Os": image.config.os,
        "Config": image.config.config,
        "RootFS": {"Type": image.config.rootfs.kind, "Layers": image.config.rootfs.diff_ids},
        "Size": image.size(),
        "Manifest": image.manifest_digest.to_string(),
    })
}

fn inspect(images: &ImageStore, names: &[String]) -> Result<u8> {
    let mut out = Vec::new();
    let mut failed = false;
    for name in names {
        match images.resolve(name) {
            Ok(image) => out.push(inspect_json(&image)),
            Err(err) => {
                output::print_error(&anyhow::Error::new(err));
                failed = true;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if failed { 1 } else { 0 })
}

fn rm(data_dir: &Path, images: &ImageStore, args: &ImageRmArgs) -> Result<u8> {
    let in_use = images_in_use(data_dir)?;
    let mut failed = false;
    for name in &args.images {
        if let Err(err) = rm_one(images, name, args.force, &in_use) {
            output::print_error(&err);
            failed = true;
        }
    }
    let roots: Vec<Digest> = in_use.into_iter().collect();
    let report = images.collect_garbage(&roots)?;
    if report.blobs > 0 {
        tracing::debug!(
            blobs = report.blobs,
            bytes = report.bytes,
            "removed unreferenced blobs"
        );
    }
    Ok(if failed { 1 } else { 0 })
}

fn rm_one(images: &ImageStore, name: &str, force: bool, in_use: &BTreeSet<Digest>) -> Result<()> {
    let image = images.resolve(name)?;
    // A name that is a reference removes that tag; an ID removes every tag of it.
    let by_reference = name
        .parse::<Reference>()
        .ok()
        .filter(|r| image.references.contains(&r.to_string()));
    let untag: Vec<String> = match by_reference {
        Some(r) => vec![r.to_string()],
        None => {
            if image.references.len() > 1 && !force {
                bail!(
                    "image {} is tagged {} times ({}); remove tags one by one or use --force",
                    short_id(image.id()),
                    image.references.len(),
                    image.references.join(", ")
                );
            }
            image.references.clone()
        }
    };
    let last_reference = untag.len() == image.references.len();
    if last_reference && in_use.contains(image.digest()) && !force {
        bail!("image {name} is used by a container; remove the container first or use --force");
    }
    for r in &untag {
        images.untag(&r.parse()?)?;
        println!("Untagged: {r}");
    }
    if last_reference && !in_use.contains(image.digest()) {
        println!("Deleted: {}", image.id());
    }
    Ok(())
}

fn prune(data_dir: &Path, images: &ImageStore, all: bool) -> Result<u8> {
    let in_use = images_in_use(data_dir)?;
    if all {
        for image in images.list()? {
            if in_use.contains(image.digest()) {
                continue;
            }
            for r in &image.references {
                images.untag(&r.parse()?)?;
                println!("Untagged: {r}");
            }
        }
    }
    let roots: Vec<Digest> = in_use.into_iter().collect();
    let report = images.collect_garbage(&roots)?;
    println!(
        "Deleted {} blobs and {} snapshots. Total reclaimed space: {}",
        report.blobs,
        report.snapshots,
        output::human_size(report.bytes)
    );
    Ok(0)
}

//! `petset image import|ls|rm`: the node-wide image store from the command line.

use anyhow::Context;
use std::path::PathBuf;

use petset_runtime::images::{self, ImageStore};

use crate::cli::{ImageAction, ImageArgs};

pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let root = image_store_root(args.image_store);
    let store = ImageStore::open(&root)
        .with_context(|| format!("opening the image store {}", root.display()))?;
    match args.action {
        ImageAction::Import { file, names } => {
            for name in store.import(&file, &names)? {
                println!("imported {name}");
            }
        }
        ImageAction::Ls => {
            let images = store.list()?;
            let width = images.keys().map(String::len).max().unwrap_or(0).max(5);
            println!("{:<width$}  {:<19}  SIZE", "IMAGE", "IMAGE ID");
            for (name, record) in images {
                let id = record.id.trim_start_matches("sha256:");
                println!(
                    "{name:<width$}  {:<19}  {}",
                    &id[..id.len().min(12)],
                    human_size(record.size)
                );
            }
        }
        ImageAction::Rm { names } => {
            anyhow::ensure!(!names.is_empty(), "name at least one image to remove");
            for name in names {
                let record = store.remove(&name)?;
                println!("removed {name} ({})", record.id);
            }
        }
    }
    Ok(())
}

/// The image store: the flag, else `PETSET_IMAGE_STORE`, else `/var/lib/petset/images`.
pub fn image_store_root(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os(images::ROOT_VARIABLE).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(images::DEFAULT_ROOT))
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

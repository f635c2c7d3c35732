//! Test images and the checks that real containers can run here.

use std::fs;
use std::path::Path;

use crate::{on_path, skip};

const BUSYBOX: &str = "/bin/busybox";

/// Whether this machine can run real containers (root, runc, Debian's busybox-static for the
/// test image); when not, reports the skip (a failure under CI=true) and returns false.
pub fn can_run_containers(test: &str) -> bool {
    let root = fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    let reason = if !root {
        "needs root"
    } else if !on_path("runc") {
        "needs runc"
    } else if !Path::new("/var/lib/dpkg/info/busybox-static.list").exists() {
        "needs Debian's busybox-static"
    } else {
        return true;
    };
    skip(test, reason);
    false
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(size);
    header
}

/// Writes, in `dir`, a `docker save`-style image named `name`: one layer with Debian's static
/// busybox and links for the applets tests use.
pub fn busybox_image(dir: &Path, name: &str) {
    image_with_files(dir, name, &[]);
}

/// Whether [`etcd_image`] can be built here (Debian's etcd-server and etcd-client installed);
/// when not, reports the skip (a failure under CI=true) and returns false.
pub fn can_build_etcd_image(test: &str) -> bool {
    for (program, package) in [
        ("/usr/bin/etcd", "etcd-server"),
        ("/usr/bin/etcdctl", "etcd-client"),
    ] {
        if !Path::new(program).exists() {
            skip(test, &format!("needs Debian's {package}"));
            return false;
        }
    }
    true
}

/// Like [`busybox_image`], plus Debian's etcd and etcdctl (`/usr/bin/etcd` from etcd-server,
/// `/usr/bin/etcdctl` from etcd-client) and the shared libraries they load, so a test can run
/// an etcd cluster in pods (examples/etcd.yaml, whose members use etcdctl to rejoin).
pub fn etcd_image(dir: &Path, name: &str) {
    image_with_programs(dir, name, &["/usr/bin/etcd", "/usr/bin/etcdctl"]);
}

/// Like [`busybox_image`], plus `programs` (absolute paths on this machine, kept at the same
/// paths in the image) and the shared libraries they load: an image that runs a program built
/// here, such as petset itself as an in-cluster client.
pub fn image_with_programs(dir: &Path, name: &str, programs: &[&str]) {
    let mut files = Vec::new();
    for program in programs {
        files.push((
            program.trim_start_matches('/').to_string(),
            program.to_string(),
        ));
        files.extend(libraries_of(program));
    }
    files.sort();
    files.dedup();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    image_with_files(dir, name, &files);
}

/// The shared libraries `program` loads, as ldd lists them: (path in the image, file here).
fn libraries_of(program: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let ldd = std::process::Command::new("ldd")
        .arg(program)
        .output()
        .unwrap_or_else(|e| panic!("ldd {program}: {e}"));
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            let real = fs::canonicalize(path).expect("library");
            files.push((
                path.trim_start_matches('/').to_string(),
                real.to_string_lossy().into_owned(),
            ));
        }
    }
    files
}

/// The busybox image with `files` (path in the image, file on this machine) added.
fn image_with_files(dir: &Path, name: &str, files: &[(&str, &str)]) {
    let mut layer = tar::Builder::new(Vec::new());
    let mut directories: Vec<String> = ["bin/", "tmp/", "data/", "etc/"]
        .iter()
        .map(|d| d.to_string())
        .collect();
    for (inside, _) in files {
        let mut parent = Path::new(inside).parent();
        while let Some(directory) = parent.filter(|p| !p.as_os_str().is_empty()) {
            directories.push(format!("{}/", directory.display()));
            parent = directory.parent();
        }
    }
    directories.sort();
    directories.dedup();
    for directory in &directories {
        layer
            .append_data(
                &mut header(tar::EntryType::Directory, 0o755, 0),
                directory,
                std::io::empty(),
            )
            .expect("dir");
    }
    let mut add = |inside: &str, from: &str| {
        let binary = fs::read(from).unwrap_or_else(|e| panic!("{from}: {e}"));
        layer
            .append_data(
                &mut header(tar::EntryType::Regular, 0o755, binary.len() as u64),
                inside,
                binary.as_slice(),
            )
            .expect("file");
    };
    add("bin/busybox", BUSYBOX);
    for (inside, from) in files {
        add(inside, from);
    }
    for applet in [
        "sh", "hostname", "cat", "echo", "sleep", "ls", "env", "wget", "httpd", "mkdir", "rm",
        "nslookup", "tar",
    ] {
        layer
            .append_link(
                &mut header(tar::EntryType::Symlink, 0o777, 0),
                format!("bin/{applet}"),
                "busybox",
            )
            .expect("link");
    }
    fs::create_dir_all(dir).expect("image dir");
    fs::write(dir.join("layer.tar"), layer.into_inner().expect("layer")).expect("layer.tar");
    fs::write(
        dir.join("config.json"),
        br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}"#,
    )
    .expect("config");
    fs::write(
        dir.join("manifest.json"),
        format!(r#"[{{"Config":"config.json","RepoTags":["{name}"],"Layers":["layer.tar"]}}]"#),
    )
    .expect("manifest");
}

/// The script users run to fill the node's image store with the tutorials' images.
const BUILD_IMAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/build-images.sh");

/// Whether `scripts/build-images.sh` can run here without installing anything: real
/// containers (see [`can_run_containers`]) and Debian's curl, which the nginx stand-ins carry.
/// The script would install a missing package with apt; a test must not reach the network,
/// so it reports the skip instead (a failure under CI=true) and returns false.
pub fn can_build_tutorial_images(test: &str) -> bool {
    if !can_run_containers(test) {
        return false;
    }
    if !Path::new("/var/lib/dpkg/info/curl.list").exists() {
        skip(test, "needs Debian's curl");
        return false;
    }
    true
}

/// Runs the real `scripts/build-images.sh --image-store STORE` with `petset` as the binary it
/// imports with, so a test gets the tutorials' images under every name a user's store has.
pub fn build_tutorial_images(petset: &Path, store: &Path) {
    let output = std::process::Command::new("bash")
        .arg(BUILD_IMAGES)
        .arg("--image-store")
        .arg(store)
        .env("PETSET", petset)
        .output()
        .expect("bash scripts/build-images.sh");
    assert!(
        output.status.success(),
        "scripts/build-images.sh failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

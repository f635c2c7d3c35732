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
    let mut layer = tar::Builder::new(Vec::new());
    for directory in ["bin/", "tmp/", "data/", "etc/"] {
        layer
            .append_data(
                &mut header(tar::EntryType::Directory, 0o755, 0),
                directory,
                std::io::empty(),
            )
            .expect("dir");
    }
    let binary = fs::read(BUSYBOX).expect("busybox");
    layer
        .append_data(
            &mut header(tar::EntryType::Regular, 0o755, binary.len() as u64),
            "bin/busybox",
            binary.as_slice(),
        )
        .expect("busybox");
    for applet in [
        "sh", "hostname", "cat", "echo", "sleep", "ls", "env", "wget", "httpd", "mkdir", "rm",
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
        br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[]}}"#,
    )
    .expect("config");
    fs::write(
        dir.join("manifest.json"),
        format!(r#"[{{"Config":"config.json","RepoTags":["{name}"],"Layers":["layer.tar"]}}]"#),
    )
    .expect("manifest");
}

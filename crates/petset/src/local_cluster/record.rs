//! `DIR/cluster.json`: what a `cluster up` of DIR has made on this machine, written before it
//! makes it, so that whatever a crash leaves is found again by the next `cluster up` or by
//! `cluster down`; and `DIR/cluster.lock`, held while one `cluster up` runs on DIR.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::NodeRuntime;
use super::layout::Layout;

const RECORD_FILE: &str = "cluster.json";
const LOCK_FILE: &str = "cluster.lock";

/// A process a cluster started, told apart from a later process that got the same pid by its
/// start time (`/proc/<pid>/stat`, field 22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordedProcess {
    pub role: String,
    pub pid: u32,
    pub start_time: u64,
}

/// What is recorded: the layout (from which every name follows) and the processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub layout: Layout,
    pub processes: Vec<RecordedProcess>,
}

impl Record {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(RECORD_FILE)
    }

    /// The record of DIR, if a cluster up of DIR left one.
    pub fn read(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        Self::from_json(&value)
            .map(Some)
            .with_context(|| format!("reading {}", path.display()))
    }

    /// Writes the record (a new file renamed over the old one: a crash leaves either).
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(dir);
        let temporary = dir.join(format!("{RECORD_FILE}.new"));
        let text = serde_json::to_string_pretty(&self.to_json())?;
        std::fs::write(&temporary, text)
            .and_then(|()| File::open(&temporary)?.sync_all())
            .and_then(|()| std::fs::rename(&temporary, &path))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Forgets the record once everything in it is gone.
    pub fn remove(dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(dir);
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(error).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    fn to_json(&self) -> Value {
        let layout = &self.layout;
        json!({
            "id": layout.id,
            "name": layout.name,
            "runtime": layout.runtime.flag(),
            "nodes": layout.nodes,
            "apiPort": layout.api_port,
            "servers": layout.servers,
            "subnet": layout.subnet.map(|s| s.to_string()),
            // The names are derived from the fields above; they are written out for the
            // person reading this file after a crash.
            "bridge": layout.bridge(),
            "namespaces": layout.all_nodes().filter_map(|n| n.namespace).collect::<Vec<_>>(),
            "veths": layout.all_nodes().filter_map(|n| n.veth).collect::<Vec<_>>(),
            "processes": self.processes.iter().map(|p| json!({
                "role": p.role, "pid": p.pid, "startTime": p.start_time,
            })).collect::<Vec<_>>(),
        })
    }

    fn from_json(value: &Value) -> anyhow::Result<Self> {
        let text = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .with_context(|| format!("missing {key:?}"))
        };
        let number = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_u64)
                .with_context(|| format!("missing {key:?}"))
        };
        let id = text("id")?;
        if id.len() != 6 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("the id {id:?} is not six hex digits");
        }
        let runtime = NodeRuntime::from_flag(text("runtime")?)?;
        let subnet = match value.get("subnet").and_then(Value::as_str) {
            Some(subnet) => Some(petset_runtime::network::Cidr::from_str(subnet).map_err(
                |error| anyhow::anyhow!("the subnet {subnet:?} is not a network: {error}"),
            )?),
            None => None,
        };
        let nodes = u32::try_from(number("nodes")?).context("too many nodes")?;
        if nodes > super::layout::MAX_NODES {
            bail!("{nodes} nodes is more than a local cluster has");
        }
        let processes = value
            .get("processes")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|p| {
                        Some(RecordedProcess {
                            role: p.get("role")?.as_str()?.to_string(),
                            pid: u32::try_from(p.get("pid")?.as_u64()?).ok()?,
                            start_time: p.get("startTime")?.as_u64()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            layout: Layout {
                id: id.to_string(),
                name: text("name")?.to_string(),
                runtime,
                nodes,
                api_port: u16::try_from(number("apiPort")?).context("the API port")?,
                // Records from before several servers name none: one.
                servers: match value.get("servers").and_then(Value::as_u64) {
                    None => 1,
                    Some(servers) => u32::try_from(servers)
                        .ok()
                        .filter(|s| (1..=super::layout::MAX_SERVERS).contains(s))
                        .with_context(|| format!("{servers} servers is not a local cluster's"))?,
                },
                subnet,
            },
            processes,
        })
    }
}

/// DIR, held by one `cluster up` (or `cluster down`) for as long as this value lives.
pub(crate) struct ClusterLock {
    _file: File,
}

impl ClusterLock {
    /// Takes DIR's lock, or says which process holds it.
    pub fn take(dir: &Path) -> anyhow::Result<Self> {
        let file = crate::datadir::take_lock(&dir.join(LOCK_FILE), |holder| {
            anyhow::anyhow!(
                "{} is in use by another `petset cluster up` (pid {holder}); stop it (Ctrl-C) or pass another --data-dir",
                dir.display()
            )
        })?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(Record::read(dir.path()).expect("read"), None);
        let record = Record {
            layout: Layout {
                id: "0a1b2c".into(),
                name: "petset".into(),
                runtime: NodeRuntime::Runc,
                nodes: 2,
                api_port: 7443,
                servers: 3,
                subnet: Some("10.250.3.0/24".parse().expect("cidr")),
            },
            processes: vec![RecordedProcess {
                role: "server".into(),
                pid: 42,
                start_time: 7,
            }],
        };
        record.write(dir.path()).expect("write");
        assert_eq!(Record::read(dir.path()).expect("read"), Some(record));
        let text = std::fs::read_to_string(Record::path(dir.path())).expect("text");
        assert!(text.contains("\"pstc-0a1b2c-n2\""), "{text}");
        Record::remove(dir.path()).expect("remove");
        assert_eq!(Record::read(dir.path()).expect("read"), None);
    }

    #[test]
    fn a_damaged_record_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            Record::path(dir.path()),
            r#"{"id": "../../x", "runtime": "runc"}"#,
        )
        .expect("write");
        let error = format!("{:#}", Record::read(dir.path()).expect_err("refused"));
        assert!(error.contains("cluster.json"), "{error}");
        assert!(error.contains("six hex digits"), "{error}");
    }

    #[test]
    fn a_second_lock_on_a_directory_says_who_holds_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = ClusterLock::take(dir.path()).expect("first");
        let Err(error) = ClusterLock::take(dir.path()) else {
            panic!("a second lock must fail");
        };
        let message = error.to_string();
        assert!(
            message.contains("in use by another `petset cluster up`"),
            "{message}"
        );
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(first);
        ClusterLock::take(dir.path()).expect("free again");
    }
}

//! The byte layout of values and events in the embedded store's file.
//!
//! Little-endian, length-prefixed, versioned by the table names in `persist.rs`. Decoding never
//! panics: a short or inconsistent record is reported as damage to the file.

use std::sync::Arc;

use bytes::Bytes;

use crate::{Event, EventKind, KeyValue, Revision};

const KIND_CREATED: u8 = 1;
const KIND_UPDATED: u8 = 2;
const KIND_DELETED: u8 = 3;
const HAS_VALUE: u8 = 1;
const HAS_PREV: u8 = 2;

/// A value row: create revision, mod revision, then the value bytes.
pub(crate) fn encode_value(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

pub(crate) fn decode_value(key: &str, bytes: &[u8]) -> Result<KeyValue, String> {
    let mut reader = Reader(bytes);
    let create_revision = reader.i64()?;
    let mod_revision = reader.i64()?;
    Ok(KeyValue {
        key: Arc::from(key),
        value: Bytes::copy_from_slice(reader.0),
        create_revision,
        mod_revision,
    })
}

/// A history row: kind, which values follow, the key, then the new and previous values.
pub(crate) fn encode_event(event: &Event) -> Vec<u8> {
    let size = |kv: &Option<KeyValue>| kv.as_ref().map_or(0, |kv| 20 + kv.value.len());
    let mut out = Vec::with_capacity(6 + event.key.len() + size(&event.value) + size(&event.prev));
    out.push(match event.kind {
        EventKind::Created => KIND_CREATED,
        EventKind::Updated => KIND_UPDATED,
        EventKind::Deleted => KIND_DELETED,
    });
    let flags = if event.value.is_some() { HAS_VALUE } else { 0 }
        | if event.prev.is_some() { HAS_PREV } else { 0 };
    out.push(flags);
    put_bytes(&mut out, event.key.as_bytes());
    for kv in [&event.value, &event.prev].into_iter().flatten() {
        out.extend_from_slice(&kv.create_revision.to_le_bytes());
        out.extend_from_slice(&kv.mod_revision.to_le_bytes());
        put_bytes(&mut out, &kv.value);
    }
    out
}

pub(crate) fn decode_event(revision: Revision, bytes: &[u8]) -> Result<Event, String> {
    let mut reader = Reader(bytes);
    let kind = match reader.u8()? {
        KIND_CREATED => EventKind::Created,
        KIND_UPDATED => EventKind::Updated,
        KIND_DELETED => EventKind::Deleted,
        other => return Err(format!("unknown event kind {other}")),
    };
    let flags = reader.u8()?;
    let key: Arc<str> = std::str::from_utf8(reader.bytes()?)
        .map_err(|_| "key is not UTF-8".to_string())?
        .into();
    let mut read_kv = |present: bool| -> Result<Option<KeyValue>, String> {
        if !present {
            return Ok(None);
        }
        let create_revision = reader.i64()?;
        let mod_revision = reader.i64()?;
        let value = Bytes::copy_from_slice(reader.bytes()?);
        Ok(Some(KeyValue {
            key: key.clone(),
            value,
            create_revision,
            mod_revision,
        }))
    };
    let value = read_kv(flags & HAS_VALUE != 0)?;
    let prev = read_kv(flags & HAS_PREV != 0)?;
    let consistent = match kind {
        EventKind::Created => value.is_some() && prev.is_none(),
        EventKind::Updated => value.is_some() && prev.is_some(),
        EventKind::Deleted => value.is_none() && prev.is_some(),
    };
    if !consistent || !reader.0.is_empty() {
        return Err(format!("event at revision {revision} is malformed"));
    }
    Ok(Event {
        revision,
        kind,
        key,
        value,
        prev,
    })
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Values are bounded far below 4 GiB by the API server's request limit.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "record is truncated: needs {n} more bytes, has {}",
                self.0.len()
            ));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Result<i64, String> {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(buf))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let mut buf = [0u8; 4];
        buf.copy_from_slice(self.take(4)?);
        self.take(u32::from_le_bytes(buf) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(value: &'static [u8], create: Revision, modified: Revision) -> KeyValue {
        KeyValue {
            key: Arc::from("/k"),
            value: Bytes::from_static(value),
            create_revision: create,
            mod_revision: modified,
        }
    }

    #[test]
    fn events_round_trip() {
        for event in [
            Event {
                revision: 5,
                kind: EventKind::Updated,
                key: Arc::from("/k"),
                value: Some(kv(b"new", 2, 5)),
                prev: Some(kv(b"old", 2, 2)),
            },
            Event {
                revision: 6,
                kind: EventKind::Deleted,
                key: Arc::from("/k"),
                value: None,
                prev: Some(kv(b"new", 2, 5)),
            },
        ] {
            let bytes = encode_event(&event);
            assert_eq!(decode_event(event.revision, &bytes), Ok(event));
        }
    }

    #[test]
    fn a_truncated_event_is_an_error_not_a_panic() {
        let event = Event {
            revision: 2,
            kind: EventKind::Created,
            key: Arc::from("/k"),
            value: Some(kv(b"value", 2, 2)),
            prev: None,
        };
        let bytes = encode_event(&event);
        for len in 0..bytes.len() {
            assert!(
                decode_event(2, &bytes[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn values_round_trip() {
        let value = kv(b"payload", 3, 9);
        assert_eq!(decode_value("/k", &encode_value(&value)), Ok(value));
        assert!(decode_value("/k", b"short").is_err());
    }
}

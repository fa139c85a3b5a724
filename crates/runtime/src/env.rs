//! A small per-component key-value environment that outlives handler invocations
//! and restarts of the component (not of the process).

use std::collections::BTreeMap;

use bytes::Bytes;

/// The environment would exceed its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "component environment full: {entries} entries / {bytes} bytes (limits {entries_max} / {bytes_max}); nothing was stored"
)]
pub struct EnvFull {
    /// Entries now.
    pub entries: usize,
    /// Bytes now (keys plus values).
    pub bytes: usize,
    /// The entry limit.
    pub entries_max: usize,
    /// The byte limit.
    pub bytes_max: usize,
}

/// Keys to bytes, bounded in entries and bytes. State kept here survives a
/// restart after a panic; state in the component's own fields does not.
#[derive(Debug, Clone)]
pub struct Env {
    entries: BTreeMap<String, Bytes>,
    bytes: usize,
    entries_max: usize,
    bytes_max: usize,
}

impl Env {
    pub(crate) fn new(entries_max: usize, bytes_max: usize) -> Env {
        Env {
            entries: BTreeMap::new(),
            bytes: 0,
            entries_max,
            bytes_max,
        }
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Bytes> {
        self.entries.get(key)
    }

    /// Stores `value` under `key`, replacing any old value.
    pub fn put(&mut self, key: &str, value: impl Into<Bytes>) -> Result<(), EnvFull> {
        let value = value.into();
        let old = self.entries.get(key).map(|v| key.len() + v.len());
        let new_bytes = self.bytes - old.unwrap_or(0) + key.len() + value.len();
        let new_entries = self.entries.len() + usize::from(old.is_none());
        if new_bytes > self.bytes_max || new_entries > self.entries_max {
            return Err(EnvFull {
                entries: self.entries.len(),
                bytes: self.bytes,
                entries_max: self.entries_max,
                bytes_max: self.bytes_max,
            });
        }
        self.bytes = new_bytes;
        self.entries.insert(key.to_owned(), value);
        Ok(())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Bytes> {
        let value = self.entries.remove(key)?;
        self.bytes -= key.len() + value.len();
        Some(value)
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_replacing() {
        let mut env = Env::new(2, 20);
        env.put("a", &b"12345"[..]).unwrap();
        env.put("a", &b"123"[..]).unwrap();
        assert_eq!(env.get("a").unwrap().as_ref(), b"123");
        env.put("b", &b"1"[..]).unwrap();
        assert!(
            env.put("c", &b"1"[..]).is_err(),
            "third entry over entries_max"
        );
        assert!(
            env.put("b", &b"0123456789abcdef"[..]).is_err(),
            "over bytes_max"
        );
        assert_eq!(
            env.get("b").unwrap().as_ref(),
            b"1",
            "a refused put changes nothing"
        );
        assert_eq!(env.remove("a").unwrap().as_ref(), b"123");
        assert_eq!(env.len(), 1);
    }
}

//! The durable metadata store: one redb database per root. Each commit is
//! one ACID transaction, fsynced, so a record is old or new after a crash,
//! never half written.

use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("records");

#[derive(Debug, thiserror::Error)]
#[error("metadata store: {0}")]
pub struct MetaError(String);

fn err(e: impl std::fmt::Display) -> MetaError {
    MetaError(e.to_string())
}

pub struct MetaStore {
    db: Database,
}

impl MetaStore {
    /// Opens (or creates) the store at `path`. Only one process may hold it.
    pub fn open(path: &Path) -> Result<Self, MetaError> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                MetaError(format!("{} is in use by another cloudsync", path.display()))
            }
            other => err(other),
        })?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(TABLE).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(MetaStore { db })
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MetaError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(TABLE).map_err(err)?;
        Ok(table.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }

    /// Every key starting with `prefix`, in order.
    pub fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(TABLE).map_err(err)?;
        let mut out = Vec::new();
        for row in table.range(prefix..).map_err(err)? {
            let (k, v) = row.map_err(err)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Applies all changes in one durable transaction.
    pub fn commit(&self, changes: &[(String, Option<Vec<u8>>)]) -> Result<(), MetaError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut table = txn.open_table(TABLE).map_err(err)?;
            for (key, value) in changes {
                match value {
                    Some(v) => {
                        table.insert(key.as_str(), v.as_slice()).map_err(err)?;
                    }
                    None => {
                        table.remove(key.as_str()).map_err(err)?;
                    }
                }
            }
        }
        txn.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_scans_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        {
            let m = MetaStore::open(&path).unwrap();
            m.commit(&[
                ("a/1".into(), Some(b"x".to_vec())),
                ("a/2".into(), Some(b"y".to_vec())),
                ("b/1".into(), Some(vec![])),
            ])
            .unwrap();
            m.commit(&[("a/1".into(), None)]).unwrap();
            assert!(MetaStore::open(&path).is_err(), "a second opener is refused");
        }
        let m = MetaStore::open(&path).unwrap();
        assert_eq!(m.get("a/1").unwrap(), None);
        assert_eq!(m.scan("a/").unwrap(), vec![("a/2".to_string(), b"y".to_vec())]);
        assert_eq!(m.scan("").unwrap().len(), 2);
    }
}

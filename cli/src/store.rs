//! The server's directory store: an embedded SQLite database, `directory.sqlite3` in the
//! server's state directory (mode 0600, directory 0700). It implements core's
//! [`DirectoryStore`]: loaded once at start, then one transaction per change.
//!
//! Tokens are stored as their BLAKE2s hashes only; fixed paths' pinned client keys as their
//! base64 text, comma-separated. `sqlite3 directory.sqlite3 .dump` shows it all.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burrow_core::PublicKey;
use burrow_core::rendezvous::ServiceName;
use burrow_core::rendezvous::directory::{
    Attachment, AttachmentRecord, DaemonRecord, DirectoryChange, DirectoryStore, PathRecord,
    Records, TenantName, TenantQuota, TenantRecord, TokenHash,
};
use rusqlite::{Connection, OptionalExtension, params};

/// The database file in the state directory.
pub const DB_FILE: &str = "directory.sqlite3";
/// The schema this binary writes (SQLite's `user_version`): 2 added `attachments`, 3 added
/// `daemons` (an older store gains the empty table when this binary opens it), 4 added
/// `paths.max_connections` (an older store's paths gain it, with no limit), 5 added the
/// tenants' limits `max_paths`, `max_daemons` and `relay_bytes_per_sec` (an older store's
/// tenants gain them, unset: the server's defaults).
const SCHEMA_VERSION: i64 = 5;

/// The tenants' limit columns (schema 5), as `ALTER TABLE` adds them to an older store.
const TENANT_LIMITS: [&str; 3] = [
    "max_paths INTEGER CHECK (max_paths IS NULL OR max_paths BETWEEN 1 AND 1000000)",
    "max_daemons INTEGER CHECK (max_daemons IS NULL OR max_daemons BETWEEN 1 AND 1000000)",
    "relay_bytes_per_sec INTEGER CHECK (relay_bytes_per_sec IS NULL OR relay_bytes_per_sec >= 1)",
];

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    name   TEXT PRIMARY KEY NOT NULL,
    master BLOB NOT NULL UNIQUE CHECK (length(master) = 32),
    max_paths INTEGER CHECK (max_paths IS NULL OR max_paths BETWEEN 1 AND 1000000),
    max_daemons INTEGER CHECK (max_daemons IS NULL OR max_daemons BETWEEN 1 AND 1000000),
    relay_bytes_per_sec INTEGER CHECK (relay_bytes_per_sec IS NULL OR relay_bytes_per_sec >= 1)
);
CREATE TABLE IF NOT EXISTS paths (
    tenant  TEXT NOT NULL REFERENCES tenants(name),
    name    TEXT NOT NULL,
    server  BLOB NOT NULL UNIQUE CHECK (length(server) = 32),
    client  BLOB NOT NULL UNIQUE CHECK (length(client) = 32),
    fixed   INTEGER NOT NULL CHECK (fixed IN (0, 1)),
    clients TEXT NOT NULL DEFAULT '',
    max_connections INTEGER CHECK (max_connections IS NULL OR max_connections BETWEEN 1 AND 4294967295),
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS attachments (
    tenant TEXT NOT NULL,
    daemon TEXT NOT NULL,
    name   TEXT NOT NULL,
    kind   TEXT NOT NULL CHECK (kind IN ('expose', 'listen', 'detach')),
    value  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, daemon, name),
    FOREIGN KEY (tenant, name) REFERENCES paths(tenant, name)
);
CREATE TABLE IF NOT EXISTS daemons (
    tenant TEXT NOT NULL REFERENCES tenants(name),
    name   TEXT NOT NULL,
    token  BLOB NOT NULL UNIQUE CHECK (length(token) = 32),
    key    TEXT,
    PRIMARY KEY (tenant, name)
);
";

/// The SQLite directory store of one server.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, String> {
        crate::secrets::private_dir(state_dir)?;
        let path = state_dir.join(DB_FILE);
        create_private(&path)?;
        let err = |e: rusqlite::Error| format!("{}: {e}", path.display());
        let conn = Connection::open(&path).map_err(err)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if version > SCHEMA_VERSION {
            return Err(format!(
                "{}: written by a newer burrow (schema {version}, this one knows {SCHEMA_VERSION})",
                path.display()
            ));
        }
        conn.execute_batch(SCHEMA).map_err(err)?;
        // Schema 4: a store of 3 or older has paths without a limit of connections.
        let limited: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('paths') WHERE name = 'max_connections'",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if limited == 0 {
            conn.execute_batch(
                "ALTER TABLE paths ADD COLUMN max_connections INTEGER \
                 CHECK (max_connections IS NULL OR max_connections BETWEEN 1 AND 4294967295)",
            )
            .map_err(err)?;
        }
        // Schema 5: a store of 4 or older has tenants without limits of their own.
        for column in TENANT_LIMITS {
            let name = column.split_whitespace().next().unwrap_or_default();
            let has: i64 = conn
                .query_row(
                    "SELECT count(*) FROM pragma_table_info('tenants') WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .map_err(err)?;
            if has == 0 {
                conn.execute_batch(&format!("ALTER TABLE tenants ADD COLUMN {column}"))
                    .map_err(err)?;
            }
        }
        conn.execute_batch(&format!(
            "PRAGMA user_version = {SCHEMA_VERSION}; PRAGMA foreign_keys = ON;"
        ))
        .map_err(err)?;
        Ok(Self { conn, path })
    }

    /// Whether tenant `name` exists.
    pub fn has_tenant(&self, name: &TenantName) -> Result<bool, String> {
        self.conn
            .query_row(
                "SELECT 1 FROM tenants WHERE name = ?1",
                [name.as_str()],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.error(e))
    }

    fn load_attachments(&self) -> Result<Vec<AttachmentRecord>, String> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT tenant, daemon, name, kind, value FROM attachments
                 ORDER BY tenant, daemon, name",
            )
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map([], |r| {
                let (tenant, daemon, name): (String, String, String) =
                    (r.get(0)?, r.get(1)?, r.get(2)?);
                let (kind, value): (String, String) = (r.get(3)?, r.get(4)?);
                let what = format!("attachment of {name:?} to {daemon:?}");
                let attach = match kind.as_str() {
                    "expose" => Some(Attachment::Expose { target: value }),
                    "listen" => Some(Attachment::Listen {
                        addr: value.parse().map_err(|_| bad(&what, "has a bad address"))?,
                    }),
                    _ => None,
                };
                if let Some(a) = &attach {
                    a.check().map_err(|e| bad(&what, &e))?;
                }
                Ok(AttachmentRecord {
                    tenant: tenant.parse().map_err(|e: String| bad(&what, &e))?,
                    daemon: daemon.parse().map_err(|_| bad(&what, "is not a key"))?,
                    name: ServiceName::parse(&name).map_err(|e| bad(&what, &e.to_string()))?,
                    attach,
                })
            })
            .map_err(|e| self.error(e))?;
        rows.map(|row| row.map_err(|e| self.error(e))).collect()
    }

    fn load_daemons(&self) -> Result<Vec<DaemonRecord>, String> {
        let mut stmt = self
            .conn
            .prepare("SELECT tenant, name, token, key FROM daemons ORDER BY tenant, name")
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map([], |r| {
                let (tenant, name): (String, String) = (r.get(0)?, r.get(1)?);
                let what = format!("daemon {name:?} of {tenant:?}");
                let token: Vec<u8> = r.get(2)?;
                let key: Option<String> = r.get(3)?;
                Ok(DaemonRecord {
                    tenant: tenant.parse().map_err(|e: String| bad(&what, &e))?,
                    name: name.parse().map_err(|e: String| bad(&what, &e))?,
                    token: hash(&token, &what)?,
                    key: key
                        .map(|k| {
                            k.parse()
                                .map_err(|_| bad(&what, "has a key that is not a key"))
                        })
                        .transpose()?,
                })
            })
            .map_err(|e| self.error(e))?;
        rows.map(|row| row.map_err(|e| self.error(e))).collect()
    }

    fn error(&self, e: rusqlite::Error) -> String {
        format!("{}: {e}", self.path.display())
    }
}

/// Creates `path` with mode 0600 if it does not exist, so SQLite (which keeps a file's mode)
/// never makes it readable by others; refuses one that others can read, and never opens it
/// through a symlink (`O_NOFOLLOW`).
fn create_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mode = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} can be read by other users (mode {:o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    Ok(())
}

fn hash(bytes: &[u8], what: &str) -> rusqlite::Result<TokenHash> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad(what, "is not 32 bytes"))?;
    Ok(TokenHash::from_bytes(bytes))
}

fn bad(what: &str, why: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnName(format!("{what} {why}"))
}

fn keys(text: &str, path: &str) -> rusqlite::Result<BTreeSet<PublicKey>> {
    text.split(',')
        .filter(|k| !k.is_empty())
        .map(|k| {
            k.parse()
                .map_err(|_| bad(path, "has a pinned key that is not a key"))
        })
        .collect()
}

impl DirectoryStore for SqliteStore {
    fn load(&mut self) -> Result<Records, String> {
        let mut tenants = Vec::new();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, master, max_paths, max_daemons, relay_bytes_per_sec FROM tenants \
                 ORDER BY name",
            )
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map([], |r| {
                let name: String = r.get(0)?;
                let master: Vec<u8> = r.get(1)?;
                let what = format!("tenant {name:?}");
                let parsed: TenantName = name.parse().map_err(|e: String| bad(&what, &e))?;
                let count = |i: usize| -> rusqlite::Result<Option<u32>> {
                    r.get::<_, Option<i64>>(i)?
                        .map(|n| u32::try_from(n).map_err(|_| bad(&what, "has a bad limit")))
                        .transpose()
                };
                let limits = TenantQuota {
                    max_paths: count(2)?,
                    max_daemons: count(3)?,
                    relay_bytes_per_sec: r
                        .get::<_, Option<i64>>(4)?
                        .map(|n| u64::try_from(n).map_err(|_| bad(&what, "has a bad relay rate")))
                        .transpose()?,
                };
                limits.check().map_err(|e| bad(&what, &e))?;
                Ok(TenantRecord {
                    master: hash(&master, &format!("tenant {name}'s master hash"))?,
                    name: parsed,
                    limits,
                })
            })
            .map_err(|e| self.error(e))?;
        for row in rows {
            tenants.push(row.map_err(|e| self.error(e))?);
        }
        drop(stmt);
        let mut paths = Vec::new();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT tenant, name, server, client, fixed, clients, max_connections FROM paths \
                 ORDER BY tenant, name",
            )
            .map_err(|e| self.error(e))?;
        let rows = stmt
            .query_map([], |r| {
                let tenant: String = r.get(0)?;
                let name: String = r.get(1)?;
                let what = format!("path {name:?} of {tenant:?}");
                let server: Vec<u8> = r.get(2)?;
                let client: Vec<u8> = r.get(3)?;
                let clients: String = r.get(5)?;
                Ok(PathRecord {
                    tenant: tenant.parse().map_err(|e: String| bad(&what, &e))?,
                    name: ServiceName::parse(&name).map_err(|e| bad(&what, &e.to_string()))?,
                    server: hash(&server, &what)?,
                    client: hash(&client, &what)?,
                    fixed: r.get::<_, i64>(4)? != 0,
                    clients: keys(&clients, &what)?,
                    max_connections: r
                        .get::<_, Option<i64>>(6)?
                        .map(|n| {
                            u32::try_from(n).map_err(|_| bad(&what, "has a bad max_connections"))
                        })
                        .transpose()?,
                })
            })
            .map_err(|e| self.error(e))?;
        for row in rows {
            paths.push(row.map_err(|e| self.error(e))?);
        }
        drop(stmt);
        let attachments = self.load_attachments()?;
        let daemons = self.load_daemons()?;
        Ok(Records {
            tenants,
            paths,
            attachments,
            daemons,
        })
    }

    fn apply(&mut self, change: &DirectoryChange) -> Result<(), String> {
        let result = match change {
            DirectoryChange::PutTenant(t) => self.conn.execute(
                "INSERT OR REPLACE INTO tenants
                 (name, master, max_paths, max_daemons, relay_bytes_per_sec)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    t.name.as_str(),
                    t.master.as_bytes().as_slice(),
                    t.limits.max_paths,
                    t.limits.max_daemons,
                    t.limits
                        .relay_bytes_per_sec
                        .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                ],
            ),
            DirectoryChange::PutPath(p) => {
                let clients: Vec<String> = p.clients.iter().map(ToString::to_string).collect();
                self.conn.execute(
                    "INSERT OR REPLACE INTO paths
                     (tenant, name, server, client, fixed, clients, max_connections)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        p.tenant.as_str(),
                        p.name.as_str(),
                        p.server.as_bytes().as_slice(),
                        p.client.as_bytes().as_slice(),
                        i64::from(p.fixed),
                        clients.join(","),
                        p.max_connections.map(i64::from),
                    ],
                )
            }
            DirectoryChange::DeletePath { tenant, name } => self.conn.execute(
                "DELETE FROM paths WHERE tenant = ?1 AND name = ?2",
                params![tenant.as_str(), name.as_str()],
            ),
            DirectoryChange::PutAttachment(a) => {
                let (kind, value) = match &a.attach {
                    Some(Attachment::Expose { target }) => ("expose", target.clone()),
                    Some(Attachment::Listen { addr }) => ("listen", addr.to_string()),
                    None => ("detach", String::new()),
                };
                self.conn.execute(
                    "INSERT OR REPLACE INTO attachments (tenant, daemon, name, kind, value)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        a.tenant.as_str(),
                        a.daemon.to_string(),
                        a.name.as_str(),
                        kind,
                        value
                    ],
                )
            }
            DirectoryChange::DeleteAttachment {
                tenant,
                daemon,
                name,
            } => self.conn.execute(
                "DELETE FROM attachments WHERE tenant = ?1 AND daemon = ?2 AND name = ?3",
                params![tenant.as_str(), daemon.to_string(), name.as_str()],
            ),
            DirectoryChange::PutDaemon(d) => self.conn.execute(
                "INSERT OR REPLACE INTO daemons (tenant, name, token, key) VALUES (?1, ?2, ?3, ?4)",
                params![
                    d.tenant.as_str(),
                    d.name.as_str(),
                    d.token.as_bytes().as_slice(),
                    d.key.map(|k| k.to_string()),
                ],
            ),
            DirectoryChange::DeleteDaemon { tenant, name } => self.conn.execute(
                "DELETE FROM daemons WHERE tenant = ?1 AND name = ?2",
                params![tenant.as_str(), name.as_str()],
            ),
            _ => {
                return Err(format!(
                    "{}: a change this binary cannot store",
                    self.path.display()
                ));
            }
        };
        result.map(|_| ()).map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burrow_core::rendezvous::directory::Directory;

    fn temp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "burrow-store-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn changes_stored_come_back_as_the_same_directory() {
        let dir = temp();
        let mut store = SqliteStore::open(&dir).unwrap();
        let tenant: TenantName = "acme".parse().unwrap();
        let path = PathRecord {
            tenant: tenant.clone(),
            name: ServiceName::parse("/home/ssh").unwrap(),
            server: TokenHash::of("s"),
            client: TokenHash::of("c"),
            fixed: true,
            clients: [
                PublicKey::from_bytes([3; 32]),
                PublicKey::from_bytes([4; 32]),
            ]
            .into(),
            max_connections: Some(5),
        };
        let mut other = path.clone();
        other.max_connections = None;
        other.name = ServiceName::parse("/web").unwrap();
        other.server = TokenHash::of("s2");
        other.client = TokenHash::of("c2");
        let changes = [
            DirectoryChange::PutTenant(TenantRecord {
                name: tenant.clone(),
                master: TokenHash::of("m"),
                limits: TenantQuota {
                    max_paths: Some(7),
                    max_daemons: None,
                    relay_bytes_per_sec: Some(1 << 20),
                },
            }),
            DirectoryChange::PutPath(path.clone()),
            DirectoryChange::PutPath(other.clone()),
            DirectoryChange::DeletePath {
                tenant: tenant.clone(),
                name: other.name.clone(),
            },
            DirectoryChange::PutAttachment(AttachmentRecord {
                tenant: tenant.clone(),
                daemon: PublicKey::from_bytes([5; 32]),
                name: path.name.clone(),
                attach: Some(Attachment::Expose {
                    target: "unix:/run/x.sock".into(),
                }),
            }),
            DirectoryChange::PutAttachment(AttachmentRecord {
                tenant: tenant.clone(),
                daemon: PublicKey::from_bytes([6; 32]),
                name: path.name.clone(),
                attach: Some(Attachment::Listen {
                    addr: "127.0.0.1:2222".parse().unwrap(),
                }),
            }),
            DirectoryChange::PutAttachment(AttachmentRecord {
                tenant: tenant.clone(),
                daemon: PublicKey::from_bytes([7; 32]),
                name: path.name.clone(),
                attach: None,
            }),
            DirectoryChange::DeleteAttachment {
                tenant: tenant.clone(),
                daemon: PublicKey::from_bytes([6; 32]),
                name: path.name.clone(),
            },
            DirectoryChange::PutDaemon(DaemonRecord {
                tenant: tenant.clone(),
                name: "laptop".parse().unwrap(),
                token: TokenHash::of("d1"),
                key: None,
            }),
            DirectoryChange::PutDaemon(DaemonRecord {
                tenant: tenant.clone(),
                name: "laptop".parse().unwrap(),
                token: TokenHash::of("d1"),
                key: Some(PublicKey::from_bytes([8; 32])),
            }),
            DirectoryChange::PutDaemon(DaemonRecord {
                tenant: tenant.clone(),
                name: "nas".parse().unwrap(),
                token: TokenHash::of("d2"),
                key: None,
            }),
            DirectoryChange::PutDaemon(DaemonRecord {
                tenant: tenant.clone(),
                name: "old".parse().unwrap(),
                token: TokenHash::of("d3"),
                key: None,
            }),
            DirectoryChange::DeleteDaemon {
                tenant: tenant.clone(),
                name: "old".parse().unwrap(),
            },
        ];
        let mut expected = Directory::default();
        for change in &changes {
            store.apply(change).unwrap();
            expected.apply(change);
        }
        drop(store);
        let mut reopened = SqliteStore::open(&dir).unwrap();
        let loaded = Directory::from_records(reopened.load().unwrap()).unwrap();
        assert_eq!(loaded, expected);
        assert!(reopened.has_tenant(&tenant).unwrap());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(DB_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A fresh store in a fresh directory, holding tenant `acme`.
    fn store_with_acme() -> (PathBuf, SqliteStore) {
        let dir = temp();
        let mut store = SqliteStore::open(&dir).unwrap();
        let acme = TenantRecord {
            name: "acme".parse().unwrap(),
            master: TokenHash::of("m"),
            limits: TenantQuota::default(),
        };
        store.apply(&DirectoryChange::PutTenant(acme)).unwrap();
        (dir, store)
    }

    #[test]
    fn a_schema_2_store_gains_the_daemons_table() {
        let (dir, store) = store_with_acme();
        // What a schema-2 binary left: no daemons table.
        store
            .conn
            .execute_batch("DROP TABLE daemons; PRAGMA user_version = 2;")
            .unwrap();
        drop(store);
        let mut store = SqliteStore::open(&dir).unwrap();
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let records = store.load().unwrap();
        assert_eq!((records.tenants.len(), records.daemons.len()), (1, 0));
        let laptop = DaemonRecord {
            tenant: "acme".parse().unwrap(),
            name: "laptop".parse().unwrap(),
            token: TokenHash::of("d"),
            key: None,
        };
        store
            .apply(&DirectoryChange::PutDaemon(laptop.clone()))
            .unwrap();
        assert_eq!(store.load().unwrap().daemons, [laptop]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_schema_3_store_gains_the_limit_of_connections() {
        let (dir, store) = store_with_acme();
        // What a schema-3 binary left: paths without max_connections.
        store
            .conn
            .execute_batch(
                "ALTER TABLE paths DROP COLUMN max_connections; PRAGMA user_version = 3;
                 INSERT INTO paths (tenant, name, server, client, fixed, clients)
                 VALUES ('acme', '/home/ssh', zeroblob(32), randomblob(32), 0, '');",
            )
            .unwrap();
        drop(store);
        let mut store = SqliteStore::open(&dir).unwrap();
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let mut path = store.load().unwrap().paths.pop().expect("the old path");
        assert_eq!(
            (path.name.as_str(), path.max_connections),
            ("/home/ssh", None),
            "no limit"
        );
        path.max_connections = Some(3);
        store
            .apply(&DirectoryChange::PutPath(path.clone()))
            .unwrap();
        assert_eq!(store.load().unwrap().paths, [path]);
        // Opened again, the column is not added twice.
        drop(store);
        let mut store = SqliteStore::open(&dir).unwrap();
        assert_eq!(store.load().unwrap().paths[0].max_connections, Some(3));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_schema_4_store_gains_the_tenants_limits() {
        let (dir, store) = store_with_acme();
        // What a schema-4 binary left: tenants without limits.
        store
            .conn
            .execute_batch(
                "ALTER TABLE tenants DROP COLUMN max_paths;
                 ALTER TABLE tenants DROP COLUMN max_daemons;
                 ALTER TABLE tenants DROP COLUMN relay_bytes_per_sec;
                 PRAGMA user_version = 4;",
            )
            .unwrap();
        drop(store);
        let mut store = SqliteStore::open(&dir).unwrap();
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let mut acme = store.load().unwrap().tenants.pop().expect("the old tenant");
        assert_eq!(acme.limits, TenantQuota::default(), "the server's defaults");
        acme.limits.max_daemons = Some(2);
        acme.limits.relay_bytes_per_sec = Some(65536);
        store
            .apply(&DirectoryChange::PutTenant(acme.clone()))
            .unwrap();
        drop(store);
        // Opened again, the columns are not added twice, and the limits stayed.
        let mut store = SqliteStore::open(&dir).unwrap();
        assert_eq!(store.load().unwrap().tenants, [acme]);
        // A limit out of range is named, not loaded.
        store
            .conn
            .execute(
                "UPDATE tenants SET max_paths = NULL, max_daemons = NULL",
                [],
            )
            .unwrap();
        store
            .conn
            .execute_batch(
                "PRAGMA ignore_check_constraints = ON; UPDATE tenants SET relay_bytes_per_sec = 0;",
            )
            .unwrap();
        let err = store.load().unwrap_err();
        assert!(err.contains("relay-rate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_row_is_named_not_loaded() {
        let dir = temp();
        let mut store = SqliteStore::open(&dir).unwrap();
        store
            .conn
            .execute(
                "INSERT INTO tenants (name, master) VALUES ('Bad Name', zeroblob(32))",
                [],
            )
            .unwrap();
        let err = store.load().unwrap_err();
        assert!(err.contains("Bad Name"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_store_behind_a_symlink_is_refused() {
        let dir = temp();
        std::fs::create_dir_all(&dir).unwrap();
        let elsewhere = dir.join("elsewhere");
        std::fs::write(&elsewhere, b"").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join(DB_FILE)).unwrap();
        let err = SqliteStore::open(&dir).err().unwrap();
        assert!(err.contains("cannot open"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_store_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp();
        drop(SqliteStore::open(&dir).unwrap());
        let file = dir.join(DB_FILE);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SqliteStore::open(&dir).err().unwrap();
        assert!(err.contains("chmod 600"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

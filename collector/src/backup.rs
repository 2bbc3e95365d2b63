//! Online backup and restore of the embedded store (`vigil-collector backup` and `restore`).
//!
//! A backup is one SQLite file: a consistent copy of `vigil.db` taken with `VACUUM INTO` (a
//! read transaction, so the collector keeps ingesting while it runs), plus two tables of its
//! own: `vigil_backup` (what made it, when, from which schema) and `vigil_backup_files` (the
//! CA certificate and key and the bootstrap admin token of the data directory, with their
//! modes). Together they are everything a restored collector needs to accept the same agents:
//! their certificates chain to the restored CA and their identities are in the restored store.
//! The file is written under a temporary name, fsync'd, made 0600 (it holds the CA key) and
//! renamed into place, so a backup that is cut short never looks complete.
//!
//! `replica.id` is left out on purpose: a restored collector is a new replica, and two live
//! replicas must never share a lease holder id.
//!
//! Restore refuses a data directory a collector is running on (every collector holds a shared
//! lock on `<data_dir>/collector.lock` while it runs; restore needs it exclusively), and one
//! that already holds a store unless `--force` is given. A backup made by a newer collector
//! (a schema this binary does not know) is refused by name; an older one is migrated at the
//! next start, as any store is.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Connection, Row, SqliteConnection};

/// What the `vigil_backup` table's `format` row holds in a backup this code can read.
pub const FORMAT: &str = "vigil-backup-1";

/// The lock file every running collector holds shared in its data directory.
pub const LOCK_FILE: &str = "collector.lock";

/// Files of the data directory a backup carries, relative to it.
const CARRIED: [&str; 3] = ["tls/ca.crt", "tls/ca.key", "admin.token"];

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} holds no store (no vigil.db): give the collector's data directory")]
    NoStore(PathBuf),
    #[error("{0} exists: give --force to replace it")]
    TargetExists(PathBuf),
    #[error(
        "a collector is running on {0} (it holds {LOCK_FILE}): stop it first, restoring under a \
         running collector would corrupt its store"
    )]
    Running(PathBuf),
    #[error("{0} already holds a store (vigil.db): give --force to replace it")]
    NotEmpty(PathBuf),
    #[error("{path} is not a Vigil backup: {why}")]
    NotABackup { path: PathBuf, why: String },
    #[error(
        "{path} was made by a newer collector (store schema {found}; this collector knows up to \
         {known}): restore it with that version or later"
    )]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sql {
        what: String,
        #[source]
        source: sqlx::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

fn sql(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Sql { what, source }
}

/// What a backup or a restore did, for the command's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The backup file's size.
    pub bytes: u64,
    /// The store schema version (the highest migration applied).
    pub schema_version: i64,
    /// Hosts and stored reports in the copy.
    pub hosts: i64,
    pub reports: i64,
    /// Data-directory files carried, relative to it.
    pub files: Vec<String>,
}

/// The highest migration this collector knows.
pub fn known_schema_version() -> i64 {
    sqlx::migrate!("src/store/migrations/sqlite").iter().map(|m| m.version).max().unwrap_or(0)
}

/// Takes a consistent online backup of the store in `data_dir` into `to`. Nothing is left
/// behind when it fails.
pub async fn backup(data_dir: &Path, to: &Path, force: bool) -> Result<Summary, BackupError> {
    let db = data_dir.join("vigil.db");
    if !db.exists() {
        return Err(BackupError::NoStore(data_dir.to_owned()));
    }
    if to.exists() && !force {
        return Err(BackupError::TargetExists(to.to_owned()));
    }
    // The copy is as private as the store from its first byte.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let partial = partial_path(to);
    remove_if_exists(&partial)?;
    let result = write_backup(data_dir, &db, &partial, to).await;
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

async fn write_backup(
    data_dir: &Path,
    db: &Path,
    partial: &Path,
    to: &Path,
) -> Result<Summary, BackupError> {
    let source = SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .busy_timeout(Duration::from_secs(30));
    let mut conn = SqliteConnection::connect_with(&source)
        .await
        .map_err(sql(format!("opening {}", db.display())))?;
    let target = partial.to_str().ok_or_else(|| BackupError::Io {
        what: format!("{} is not a UTF-8 path", partial.display()),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    sqlx::query("VACUUM INTO ?").bind(target).execute(&mut conn).await.map_err(sql(format!(
        "copying {} into {}",
        db.display(),
        partial.display()
    )))?;
    conn.close().await.ok();
    let mut copy = open_private(partial).await?;
    let schema_version = schema_version(&mut copy)
        .await
        .map_err(sql(format!("reading the migration history of {}", db.display())))?;
    let mut files = Vec::new();
    let mut tx = copy.begin().await.map_err(sql("writing the backup's own tables"))?;
    for statement in [
        "CREATE TABLE vigil_backup (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE vigil_backup_files (path TEXT PRIMARY KEY, mode INTEGER NOT NULL, \
         contents BLOB NOT NULL)",
    ] {
        sqlx::query(statement)
            .execute(&mut *tx)
            .await
            .map_err(sql("writing the backup's own tables"))?;
    }
    let created = crate::clock::rfc3339(crate::clock::Clock::now_ms(&crate::clock::SystemClock));
    for (key, value) in [
        ("format", FORMAT.to_owned()),
        ("created_at", created),
        ("collector_version", env!("CARGO_PKG_VERSION").to_owned()),
        ("schema_version", schema_version.to_string()),
        ("source", data_dir.display().to_string()),
    ] {
        sqlx::query("INSERT INTO vigil_backup (key, value) VALUES (?, ?)")
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(sql("writing the backup's own tables"))?;
    }
    for name in CARRIED {
        let path = data_dir.join(name);
        let contents = match std::fs::read(&path) {
            Ok(contents) => contents,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
        };
        let mode = std::fs::metadata(&path)
            .map_err(io(format!("reading {}", path.display())))?
            .permissions()
            .mode()
            & 0o777;
        sqlx::query("INSERT INTO vigil_backup_files (path, mode, contents) VALUES (?, ?, ?)")
            .bind(name)
            .bind(i64::from(mode))
            .bind(contents)
            .execute(&mut *tx)
            .await
            .map_err(sql("writing the backup's own tables"))?;
        files.push(name.to_owned());
    }
    tx.commit().await.map_err(sql("writing the backup's own tables"))?;
    let (hosts, reports) = counts(&mut copy).await?;
    copy.close().await.map_err(sql(format!("closing {}", partial.display())))?;

    File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("syncing {}", partial.display())))?;
    std::fs::rename(partial, to).map_err(io(format!(
        "renaming {} to {}",
        partial.display(),
        to.display()
    )))?;
    sync_parent(to)?;
    let bytes = std::fs::metadata(to).map_err(io(format!("reading {}", to.display())))?.len();
    Ok(Summary { bytes, schema_version, hosts, reports, files })
}

/// Restores the backup `from` into `data_dir`.
pub async fn restore(from: &Path, data_dir: &Path, force: bool) -> Result<Summary, BackupError> {
    let not_a_backup = |why: String| BackupError::NotABackup { path: from.to_owned(), why };
    if !from.is_file() {
        return Err(not_a_backup("no such file".to_owned()));
    }
    // Read and check the backup before touching the data directory.
    let mut backup =
        SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(from).read_only(true))
            .await
            .map_err(|e| not_a_backup(e.to_string()))?;
    let format: Option<String> =
        sqlx::query_scalar("SELECT value FROM vigil_backup WHERE key = 'format'")
            .fetch_optional(&mut backup)
            .await
            .map_err(|e| not_a_backup(format!("no vigil_backup table ({e})")))?;
    match format.as_deref() {
        Some(FORMAT) => {}
        Some(other) => return Err(not_a_backup(format!("format {other:?}, expected {FORMAT:?}"))),
        None => return Err(not_a_backup("no format in its vigil_backup table".to_owned())),
    }
    let found = schema_version(&mut backup)
        .await
        .map_err(|e| not_a_backup(format!("no migration history ({e})")))?;
    let known = known_schema_version();
    if found > known {
        return Err(BackupError::TooNew { path: from.to_owned(), found, known });
    }
    let carried: Vec<(String, i64, Vec<u8>)> =
        sqlx::query("SELECT path, mode, contents FROM vigil_backup_files ORDER BY path")
            .fetch_all(&mut backup)
            .await
            .map_err(|e| not_a_backup(format!("unreadable vigil_backup_files ({e})")))?
            .into_iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
    backup.close().await.ok();
    for (path, _, _) in &carried {
        if !CARRIED.contains(&path.as_str()) {
            return Err(not_a_backup(format!("it carries an unexpected file {path:?}")));
        }
    }

    crate::data_dir::prepare(data_dir)
        .map_err(io(format!("preparing the data directory {}", data_dir.display())))?;
    // Held until the restore is done: a collector started meanwhile cannot take its shared
    // lock and refuses to start (see `hold_running_lock`).
    let _exclusive = lock_exclusive(data_dir)?;
    let db = data_dir.join("vigil.db");
    if db.exists() && !force {
        return Err(BackupError::NotEmpty(data_dir.to_owned()));
    }

    let partial = partial_path(&db);
    remove_if_exists(&partial)?;
    std::fs::copy(from, &partial).map_err(io(format!(
        "copying {} to {}",
        from.display(),
        partial.display()
    )))?;
    let mut copy = open_private(&partial).await?;
    for statement in ["DROP TABLE vigil_backup", "DROP TABLE vigil_backup_files"] {
        sqlx::query(statement)
            .execute(&mut copy)
            .await
            .map_err(sql("clearing the backup's own tables"))?;
    }
    let (hosts, reports) = counts(&mut copy).await?;
    copy.close().await.map_err(sql(format!("closing {}", partial.display())))?;
    File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io(format!("syncing {}", partial.display())))?;

    // The old store's journal files belong to the old store.
    for stale in ["vigil.db-wal", "vigil.db-shm"] {
        remove_if_exists(&data_dir.join(stale))?;
    }
    let mut files = Vec::new();
    for (path, mode, contents) in carried {
        let target = data_dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        // Never wider than owner-only, whatever the backup says.
        let mode = (mode as u32) & 0o700;
        vigil_tls::pem::write_file(&target, &contents, mode).map_err(|e| BackupError::Io {
            what: format!("writing {}", target.display()),
            source: std::io::Error::other(e.to_string()),
        })?;
        files.push(path);
    }
    std::fs::rename(&partial, &db).map_err(io(format!(
        "renaming {} to {}",
        partial.display(),
        db.display()
    )))?;
    sync_parent(&db)?;
    let bytes = std::fs::metadata(from).map_err(io(format!("reading {}", from.display())))?.len();
    Ok(Summary { bytes, schema_version: found, hosts, reports, files })
}

/// Held by a running collector for its whole life: a shared lock on `<data_dir>/collector.lock`,
/// so several collectors may share a data directory while `restore` can tell that one runs.
pub fn hold_running_lock(data_dir: &Path) -> std::io::Result<File> {
    let file = open_lock(data_dir)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared) {
        Ok(()) => Ok(file),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(std::io::Error::other(format!(
            "{} is being restored: wait for the restore to finish",
            data_dir.display()
        ))),
        Err(e) => Err(e.into()),
    }
}

fn lock_exclusive(data_dir: &Path) -> Result<File, BackupError> {
    let file = open_lock(data_dir)
        .map_err(io(format!("opening {}", data_dir.join(LOCK_FILE).display())))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
            Err(BackupError::Running(data_dir.to_owned()))
        }
        Err(e) => Err(io(format!("locking {}", data_dir.join(LOCK_FILE).display()))(e.into())),
    }
}

fn open_lock(data_dir: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join(LOCK_FILE))
}

/// Makes the copy at `path` owner-only (it holds, or will hold, the CA key) and opens it for
/// writing, with a rollback journal: a single file, nothing beside it once closed.
async fn open_private(path: &Path) -> Result<SqliteConnection, BackupError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io(format!("making {} owner-only", path.display())))?;
    SqliteConnection::connect_with(
        &SqliteConnectOptions::new().filename(path).journal_mode(SqliteJournalMode::Delete),
    )
    .await
    .map_err(sql(format!("opening {}", path.display())))
}

async fn schema_version(conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(conn)
        .await
        .map(|v| v.unwrap_or(0))
}

async fn counts(conn: &mut SqliteConnection) -> Result<(i64, i64), BackupError> {
    let hosts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM hosts")
        .fetch_one(&mut *conn)
        .await
        .map_err(sql("counting hosts"))?;
    let reports: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM report_receipts")
        .fetch_one(&mut *conn)
        .await
        .map_err(sql("counting report receipts"))?;
    Ok((hosts, reports))
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

fn remove_if_exists(path: &Path) -> Result<(), BackupError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("removing {}", path.display()))(e)),
    }
}

fn sync_parent(path: &Path) -> Result<(), BackupError> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("syncing the directory {}", parent.display())))
}

//! Reading and writing column values, the same for every backend: ids stored as text, fault
//! levels as 1–4, finding kinds and other enums as their names, and the mapping of a database
//! error to the store's error.

use std::str::FromStr;

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::{StoreError, StoreResult};
use crate::classify::{FaultLevel, FindingKind};

/// The database failed as a whole (I/O, connection, busy): the caller retries later.
pub(in crate::store) fn unavailable(err: sqlx::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

/// A stored row that does not read back as it should.
pub(in crate::store) fn corrupt(err: sqlx::Error) -> StoreError {
    StoreError::Corrupt(err.to_string())
}

pub(in crate::store) fn parse_id<T: FromStr>(text: &str) -> StoreResult<T> {
    text.parse().map_err(|_| StoreError::Corrupt(format!("bad id {text:?}")))
}

/// Reads an optional id column.
pub(in crate::store) fn optional_id<'r, R, T>(row: &'r R, column: &str) -> StoreResult<Option<T>>
where
    R: Row,
    T: FromStr,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    row.try_get::<Option<String>, _>(column).map_err(corrupt)?.map(|id| parse_id(&id)).transpose()
}

/// Reads a text column that holds one of an enum's names (`parse` reads them back).
pub(in crate::store) fn named_column<'r, R, T>(
    row: &'r R,
    column: &str,
    parse: fn(&str) -> Option<T>,
) -> StoreResult<T>
where
    R: Row,
    String: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    let text: String = row.try_get(column).map_err(corrupt)?;
    parse(&text).ok_or_else(|| StoreError::Corrupt(format!("bad {column} {text:?}")))
}

/// Reads a fault level column (1–4).
pub(in crate::store) fn level_column<'r, R>(row: &'r R, column: &str) -> StoreResult<FaultLevel>
where
    R: Row,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    fault_level(row.try_get(column).map_err(corrupt)?)
}

pub(in crate::store) fn fault_level(stored: i64) -> StoreResult<FaultLevel> {
    u8::try_from(stored)
        .ok()
        .and_then(FaultLevel::from_u8)
        .ok_or_else(|| StoreError::Corrupt(format!("bad fault level {stored}")))
}

/// How a finding kind is stored.
pub(in crate::store) fn finding_kind_name(kind: FindingKind) -> &'static str {
    match kind {
        FindingKind::State => "state",
        FindingKind::Event => "event",
    }
}

pub(in crate::store) fn finding_kind(text: &str) -> Option<FindingKind> {
    [FindingKind::State, FindingKind::Event].into_iter().find(|k| finding_kind_name(*k) == text)
}

/// A migration that failed, named for an operator: a database migrated by a newer collector
/// says so and what to do, rather than sqlx's "previously applied but missing".
pub(in crate::store) fn migration_failed(err: sqlx::migrate::MigrateError) -> StoreError {
    use sqlx::migrate::MigrateError;
    match err {
        MigrateError::VersionMissing(version) => StoreError::Migration(format!(
            "the database was migrated by a newer collector (it has schema migration {version}, \
             which this collector does not know): run the newer vigil-collector, or restore a \
             backup taken before the upgrade"
        )),
        MigrateError::VersionMismatch(version) => StoreError::Migration(format!(
            "schema migration {version} in the database differs from this collector's: the \
             database was migrated by another build of vigil-collector"
        )),
        other => StoreError::Migration(other.to_string()),
    }
}

/// The refusal of a write whose lease moved on.
pub(in crate::store) fn fenced(fence: &super::Fence) -> StoreError {
    StoreError::Fenced(format!(
        "the {} lease is no longer held by {} at generation {}: another collector took it \
         over or it expired, so this write is refused",
        fence.lease, fence.holder, fence.generation
    ))
}

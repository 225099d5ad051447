//! The portable layer under the store: one connection type over SQLite
//! and PostgreSQL, so that each query is written once.
//!
//! Queries are written with `?N` placeholders (SQLite's), which the
//! PostgreSQL side rewrites to `$N`; parameters are our own [`Value`]s and
//! results our own [`Row`]s, read by column index or name. Both schemas
//! keep to the same few column types (BIGINT for integers and 0/1 flags,
//! DOUBLE PRECISION/REAL for sampling settings, TEXT for decimals, JSON
//! and RFC 3339 times, BLOB/BYTEA for hashes), so the same row code reads
//! both. Where the engines really differ (the current time as text) a
//! [`Dialect`] gives the expression.
//!
//! Errors are [`SqlError`]s whose kind (unique, foreign-key, check and
//! NOT NULL violations, no row) is the same on both engines.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// The SQL engine of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The current UTC time as store text (`2025-01-31T12:00:00.000Z`).
    pub fn now(self) -> &'static str {
        match self {
            Self::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            Self::Postgres => "llmhost_now()",
        }
    }

    /// A later `updated_at` than the row's, even within one millisecond,
    /// so that compare-and-set sees every write.
    pub fn next_updated_at(self) -> &'static str {
        match self {
            Self::Sqlite => {
                "max(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
                 strftime('%Y-%m-%dT%H:%M:%fZ', updated_at, '+0.001 seconds'))"
            }
            Self::Postgres => {
                "greatest(llmhost_now(), to_char(CAST(updated_at AS timestamp) + interval '1 millisecond', \
                 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))"
            }
        }
    }
}

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

macro_rules! integer_values {
    ($($ty:ty),+) => {$(
        impl From<$ty> for Value {
            fn from(value: $ty) -> Self {
                Self::Integer(i64::from(value))
            }
        }
    )+};
}
integer_values!(i64, i32, u32, u16, u8, bool);

impl From<u64> for Value {
    /// Saturates at `i64::MAX`.
    fn from(value: u64) -> Self {
        Self::Integer(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl From<usize> for Value {
    fn from(value: usize) -> Self {
        Self::Integer(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Self::Real(value)
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<&String> for Value {
    fn from(value: &String) -> Self {
        Self::Text(value.clone())
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<&&str> for Value {
    fn from(value: &&str) -> Self {
        Self::Text((*value).to_owned())
    }
}

impl From<Vec<u8>> for Value {
    fn from(value: Vec<u8>) -> Self {
        Self::Blob(value)
    }
}

impl From<&[u8]> for Value {
    fn from(value: &[u8]) -> Self {
        Self::Blob(value.to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::Null, Into::into)
    }
}

impl From<&Value> for Value {
    fn from(value: &Value) -> Self {
        value.clone()
    }
}

/// A parameter by reference, as [`params!`] takes them.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl<T: Clone + Into<Value>> ToValue for T {
    fn to_value(&self) -> Value {
        self.clone().into()
    }
}

/// `params![a, b]`: the [`Value`]s of a statement's `?1`, `?2`, …, taken
/// by reference.
macro_rules! params {
    () => {
        &[] as &[$crate::store::sql::Value]
    };
    ($($value:expr),+ $(,)?) => {
        &[$($crate::store::sql::ToValue::to_value(&$value)),+] as &[$crate::store::sql::Value]
    };
}
pub(crate) use params;

/// What went wrong in a statement, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlError {
    /// A UNIQUE or PRIMARY KEY constraint.
    Unique(String),
    ForeignKey(String),
    Check(String),
    NotNull(String),
    /// A query that must return a row returned none.
    NoRows,
    /// A column's value is not what the row code reads.
    Conversion(String),
    /// Anything else the engine reported (connection, syntax, …).
    Other(String),
}

impl SqlError {
    pub fn conversion(column: &str, message: impl fmt::Display) -> Self {
        Self::Conversion(format!("{column}: {message}"))
    }

    pub fn is_unique(&self) -> bool {
        matches!(self, Self::Unique(_))
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unique(m) => write!(f, "unique constraint failed: {m}"),
            Self::ForeignKey(m) => write!(f, "foreign key constraint failed: {m}"),
            Self::Check(m) => write!(f, "check constraint failed: {m}"),
            Self::NotNull(m) => write!(f, "not null constraint failed: {m}"),
            Self::NoRows => f.write_str("query returned no rows"),
            Self::Conversion(m) => write!(f, "unreadable column {m}"),
            Self::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for SqlError {}

pub type SqlResult<T> = Result<T, SqlError>;

/// `.optional()`: [`SqlError::NoRows`] becomes `Ok(None)`.
pub trait OptionalExt<T> {
    fn optional(self) -> SqlResult<Option<T>>;
}

impl<T> OptionalExt<T> for SqlResult<T> {
    fn optional(self) -> SqlResult<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(SqlError::NoRows) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// A result row.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

/// A column of a [`Row`]: its index or its name.
pub trait RowIndex: Copy {
    fn index(self, row: &Row) -> SqlResult<usize>;
    fn describe(self) -> String;
}

impl RowIndex for usize {
    fn index(self, row: &Row) -> SqlResult<usize> {
        if self < row.values.len() {
            Ok(self)
        } else {
            Err(SqlError::Conversion(format!("no column {self}")))
        }
    }
    fn describe(self) -> String {
        self.to_string()
    }
}

impl RowIndex for &str {
    fn index(self, row: &Row) -> SqlResult<usize> {
        row.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(self))
            .ok_or_else(|| SqlError::Conversion(format!("no column `{self}`")))
    }
    fn describe(self) -> String {
        self.to_owned()
    }
}

impl Row {
    /// The value of column `index` as a `T`.
    pub fn get<I: RowIndex, T: FromValue>(&self, index: I) -> SqlResult<T> {
        let at = index.index(self)?;
        T::from_value(&self.values[at]).map_err(|why| {
            let name = self
                .columns
                .get(at)
                .cloned()
                .unwrap_or_else(|| index.describe());
            SqlError::conversion(&name, why)
        })
    }

    /// The raw value of column `index`.
    pub fn value(&self, index: usize) -> Option<&Value> {
        self.values.get(index)
    }

    /// The column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }
}

/// A Rust value read from a column.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Result<Self, String>;
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "NULL",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "text",
        Value::Blob(_) => "a blob",
    }
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Integer(n) => Ok(*n),
            other => Err(format!("{} where an integer was expected", kind(other))),
        }
    }
}

macro_rules! narrow_integers {
    ($($ty:ty),+) => {$(
        impl FromValue for $ty {
            fn from_value(value: &Value) -> Result<Self, String> {
                let n = i64::from_value(value)?;
                <$ty>::try_from(n).map_err(|_| format!("{n} is out of range"))
            }
        }
    )+};
}
narrow_integers!(u64, u32, i32, u16, u8, usize);

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, String> {
        match i64::from_value(value)? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(format!("{n} is not a flag (0 or 1)")),
        }
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Real(x) => Ok(*x),
            Value::Integer(n) => Ok(*n as f64),
            other => Err(format!("{} where a real was expected", kind(other))),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => Ok(text.clone()),
            other => Err(format!("{} where text was expected", kind(other))),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Blob(bytes) => Ok(bytes.clone()),
            other => Err(format!("{} where a blob was expected", kind(other))),
        }
    }
}

impl FromValue for Value {
    fn from_value(value: &Value) -> Result<Self, String> {
        Ok(value.clone())
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A connection (or a transaction on one) of either engine.
pub struct Conn<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a mut PgSession),
}

impl<'a> Conn<'a> {
    pub(crate) fn sqlite(conn: &'a rusqlite::Connection) -> Self {
        Self {
            inner: Inner::Sqlite(conn),
        }
    }

    pub(crate) fn postgres(session: &'a mut PgSession) -> Self {
        Self {
            inner: Inner::Postgres(session),
        }
    }

    /// The engine.
    pub fn dialect(&self) -> Dialect {
        match self.inner {
            Inner::Sqlite(_) => Dialect::Sqlite,
            Inner::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs one statement; returns the rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[Value]) -> SqlResult<u64> {
        match &mut self.inner {
            Inner::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql).map_err(from_sqlite)?;
                statement
                    .execute(rusqlite::params_from_iter(params.iter().map(to_sqlite)))
                    .map(|n| n as u64)
                    .map_err(from_sqlite)
            }
            Inner::Postgres(session) => session.execute(sql, params),
        }
    }

    /// Runs one query; returns its rows.
    pub fn query(&mut self, sql: &str, params: &[Value]) -> SqlResult<Vec<Row>> {
        match &mut self.inner {
            Inner::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql).map_err(from_sqlite)?;
                let columns: Arc<[String]> = statement
                    .column_names()
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                let mut rows = statement
                    .query(rusqlite::params_from_iter(params.iter().map(to_sqlite)))
                    .map_err(from_sqlite)?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(from_sqlite)? {
                    let values = (0..columns.len())
                        .map(|i| row.get_ref(i).map(from_sqlite_value))
                        .collect::<rusqlite::Result<_>>()
                        .map_err(from_sqlite)?;
                    out.push(Row {
                        columns: columns.clone(),
                        values,
                    });
                }
                Ok(out)
            }
            Inner::Postgres(session) => session.query(sql, params),
        }
    }

    /// The first row of a query, mapped; [`SqlError::NoRows`] if none.
    pub fn query_row<T>(
        &mut self,
        sql: &str,
        params: &[Value],
        map: impl FnOnce(&Row) -> SqlResult<T>,
    ) -> SqlResult<T> {
        let rows = self.query(sql, params)?;
        rows.first().ok_or(SqlError::NoRows).and_then(map)
    }

    /// Every row of a query, mapped.
    pub fn query_map<T>(
        &mut self,
        sql: &str,
        params: &[Value],
        map: impl FnMut(&Row) -> SqlResult<T>,
    ) -> SqlResult<Vec<T>> {
        self.query(sql, params)?.iter().map(map).collect()
    }

    /// Runs several statements without parameters.
    pub fn execute_batch(&mut self, sql: &str) -> SqlResult<()> {
        match &mut self.inner {
            Inner::Sqlite(conn) => conn.execute_batch(sql).map_err(from_sqlite),
            Inner::Postgres(session) => session
                .client
                .batch_execute(sql)
                .map_err(|err| from_postgres(&err)),
        }
    }
}

fn to_sqlite(value: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match value {
        Value::Null => V::Null,
        Value::Integer(n) => V::Integer(*n),
        Value::Real(x) => V::Real(*x),
        Value::Text(t) => V::Text(t.clone()),
        Value::Blob(b) => V::Blob(b.clone()),
    }
}

fn from_sqlite_value(value: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef as V;
    match value {
        V::Null => Value::Null,
        V::Integer(n) => Value::Integer(n),
        V::Real(x) => Value::Real(x),
        V::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        V::Blob(b) => Value::Blob(b.to_vec()),
    }
}

pub(crate) fn from_sqlite(err: rusqlite::Error) -> SqlError {
    use rusqlite::ffi;
    match &err {
        rusqlite::Error::QueryReturnedNoRows => SqlError::NoRows,
        rusqlite::Error::SqliteFailure(e, message) => {
            let message = message.clone().unwrap_or_else(|| e.to_string());
            match e.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    SqlError::Unique(message)
                }
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => SqlError::ForeignKey(message),
                ffi::SQLITE_CONSTRAINT_CHECK => SqlError::Check(message),
                ffi::SQLITE_CONSTRAINT_NOTNULL => SqlError::NotNull(message),
                _ => SqlError::Other(err.to_string()),
            }
        }
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            SqlError::Conversion(err.to_string())
        }
        _ => SqlError::Other(err.to_string()),
    }
}

pub(crate) fn from_postgres(err: &postgres::Error) -> SqlError {
    use postgres::error::SqlState;
    let Some(db) = err.as_db_error() else {
        return SqlError::Other(err.to_string());
    };
    let message = match db.constraint() {
        Some(constraint) => format!("{} ({constraint})", db.message()),
        None => db.message().to_owned(),
    };
    match db.code() {
        c if *c == SqlState::UNIQUE_VIOLATION => SqlError::Unique(message),
        c if *c == SqlState::FOREIGN_KEY_VIOLATION => SqlError::ForeignKey(message),
        c if *c == SqlState::CHECK_VIOLATION => SqlError::Check(message),
        c if *c == SqlState::NOT_NULL_VIOLATION => SqlError::NotNull(message),
        _ => SqlError::Other(format!("{}: {}", db.severity(), db.message())),
    }
}

/// `?N` placeholders as PostgreSQL's `$N`, outside quoted text.
pub fn postgres_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            None => out.push(c),
        }
    }
    out
}

/// A PostgreSQL connection with its prepared statements.
pub struct PgSession {
    pub(crate) client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

/// Prepared statements kept per connection before the cache is cleared.
const MAX_STATEMENTS: usize = 256;

impl PgSession {
    pub(crate) fn new(client: postgres::Client) -> Self {
        Self {
            client,
            statements: HashMap::new(),
        }
    }

    fn statement(&mut self, sql: &str) -> SqlResult<postgres::Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self
            .client
            .prepare(&postgres_placeholders(sql))
            .map_err(|err| from_postgres(&err))?;
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> SqlResult<u64> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> =
            params.iter().map(|p| p as _).collect();
        self.client
            .execute(&statement, &params)
            .map_err(|err| from_postgres(&err))
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> SqlResult<Vec<Row>> {
        let statement = self.statement(sql)?;
        let columns: Arc<[String]> = statement
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> =
            params.iter().map(|p| p as _).collect();
        let rows = self
            .client
            .query(&statement, &params)
            .map_err(|err| from_postgres(&err))?;
        rows.iter()
            .map(|row| {
                let values = (0..columns.len())
                    .map(|i| pg_value(row, i))
                    .collect::<SqlResult<_>>()?;
                Ok(Row {
                    columns: columns.clone(),
                    values,
                })
            })
            .collect()
    }
}

fn pg_value(row: &postgres::Row, i: usize) -> SqlResult<Value> {
    use postgres::types::Type;
    let column = &row.columns()[i];
    let err = |e: postgres::Error| SqlError::conversion(column.name(), e);
    let ty = column.type_();
    Ok(if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i).map_err(err)?.into()
    } else if *ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i).map_err(err)?.into()
    } else if *ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(i)
            .map_err(err)?
            .map(i32::from)
            .into()
    } else if *ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i).map_err(err)?.into()
    } else if *ty == Type::FLOAT8 {
        row.try_get::<_, Option<f64>>(i).map_err(err)?.into()
    } else if *ty == Type::FLOAT4 {
        row.try_get::<_, Option<f32>>(i)
            .map_err(err)?
            .map(f64::from)
            .into()
    } else if *ty == Type::BYTEA {
        row.try_get::<_, Option<Vec<u8>>>(i).map_err(err)?.into()
    } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty) {
        row.try_get::<_, Option<String>>(i).map_err(err)?.into()
    } else {
        return Err(SqlError::conversion(
            column.name(),
            format!("type {ty} is not read by the store; cast it to BIGINT or TEXT"),
        ));
    })
}

impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        let text = [
            Type::TEXT,
            Type::VARCHAR,
            Type::BPCHAR,
            Type::NAME,
            Type::UNKNOWN,
        ];
        match self {
            Value::Null => Ok(postgres::types::IsNull::Yes),
            Value::Integer(n) => {
                if *ty == Type::INT8 {
                    n.to_sql(ty, out)
                } else if *ty == Type::INT4 {
                    i32::try_from(*n)?.to_sql(ty, out)
                } else if *ty == Type::INT2 {
                    i16::try_from(*n)?.to_sql(ty, out)
                } else if *ty == Type::BOOL {
                    (*n != 0).to_sql(ty, out)
                } else if *ty == Type::FLOAT8 {
                    (*n as f64).to_sql(ty, out)
                } else if text.contains(ty) {
                    n.to_string().as_str().to_sql(&Type::TEXT, out)
                } else {
                    Err(format!("an integer for a parameter of type {ty}").into())
                }
            }
            Value::Real(x) => {
                if *ty == Type::FLOAT8 {
                    x.to_sql(ty, out)
                } else if *ty == Type::FLOAT4 {
                    (*x as f32).to_sql(ty, out)
                } else if text.contains(ty) {
                    x.to_string().as_str().to_sql(&Type::TEXT, out)
                } else {
                    Err(format!("a real for a parameter of type {ty}").into())
                }
            }
            Value::Text(t) => {
                if text.contains(ty) || *ty == Type::JSON {
                    t.as_str().to_sql(&Type::TEXT, out)
                } else {
                    Err(format!("text for a parameter of type {ty}").into())
                }
            }
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_quotes_only() {
        assert_eq!(
            postgres_placeholders("SELECT ?1, '?2', \"a?3\", ?12 WHERE x = ? "),
            "SELECT $1, '?2', \"a?3\", $12 WHERE x = ? "
        );
    }

    #[test]
    fn rows_read_by_index_and_name_with_typed_errors() {
        let row = Row {
            columns: vec!["n".to_owned(), "t".to_owned()].into(),
            values: vec![Value::Integer(1), Value::Null],
        };
        assert_eq!(row.get::<_, i64>("N").unwrap(), 1);
        assert!(row.get::<_, bool>(0).unwrap());
        assert_eq!(row.get::<_, Option<String>>("t").unwrap(), None);
        assert!(matches!(
            row.get::<_, String>("t"),
            Err(SqlError::Conversion(m)) if m.starts_with("t:")
        ));
        assert!(row.get::<_, i64>("missing").is_err());
    }
}

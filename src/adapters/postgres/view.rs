//! The columns of a table or view, from the catalog: what `spec.source.view` exports.

use tokio_postgres::Client;

use super::SourceError;

/// One column of a relation, in attribute order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// The column's name as the catalog spells it.
    pub name: String,
    /// `format_type` of its type, e.g. `timestamp with time zone`, `numeric(14,2)`, `xid8`.
    pub type_name: String,
    /// `pg_type.typcategory`: `S` string, `N` numeric, `D` date/time, `B` boolean, `A` array, ...
    pub category: String,
    /// For an array, its element type's category; empty otherwise.
    pub element_category: String,
}

/// The columns of `relation` (SQL, quoted as needed), or `None` when the role sees no relation of
/// that name.
pub async fn relation_columns(
    client: &Client,
    relation: &str,
) -> Result<Option<Vec<RelationColumn>>, SourceError> {
    let found = client
        .query_one("SELECT to_regclass($1)::oid::text", &[&relation])
        .await
        .map_err(SourceError::query("cannot look up spec.source.view"))?;
    let Some(oid) = found.get::<_, Option<String>>(0) else {
        return Ok(None);
    };
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typcategory::text, \
             coalesce(e.typcategory::text, '') \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' \
             WHERE a.attrelid = $1::text::oid AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(SourceError::query(
            "cannot read the columns of spec.source.view",
        ))?;
    Ok(Some(
        rows.iter()
            .map(|row| RelationColumn {
                name: row.get(0),
                type_name: row.get(1),
                category: row.get(2),
                element_category: row.get(3),
            })
            .collect(),
    ))
}

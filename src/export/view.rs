//! A saved search as the file's source (`spec.source.view`): the view's columns, in its order,
//! each read as its type (rendered as the file types' cells are), and the checks that keep its windows lossless.
//!
//! No I/O here: the adapter reads the view's columns from the catalog ([`RelationColumn`]); this module
//! decides what the file holds or why the view cannot be exported.

use crate::adapters::postgres::{MAX_COLUMNS, RelationColumn, WireType};
use crate::export::columns::ColumnKind;

/// The column the windows compare with snapshots: the id of the transaction that last changed the
/// row, as in the reference tables.
pub const TXID_COLUMN: &str = "txid";

/// One column of a view's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewColumn {
    /// Header name: the view's column name as the catalog spells it.
    pub name: String,
    /// What it holds, which decides whether `escapeFormulas` may alter it.
    pub kind: ColumnKind,
    /// The type `sql` yields, which fixes how the client renders the cell.
    pub wire: WireType,
    /// SQL expression reading the column as `wire`'s type.
    pub sql: String,
}

/// What a view's file holds and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewShape {
    /// The view as SQL, every part quoted.
    pub relation: String,
    /// The file's columns in the view's order (`txid` left out, as for the reference tables).
    pub columns: Vec<ViewColumn>,
    /// The first column, quoted: it orders the rows, so equal windows give equal bytes.
    pub key: String,
}

/// Why a view cannot be exported. Every message names `spec.source.view` and says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error(
        "spec.source.view {view:?} names no table or view this database's role can see: create \
         the view, grant the role SELECT on it, or correct the name (case-sensitive, optionally \
         schema-qualified such as crm.major_donors)"
    )]
    Missing { view: String },
    #[error(
        "spec.source.view {view:?} has no column txid, so its windows would lose rows: add the \
         row-change id of the table its rows come from to the view's select list (e.g. \
         `CREATE OR REPLACE VIEW {view} AS SELECT ..., c.txid FROM constituents c ...`; the \
         reference schema's trigger keeps that column current), then the next run exports it"
    )]
    NoTxid { view: String },
    #[error(
        "spec.source.view {view:?}: column txid is {found}, not xid8: expose the table's txid \
         column (xid8, set by the reference schema's trigger) as txid, not a cast or a computed \
         value"
    )]
    TxidNotXid8 { view: String, found: String },
    #[error("spec.source.view {view:?} has no column besides txid: a file needs at least one")]
    NoColumns { view: String },
    #[error(
        "spec.source.view {view:?} has {columns} columns besides txid, more than the {MAX_COLUMNS} \
         a file may have: select fewer columns in the view"
    )]
    TooManyColumns { view: String, columns: usize },
}

/// `name` as a quoted SQL identifier: inside double quotes, a double quote doubled.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `view` (`name` or `schema.name`, as admission allows) as a quoted, possibly qualified name.
pub fn quote_relation(view: &str) -> String {
    match view.split_once('.') {
        Some((schema, name)) => format!("{}.{}", quote_identifier(schema), quote_identifier(name)),
        None => quote_identifier(view),
    }
}

/// The file of `view` whose catalog columns are `columns` (in attribute order), or why it
/// cannot be exported.
pub fn shape(view: &str, columns: &[RelationColumn]) -> Result<ViewShape, ViewError> {
    let txid = columns.iter().find(|column| column.name == TXID_COLUMN);
    match txid {
        None => {
            return Err(ViewError::NoTxid {
                view: view.to_string(),
            });
        }
        Some(column) if column.type_name != "xid8" => {
            return Err(ViewError::TxidNotXid8 {
                view: view.to_string(),
                found: column.type_name.clone(),
            });
        }
        Some(_) => {}
    }
    let columns: Vec<ViewColumn> = columns
        .iter()
        .filter(|column| column.name != TXID_COLUMN)
        .map(render)
        .collect();
    let key = columns
        .first()
        .map(|column| quote_identifier(&column.name))
        .ok_or_else(|| ViewError::NoColumns {
            view: view.to_string(),
        })?;
    if columns.len() > MAX_COLUMNS {
        return Err(ViewError::TooManyColumns {
            view: view.to_string(),
            columns: columns.len(),
        });
    }
    Ok(ViewShape {
        relation: quote_relation(view),
        columns,
        key,
    })
}

/// How a column of the catalog's type becomes a cell, in the file types' formats: read as the
/// type whose binary form the client renders (see [`WireType`]), or as text.
fn render(column: &RelationColumn) -> ViewColumn {
    let quoted = quote_identifier(&column.name);
    let (kind, wire, sql) = match (column.category.as_str(), column.type_name.as_str()) {
        ("A", _) => (
            // A list of names a person typed; a list of numbers or ids is never altered.
            if column.element_category == "S" {
                ColumnKind::List
            } else {
                ColumnKind::Id
            },
            WireType::TextList,
            format!("{quoted}::text[]"),
        ),
        // A timestamp without time zone reads as UTC (the export pins `TimeZone`).
        (_, "timestamp with time zone" | "timestamp without time zone") => (
            ColumnKind::Timestamp,
            WireType::Timestamp,
            format!("{quoted}::timestamptz"),
        ),
        (_, "date") => (ColumnKind::Date, WireType::Date, format!("{quoted}::date")),
        ("B", _) => (
            ColumnKind::Boolean,
            WireType::Bool,
            format!("{quoted}::boolean"),
        ),
        ("N", "bigint" | "integer" | "smallint") => (
            ColumnKind::Number,
            WireType::Int8,
            format!("{quoted}::int8"),
        ),
        ("N", _) => (
            ColumnKind::Number,
            WireType::Text,
            format!("{quoted}::text"),
        ),
        // Text is what a person typed, unless its name says it is an identifier (a join key that
        // a `'` prefix would break).
        ("S", _) if !is_identifier_name(&column.name) => (
            ColumnKind::FreeText,
            WireType::Text,
            format!("{quoted}::text"),
        ),
        _ => (ColumnKind::Id, WireType::Text, format!("{quoted}::text")),
    };
    ViewColumn {
        name: column.name.clone(),
        kind,
        wire,
        sql,
    }
}

/// `id`, or a name ending in `_id` (`constituent_import_id`).
fn is_identifier_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "id" || lower.ends_with("_id")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, type_name: &str, category: &str) -> RelationColumn {
        RelationColumn {
            name: name.into(),
            type_name: type_name.into(),
            category: category.into(),
            element_category: String::new(),
        }
    }

    #[test]
    fn identifiers_are_quoted_and_qualified_names_split() {
        assert_eq!(quote_identifier("Major Donors"), "\"Major Donors\"");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_relation("crm.MajorDonors"), "\"crm\".\"MajorDonors\"");
        assert_eq!(quote_relation("major_donors"), "\"major_donors\"");
    }

    #[test]
    fn a_view_keeps_its_order_leaves_txid_out_and_renders_by_type() {
        let mut tags = column("tags", "text[]", "A");
        tags.element_category = "S".into();
        let shape = shape(
            "crm.major_donors",
            &[
                column("constituent_id", "bigint", "N"),
                column("last_name", "text", "S"),
                column("txid", "xid8", "U"),
                column("constituent_import_id", "text", "S"),
                column("total_given", "numeric(14,2)", "N"),
                tags,
                column("updated_at", "timestamp with time zone", "D"),
                column("first_gift", "date", "D"),
                column("deleted", "boolean", "B"),
            ],
        )
        .expect("a valid view");
        assert_eq!(shape.relation, "\"crm\".\"major_donors\"");
        assert_eq!(shape.key, "\"constituent_id\"");
        let described: Vec<_> = shape
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.kind))
            .collect();
        assert_eq!(
            described,
            [
                ("constituent_id", ColumnKind::Number),
                ("last_name", ColumnKind::FreeText),
                ("constituent_import_id", ColumnKind::Id),
                ("total_given", ColumnKind::Number),
                ("tags", ColumnKind::List),
                ("updated_at", ColumnKind::Timestamp),
                ("first_gift", ColumnKind::Date),
                ("deleted", ColumnKind::Boolean),
            ]
        );
        let read: Vec<_> = shape
            .columns
            .iter()
            .map(|c| (c.wire, c.sql.as_str()))
            .collect();
        assert_eq!(
            read,
            [
                (WireType::Int8, "\"constituent_id\"::int8"),
                (WireType::Text, "\"last_name\"::text"),
                (WireType::Text, "\"constituent_import_id\"::text"),
                (WireType::Text, "\"total_given\"::text"),
                (WireType::TextList, "\"tags\"::text[]"),
                (WireType::Timestamp, "\"updated_at\"::timestamptz"),
                (WireType::Date, "\"first_gift\"::date"),
                (WireType::Bool, "\"deleted\"::boolean"),
            ]
        );
    }

    #[test]
    fn a_view_without_a_usable_txid_is_refused_naming_the_field_and_the_fix() {
        let err = shape("saved_search", &[column("id", "bigint", "N")]).expect_err("no txid");
        let message = err.to_string();
        assert!(
            message.contains("spec.source.view \"saved_search\""),
            "{message}"
        );
        assert!(
            message.contains("no column txid") && message.contains("c.txid"),
            "{message}"
        );
        let err = shape(
            "saved_search",
            &[column("id", "bigint", "N"), column("txid", "bigint", "N")],
        )
        .expect_err("not xid8");
        assert!(
            err.to_string().contains("column txid is bigint, not xid8"),
            "{err}"
        );
        let err = shape("only_txid", &[column("txid", "xid8", "U")]).expect_err("no columns");
        assert!(matches!(err, ViewError::NoColumns { .. }));
    }
}

//! The columns of each file type (docs/design.md, "File format"), in file order, with how each is rendered.
//!
//! This is the single place that fixes a file's shape: the CSV header, which cells `escapeFormulas`
//! may alter, and how each source column becomes the exact text of its cell. Text columns arrive
//! as they are; ids, dates, timestamps, booleans and lists arrive in binary and the client renders
//! them ([`WireType`]), which costs the database far less than formatting them itself.
//! [`Column::text_sql`] is the same rendering done by the server, which tests compare with.
//!
//! Rendering decisions:
//! - Timestamps are UTC, RFC 3339, always with six fractional digits (microseconds, PostgreSQL's
//!   own precision) and a `Z`: `2024-03-05T14:07:09.123456Z`. Keeping the fraction makes the value
//!   lossless, so a consumer that receives one row in several files can order its versions by
//!   `updated_at` even when two writes fall in the same second; the fixed width keeps the text
//!   sortable.
//! - Dates are ISO 8601 (`2024-03-05`), via the `date` text output under `DateStyle = ISO`, which
//!   [`SESSION_SETTINGS`] pins for the export transaction.
//! - `solicitors` and `affiliations` are `text[]` joined with `;` (NULL elements are dropped by
//!   `array_to_string`).
//! - `deleted` is `true`/`false` (the boolean-to-text cast, not the `t`/`f` output format; a NULL
//!   from a view counts as not deleted).
//! - Amounts are the plain `numeric` text (`1250.00`, never an exponent).
//! - NULL becomes an empty cell.
//!
//! Free text (eligible for formula escaping) is what a person typed into the CRM: `category`,
//! `interaction_type`, `summary`, `description`, `title`, `status`, `stage`, `solicitors` (names),
//! and every constituent column but its ids and timestamps: name parts, email, phone (a `+1 ...`
//! number gets the `'` too: spreadsheets read a leading `+` as a formula), address and
//! `affiliations`.
//! Identifiers, including the `*_import_id` keys, are never altered: they are join keys that
//! consumers match back against their own systems, and a `'` prefix would break that match.

use crate::adapters::postgres::WireType;
use crate::resource::FileType;

/// What a column holds, which decides whether `escapeFormulas` may alter it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// A numeric or textual identifier (primary keys, foreign keys, import ids, user ids).
    Id,
    /// Text a person typed; the only kind that `escapeFormulas` alters.
    FreeText,
    /// A `;`-separated list of names a person typed (solicitors); escaped like free text.
    List,
    /// A decimal amount.
    Number,
    /// A calendar date, ISO 8601.
    Date,
    /// An instant, UTC RFC 3339.
    Timestamp,
    /// `true` or `false`.
    Boolean,
}

impl ColumnKind {
    /// Whether `escapeFormulas` applies: only to what a person typed. Numbers, dates, ids and
    /// booleans are never altered, so a negative amount stays a number.
    pub fn escapes_formulas(self) -> bool {
        matches!(self, ColumnKind::FreeText | ColumnKind::List)
    }
}

/// One column of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// Header name, identical to the source column name.
    pub name: &'static str,
    /// What it holds.
    pub kind: ColumnKind,
    /// The type `sql` yields, which fixes how the client renders the cell.
    pub wire: WireType,
    /// SQL expression reading the column as `wire`'s type (a cast, so a source column of a
    /// compatible type reads the same), or NULL.
    pub sql: &'static str,
}

impl Column {
    const fn new(name: &'static str, kind: ColumnKind, wire: WireType, sql: &'static str) -> Self {
        Self {
            name,
            kind,
            wire,
            sql,
        }
    }

    /// The SQL expression that renders this cell's text in the server, as the client renders
    /// `sql`'s value: what a script exporting the same file would select.
    pub fn text_sql(&self) -> String {
        let sql = self.sql;
        match self.wire {
            WireType::Text => sql.to_string(),
            WireType::Int8 | WireType::Bool | WireType::Date => format!("({sql})::text"),
            WireType::Timestamp => {
                format!("to_char(({sql}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
            }
            WireType::TextList => format!("array_to_string({sql}, ';')"),
        }
    }
}

/// Session settings the [`Column::text_sql`] renderings rely on; the export sets them with
/// `SET LOCAL` so a server or role default (e.g. `DateStyle = 'SQL, DMY'` or a local `TimeZone`)
/// cannot change the file. `TimeZone = UTC` also makes `timestamp without time zone` columns read
/// as UTC.
pub const SESSION_SETTINGS: &str = "SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL TimeZone = 'UTC'; SET LOCAL IntervalStyle = 'iso_8601'";

/// Longest column list of any file type, so callers can size fixed buffers.
pub const MAX_COLUMNS: usize = 19;

const INTERACTIONS: [Column; 16] = [
    Column::new(
        "interaction_id",
        ColumnKind::Id,
        WireType::Int8,
        "interaction_id::int8",
    ),
    Column::new(
        "interaction_import_id",
        ColumnKind::Id,
        WireType::Text,
        "interaction_import_id::text",
    ),
    Column::new(
        "constituent_id",
        ColumnKind::Id,
        WireType::Int8,
        "constituent_id::int8",
    ),
    Column::new(
        "constituent_import_id",
        ColumnKind::Id,
        WireType::Text,
        "constituent_import_id::text",
    ),
    Column::new(
        "category",
        ColumnKind::FreeText,
        WireType::Text,
        "category::text",
    ),
    Column::new(
        "interaction_type",
        ColumnKind::FreeText,
        WireType::Text,
        "interaction_type::text",
    ),
    Column::new(
        "occurred_on",
        ColumnKind::Date,
        WireType::Date,
        "occurred_on::date",
    ),
    Column::new(
        "summary",
        ColumnKind::FreeText,
        WireType::Text,
        "summary::text",
    ),
    Column::new(
        "description",
        ColumnKind::FreeText,
        WireType::Text,
        "description::text",
    ),
    Column::new(
        "solicitors",
        ColumnKind::List,
        WireType::TextList,
        "solicitors::text[]",
    ),
    Column::new(
        "creator_user_id",
        ColumnKind::Id,
        WireType::Text,
        "creator_user_id::text",
    ),
    Column::new(
        "proposal_id",
        ColumnKind::Id,
        WireType::Int8,
        "proposal_id::int8",
    ),
    Column::new(
        "proposal_import_id",
        ColumnKind::Id,
        WireType::Text,
        "proposal_import_id::text",
    ),
    Column::new(
        "created_at",
        ColumnKind::Timestamp,
        WireType::Timestamp,
        "created_at::timestamptz",
    ),
    Column::new(
        "updated_at",
        ColumnKind::Timestamp,
        WireType::Timestamp,
        "updated_at::timestamptz",
    ),
    Column::new(
        "deleted",
        ColumnKind::Boolean,
        WireType::Bool,
        "coalesce(deleted, false)::boolean",
    ),
];

const PROPOSALS: [Column; 17] = [
    Column::new(
        "proposal_id",
        ColumnKind::Id,
        WireType::Int8,
        "proposal_id::int8",
    ),
    Column::new(
        "proposal_import_id",
        ColumnKind::Id,
        WireType::Text,
        "proposal_import_id::text",
    ),
    Column::new(
        "constituent_id",
        ColumnKind::Id,
        WireType::Int8,
        "constituent_id::int8",
    ),
    Column::new(
        "constituent_import_id",
        ColumnKind::Id,
        WireType::Text,
        "constituent_import_id::text",
    ),
    Column::new("title", ColumnKind::FreeText, WireType::Text, "title::text"),
    Column::new(
        "status",
        ColumnKind::FreeText,
        WireType::Text,
        "status::text",
    ),
    Column::new("stage", ColumnKind::FreeText, WireType::Text, "stage::text"),
    Column::new(
        "ask_amount",
        ColumnKind::Number,
        WireType::Text,
        "ask_amount::numeric::text",
    ),
    Column::new(
        "expected_amount",
        ColumnKind::Number,
        WireType::Text,
        "expected_amount::numeric::text",
    ),
    Column::new(
        "funded_amount",
        ColumnKind::Number,
        WireType::Text,
        "funded_amount::numeric::text",
    ),
    Column::new(
        "ask_date",
        ColumnKind::Date,
        WireType::Date,
        "ask_date::date",
    ),
    Column::new(
        "expected_date",
        ColumnKind::Date,
        WireType::Date,
        "expected_date::date",
    ),
    Column::new(
        "funded_date",
        ColumnKind::Date,
        WireType::Date,
        "funded_date::date",
    ),
    Column::new(
        "solicitors",
        ColumnKind::List,
        WireType::TextList,
        "solicitors::text[]",
    ),
    Column::new(
        "created_at",
        ColumnKind::Timestamp,
        WireType::Timestamp,
        "created_at::timestamptz",
    ),
    Column::new(
        "updated_at",
        ColumnKind::Timestamp,
        WireType::Timestamp,
        "updated_at::timestamptz",
    ),
    Column::new(
        "deleted",
        ColumnKind::Boolean,
        WireType::Bool,
        "coalesce(deleted, false)::boolean",
    ),
];

const CONSTITUENTS: [Column; 19] = [
    Column::new(
        "constituent_id",
        ColumnKind::Id,
        WireType::Int8,
        "constituent_id::int8",
    ),
    Column::new(
        "constituent_import_id",
        ColumnKind::Id,
        WireType::Text,
        "constituent_import_id::text",
    ),
    Column::new(
        "name_prefix",
        ColumnKind::FreeText,
        WireType::Text,
        "name_prefix::text",
    ),
    Column::new(
        "first_name",
        ColumnKind::FreeText,
        WireType::Text,
        "first_name::text",
    ),
    Column::new(
        "middle_name",
        ColumnKind::FreeText,
        WireType::Text,
        "middle_name::text",
    ),
    Column::new(
        "last_name",
        ColumnKind::FreeText,
        WireType::Text,
        "last_name::text",
    ),
    Column::new(
        "name_suffix",
        ColumnKind::FreeText,
        WireType::Text,
        "name_suffix::text",
    ),
    Column::new(
        "primary_email",
        ColumnKind::FreeText,
        WireType::Text,
        "primary_email::text",
    ),
    Column::new("phone", ColumnKind::FreeText, WireType::Text, "phone::text"),
    Column::new(
        "address_line_1",
        ColumnKind::FreeText,
        WireType::Text,
        "address_line_1::text",
    ),
    Column::new(
        "address_line_2",
        ColumnKind::FreeText,
        WireType::Text,
        "address_line_2::text",
    ),
    Column::new("city", ColumnKind::FreeText, WireType::Text, "city::text"),
    Column::new(
        "region",
        ColumnKind::FreeText,
        WireType::Text,
        "region::text",
    ),
    Column::new(
        "postal_code",
        ColumnKind::FreeText,
        WireType::Text,
        "postal_code::text",
    ),
    Column::new(
        "country",
        ColumnKind::FreeText,
        WireType::Text,
        "country::text",
    ),
    Column::new(
        "affiliations",
        ColumnKind::List,
        WireType::TextList,
        "affiliations::text[]",
    ),
    Column::new(
        "created_at",
        ColumnKind::Timestamp,
        WireType::Timestamp,
        "created_at::timestamptz",
    ),
    Column::new(
        "updated_at",
        ColumnKind::Timestamp,
        WireType::Timestamp,
        "updated_at::timestamptz",
    ),
    Column::new(
        "deleted",
        ColumnKind::Boolean,
        WireType::Bool,
        "coalesce(deleted, false)::boolean",
    ),
];

/// The columns of `file_type`, in file order.
pub fn columns(file_type: FileType) -> &'static [Column] {
    match file_type {
        FileType::Interactions => &INTERACTIONS,
        FileType::Proposals => &PROPOSALS,
        FileType::Constituents => &CONSTITUENTS,
    }
}

/// The primary key, which orders the rows of a file so that equal windows give equal bytes.
pub fn key_column(file_type: FileType) -> &'static str {
    match file_type {
        FileType::Interactions => "interaction_id",
        FileType::Proposals => "proposal_id",
        FileType::Constituents => "constituent_id",
    }
}

/// The source table (or view) of `file_type`.
pub fn table(file_type: FileType) -> &'static str {
    file_type.as_str()
}

/// The select list the export reads, each column aliased to its header name.
pub fn select_list(file_type: FileType) -> String {
    columns(file_type)
        .iter()
        .map(|column| format!("{} AS {}", column.sql, column.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The select list that renders every cell's text in the server, aliased to its header name:
/// the same file, the way a script would `COPY` it (benchmarks and the rendering tests use it).
pub fn text_select_list(file_type: FileType) -> String {
    columns(file_type)
        .iter()
        .map(|column| format!("{} AS {}", column.text_sql(), column.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How each column of [`select_list`] travels, in order.
pub fn wire_types(file_type: FileType) -> Vec<WireType> {
    columns(file_type)
        .iter()
        .map(|column| column.wire)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interactions_columns_match_the_design_in_order() {
        let names: Vec<_> = columns(FileType::Interactions)
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names.join(", "),
            "interaction_id, interaction_import_id, constituent_id, constituent_import_id, category, \
             interaction_type, occurred_on, summary, description, solicitors, creator_user_id, \
             proposal_id, proposal_import_id, created_at, updated_at, deleted"
        );
    }

    #[test]
    fn proposals_columns_match_the_design_in_order() {
        let names: Vec<_> = columns(FileType::Proposals)
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names.join(", "),
            "proposal_id, proposal_import_id, constituent_id, constituent_import_id, title, status, \
             stage, ask_amount, expected_amount, funded_amount, ask_date, expected_date, funded_date, \
             solicitors, created_at, updated_at, deleted"
        );
    }

    #[test]
    fn only_typed_text_escapes_formulas() {
        let escaped: Vec<_> = columns(FileType::Proposals)
            .iter()
            .filter(|c| c.kind.escapes_formulas())
            .map(|c| c.name)
            .collect();
        assert_eq!(escaped, ["title", "status", "stage", "solicitors"]);
        let escaped: Vec<_> = columns(FileType::Interactions)
            .iter()
            .filter(|c| c.kind.escapes_formulas())
            .map(|c| c.name)
            .collect();
        assert_eq!(
            escaped,
            [
                "category",
                "interaction_type",
                "summary",
                "description",
                "solicitors"
            ]
        );
    }

    #[test]
    fn the_server_rendering_of_each_cell_matches_the_client_rendering() {
        let text_sql = |name: &str| {
            columns(FileType::Interactions)
                .iter()
                .find(|c| c.name == name)
                .map(Column::text_sql)
        };
        assert_eq!(
            text_sql("created_at").as_deref(),
            Some(
                "to_char((created_at::timestamptz) AT TIME ZONE 'UTC', \
                 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
            )
        );
        assert_eq!(
            text_sql("solicitors").as_deref(),
            Some("array_to_string(solicitors::text[], ';')")
        );
        assert_eq!(
            text_sql("interaction_id").as_deref(),
            Some("(interaction_id::int8)::text")
        );
        assert_eq!(text_sql("summary").as_deref(), Some("summary::text"));
    }

    #[test]
    fn constituents_columns_match_the_design_in_order() {
        let names: Vec<_> = columns(FileType::Constituents)
            .iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(
            names.join(", "),
            "constituent_id, constituent_import_id, name_prefix, first_name, middle_name, \
             last_name, name_suffix, primary_email, phone, address_line_1, address_line_2, city, \
             region, postal_code, country, affiliations, created_at, updated_at, deleted"
        );
        let kept: Vec<_> = columns(FileType::Constituents)
            .iter()
            .filter(|c| !c.kind.escapes_formulas())
            .map(|c| c.name)
            .collect();
        assert_eq!(
            kept,
            [
                "constituent_id",
                "constituent_import_id",
                "created_at",
                "updated_at",
                "deleted"
            ]
        );
    }

    #[test]
    fn max_columns_covers_every_file_type() {
        for file_type in FileType::ALL {
            assert!(columns(file_type).len() <= MAX_COLUMNS);
            assert_eq!(columns(file_type)[0].name, key_column(file_type));
        }
    }
}

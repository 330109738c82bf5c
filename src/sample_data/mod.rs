//! The reference schema and a generator of realistic synthetic CRM rows,
//! for demos, tests and benchmarks.
//!
//! The rows are deliberately awkward: commas, double quotes, LF and CRLF inside cells, accents,
//! CJK and emoji, empty strings and NULLs, text that looks like a spreadsheet formula, negative
//! amounts, soft-deleted rows and several solicitors, so every export path meets them.
//!
//! Output depends only on the seed and the counts: the same call on two fresh databases yields the
//! same rows (ids, timestamps and all), which makes exports comparable byte for byte. Rows load
//! through `COPY ... FROM STDIN` in text format, in batches, so a million rows take seconds.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{NaiveDate, TimeDelta};
use futures::SinkExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

use crate::adapters::postgres::SourceError;
use crate::progress::Progress;

/// The reference schema: the two tables, their `txid` index and the trigger that stamps writes.
pub const SCHEMA_SQL: &str = include_str!("schema.sql");

/// Bytes of COPY data sent per message: large enough to amortise round trips, small enough to
/// keep memory flat.
const BATCH_BYTES: usize = 1 << 20;

/// How long `run_sample_data` waits for the server to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What `run_sample_data` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleDataSummary {
    /// Interactions added.
    pub interactions: u64,
    /// Proposals added.
    pub proposals: u64,
    /// Constituents added.
    pub constituents: u64,
    /// Wall-clock time, schema included.
    pub elapsed: Duration,
}

/// Applies the reference schema; safe to run any number of times, also concurrently (it takes an
/// advisory lock and runs as one implicit transaction, so a failure leaves nothing half-applied).
pub async fn apply_schema(client: &Client) -> Result<(), SourceError> {
    client
        .batch_execute(SCHEMA_SQL)
        .await
        .map_err(SourceError::query("cannot apply the reference schema"))
}

/// Connects to `database_url`, applies the schema and adds the rows (all counts 0: schema only).
/// What the `sample-data` subcommand runs.
pub async fn run_sample_data(
    database_url: &str,
    interactions: u64,
    proposals: u64,
    constituents: u64,
    seed: u64,
) -> Result<SampleDataSummary, SourceError> {
    run_sample_data_with_progress(
        database_url,
        interactions,
        proposals,
        constituents,
        seed,
        false,
    )
    .await
}

/// [`run_sample_data`], showing rows and bytes loaded on standard error when `show_progress`.
pub async fn run_sample_data_with_progress(
    database_url: &str,
    interactions: u64,
    proposals: u64,
    constituents: u64,
    seed: u64,
    show_progress: bool,
) -> Result<SampleDataSummary, SourceError> {
    let started = Instant::now();
    let (client, connection) =
        crate::adapters::postgres::connect(database_url, CONNECT_TIMEOUT).await?;
    apply_schema(&client).await?;
    generate_with_progress(&client, interactions, proposals, seed, show_progress).await?;
    generate_constituents(&client, constituents, seed).await?;
    drop(client);
    // The connection task ends once the client is gone; its error, if any, was logged.
    let _ = connection.await;
    Ok(SampleDataSummary {
        interactions,
        proposals,
        constituents,
        elapsed: started.elapsed(),
    })
}

/// Adds `proposals` then `interactions` synthetic rows derived from `seed`. Ids come from the
/// tables' identity columns, so generated rows never collide with rows written by hand; the
/// interactions refer to proposals that exist at the time of the call.
pub async fn generate(
    client: &Client,
    interactions: u64,
    proposals: u64,
    seed: u64,
) -> Result<(), SourceError> {
    generate_with_progress(client, interactions, proposals, seed, false).await
}

/// [`generate`], showing each table's rows and bytes loaded on standard error when `show_progress`.
pub async fn generate_with_progress(
    client: &Client,
    interactions: u64,
    proposals: u64,
    seed: u64,
    show_progress: bool,
) -> Result<(), SourceError> {
    let progress =
        |table: &str| Progress::on_stderr(show_progress, format!("{table}: loaded"), None);
    if proposals > 0 {
        // Separate streams per table, so the interactions do not change when only the number of
        // proposals does.
        let mut generator = Generator::new(seed, 0x7072_6f70_6f73_616c);
        copy_rows(
            client,
            "COPY proposals (proposal_import_id, constituent_id, constituent_import_id, title, \
             status, stage, ask_amount, expected_amount, funded_amount, ask_date, expected_date, \
             funded_date, solicitors, created_at, updated_at, deleted) FROM STDIN",
            proposals,
            |buffer| generator.proposal(buffer),
            progress("proposals"),
        )
        .await?;
    }
    if interactions > 0 {
        let row = client
            .query_one(
                "SELECT min(proposal_id)::text, max(proposal_id)::text FROM proposals",
                &[],
            )
            .await
            .map_err(SourceError::query("cannot read the proposal ids"))?;
        let min: Option<String> = row.get(0);
        let max: Option<String> = row.get(1);
        let proposal_ids = match (
            min.and_then(|v| v.parse::<i64>().ok()),
            max.and_then(|v| v.parse::<i64>().ok()),
        ) {
            (Some(min), Some(max)) => Some((min, max)),
            _ => None,
        };
        let mut generator = Generator::new(seed, 0x696e_7465_7261_6374);
        copy_rows(
            client,
            "COPY interactions (interaction_import_id, constituent_id, constituent_import_id, \
             category, interaction_type, occurred_on, summary, description, solicitors, \
             creator_user_id, proposal_id, proposal_import_id, created_at, updated_at, deleted) \
             FROM STDIN",
            interactions,
            |buffer| generator.interaction(buffer, proposal_ids),
            progress("interactions"),
        )
        .await?;
    }
    Ok(())
}

/// Adds `count` synthetic constituents derived from `seed`, from a stream of their own, so the
/// interactions and proposals of a seed do not change with it. Ids come from the identity column.
pub async fn generate_constituents(
    client: &Client,
    count: u64,
    seed: u64,
) -> Result<(), SourceError> {
    if count == 0 {
        return Ok(());
    }
    let mut generator = Generator::new(seed, 0x636f_6e73_7469_7475);
    copy_rows(
        client,
        "COPY constituents (constituent_import_id, name_prefix, first_name, middle_name, \
         last_name, name_suffix, primary_email, phone, address_line_1, address_line_2, city, \
         region, postal_code, country, affiliations, created_at, updated_at, deleted) FROM STDIN",
        count,
        |buffer| generator.constituent(buffer),
        Progress::hidden(),
    )
    .await
}

async fn copy_rows<F>(
    client: &Client,
    statement: &str,
    count: u64,
    mut row: F,
    mut progress: Progress,
) -> Result<(), SourceError>
where
    F: FnMut(&mut Vec<u8>),
{
    let sink = client
        .copy_in::<_, Bytes>(statement)
        .await
        .map_err(SourceError::query("cannot start loading sample data"))?;
    futures::pin_mut!(sink);
    let mut buffer = Vec::with_capacity(BATCH_BYTES + 64 * 1024);
    let mut sent: u64 = 0;
    for done in 1..=count {
        row(&mut buffer);
        if buffer.len() >= BATCH_BYTES {
            let batch = Bytes::from(std::mem::replace(
                &mut buffer,
                Vec::with_capacity(BATCH_BYTES + 64 * 1024),
            ));
            sent += batch.len() as u64;
            sink.send(batch)
                .await
                .map_err(SourceError::query("cannot load sample data"))?;
            progress.update(Some(done), sent);
        }
    }
    if !buffer.is_empty() {
        sent += buffer.len() as u64;
        sink.send(Bytes::from(buffer))
            .await
            .map_err(SourceError::query("cannot load sample data"))?;
    }
    progress.finish(Some(count), sent);
    sink.as_mut()
        .finish()
        .await
        .map_err(SourceError::query("cannot load sample data"))?;
    Ok(())
}

const FIRST_NAMES: &[&str] = &[
    "Ann",
    "José",
    "Zoë",
    "Björn",
    "Siobhán",
    "François",
    "Mei",
    "Hiroshi",
    "Aisha",
    "Olu",
    "Łukasz",
    "María José",
    "Nguyễn",
    "Søren",
    "Priya",
    "Chloé",
    "Dmitri",
    "Fatima",
    "Jean-Luc",
    "Kwame",
    "王",
    "李",
    "Sung-min",
    "Émile",
];
const LAST_NAMES: &[&str] = &[
    "Lee",
    "O'Brien",
    "García",
    "Müller",
    "Smith",
    "Ødegaard",
    "Nakamura",
    "Okafor",
    "Dubois",
    "Kowalski",
    "Chen",
    "Van der Berg",
    "Núñez",
    "Patel",
    "Ivanova",
    "Johnson",
    "小明",
    "Al-Rashid",
    "Brontë",
    "Ó Súilleabháin",
];
const SOLICITORS: &[&str] = &[
    "Ann Lee",
    "Bo Chen",
    "Carla Núñez",
    "Dev Patel",
    "Éloïse Martin",
    "Farah Khan",
    "Gus O'Neil",
    "Hana 佐藤",
];
const CATEGORIES: &[&str] = &[
    "Cultivation",
    "Solicitation",
    "Stewardship",
    "Event",
    "Research, prospect",
    "Annual Fund",
];
const INTERACTION_TYPES: &[&str] = &[
    "Phone call",
    "Meeting",
    "Email",
    "Visit",
    "Letter",
    "Video call",
    "Text message",
];
const SUMMARIES: &[&str] = &[
    "Lunch with the dean",
    "Called about the scholarship fund, left a voicemail",
    "Discussed \"naming\" opportunity for the new library",
    "Thank-you note for the gala",
    "Campus tour 🎓 with family",
    "Follow-up: pledge reminder",
    "=SUM(A1:A9)",
    "+1 for the matching gift",
    "-x: declined to give this year",
    "@cmd reminder",
    "Rendez-vous au café, très cordial",
    "寄付についての打ち合わせ",
    "Planned giving — bequest intent 💐",
    "Board meeting recap",
    "",
];
const DESCRIPTION_LINES: &[&str] = &[
    "Donor is interested in endowing a chair.",
    "Spouse prefers email, not phone.",
    "Said: \"We'll decide after the holidays.\"",
    "Mentioned a gift of stock, 500 shares.",
    "Intéressé par la bourse d'études.",
    "希望匿名捐赠。",
    "Loves the orchestra 🎻; invite to the spring concert.",
    "Check address, moved to 12 Elm St., Apt 4",
    "=HYPERLINK(\"http://example.invalid\",\"click\")",
    "\tIndented note from the old system",
    "Do not contact before March; traveling",
];
const TITLES: &[&str] = &[
    "Library renovation, phase 2",
    "Endowed scholarship",
    "The \"Smith\" Chair in History",
    "Annual Fund 2025",
    "Athletics — new boathouse",
    "Bourse d'excellence",
    "奨学金基金",
    "Planned gift 🎁",
    "=Capital campaign",
    "-Matching gift",
    "",
];
const STATUSES: &[&str] = &[
    "Active", "Accepted", "Declined", "Funded", "Pending", "Closed",
];
const STAGES: &[&str] = &[
    "Identification",
    "Qualification",
    "Cultivation",
    "Solicitation",
    "Negotiation",
    "Stewardship",
];
const NAME_PREFIXES: &[&str] = &["Dr.", "Mr.", "Ms.", "Mx.", "Prof.", "Rev.", "Hon."];
const NAME_SUFFIXES: &[&str] = &["Jr.", "Sr.", "III", "PhD", "MBA, CPA"];
const EMAIL_DOMAINS: &[&str] = &["example.edu", "example.com", "alumni.example.org"];
const PHONES: &[&str] = &[
    "+1 617-555-0142",
    "(212) 555-0199",
    "+44 20 7946 0958",
    "+33 1 23 45 67 89",
    "555-0100 ext. 12",
    "",
];
const STREETS: &[&str] = &[
    "12 Elm St.",
    "1600 Amphitheatre Pkwy",
    "221B Baker Street",
    "Flat 3, 45 Rue de la Paix",
    "Calle Mayor, 7",
    "北京市朝阳区 1号",
    "-1 Basement Lane",
    "=Main St 4",
];
const SECOND_LINES: &[&str] = &[
    "Apt 4",
    "Suite 200",
    "c/o \"The Smiths\"",
    "Floor 2\nRear entrance",
];
const ADDRESSES: &[(&str, &str, &str, &str)] = &[
    ("Boston", "MA", "02134", "US"),
    ("New York", "NY", "10001", "US"),
    ("London", "", "NW1 6XE", "GB"),
    ("Paris", "Île-de-France", "75002", "FR"),
    ("Madrid", "Madrid", "28013", "ES"),
    ("Beijing", "北京", "100020", "CN"),
    ("Toronto", "ON", "M5V 2T6", "CA"),
];
const AFFILIATIONS: &[&str] = &[
    "Alumni",
    "Parent",
    "Friend",
    "Faculty",
    "Staff",
    "Board of Trustees",
    "Class of 1998",
    "Athletics, Rowing",
];
const USERS: &[&str] = &["jdoe", "asmith", "mgarcia", "import-bot", "kchen", "admin"];

/// One deterministic stream of rows, written in COPY text format.
struct Generator {
    rng: StdRng,
    epoch: NaiveDate,
}

impl Generator {
    fn new(seed: u64, stream: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed ^ stream),
            epoch: NaiveDate::from_ymd_opt(2015, 1, 1).unwrap_or_default(),
        }
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.random_range(0..items.len())]
    }

    fn chance(&mut self, probability: f64) -> bool {
        self.rng.random_bool(probability)
    }

    fn date(&mut self) -> NaiveDate {
        let days = self.rng.random_range(0..4000);
        self.epoch + TimeDelta::days(days)
    }

    /// A `timestamptz` literal on `day`, and one some time later (or the same, for rows never
    /// edited), with microseconds.
    fn timestamps(&mut self, day: NaiveDate) -> (String, String) {
        let created = day.and_hms_opt(0, 0, 0).unwrap_or_default()
            + TimeDelta::microseconds(self.rng.random_range(0..86_400_000_000));
        let updated = if self.chance(0.6) {
            created
        } else {
            created + TimeDelta::microseconds(self.rng.random_range(1..400 * 86_400_000_000))
        };
        (
            created.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
            updated.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
        )
    }

    fn solicitors(&mut self) -> String {
        let count = match self.rng.random_range(0..10) {
            0..=1 => 0,
            2..=6 => 1,
            7..=8 => 2,
            _ => 3,
        };
        let mut names: Vec<&str> = Vec::with_capacity(count);
        while names.len() < count {
            let name = self.pick(SOLICITORS);
            if !names.contains(&name) {
                names.push(name);
            }
        }
        // Array literal: every element quoted (names hold spaces and apostrophes, never quotes
        // or backslashes).
        let mut literal = String::from("{");
        for (index, name) in names.iter().enumerate() {
            if index > 0 {
                literal.push(',');
            }
            let _ = write!(literal, "\"{name}\"");
        }
        literal.push('}');
        literal
    }

    fn description(&mut self) -> Option<String> {
        match self.rng.random_range(0..10) {
            0 => None,
            1 => Some(String::new()),
            _ => {
                let lines = self.rng.random_range(1..4);
                let mut text = String::new();
                for index in 0..lines {
                    if index > 0 {
                        text.push_str(if self.chance(0.5) { "\r\n" } else { "\n" });
                    }
                    text.push_str(self.pick(DESCRIPTION_LINES));
                }
                Some(text)
            }
        }
    }

    fn name(&mut self) -> String {
        format!("{} {}", self.pick(FIRST_NAMES), self.pick(LAST_NAMES))
    }

    fn amount(&mut self, max_cents: i64) -> String {
        let cents = self.rng.random_range(0..max_cents);
        format!("{}.{:02}", cents / 100, cents % 100)
    }

    fn interaction(&mut self, out: &mut Vec<u8>, proposal_ids: Option<(i64, i64)>) {
        let constituent = self.rng.random_range(1..200_000u64);
        let import_id = self.rng.random_range(1..10_000_000u64);
        let on = self.date();
        let (created, updated) = self.timestamps(on);
        let summary = if self.chance(0.3) {
            format!("{} with {}", self.pick(SUMMARIES), self.name())
        } else {
            self.pick(SUMMARIES).to_string()
        };
        let proposal = match proposal_ids {
            Some((min, max)) if self.chance(0.3) => Some(self.rng.random_range(min..=max)),
            _ => None,
        };
        let fields: [Option<String>; 15] = [
            (!self.chance(0.05)).then(|| format!("INT-{import_id:08}")),
            Some(constituent.to_string()),
            (!self.chance(0.05)).then(|| format!("C-{constituent:07}")),
            Some(self.pick(CATEGORIES).to_string()),
            Some(self.pick(INTERACTION_TYPES).to_string()),
            (!self.chance(0.02)).then(|| on.to_string()),
            (!self.chance(0.03)).then_some(summary),
            self.description(),
            Some(self.solicitors()),
            Some(self.pick(USERS).to_string()),
            proposal.map(|id| id.to_string()),
            proposal.map(|id| format!("PR-{id:07}")),
            Some(created),
            Some(updated),
            Some(if self.chance(0.02) { "true" } else { "false" }.to_string()),
        ];
        write_copy_row(out, &fields);
    }

    fn constituent(&mut self, out: &mut Vec<u8>) {
        let import_id = self.rng.random_range(1..10_000_000u64);
        let joined = self.date();
        let (created, updated) = self.timestamps(joined);
        let first = self.pick(FIRST_NAMES).to_string();
        let last = self.pick(LAST_NAMES).to_string();
        let email = (!self.chance(0.1)).then(|| {
            let local: String = first
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .chain(['.'])
                .chain(last.chars().filter(char::is_ascii_alphanumeric))
                .collect::<String>()
                .to_ascii_lowercase();
            format!(
                "{}{}@{}",
                local.trim_matches('.'),
                import_id % 100,
                self.pick(EMAIL_DOMAINS)
            )
        });
        let (city, region, postal, country) = self.pick_address();
        let fields: [Option<String>; 18] = [
            (!self.chance(0.05)).then(|| format!("C-{import_id:07}")),
            self.chance(0.3)
                .then(|| self.pick(NAME_PREFIXES).to_string()),
            Some(first),
            self.chance(0.2).then(|| self.pick(FIRST_NAMES).to_string()),
            Some(last),
            self.chance(0.05)
                .then(|| self.pick(NAME_SUFFIXES).to_string()),
            email,
            (!self.chance(0.2)).then(|| self.pick(PHONES).to_string()),
            Some(self.pick(STREETS).to_string()),
            self.chance(0.3)
                .then(|| self.pick(SECOND_LINES).to_string()),
            Some(city.to_string()),
            Some(region.to_string()),
            Some(postal.to_string()),
            Some(country.to_string()),
            Some(self.affiliations()),
            Some(created),
            Some(updated),
            Some(if self.chance(0.02) { "true" } else { "false" }.to_string()),
        ];
        write_copy_row(out, &fields);
    }

    fn pick_address(&mut self) -> (&'static str, &'static str, &'static str, &'static str) {
        ADDRESSES[self.rng.random_range(0..ADDRESSES.len())]
    }

    /// Distinct affiliations as an array literal, every element quoted.
    fn affiliations(&mut self) -> String {
        let count = self.rng.random_range(0..4);
        let mut names: Vec<&str> = Vec::with_capacity(count);
        while names.len() < count {
            let name = self.pick(AFFILIATIONS);
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let quoted: Vec<String> = names.iter().map(|name| format!("\"{name}\"")).collect();
        format!("{{{}}}", quoted.join(","))
    }

    fn proposal(&mut self, out: &mut Vec<u8>) {
        let constituent = self.rng.random_range(1..200_000u64);
        let import_id = self.rng.random_range(1..10_000_000u64);
        let ask_date = self.date();
        let (created, updated) = self.timestamps(ask_date);
        let status = self.pick(STATUSES);
        let funded = status == "Funded" || status == "Accepted";
        let title = if self.chance(0.3) {
            format!("{} ({})", self.pick(TITLES), self.name())
        } else {
            self.pick(TITLES).to_string()
        };
        let funded_amount = if funded {
            Some(self.amount(50_000_000))
        } else if self.chance(0.02) {
            // A refund adjustment: a negative number must never be formula-escaped.
            Some(format!("-{}", self.amount(100_000)))
        } else {
            None
        };
        let expected_date = ask_date + TimeDelta::days(self.rng.random_range(0..365));
        let funded_date = ask_date + TimeDelta::days(self.rng.random_range(0..500));
        let fields: [Option<String>; 16] = [
            (!self.chance(0.05)).then(|| format!("PR-{import_id:07}")),
            Some(constituent.to_string()),
            (!self.chance(0.05)).then(|| format!("C-{constituent:07}")),
            (!self.chance(0.02)).then_some(title),
            Some(status.to_string()),
            Some(self.pick(STAGES).to_string()),
            Some(self.amount(100_000_000)),
            (!self.chance(0.2)).then(|| self.amount(80_000_000)),
            funded_amount,
            Some(ask_date.to_string()),
            (!self.chance(0.2)).then(|| expected_date.to_string()),
            funded.then(|| funded_date.to_string()),
            Some(self.solicitors()),
            Some(created),
            Some(updated),
            Some(if self.chance(0.02) { "true" } else { "false" }.to_string()),
        ];
        write_copy_row(out, &fields);
    }
}

/// One row in COPY text format: tab-separated, `\N` for NULL, backslash escapes for the
/// characters the format reserves.
fn write_copy_row(out: &mut Vec<u8>, fields: &[Option<String>]) {
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(b'\t');
        }
        match field {
            None => out.extend_from_slice(b"\\N"),
            Some(text) => {
                for &byte in text.as_bytes() {
                    match byte {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        _ => out.push(byte),
                    }
                }
            }
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_escape_reserved_characters() {
        let mut out = Vec::new();
        write_copy_row(
            &mut out,
            &[Some("a\tb\\c\r\nd".to_string()), None, Some(String::new())],
        );
        assert_eq!(out, b"a\\tb\\\\c\\r\\nd\t\\N\t\n");
    }

    #[test]
    fn the_same_seed_gives_the_same_rows() {
        let rows = |seed| {
            let mut generator = Generator::new(seed, 1);
            let mut out = Vec::new();
            for _ in 0..200 {
                generator.interaction(&mut out, Some((1, 10)));
                generator.proposal(&mut out);
            }
            out
        };
        assert_eq!(rows(7), rows(7));
        assert_ne!(rows(7), rows(8));
    }

    #[test]
    fn rows_have_one_field_per_copied_column() {
        let mut generator = Generator::new(3, 1);
        for _ in 0..500 {
            let mut out = Vec::new();
            generator.interaction(&mut out, None);
            assert_eq!(out.iter().filter(|&&b| b == b'\t').count(), 14);
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            let mut out = Vec::new();
            generator.proposal(&mut out);
            assert_eq!(out.iter().filter(|&&b| b == b'\t').count(), 15);
            let mut out = Vec::new();
            generator.constituent(&mut out);
            assert_eq!(out.iter().filter(|&&b| b == b'\t').count(), 17);
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        }
    }

    #[test]
    fn the_schema_is_idempotent_by_construction() {
        for statement in ["CREATE TABLE", "CREATE INDEX"] {
            for (at, _) in SCHEMA_SQL.match_indices(statement) {
                assert!(
                    SCHEMA_SQL[at..].starts_with(&format!("{statement} IF NOT EXISTS")),
                    "{statement} without IF NOT EXISTS"
                );
            }
        }
        assert!(!SCHEMA_SQL.contains("CREATE FUNCTION"));
        assert!(!SCHEMA_SQL.contains("CREATE TRIGGER"));
    }
}

//! The registrar (students) and HR (staff) feeds (DESIGN.md §3): parsing with a reason for every
//! rejected line, then idempotent upserts keyed by dossier number / employee id.
//!
//! Each row is all-or-nothing; rows are committed in batches so that a 50,000-line file does not
//! pay one disk flush per line. A batch is first applied without savepoints; if a row fails, it is
//! rolled back and applied again with a savepoint per row, which leaves out only the failing
//! rows. A dry run applies everything in one transaction and rolls it back, so its counts are
//! exactly those of the real run. A student row reads what it needs at once
//! ([`ProvisioningUnit::student_context`]) and a new student is written at once
//! ([`ProvisioningUnit::insert_student_account`]): on PostgreSQL, two round trips for a new
//! student and one for an unchanged one.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::Arc;

use serde::Serialize;
use time::Date;
use time::macros::format_description;

use super::identifiers::{Login, derive_base, first_free, person_key};
use super::{
    AccountRecord, AccountState, NewStudent, ProvisioningStore, ProvisioningUnit, StaffRecord,
    StudentRecord,
};
use crate::clock::Clock;
use crate::entropy::{Entropy, EntropyExt};
use crate::storage::StorageError;

/// A boxed future, for the per-row functions passed to the batch runner.
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A CSV line: its number and fields, or why it is not even CSV.
type RawLine = Result<(u64, Vec<String>), Rejection>;

/// Applies one row inside the import's unit of work.
type ApplyRow<R> = for<'a> fn(
    &'a Importer,
    &'a mut dyn ProvisioningUnit,
    &'a KnownLogins,
    &'a R,
    i64,
) -> BoxFuture<'a, Result<Outcome, RowFailure>>;

/// The logins of each name base that this import has read or written so far, in its units of
/// work: the next row of a known base can then be given its login (the first free one) and be
/// written in one step ([`ProvisioningUnit::insert_new_student_or_context`]), where a base read
/// for the first time costs a read first. Forgotten whenever a unit of work or a row is rolled
/// back, since what it wrote is gone. Should another writer take a login meanwhile, the store
/// sees it taken and the row is applied step by step from what the store then reads.
#[derive(Default)]
struct KnownLogins(std::sync::Mutex<HashMap<String, HashSet<String>>>);

impl KnownLogins {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The login a new account of `base` gets: the first free one when the base is known, the
    /// base itself (to be checked by the store) when it is not.
    fn next(&self, base: &Login) -> Login {
        match self.lock().get(base.as_str()) {
            Some(taken) => first_free(base, |candidate| taken.contains(candidate)),
            None => base.clone(),
        }
    }

    /// What the store read of `base`.
    fn read(&self, base: &Login, logins: &[String]) {
        self.lock()
            .insert(base.as_str().to_string(), logins.iter().cloned().collect());
    }

    /// A login written in the unit of work.
    fn written(&self, base: &Login, login: &str) {
        if let Some(taken) = self.lock().get_mut(base.as_str()) {
            taken.insert(login.to_string());
        }
    }

    fn forget(&self) {
        self.lock().clear();
    }
}

/// Rows committed together in a real import.
const BATCH: usize = 1000;
const MAX_NAME_CHARS: usize = 100;
const MAX_TEXT_CHARS: usize = 200;

const STUDENT_COLUMNS: [&str; 6] = [
    "dossier_number",
    "last_name",
    "first_name",
    "birth_date",
    "component",
    "enrolment_year",
];
const STAFF_COLUMNS: [&str; 7] = [
    "employee_id",
    "last_name",
    "first_name",
    "birth_date",
    "department",
    "role",
    "status",
];

/// A problem with the file as a whole: nothing is imported.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot read the file: {0}")]
    Unreadable(String),
    #[error("the header must be `{expected}` (found `{found}`)")]
    BadHeader { expected: String, found: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A line that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub line: u64,
    pub reason: String,
}

/// A validated student line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudentRow {
    pub line: u64,
    pub dossier_number: String,
    pub last_name: String,
    pub first_name: String,
    pub birth_date: String,
    pub component: String,
    pub enrolment_year: i32,
    pub email: Option<String>,
}

/// A validated staff line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffRow {
    pub line: u64,
    pub employee_id: String,
    pub last_name: String,
    pub first_name: String,
    pub birth_date: String,
    pub department: String,
    pub role: String,
    pub left: bool,
}

/// What an import did (or, for a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    pub dry_run: bool,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub disabled: u64,
    pub rejected: Vec<Rejection>,
}

/// What one batch did, before it is added to the summary.
#[derive(Default)]
struct BatchCounts {
    created: u64,
    updated: u64,
    unchanged: u64,
    disabled: u64,
    /// The failed rows: their index in the batch, and why.
    rejected: Vec<(usize, String)>,
}

/// The outcome of one applied row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Created,
    Updated,
    Unchanged,
    Disabled,
}

/// Reads the CSV records of `input` after checking its header; yields (line, fields) or a
/// rejection for lines that are not even CSV.
fn records(
    input: impl Read,
    required: &[&str],
    optional: &[&str],
) -> Result<(Vec<String>, Vec<RawLine>), FeedError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut rows = reader.records();
    let header: Vec<String> = match rows.next() {
        None => {
            return Err(FeedError::BadHeader {
                expected: required.join(","),
                found: String::new(),
            });
        }
        Some(Err(e)) => return Err(FeedError::Unreadable(e.to_string())),
        Some(Ok(record)) => record
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let f = if i == 0 {
                    f.trim_start_matches('\u{feff}')
                } else {
                    f
                };
                f.trim().to_string()
            })
            .collect(),
    };
    let expected_prefix = header.len() >= required.len()
        && header.iter().zip(required).all(|(h, r)| h == r)
        && header[required.len()..]
            .iter()
            .all(|h| optional.contains(&h.as_str()));
    if !expected_prefix {
        let mut expected = required.join(",");
        if !optional.is_empty() {
            expected.push_str(&format!(" (optionally followed by {})", optional.join(",")));
        }
        return Err(FeedError::BadHeader {
            expected,
            found: header.join(","),
        });
    }
    let mut out = Vec::new();
    for record in rows {
        match record {
            Ok(record) => {
                let line = record.position().map(|p| p.line()).unwrap_or(0);
                if record.len() == 1 && record.get(0).is_some_and(|f| f.trim().is_empty()) {
                    continue;
                }
                out.push(Ok((line, record.iter().map(str::to_string).collect())));
            }
            Err(error) => {
                let line = error.position().map(|p| p.line()).unwrap_or(0);
                let reason = match error.kind() {
                    csv::ErrorKind::Utf8 { .. } => "the line is not valid UTF-8".to_string(),
                    _ => format!("the line is not valid CSV: {error}"),
                };
                out.push(Err(Rejection { line, reason }));
            }
        }
    }
    Ok((header, out))
}

fn text_field(value: &str, what: &str, max_chars: usize) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("{what} is missing"));
    }
    if value.chars().count() > max_chars {
        return Err(format!("{what} is longer than {max_chars} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} contains control characters"));
    }
    Ok(value.to_string())
}

/// Checks an ISO date: a real calendar date, not in the future, not before 1900.
pub fn birth_date(value: &str, today: Date) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("birth date is missing".into());
    }
    let date = Date::parse(value, format_description!("[year]-[month]-[day]"))
        .map_err(|_| format!("birth date `{value}` is not a real date written YYYY-MM-DD"))?;
    if date > today {
        return Err(format!("birth date `{value}` is in the future"));
    }
    if date.year() < 1900 {
        return Err(format!("birth date `{value}` is before 1900"));
    }
    Ok(date.to_string())
}

/// Checks a dossier number: exactly 8 ASCII digits.
pub fn dossier_number(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("dossier number is missing".into());
    }
    if value.len() == 8 && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(value.to_string())
    } else {
        Err(format!(
            "dossier number `{}` is not 8 digits",
            value.chars().take(40).collect::<String>()
        ))
    }
}

fn names(last: &str, first: &str) -> Result<(String, String), String> {
    if last.trim().is_empty() && first.trim().is_empty() {
        return Err("the row has no name".into());
    }
    let last = text_field(last, "last name", MAX_NAME_CHARS)?;
    let first = text_field(first, "first name", MAX_NAME_CHARS)?;
    derive_base(&first, &last).map_err(|e| format!("{e}: cannot derive an identifier"))?;
    Ok((last, first))
}

fn email(value: &str) -> Result<Option<String>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let plausible = value.len() <= 254
        && value.matches('@').count() == 1
        && !value.starts_with('@')
        && !value.ends_with('@')
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',' || c == ';');
    if plausible {
        Ok(Some(value.to_lowercase()))
    } else {
        Err(format!(
            "e-mail `{}` is not a single valid address",
            value.escape_debug().take(60).collect::<String>()
        ))
    }
}

fn column_count(fields: &[String], expected: usize) -> Result<(), String> {
    if fields.len() == expected {
        Ok(())
    } else {
        Err(format!(
            "expected {expected} columns, found {}",
            fields.len()
        ))
    }
}

/// Parses a registrar export. File-level problems are errors; line-level problems are rejections.
pub fn parse_students(
    input: impl Read,
    today: Date,
) -> Result<(Vec<StudentRow>, Vec<Rejection>), FeedError> {
    let (header, records) = records(input, &STUDENT_COLUMNS, &["email"])?;
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for record in records {
        let (line, fields) = match record {
            Ok(ok) => ok,
            Err(rejection) => {
                rejected.push(rejection);
                continue;
            }
        };
        let parsed = (|| -> Result<StudentRow, String> {
            column_count(&fields, header.len())?;
            let dossier = dossier_number(&fields[0])?;
            if let Some(first) = seen.get(&dossier) {
                return Err(format!(
                    "dossier number {dossier} already appears on line {first}"
                ));
            }
            let (last_name, first_name) = names(&fields[1], &fields[2])?;
            let birth_date = birth_date(&fields[3], today)?;
            let component = text_field(&fields[4], "component", MAX_TEXT_CHARS)?;
            let year = fields[5].trim();
            let enrolment_year = year
                .parse::<i32>()
                .ok()
                .filter(|y| (1950..=today.year() + 1).contains(y) && year.len() == 4)
                .ok_or_else(|| format!("enrolment year `{year}` is not a year"))?;
            let email = match fields.get(6) {
                Some(value) => email(value)?,
                None => None,
            };
            Ok(StudentRow {
                line,
                dossier_number: dossier,
                last_name,
                first_name,
                birth_date,
                component,
                enrolment_year,
                email,
            })
        })();
        match parsed {
            Ok(row) => {
                seen.insert(row.dossier_number.clone(), line);
                rows.push(row);
            }
            Err(reason) => rejected.push(Rejection { line, reason }),
        }
    }
    Ok((rows, rejected))
}

/// Parses an HR export.
pub fn parse_staff(
    input: impl Read,
    today: Date,
) -> Result<(Vec<StaffRow>, Vec<Rejection>), FeedError> {
    let (header, records) = records(input, &STAFF_COLUMNS, &[])?;
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for record in records {
        let (line, fields) = match record {
            Ok(ok) => ok,
            Err(rejection) => {
                rejected.push(rejection);
                continue;
            }
        };
        let parsed = (|| -> Result<StaffRow, String> {
            column_count(&fields, header.len())?;
            let id = fields[0].trim();
            if id.is_empty() {
                return Err("employee id is missing".into());
            }
            if id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(format!(
                    "employee id `{}` must be letters, digits and hyphens (at most 32)",
                    id.chars().take(40).collect::<String>()
                ));
            }
            if let Some(first) = seen.get(id) {
                return Err(format!("employee id {id} already appears on line {first}"));
            }
            let (last_name, first_name) = names(&fields[1], &fields[2])?;
            let birth_date = birth_date(&fields[3], today)?;
            let department = text_field(&fields[4], "department", MAX_TEXT_CHARS)?;
            let role = text_field(&fields[5], "role", MAX_TEXT_CHARS)?;
            let left = match fields[6].trim() {
                "active" => false,
                "left" => true,
                other => {
                    return Err(format!(
                        "status `{}` is neither `active` nor `left`",
                        other.chars().take(40).collect::<String>()
                    ));
                }
            };
            Ok(StaffRow {
                line,
                employee_id: id.to_string(),
                last_name,
                first_name,
                birth_date,
                department,
                role,
                left,
            })
        })();
        match parsed {
            Ok(row) => {
                seen.insert(row.employee_id.clone(), line);
                rows.push(row);
            }
            Err(reason) => rejected.push(Rejection { line, reason }),
        }
    }
    Ok((rows, rejected))
}

/// Applies parsed feeds to the accounts.
pub struct Importer {
    store: Arc<dyn ProvisioningStore>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
}

/// The base part of a login (`marie.martin2` → `marie.martin`).
fn base_of(login: &str) -> &str {
    login.trim_end_matches(|c: char| c.is_ascii_digit())
}

impl Importer {
    pub fn new(
        store: Arc<dyn ProvisioningStore>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Self {
        Self {
            store,
            clock,
            entropy,
        }
    }

    /// Imports students; `rejected` are the parser's rejections, reported with the rest.
    pub async fn import_students(
        &self,
        rows: &[StudentRow],
        rejected: Vec<Rejection>,
        dry_run: bool,
    ) -> Result<ImportSummary, StorageError> {
        self.run(rows, rejected, dry_run, |row| row.line, Self::apply_student)
            .await
    }

    /// Imports staff.
    pub async fn import_staff(
        &self,
        rows: &[StaffRow],
        rejected: Vec<Rejection>,
        dry_run: bool,
    ) -> Result<ImportSummary, StorageError> {
        self.run(rows, rejected, dry_run, |row| row.line, Self::apply_staff)
            .await
    }

    async fn run<R: Sync>(
        &self,
        rows: &[R],
        mut rejected: Vec<Rejection>,
        dry_run: bool,
        line_of: impl Fn(&R) -> u64,
        apply: ApplyRow<R>,
    ) -> Result<ImportSummary, StorageError> {
        let now = self.clock.unix_now();
        let mut summary = ImportSummary {
            dry_run,
            ..Default::default()
        };
        let batch = if dry_run { usize::MAX } else { BATCH };
        let known = KnownLogins::default();
        for chunk in rows.chunks(batch.min(rows.len().max(1))) {
            // First without savepoints (two round trips fewer per row); should a row fail, the
            // batch is rolled back and applied again with a savepoint per row, so that only the
            // failing rows are left out. A failing statement aborts a PostgreSQL transaction
            // anyway.
            let counts = match self
                .apply_batch(chunk, apply, &known, now, dry_run, false)
                .await?
            {
                Some(counts) => counts,
                None => self
                    .apply_batch(chunk, apply, &known, now, dry_run, true)
                    .await?
                    .expect("a careful batch always completes"),
            };
            summary.created += counts.created;
            summary.updated += counts.updated;
            summary.unchanged += counts.unchanged;
            summary.disabled += counts.disabled;
            rejected.extend(counts.rejected.into_iter().map(|(row, reason)| Rejection {
                line: line_of(&chunk[row]),
                reason,
            }));
        }
        rejected.sort_by_key(|r| r.line);
        summary.rejected = rejected;
        Ok(summary)
    }

    /// Applies one batch in its own transaction. Careless (`careful == false`): no savepoints,
    /// and `None` (everything rolled back) as soon as a row fails. Careful: a savepoint per row,
    /// and a failing row is undone alone and reported (by its index in `chunk`).
    async fn apply_batch<R: Sync>(
        &self,
        chunk: &[R],
        apply: ApplyRow<R>,
        known: &KnownLogins,
        now: i64,
        dry_run: bool,
        careful: bool,
    ) -> Result<Option<BatchCounts>, StorageError> {
        let mut counts = BatchCounts::default();
        let mut unit = self.store.begin_provisioning().await?;
        for (index, row) in chunk.iter().enumerate() {
            if careful {
                unit.savepoint().await?;
            }
            match apply(self, unit.as_mut(), known, row, now).await {
                Ok(outcome) => {
                    if careful {
                        unit.release_savepoint().await?;
                    }
                    match outcome {
                        Outcome::Created => counts.created += 1,
                        Outcome::Updated => counts.updated += 1,
                        Outcome::Unchanged => counts.unchanged += 1,
                        Outcome::Disabled => counts.disabled += 1,
                    }
                }
                Err(RowFailure::Storage(StorageError::Unavailable(reason))) => {
                    return Err(StorageError::Unavailable(reason));
                }
                Err(_) if !careful => {
                    known.forget();
                    unit.rollback().await?;
                    return Ok(None);
                }
                Err(failure) => {
                    known.forget();
                    unit.rollback_to_savepoint().await?;
                    unit.release_savepoint().await?;
                    counts.rejected.push((index, failure.to_string()));
                }
            }
        }
        if dry_run {
            unit.rollback().await?;
        } else {
            unit.commit().await?;
        }
        Ok(Some(counts))
    }

    /// Allocates the first free login for a name; `known` are the logins starting with the
    /// name's base when they were already read in this row (read here otherwise).
    async fn allocate_login(
        unit: &mut dyn ProvisioningUnit,
        first_name: &str,
        last_name: &str,
        known: Option<Vec<String>>,
    ) -> Result<Login, RowFailure> {
        let base =
            derive_base(first_name, last_name).map_err(|e| RowFailure::Invalid(e.to_string()))?;
        let taken: HashSet<String> = match known {
            Some(logins) => logins,
            None => unit.logins_with_prefix(base.as_str()).await?,
        }
        .into_iter()
        .collect();
        Ok(first_free(&base, |candidate| taken.contains(candidate)))
    }

    /// A new account with a fresh login, not yet stored.
    async fn new_account(
        &self,
        unit: &mut dyn ProvisioningUnit,
        first_name: &str,
        last_name: &str,
        birth_date: &str,
        known_logins: Option<Vec<String>>,
    ) -> Result<AccountRecord, RowFailure> {
        let login = Self::allocate_login(unit, first_name, last_name, known_logins).await?;
        Ok(AccountRecord {
            id: self.entropy.hex(16),
            login: login.as_str().to_string(),
            state: AccountState::Pending,
            first_name: first_name.to_string(),
            last_name: last_name.to_string(),
            birth_date: birth_date.to_string(),
            person_key: person_key(first_name, last_name, birth_date),
        })
    }

    /// Brings an existing account's identity in line with the feed. A changed name that changes
    /// the login base gives a new login; the old one stays as an alias (never reused).
    async fn update_identity(
        unit: &mut dyn ProvisioningUnit,
        account: &mut AccountRecord,
        first_name: &str,
        last_name: &str,
        birth_date: &str,
        known_logins: Option<Vec<String>>,
        now: i64,
    ) -> Result<bool, RowFailure> {
        if account.first_name == first_name
            && account.last_name == last_name
            && account.birth_date == birth_date
        {
            return Ok(false);
        }
        let new_base =
            derive_base(first_name, last_name).map_err(|e| RowFailure::Invalid(e.to_string()))?;
        if base_of(&account.login) != new_base.as_str() {
            let login = Self::allocate_login(unit, first_name, last_name, known_logins).await?;
            unit.insert_login(login.as_str(), &account.id, now).await?;
            account.login = login.as_str().to_string();
        }
        account.first_name = first_name.to_string();
        account.last_name = last_name.to_string();
        account.birth_date = birth_date.to_string();
        account.person_key = person_key(first_name, last_name, birth_date);
        unit.update_account_identity(account, now).await?;
        Ok(true)
    }

    fn apply_student<'a>(
        &'a self,
        unit: &'a mut dyn ProvisioningUnit,
        known: &'a KnownLogins,
        row: &'a StudentRow,
        now: i64,
    ) -> BoxFuture<'a, Result<Outcome, RowFailure>> {
        Box::pin(async move {
            let record = |account_id: &str| StudentRecord {
                dossier_number: row.dossier_number.clone(),
                account_id: account_id.to_string(),
                component: row.component.clone(),
                enrolment_year: row.enrolment_year,
                enrolment_email: row.email.clone(),
            };
            let key = person_key(&row.first_name, &row.last_name, &row.birth_date);
            let base = derive_base(&row.first_name, &row.last_name).ok();
            let context = match &base {
                // The common case at the rentrée, a new student, in one write with the login it
                // gets (the first free one of its base, as far as this import knows the base);
                // anything else comes back with the context read.
                Some(base) => {
                    let account = AccountRecord {
                        id: self.entropy.hex(16),
                        login: known.next(base).as_str().to_string(),
                        state: AccountState::Pending,
                        first_name: row.first_name.clone(),
                        last_name: row.last_name.clone(),
                        birth_date: row.birth_date.clone(),
                        person_key: key.clone(),
                    };
                    match unit
                        .insert_new_student_or_context(
                            &account,
                            &record(&account.id),
                            base.as_str(),
                            now,
                        )
                        .await?
                    {
                        NewStudent::Inserted => {
                            known.written(base, &account.login);
                            return Ok(Outcome::Created);
                        }
                        NewStudent::Context(context) => {
                            if let Some(logins) = &context.logins {
                                known.read(base, logins);
                            }
                            *context
                        }
                    }
                }
                None => {
                    unit.student_context(&row.dossier_number, &key, None)
                        .await?
                }
            };
            if let Some((existing, account)) = context.existing {
                let mut account = account
                    .ok_or_else(|| RowFailure::Invalid("the record's account is missing".into()))?;
                let renamed = Self::update_identity(
                    unit,
                    &mut account,
                    &row.first_name,
                    &row.last_name,
                    &row.birth_date,
                    context.logins,
                    now,
                )
                .await?;
                if let Some(base) = &base {
                    known.written(base, &account.login);
                }
                let wanted = record(&account.id);
                let changed = wanted != existing;
                if changed {
                    unit.upsert_student(&wanted, now).await?;
                }
                return Ok(if renamed || changed {
                    Outcome::Updated
                } else {
                    Outcome::Unchanged
                });
            }
            // Security: a new dossier joins an existing account only when the same person (same
            // names and birth date) is already staff without a student record.
            for candidate in &context.same_person {
                if unit.find_staff_by_account(candidate).await?.is_some()
                    && !unit.has_student_record(candidate).await?
                {
                    unit.upsert_student(&record(candidate), now).await?;
                    return Ok(Outcome::Updated);
                }
            }
            let account = self
                .new_account(
                    unit,
                    &row.first_name,
                    &row.last_name,
                    &row.birth_date,
                    context.logins,
                )
                .await?;
            unit.insert_student_account(&account, &record(&account.id), now)
                .await?;
            if let Some(base) = &base {
                known.written(base, &account.login);
            }
            Ok(Outcome::Created)
        })
    }

    fn apply_staff<'a>(
        &'a self,
        unit: &'a mut dyn ProvisioningUnit,
        _known: &'a KnownLogins,
        row: &'a StaffRow,
        now: i64,
    ) -> BoxFuture<'a, Result<Outcome, RowFailure>> {
        Box::pin(async move {
            let record = |account_id: &str| StaffRecord {
                employee_id: row.employee_id.clone(),
                account_id: account_id.to_string(),
                department: row.department.clone(),
                role: row.role.clone(),
                status: if row.left { "left" } else { "active" }.to_string(),
            };
            let (mut account, existing, created) = match unit.find_staff(&row.employee_id).await? {
                Some(existing) => {
                    let account =
                        unit.find_account(&existing.account_id)
                            .await?
                            .ok_or_else(|| {
                                RowFailure::Invalid("the record's account is missing".into())
                            })?;
                    (account, Some(existing), false)
                }
                None => {
                    let key = person_key(&row.first_name, &row.last_name, &row.birth_date);
                    let mut joined = None;
                    for candidate in unit.find_accounts_by_person(&key).await? {
                        if unit.has_student_record(&candidate.id).await?
                            && unit.find_staff_by_account(&candidate.id).await?.is_none()
                        {
                            joined = Some(candidate);
                            break;
                        }
                    }
                    match joined {
                        Some(account) => (account, None, false),
                        None => {
                            let account = self
                                .new_account(
                                    unit,
                                    &row.first_name,
                                    &row.last_name,
                                    &row.birth_date,
                                    None,
                                )
                                .await?;
                            unit.insert_account(&account, now).await?;
                            (account, None, true)
                        }
                    }
                }
            };
            let renamed = Self::update_identity(
                unit,
                &mut account,
                &row.first_name,
                &row.last_name,
                &row.birth_date,
                None,
                now,
            )
            .await?;
            let wanted = record(&account.id);
            let changed = existing.as_ref() != Some(&wanted);
            if changed {
                unit.upsert_staff(&wanted, now).await?;
            }
            if row.left && account.state != AccountState::Disabled {
                unit.set_account_state(
                    &account.id,
                    AccountState::Disabled,
                    Some("left (HR feed)"),
                    now,
                )
                .await?;
                return Ok(if created {
                    Outcome::Created
                } else {
                    Outcome::Disabled
                });
            }
            Ok(if created {
                Outcome::Created
            } else if renamed || changed {
                Outcome::Updated
            } else {
                Outcome::Unchanged
            })
        })
    }
}

/// Why one row failed while being applied.
#[derive(Debug, thiserror::Error)]
enum RowFailure {
    #[error("{0}")]
    Invalid(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> Date {
        time::macros::date!(2026 - 09 - 01)
    }

    #[test]
    fn every_dirty_student_line_is_named_with_its_reason() {
        let csv = "dossier_number,last_name,first_name,birth_date,component,enrolment_year\n\
22000001,Dupré,Émilie,2004-05-06,IAE,2026\n\
,Sans,Numéro,2001-02-03,IAE,2026\n\
22000001,Doublon,Dossier,2001-02-03,IAE,2026\n\
ABC123,Mauvais,Format,2001-02-03,IAE,2026\n\
90000001,Date,Invalide,2001-02-30,IAE,2026\n\
91000001,Futur,Né,2099-01-01,IAE,2026\n\
92000001,,,2001-02-03,IAE,2026\n\
93000001,Trop,De,Colonnes,2001-02-03,x,y\n\
94000001,Ambigu,Date,03/04/2001,IAE,2026\n\
95000001,Иванов,Иван,2001-02-03,IAE,2026\n\
９６０００００１,Chiffres,Larges,2001-02-03,IAE,2026\n";
        let (rows, rejected) = parse_students(csv.as_bytes(), today()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].dossier_number, "22000001");
        let reasons: Vec<(u64, &str)> = rejected
            .iter()
            .map(|r| (r.line, r.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (3, "dossier number is missing"),
                (4, "dossier number 22000001 already appears on line 2"),
                (5, "dossier number `ABC123` is not 8 digits"),
                (
                    6,
                    "birth date `2001-02-30` is not a real date written YYYY-MM-DD"
                ),
                (7, "birth date `2099-01-01` is in the future"),
                (8, "the row has no name"),
                (9, "expected 6 columns, found 7"),
                (
                    10,
                    "birth date `03/04/2001` is not a real date written YYYY-MM-DD"
                ),
                (
                    11,
                    "the first name has no letter usable in an identifier: cannot derive an identifier"
                ),
                (12, "dossier number `９６０００００１` is not 8 digits"),
            ]
        );
    }

    #[test]
    fn a_wrong_header_refuses_the_whole_file() {
        let error = parse_students("nom,prenom\nx,y\n".as_bytes(), today()).unwrap_err();
        assert!(error.to_string().contains("the header must be"));
        let error = parse_students("".as_bytes(), today()).unwrap_err();
        assert!(matches!(error, FeedError::BadHeader { .. }));
    }

    #[test]
    fn the_optional_email_column_is_checked_against_header_injection() {
        let csv = "\u{feff}dossier_number,last_name,first_name,birth_date,component,enrolment_year,email\n\
22000001,Dupré,Émilie,2004-05-06,IAE,2026,Emilie@Example.org\n\
22000002,Martin,Marie,2004-05-06,IAE,2026,\"a@b.fr\r\nBcc: victim@x.fr\"\n\
22000003,Martin,Marie,2004-05-06,IAE,2026,\n";
        let (rows, rejected) = parse_students(csv.as_bytes(), today()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].email.as_deref(), Some("emilie@example.org"));
        assert_eq!(rows[1].email, None);
        assert_eq!(rejected.len(), 1);
        assert!(
            rejected[0].reason.starts_with("e-mail"),
            "{}",
            rejected[0].reason
        );
    }

    #[test]
    fn staff_status_must_be_active_or_left() {
        let csv = "employee_id,last_name,first_name,birth_date,department,role,status\n\
P100000,Martin,Jean,1970-01-01,DSI,technique,active\n\
P100001,Durand,Zoé,1970-01-01,DSI,technique,left\n\
P900007,Statut,Inconnu,1970-01-01,DSI,technique,maybe\n\
,Sans,Matricule,1970-01-01,DSI,technique,active\n\
P100000,Doublon,Matricule,1970-01-01,DSI,technique,active\n";
        let (rows, rejected) = parse_staff(csv.as_bytes(), today()).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows[1].left);
        let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "status `maybe` is neither `active` nor `left`",
                "employee id is missing",
                "employee id P100000 already appears on line 2",
            ]
        );
    }
}

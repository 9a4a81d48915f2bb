//! Accounts: who exists, under which login, in which state, from which feed (DESIGN.md §3–4).
//!
//! `identifiers` derives and canonicalises logins; `provisioning` imports the registrar and HR
//! feeds. The storage ports of this room are declared here.

pub mod activation;
pub mod attributes;
pub mod helpdesk;
pub mod identifiers;
pub mod lockout;
pub mod mfa;
pub mod password;
pub mod password_policy;
pub mod provisioning;
pub mod recovery;
pub mod self_service;

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;

use crate::storage::StorageError;

/// What can go wrong in the account services beyond the user's control.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Password(#[from] password::PasswordError),
}

/// The life of an account. Locks are separate (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    /// Imported, not yet activated.
    Pending,
    Active,
    /// Left, expired or disabled by an administrator.
    Disabled,
}

impl AccountState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }
}

impl fmt::Display for AccountState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccountState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "active" => Ok(Self::Active),
            "disabled" => Ok(Self::Disabled),
            other => Err(format!("unknown account state `{other}`")),
        }
    }
}

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// Opaque and immutable: the OIDC `sub` and every foreign key.
    pub id: String,
    /// The current login (older ones remain as aliases).
    pub login: String,
    pub state: AccountState,
    pub first_name: String,
    pub last_name: String,
    /// `YYYY-MM-DD`.
    pub birth_date: String,
    /// Folded names and birth date: the same person in both feeds.
    pub person_key: String,
}

/// An account with its feed records (see [`AccountStore::find_account_with_records`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountWithRecords {
    pub account: AccountRecord,
    pub student: Option<StudentRecord>,
    pub staff: Option<StaffRecord>,
}

/// A student's registrar record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudentRecord {
    pub dossier_number: String,
    pub account_id: String,
    pub component: String,
    pub enrolment_year: i32,
    pub enrolment_email: Option<String>,
}

/// A staff member's HR record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffRecord {
    pub employee_id: String,
    pub account_id: String,
    pub department: String,
    pub role: String,
    /// `active` or `left`.
    pub status: String,
}

/// What a student row of the registrar feed finds in the database
/// ([`ProvisioningUnit::student_context`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudentContext {
    /// The dossier's record and its account (`None` if the account is missing).
    pub existing: Option<(StudentRecord, Option<AccountRecord>)>,
    /// Ids of the accounts of the same person, oldest first; read only for a new dossier (empty
    /// otherwise).
    pub same_person: Vec<String>,
    /// Logins (current or alias) starting with the base of the row's names, in no order; `None`
    /// when the names give no base.
    pub logins: Option<Vec<String>>,
}

/// What [`ProvisioningUnit::insert_new_student_or_context`] did.
#[derive(Debug)]
pub enum NewStudent {
    /// The new student's account, login and record are written.
    Inserted,
    /// Nothing is written: the row's context, to apply it step by step.
    Context(Box<StudentContext>),
}

/// One import's unit of work: a database transaction in which rows are applied one by one; when a
/// row of the batch fails, the batch is applied again with each row inside its own savepoint, so
/// that a failing row leaves nothing behind.
#[async_trait]
pub trait ProvisioningUnit: Send {
    async fn savepoint(&mut self) -> Result<(), StorageError>;
    async fn release_savepoint(&mut self) -> Result<(), StorageError>;
    async fn rollback_to_savepoint(&mut self) -> Result<(), StorageError>;

    async fn find_student(
        &mut self,
        dossier_number: &str,
    ) -> Result<Option<StudentRecord>, StorageError>;
    async fn find_staff(&mut self, employee_id: &str) -> Result<Option<StaffRecord>, StorageError>;
    async fn find_account(&mut self, id: &str) -> Result<Option<AccountRecord>, StorageError>;
    async fn find_staff_by_account(
        &mut self,
        account_id: &str,
    ) -> Result<Option<StaffRecord>, StorageError>;
    async fn has_student_record(&mut self, account_id: &str) -> Result<bool, StorageError>;
    /// Accounts of the same person (same folded names and birth date).
    async fn find_accounts_by_person(
        &mut self,
        person_key: &str,
    ) -> Result<Vec<AccountRecord>, StorageError>;
    /// Every login (current or alias) starting with `prefix`.
    async fn logins_with_prefix(&mut self, prefix: &str) -> Result<Vec<String>, StorageError>;

    /// What applying a student row reads, at once (PostgreSQL: one statement, where the
    /// separate reads were up to four round trips per row): the dossier's record with its
    /// account, the accounts of the same person, and the logins starting with `login_base` (the
    /// base of the row's names, `None` when they give none). This default reads them one by one.
    async fn student_context(
        &mut self,
        dossier_number: &str,
        person_key: &str,
        login_base: Option<&str>,
    ) -> Result<StudentContext, StorageError> {
        let existing = match self.find_student(dossier_number).await? {
            Some(record) => {
                let account = self.find_account(&record.account_id).await?;
                Some((record, account))
            }
            None => None,
        };
        let same_person = match existing {
            Some(_) => Vec::new(),
            None => self
                .find_accounts_by_person(person_key)
                .await?
                .into_iter()
                .map(|account| account.id)
                .collect(),
        };
        let logins = match login_base {
            Some(base) => Some(self.logins_with_prefix(base).await?),
            None => None,
        };
        Ok(StudentContext {
            existing,
            same_person,
            logins,
        })
    }

    /// Inserts the account and adds its login (`account.login`) to the namespace (PostgreSQL:
    /// in one statement); [`StorageError::Conflict`] if the login is taken.
    async fn insert_account(
        &mut self,
        account: &AccountRecord,
        now: i64,
    ) -> Result<(), StorageError>;
    /// Adds `login` to the namespace for `account_id`; [`StorageError::Conflict`] if taken.
    async fn insert_login(
        &mut self,
        login: &str,
        account_id: &str,
        now: i64,
    ) -> Result<(), StorageError>;
    /// Updates names, birth date, person key and current login of an account.
    async fn update_account_identity(
        &mut self,
        account: &AccountRecord,
        now: i64,
    ) -> Result<(), StorageError>;
    async fn set_account_state(
        &mut self,
        account_id: &str,
        state: AccountState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<(), StorageError>;
    async fn upsert_student(
        &mut self,
        record: &StudentRecord,
        now: i64,
    ) -> Result<(), StorageError>;
    async fn upsert_staff(&mut self, record: &StaffRecord, now: i64) -> Result<(), StorageError>;
    /// A student row that names a new person, applied at once (PostgreSQL: one statement, where
    /// reading the context and then writing were two round trips): inserts `account` (with its
    /// login) and `record` only if the dossier has no record, no account has
    /// `account.person_key`, and `account.login` is not among the logins of `base` (the base of
    /// the row's names); then [`NewStudent::Inserted`]. Otherwise nothing is written and the
    /// row's context comes back, as [`Self::student_context`] reads it with `base`. Choosing
    /// `account.login` (the first free login of the base) is the caller's.
    async fn insert_new_student_or_context(
        &mut self,
        account: &AccountRecord,
        record: &StudentRecord,
        base: &str,
        now: i64,
    ) -> Result<NewStudent, StorageError> {
        let context = self
            .student_context(&record.dossier_number, &account.person_key, Some(base))
            .await?;
        let login_free = context
            .logins
            .as_ref()
            .is_none_or(|logins| !logins.contains(&account.login));
        if context.existing.is_none() && context.same_person.is_empty() && login_free {
            self.insert_student_account(account, record, now).await?;
            return Ok(NewStudent::Inserted);
        }
        Ok(NewStudent::Context(Box::new(context)))
    }
    /// A new student: [`Self::insert_account`] then [`Self::upsert_student`] (PostgreSQL: in one
    /// statement).
    async fn insert_student_account(
        &mut self,
        account: &AccountRecord,
        record: &StudentRecord,
        now: i64,
    ) -> Result<(), StorageError> {
        self.insert_account(account, now).await?;
        self.upsert_student(record, now).await
    }

    /// Makes everything durable.
    async fn commit(self: Box<Self>) -> Result<(), StorageError>;
    /// Discards everything (a dry run).
    async fn rollback(self: Box<Self>) -> Result<(), StorageError>;
}

/// The storage port of provisioning.
#[async_trait]
pub trait ProvisioningStore: Send + Sync {
    async fn begin_provisioning(&self) -> Result<Box<dyn ProvisioningUnit>, StorageError>;
}

/// The personal words a new password must not contain (names, login, dossier number, birth date,
/// university), and the student record they came from, if any.
pub async fn personal_words(
    store: &dyn AccountStore,
    account: &AccountRecord,
    university: &str,
) -> Result<(Vec<String>, Option<StudentRecord>), StorageError> {
    let student = store.find_student_of_account(&account.id).await?;
    let words = password_policy::context_words(
        &account.first_name,
        &account.last_name,
        &account.login,
        student.as_ref().map(|s| s.dossier_number.as_str()),
        Some(&account.birth_date),
        university,
    );
    Ok((words, student))
}

/// Purging the short-lived secrets of the account rooms (DESIGN.md §8: a job safe on every node).
#[async_trait]
pub trait AccountSecretsPurge: Send + Sync {
    /// Deletes activations in progress, staff activation codes and password-reset links expired
    /// at `now`; returns how many rows went.
    async fn purge_expired_account_secrets(&self, now: i64) -> Result<u64, StorageError>;
}

/// Reading accounts back (helpdesk, login).
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// The account a login (current or alias) names.
    async fn find_account_by_login(
        &self,
        login: &str,
    ) -> Result<Option<AccountRecord>, StorageError>;
    async fn find_account_by_id(&self, id: &str) -> Result<Option<AccountRecord>, StorageError>;
    async fn find_student_by_dossier(
        &self,
        dossier_number: &str,
    ) -> Result<Option<StudentRecord>, StorageError>;
    async fn find_staff_by_employee(
        &self,
        employee_id: &str,
    ) -> Result<Option<StaffRecord>, StorageError>;
    async fn find_staff_of_account(
        &self,
        account_id: &str,
    ) -> Result<Option<StaffRecord>, StorageError>;
    async fn find_student_of_account(
        &self,
        account_id: &str,
    ) -> Result<Option<StudentRecord>, StorageError>;
    /// An account with its student and staff records, in one query: what a ticket validation
    /// or a userinfo request needs to compute the attributes.
    async fn find_account_with_records(
        &self,
        id: &str,
    ) -> Result<Option<AccountWithRecords>, StorageError>;
    /// The password hash of an account (none before activation).
    async fn find_password_hash(&self, account_id: &str) -> Result<Option<String>, StorageError>;
    /// Every login of an account, current first.
    async fn list_logins(&self, account_id: &str) -> Result<Vec<String>, StorageError>;
    async fn count_accounts(&self) -> Result<u64, StorageError>;
}

/// What the helpdesk sees of an account beyond its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountActivity {
    pub activated_at: Option<i64>,
    pub last_login_at: Option<i64>,
    pub last_login_from: Option<String>,
    pub disabled_reason: Option<String>,
    pub has_password: bool,
}

/// A recovery contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// `email` or `phone`.
    pub kind: String,
    pub value: String,
    pub confirmed: bool,
}

impl Contact {
    /// The value with most of it hidden, for the helpdesk's screen (`e****@gmail.com`,
    /// `+336******78`): enough to recognise, not to copy.
    pub fn masked(&self) -> String {
        fn hide(text: &str, keep_start: usize, keep_end: usize) -> String {
            let chars: Vec<char> = text.chars().collect();
            if chars.len() <= keep_start + keep_end {
                return "*".repeat(chars.len());
            }
            let hidden = chars.len() - keep_start - keep_end;
            chars[..keep_start]
                .iter()
                .chain(std::iter::repeat_n(&'*', hidden))
                .chain(&chars[chars.len() - keep_end..])
                .collect()
        }
        match self.value.rsplit_once('@') {
            Some((local, domain)) if self.kind == "email" => {
                format!("{}@{domain}", hide(local, 1, 0))
            }
            _ => hide(&self.value, 4, 2),
        }
    }
}

/// The helpdesk's reads and writes on accounts.
#[async_trait]
pub trait AccountAdminStore: AccountStore + Send + Sync {
    async fn find_account_activity(
        &self,
        account_id: &str,
    ) -> Result<Option<AccountActivity>, StorageError>;
    async fn list_recovery_contacts(&self, account_id: &str) -> Result<Vec<Contact>, StorageError>;
    /// Replaces the account's contacts of `kind` (`email` or `phone`) by `value`, confirmed now
    /// (its owner typed the code sent to it), in one transaction.
    async fn replace_recovery_contact(
        &self,
        account_id: &str,
        kind: &str,
        value: &str,
        now: i64,
    ) -> Result<(), StorageError>;
    /// Sets the state of an account (`reason` for a disabled one); disabling also ends every
    /// session of the account, in the same transaction. Returns how many sessions ended.
    async fn change_account_state(
        &self,
        account_id: &str,
        state: AccountState,
        reason: Option<&str>,
        now: i64,
    ) -> Result<u64, StorageError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_are_masked_for_the_helpdesk() {
        let email = Contact {
            kind: "email".into(),
            value: "emilie.dupre@gmail.com".into(),
            confirmed: true,
        };
        assert_eq!(email.masked(), "e***********@gmail.com");
        let phone = Contact {
            kind: "phone".into(),
            value: "+33612345678".into(),
            confirmed: true,
        };
        assert_eq!(phone.masked(), "+336******78");
        let short = Contact {
            kind: "phone".into(),
            value: "+33".into(),
            confirmed: false,
        };
        assert_eq!(short.masked(), "***");
    }
}

//! The attributes of a person (DESIGN.md §7): one set of values, released as CAS attributes and,
//! later, OIDC claims. Names follow eduPerson and the French SupAnn recommendation.

use std::collections::BTreeMap;

use super::{AccountRecord, AccountStore, StaffRecord, StudentRecord};
use crate::storage::StorageError;

/// Attribute name → values (several values are released as repeated elements).
pub type Attributes = BTreeMap<String, Vec<String>>;

/// HR roles that are teaching or research staff (eduPerson `faculty`).
fn is_faculty(role: &str) -> bool {
    let role = role.to_lowercase();
    role.contains("enseignant") || role.contains("chercheur") || role.contains("faculty")
}

/// Computes the attributes from the account and its feed records.
pub fn compute(
    account: &AccountRecord,
    student: Option<&StudentRecord>,
    staff: Option<&StaffRecord>,
    student_domain: &str,
    staff_domain: &str,
) -> Attributes {
    let active_staff = staff.filter(|s| s.status == "active");
    let domain = if active_staff.is_some() {
        staff_domain
    } else {
        student_domain
    };
    let address = format!("{}@{domain}", account.login);
    let mut affiliations: Vec<&str> = Vec::new();
    if let Some(staff) = active_staff {
        if is_faculty(&staff.role) {
            affiliations.extend(["faculty", "employee"]);
        } else {
            affiliations.extend(["staff", "employee"]);
        }
    }
    if student.is_some() {
        affiliations.push("student");
    }
    if !affiliations.is_empty() {
        affiliations.push("member");
    }
    let mut out = Attributes::new();
    let mut put = |name: &str, values: Vec<String>| {
        if !values.is_empty() {
            out.insert(name.to_string(), values);
        }
    };
    put("uid", vec![account.login.clone()]);
    put("mail", vec![address.clone()]);
    put("eduPersonPrincipalName", vec![address]);
    put(
        "displayName",
        vec![format!("{} {}", account.first_name, account.last_name)],
    );
    put("givenName", vec![account.first_name.clone()]);
    put("sn", vec![account.last_name.clone()]);
    put(
        "eduPersonPrimaryAffiliation",
        affiliations
            .first()
            .map(|a| a.to_string())
            .into_iter()
            .collect(),
    );
    put(
        "eduPersonAffiliation",
        affiliations.iter().map(|a| a.to_string()).collect(),
    );
    put(
        "supannEtuId",
        student
            .map(|s| s.dossier_number.clone())
            .into_iter()
            .collect(),
    );
    put(
        "supannEmpId",
        active_staff
            .map(|s| s.employee_id.clone())
            .into_iter()
            .collect(),
    );
    put(
        "supannEntiteAffectation",
        student
            .map(|s| s.component.clone())
            .into_iter()
            .chain(active_staff.map(|s| s.department.clone()))
            .collect(),
    );
    out
}

/// The attributes of an account read with its feed records
/// ([`super::AccountStore::find_account_with_records`]).
pub fn of_records(
    records: &super::AccountWithRecords,
    student_domain: &str,
    staff_domain: &str,
) -> Attributes {
    compute(
        &records.account,
        records.student.as_ref(),
        records.staff.as_ref(),
        student_domain,
        staff_domain,
    )
}

/// Reads the feed records of an account and computes its attributes.
pub async fn of_account(
    store: &dyn AccountStore,
    account: &AccountRecord,
    student_domain: &str,
    staff_domain: &str,
) -> Result<Attributes, StorageError> {
    let student = store.find_student_of_account(&account.id).await?;
    let staff = store.find_staff_of_account(&account.id).await?;
    Ok(compute(
        account,
        student.as_ref(),
        staff.as_ref(),
        student_domain,
        staff_domain,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::AccountState;

    fn account() -> AccountRecord {
        AccountRecord {
            id: "a1".into(),
            login: "marie.martin".into(),
            state: AccountState::Active,
            first_name: "Marie".into(),
            last_name: "Martin".into(),
            birth_date: "1990-01-01".into(),
            person_key: "k".into(),
        }
    }

    #[test]
    fn a_doctoral_student_who_teaches_has_both_affiliations() {
        let student = StudentRecord {
            dossier_number: "22000001".into(),
            account_id: "a1".into(),
            component: "IAE".into(),
            enrolment_year: 2026,
            enrolment_email: None,
        };
        let staff = StaffRecord {
            employee_id: "P100001".into(),
            account_id: "a1".into(),
            department: "Laboratoire LIMOS".into(),
            role: "enseignant-chercheur".into(),
            status: "active".into(),
        };
        let attrs = compute(
            &account(),
            Some(&student),
            Some(&staff),
            "etu.uca.fr",
            "uca.fr",
        );
        assert_eq!(attrs["uid"], ["marie.martin"]);
        assert_eq!(attrs["mail"], ["marie.martin@uca.fr"]);
        assert_eq!(
            attrs["eduPersonAffiliation"],
            ["faculty", "employee", "student", "member"]
        );
        assert_eq!(attrs["eduPersonPrimaryAffiliation"], ["faculty"]);
        assert_eq!(attrs["supannEtuId"], ["22000001"]);
        assert_eq!(attrs["supannEmpId"], ["P100001"]);
        assert_eq!(
            attrs["supannEntiteAffectation"],
            ["IAE", "Laboratoire LIMOS"]
        );
        let student_only = compute(&account(), Some(&student), None, "etu.uca.fr", "uca.fr");
        assert_eq!(
            student_only["eduPersonPrincipalName"],
            ["marie.martin@etu.uca.fr"]
        );
        assert_eq!(student_only["eduPersonAffiliation"], ["student", "member"]);
        assert!(!student_only.contains_key("supannEmpId"));
    }
}

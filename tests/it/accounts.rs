//! Registrar and HR feeds, on both backends, with files from `shared/tools/gen_people.py`.

use std::path::PathBuf;
use std::process::Command;

use sesame::accounts::AccountState;
use sesame::accounts::provisioning::ImportSummary;

use crate::on_both_backends;
use crate::support::{Backend, TestApp};

on_both_backends! {
    a_generated_registrar_file_imports_and_reimports_unchanged,
    dirty_lines_are_rejected_by_line_and_the_rest_goes_in,
    a_row_failing_in_the_database_is_left_out_alone_from_its_batch,
    a_dry_run_counts_exactly_and_writes_nothing,
    homonyms_are_numbered_and_never_renumbered,
    every_homonym_of_a_generated_file_gets_the_next_number_in_file_order,
    a_renamed_student_keeps_the_old_login_as_an_alias,
    staff_who_left_are_disabled_and_doctoral_students_are_one_account,
}

/// Runs the shared generator: `gen_people.py ARGS` → CSV text.
fn generate(args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/gen_people.py");
    let output = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn import_students(app: &TestApp, csv: &str, dry_run: bool) -> ImportSummary {
    app.import_students(csv, dry_run).await
}

async fn import_staff(app: &TestApp, csv: &str) -> ImportSummary {
    app.import_staff(csv).await
}

async fn a_generated_registrar_file_imports_and_reimports_unchanged(backend: Backend) {
    let app = TestApp::start(backend).await;
    let csv = generate(&["students", "400"]);
    let first = import_students(&app, &csv, false).await;
    assert_eq!(
        (first.created, first.updated, first.rejected.len()),
        (400, 0, 0)
    );
    assert_eq!(app.app.store.count_accounts().await.unwrap(), 400);
    let again = import_students(&app, &csv, false).await;
    assert_eq!((again.created, again.updated, again.unchanged), (0, 0, 400));
    assert_eq!(app.app.store.count_accounts().await.unwrap(), 400);
}

/// A batch is applied without savepoints first; a row the database refuses sends it back to the
/// careful way (a savepoint per row): only that row is left out, and reported by its line.
async fn a_row_failing_in_the_database_is_left_out_alone_from_its_batch(backend: Backend) {
    use sesame::accounts::AccountRecord;
    use sesame::accounts::identifiers::derive_base;
    let app = TestApp::start(backend).await;
    let csv = generate(&["students", "30", "--seed", "11"]);
    // Line 17 (the 16th student) is made to fail in the database: an account already holds its
    // login as its current login without the namespace knowing it (an inconsistency only a
    // database edit makes), so the new account's insert breaks the accounts' unique login.
    let line = 17;
    let fields: Vec<&str> = csv.lines().nth(line - 1).unwrap().split(',').collect();
    let login = derive_base(fields[2], fields[1]).unwrap();
    let mut unit = app.app.store.begin_provisioning().await.unwrap();
    let mut other = AccountRecord {
        id: "inconsistent".into(),
        login: "x.inconsistent".into(),
        state: AccountState::Pending,
        first_name: "X".into(),
        last_name: "Inconsistent".into(),
        birth_date: "2000-01-01".into(),
        person_key: "inconsistent".into(),
    };
    unit.insert_account(&other, 10).await.unwrap();
    other.login = login.as_str().to_string();
    unit.update_account_identity(&other, 10).await.unwrap();
    unit.commit().await.unwrap();

    let summary = import_students(&app, &csv, false).await;
    assert_eq!((summary.created, summary.updated), (29, 0));
    assert_eq!(summary.rejected.len(), 1, "{:?}", summary.rejected);
    assert_eq!(summary.rejected[0].line, line as u64);
    assert_eq!(app.app.store.count_accounts().await.unwrap(), 30);
    // Every other student of the batch is in, the failing one is not.
    for (n, row) in csv.lines().enumerate().skip(1) {
        let dossier = row.split(',').next().unwrap();
        let found = app
            .app
            .store
            .find_student_by_dossier(dossier)
            .await
            .unwrap();
        assert_eq!(found.is_some(), n + 1 != line, "line {}", n + 1);
    }
    // Again: the same report, the others unchanged.
    let again = import_students(&app, &csv, false).await;
    assert_eq!((again.created, again.unchanged), (0, 29));
    assert_eq!(again.rejected.len(), 1);
    assert_eq!(again.rejected[0].line, line as u64);
}

async fn dirty_lines_are_rejected_by_line_and_the_rest_goes_in(backend: Backend) {
    let app = TestApp::start(backend).await;
    let csv = generate(&["students", "1000", "--dirty", "--seed", "5"]);
    let lines = csv.lines().count() as u64 - 1;
    let summary = import_students(&app, &csv, false).await;
    assert_eq!(summary.rejected.len(), 4, "{:?}", summary.rejected);
    assert_eq!(summary.created + summary.rejected.len() as u64, lines);
    for rejection in &summary.rejected {
        let line = csv.lines().nth(rejection.line as usize - 1).unwrap();
        assert!(!rejection.reason.is_empty());
        // The named line is the dirty one, not a neighbour.
        assert!(
            [
                "Sans", "Doublon", "Mauvais", "Invalide", "Futur", ",,", "Colonnes"
            ]
            .iter()
            .any(|marker| line.contains(marker)),
            "line {} is `{line}` for `{}`",
            rejection.line,
            rejection.reason
        );
    }
    assert_eq!(
        app.app.store.count_accounts().await.unwrap(),
        summary.created
    );
}

async fn a_dry_run_counts_exactly_and_writes_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let csv = generate(&["students", "300", "--dirty"]);
    let dry = import_students(&app, &csv, true).await;
    assert!(dry.dry_run);
    assert_eq!(app.app.store.count_accounts().await.unwrap(), 0);
    let real = import_students(&app, &csv, false).await;
    assert_eq!(
        (
            dry.created,
            dry.updated,
            dry.unchanged,
            dry.rejected.clone()
        ),
        (
            real.created,
            real.updated,
            real.unchanged,
            real.rejected.clone()
        )
    );
}

const HEADER: &str = "dossier_number,last_name,first_name,birth_date,component,enrolment_year\n";

async fn homonyms_are_numbered_and_never_renumbered(backend: Backend) {
    let app = TestApp::start(backend).await;
    let first = format!(
        "{HEADER}22000001,Martin,Marie,2004-01-01,IAE,2026\n22000002,Martin,Marie,2005-02-02,IAE,2026\n"
    );
    import_students(&app, &first, false).await;
    // The same people in another order, and a third homonym.
    let second = format!(
        "{HEADER}22000003,Martin,Marie Claire,2006-03-03,IAE,2026\n22000002,Martin,Marie,2005-02-02,IAE,2026\n22000001,Martin,Marie,2004-01-01,IAE,2026\n"
    );
    let summary = import_students(&app, &second, false).await;
    assert_eq!((summary.created, summary.unchanged), (1, 2));
    for (dossier, login) in [
        ("22000001", "marie.martin"),
        ("22000002", "marie.martin2"),
        ("22000003", "marie.martin3"),
    ] {
        let record = app
            .app
            .store
            .find_student_by_dossier(dossier)
            .await
            .unwrap()
            .unwrap();
        let account = app
            .app
            .store
            .find_account_by_login(login)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(account.id, record.account_id, "{login}");
        assert_eq!(account.state, AccountState::Pending);
        assert_ne!(account.id, account.login, "the id is opaque, not the login");
    }
}

/// A fresh import of a file full of homonyms (1,500 students over two batches): the rows of a
/// name get `base`, `base2`, `base3`… in the order of the file, whether a row's login came from
/// what the import already knew of its base (one write) or from a read of the store first.
async fn every_homonym_of_a_generated_file_gets_the_next_number_in_file_order(backend: Backend) {
    use sesame::accounts::identifiers::derive_base;
    use std::collections::HashMap;
    let app = TestApp::start(backend).await;
    let csv = generate(&["students", "1500", "--seed", "7"]);
    let summary = import_students(&app, &csv, false).await;
    assert_eq!((summary.created, summary.rejected.len()), (1500, 0));
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut homonyms = 0;
    for row in csv.lines().skip(1) {
        let fields: Vec<&str> = row.split(',').collect();
        let base = derive_base(fields[2], fields[1]).unwrap();
        let n = seen.entry(base.as_str().to_string()).or_insert(0);
        *n += 1;
        let expected = match *n {
            1 => base.as_str().to_string(),
            n => {
                homonyms += 1;
                format!("{}{n}", base.as_str())
            }
        };
        let record = app
            .app
            .store
            .find_student_by_dossier(fields[0])
            .await
            .unwrap()
            .unwrap();
        let account = app
            .app
            .store
            .find_account_by_id(&record.account_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(account.login, expected, "{row}");
    }
    assert!(
        homonyms > 500,
        "the file has homonyms to number ({homonyms})"
    );
}

async fn a_renamed_student_keeps_the_old_login_as_an_alias(backend: Backend) {
    let app = TestApp::start(backend).await;
    import_students(
        &app,
        &format!("{HEADER}22000001,Dupré,Émilie,2004-01-01,IAE,2026\n"),
        false,
    )
    .await;
    let before = app
        .app
        .store
        .find_account_by_login("emilie.dupre")
        .await
        .unwrap()
        .unwrap();
    // An accent fix keeps the login; a new last name gives a new one.
    let accent = import_students(
        &app,
        &format!("{HEADER}22000001,Dupre,Émilie,2004-01-01,IAE,2026\n"),
        false,
    )
    .await;
    assert_eq!(accent.updated, 1);
    assert_eq!(
        app.app.store.list_logins(&before.id).await.unwrap(),
        ["emilie.dupre"]
    );
    let renamed = import_students(
        &app,
        &format!("{HEADER}22000001,Lefèvre,Émilie,2004-01-01,IAE,2026\n"),
        false,
    )
    .await;
    assert_eq!(renamed.updated, 1);
    let after = app
        .app
        .store
        .find_account_by_login("emilie.lefevre")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.id, before.id, "the same account");
    assert_eq!(after.login, "emilie.lefevre");
    let old = app
        .app
        .store
        .find_account_by_login("emilie.dupre")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.id, before.id, "the old login still names the account");
    assert_eq!(
        app.app.store.list_logins(&before.id).await.unwrap(),
        ["emilie.lefevre", "emilie.dupre"]
    );
    // Nobody else can get the old login.
    import_students(
        &app,
        &format!("{HEADER}22000001,Lefèvre,Émilie,2004-01-01,IAE,2026\n22000009,Dupré,Émilie,2003-01-01,IAE,2026\n"),
        false,
    )
    .await;
    let newcomer = app
        .app
        .store
        .find_student_by_dossier("22000009")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        app.app
            .store
            .list_logins(&newcomer.account_id)
            .await
            .unwrap(),
        ["emilie.dupre2"]
    );
}

async fn staff_who_left_are_disabled_and_doctoral_students_are_one_account(backend: Backend) {
    let app = TestApp::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let students = generate(&["students", "200"]);
    let students_file = dir.path().join("students.csv");
    std::fs::write(&students_file, &students).unwrap();
    import_students(&app, &students, false).await;
    let staff = generate(&[
        "staff",
        "80",
        "--also-students",
        students_file.to_str().unwrap(),
    ]);
    let summary = import_staff(&app, &staff).await;
    // Every 50th of 200 students also teaches: 4 accounts gain a staff record.
    assert_eq!(summary.updated, 4, "{summary:?}");
    assert_eq!(summary.created, 80);
    assert_eq!(app.app.store.count_accounts().await.unwrap(), 280);
    let doctoral = staff.lines().nth(1).unwrap();
    let employee_id = doctoral.split(',').next().unwrap();
    let dossier = employee_id.trim_start_matches('D');
    let student = app
        .app
        .store
        .find_student_by_dossier(dossier)
        .await
        .unwrap()
        .unwrap();
    let staff_record = app
        .app
        .store
        .find_staff_of_account(&student.account_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(staff_record.employee_id, employee_id);

    // A leaver in a later feed is disabled, once.
    let active_line = staff
        .lines()
        .find(|l| l.starts_with("P1") && l.ends_with(",active"))
        .unwrap();
    let left_line = active_line.replace(",active", ",left");
    let header = staff.lines().next().unwrap();
    let leaving = format!("{header}\n{left_line}\n");
    let summary = import_staff(&app, &leaving).await;
    assert_eq!(summary.disabled, 1);
    let employee_id = left_line.split(',').next().unwrap();
    let record = app
        .app
        .store
        .find_staff_by_employee(employee_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, "left");
    let account = app
        .app
        .store
        .find_account_by_id(&record.account_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.state, AccountState::Disabled);
    let again = import_staff(&app, &leaving).await;
    assert_eq!((again.disabled, again.unchanged), (0, 1));
}

//! Compiles the PostgreSQL half of the test suites only when a test database is configured (and
//! the real-SMTP scenario only when `SESAME_TEST_AIOSMTPD` names a Python with aiosmtpd), so a run
//! without them shows fewer tests instead of counting skipped ones as passed.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(sesame_postgres_tests)");
    println!("cargo::rustc-check-cfg=cfg(sesame_smtp_tests)");
    println!("cargo::rerun-if-env-changed=SESAME_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-env-changed=SESAME_TEST_AIOSMTPD");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=migrations");
    if std::env::var_os("SESAME_TEST_POSTGRES_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=sesame_postgres_tests");
    }
    // The real-SMTP scenario: the variable names a Python with aiosmtpd installed.
    if std::env::var_os("SESAME_TEST_AIOSMTPD").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=sesame_smtp_tests");
    }
}
